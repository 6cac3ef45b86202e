// Model files in HDF5 through the C API: atomic save, full read, restore into a compiled network.
#include "engine/io/model_file.h"

#include <fcntl.h>
#include <hdf5.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/core/status.h"
#include "engine/io/internal/hdf5_util.h"
#include "engine/nodes/neural.h"

namespace elektronn {
namespace {

using internal::H5Id;
using internal::Hdf5Detail;
using internal::QuietHdf5Errors;

absl::Status FileError(absl::StatusCode code, const std::string& path, const std::string& what) {
  return absl::Status(code, absl::StrFormat("model file '%s': %s", path, what));
}
absl::Status Invalid(const std::string& path, const std::string& what) {
  return FileError(absl::StatusCode::kInvalidArgument, path, what);
}
// A failed HDF5 call, with HDF5's own explanation appended.
absl::Status Hdf5Error(const std::string& path, const std::string& what,
                       absl::StatusCode code = absl::StatusCode::kInternal) {
  const std::string detail = Hdf5Detail();
  return FileError(code, path, detail.empty() ? what : absl::StrCat(what, " (", detail, ")"));
}
absl::Status ErrnoError(int err, const std::string& path, const std::string& what) {
  return absl::ErrnoToStatus(err, absl::StrFormat("model file '%s': %s", path, what));
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("(", absl::StrJoin(shape, ","), ")");
}

int64_t Numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

// A node, parameter or slot name becomes one HDF5 path component.
absl::Status CheckComponent(const std::string& path, const std::string& what,
                            const std::string& name) {
  if (name.empty() || name == "." || name.find('/') != std::string::npos) {
    return Invalid(path,
                   absl::StrFormat("%s name '%s' cannot be stored: it must be non-empty, not '.', "
                                   "and must not contain '/'",
                                   what, name));
  }
  return absl::OkStatus();
}

H5Id MakeSpace(const std::vector<int64_t>& shape) {
  if (shape.empty()) return H5Id(H5Screate(H5S_SCALAR), H5Sclose);
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  return H5Id(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
}

// ---------------------------------------------------------------------------------------------
// Writing.

class Writer {
 public:
  Writer(hid_t file, const std::string& path) : file_(file), path_(path) {}

  absl::Status Init() {
    lcpl_ = H5Id(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
    if (!lcpl_.valid() || H5Pset_create_intermediate_group(lcpl_.get(), 1) < 0) {
      return Hdf5Error(path_, "cannot create a link property list");
    }
    return absl::OkStatus();
  }

  absl::Status Group(const std::string& name) {
    H5Id g(H5Gcreate2(file_, name.c_str(), lcpl_.get(), H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
    if (!g.valid()) return Hdf5Error(path_, absl::StrFormat("cannot create group '%s'", name));
    return absl::OkStatus();
  }

  absl::Status Dataset(const std::string& name, hid_t file_type, hid_t mem_type,
                       const std::vector<int64_t>& shape, const void* data) {
    H5Id space = MakeSpace(shape);
    if (!space.valid()) {
      return Hdf5Error(path_, absl::StrFormat("cannot create a dataspace of shape %s for '%s'",
                                              ShapeString(shape), name));
    }
    H5Id d(H5Dcreate2(file_, name.c_str(), file_type, space.get(), lcpl_.get(), H5P_DEFAULT,
                      H5P_DEFAULT),
           H5Dclose);
    if (!d.valid()) return Hdf5Error(path_, absl::StrFormat("cannot create dataset '%s'", name));
    if (Numel(shape) > 0 && H5Dwrite(d.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
      return Hdf5Error(path_, absl::StrFormat("cannot write dataset '%s'", name));
    }
    return absl::OkStatus();
  }

  absl::Status FloatDataset(const std::string& name, const std::vector<int64_t>& shape,
                            const std::vector<float>& values) {
    if (static_cast<int64_t>(values.size()) != Numel(shape)) {
      return FileError(absl::StatusCode::kInternal, path_,
                       absl::StrFormat("dataset '%s': %d values for shape %s", name, values.size(),
                                       ShapeString(shape)));
    }
    return Dataset(name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, shape, values.data());
  }

  // A scalar attribute `name` on the object at `where`.
  absl::Status Attribute(const std::string& where, const std::string& name, hid_t file_type,
                         hid_t mem_type, const void* value) {
    H5Id space(H5Screate(H5S_SCALAR), H5Sclose);
    H5Id a(H5Acreate_by_name(file_, where.c_str(), name.c_str(), file_type, space.get(),
                             H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
           H5Aclose);
    if (!a.valid() || H5Awrite(a.get(), mem_type, value) < 0) {
      return Hdf5Error(path_, absl::StrFormat("cannot write attribute '%s' of '%s'", name, where));
    }
    return absl::OkStatus();
  }

  // Variable-length UTF-8, which h5py reads back as a Python str.
  absl::Status StringAttribute(const std::string& where, const std::string& name,
                               const std::string& value) {
    H5Id type(H5Tcopy(H5T_C_S1), H5Tclose);
    if (!type.valid() || H5Tset_size(type.get(), H5T_VARIABLE) < 0 ||
        H5Tset_cset(type.get(), H5T_CSET_UTF8) < 0) {
      return Hdf5Error(path_, "cannot create a string type");
    }
    const char* p = value.c_str();
    return Attribute(where, name, type.get(), type.get(), &p);
  }

 private:
  hid_t file_;
  std::string path_;
  H5Id lcpl_;
};

// Native (kernel layout) buffer -> canonical host copy.
absl::StatusOr<std::vector<float>> ToCanonical(kernels::Backend* backend, const Parameter& p,
                                               const float* native_ptr, const std::string& path) {
  if (!p.export_fn && p.size != p.canonical_size()) {
    return FileError(absl::StatusCode::kInternal, path,
                     absl::StrFormat("parameter %s holds %d native values for shape %s but has no "
                                     "layout conversion",
                                     p.key(), p.size, ShapeString(p.shape)));
  }
  std::vector<float> native(p.size);
  backend->Download(native_ptr, native.data(), p.size);
  if (!p.export_fn) return native;
  std::vector<float> canonical(p.canonical_size());
  p.export_fn(native.data(), canonical.data());
  return canonical;
}

// The spec to store: the built one with the live gradnet rates of 'fadeout' layers (the shell
// and schedules change them), so a checkpoint resumes with the rates it was saved with.
v1::ModelSpec SpecToStore(const Network& net) {
  v1::ModelSpec spec = net.graph().spec();
  for (v1::NodeSpec& n : *spec.mutable_nodes()) {
    const auto* nn = dynamic_cast<const NeuralNode*>(net.graph().Find(n.name()));
    if (nn != nullptr && nn->has_gradnet()) SetGradnetRate(n, nn->gradnet_rate());
  }
  return spec;
}

absl::Status WriteContents(hid_t file, const std::string& path, Network& net,
                           const Optimiser* opt) {
  Writer w(file, path);
  RETURN_IF_ERROR(w.Init());
  RETURN_IF_ERROR(w.StringAttribute("/", "format", kModelFileFormat));

  std::string spec_bytes;
  if (!SpecToStore(net).SerializeToString(&spec_bytes)) {
    return FileError(absl::StatusCode::kInternal, path, "cannot serialise the model spec");
  }
  RETURN_IF_ERROR(w.Dataset("/spec", H5T_STD_U8LE, H5T_NATIVE_UINT8,
                            {static_cast<int64_t>(spec_bytes.size())}, spec_bytes.data()));

  RETURN_IF_ERROR(w.Group("/params"));
  for (const Parameter* p : net.params()) {
    const std::string name = absl::StrCat("/params/", p->key());
    RETURN_IF_ERROR(w.FloatDataset(name, p->shape, net.ParamValue(*p)));
    const uint8_t constant = 0;  // frozen parameters stay frozen when the file is loaded
    if (!p->trainable) {
      RETURN_IF_ERROR(w.Attribute(name, "trainable", H5T_STD_U8LE, H5T_NATIVE_UINT8, &constant));
    }
  }

  if (opt == nullptr) return absl::OkStatus();
  RETURN_IF_ERROR(w.Group("/optimiser"));
  RETURN_IF_ERROR(w.StringAttribute("/optimiser", "kind", OptimiserName(opt->kind())));
  const int64_t t = opt->t();
  const uint64_t step = net.step();
  const HyperParams& h = opt->hyper();
  RETURN_IF_ERROR(w.Attribute("/optimiser", "t", H5T_STD_I64LE, H5T_NATIVE_INT64, &t));
  RETURN_IF_ERROR(w.Attribute("/optimiser", "step", H5T_STD_U64LE, H5T_NATIVE_UINT64, &step));
  const std::pair<const char*, float> floats[] = {
      {"lr", h.lr}, {"mom", h.mom}, {"wd", h.wd}, {"beta2", h.beta2}};
  for (const auto& [name, v] : floats) {
    RETURN_IF_ERROR(w.Attribute("/optimiser", name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, &v));
  }
  const std::vector<std::string> slot_names = opt->SlotNames();
  // The optimiser's state lives in the same backend as the network it updates.
  kernels::Backend* backend = net.backend();
  for (size_t i = 0; i < opt->params().size(); ++i) {
    const Parameter& p = *opt->params()[i];
    for (size_t s = 0; s < slot_names.size(); ++s) {
      ASSIGN_OR_RETURN(std::vector<float> v, ToCanonical(backend, p, opt->Slot(i, s), path));
      RETURN_IF_ERROR(
          w.FloatDataset(absl::StrCat("/optimiser/", p.key(), "/", slot_names[s]), p.shape, v));
    }
  }
  return absl::OkStatus();
}

H5Id FileAccessList() {
  H5Id fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  // SEMI: closing the file fails loudly if an object inside is still open, instead of silently
  // keeping the file open (and unflushed) behind our back.
  if (fapl.valid()) H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_SEMI);
  return fapl;
}

absl::Status WriteTemporary(const std::string& tmp, const std::string& path, Network& net,
                            const Optimiser* opt) {
  H5Id fapl = FileAccessList();
  errno = 0;
  H5Id file(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), H5Fclose);
  if (!file.valid()) {
    const int err = errno;
    return Hdf5Error(path, absl::StrFormat("cannot create the temporary file '%s'", tmp),
                     err != 0 ? absl::ErrnoToStatusCode(err) : absl::StatusCode::kInternal);
  }
  RETURN_IF_ERROR(WriteContents(file.get(), path, net, opt));
  if (H5Fflush(file.get(), H5F_SCOPE_GLOBAL) < 0) {
    return Hdf5Error(path, absl::StrFormat("cannot flush the temporary file '%s'", tmp));
  }
  if (!file.Close()) {
    return Hdf5Error(path, absl::StrFormat("cannot close the temporary file '%s'", tmp));
  }
  return absl::OkStatus();
}

absl::Status Fsync(const std::string& target, int flags, const std::string& path) {
  const int fd = ::open(target.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, path, absl::StrFormat("cannot open '%s' to sync", target));
  const int r = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (r != 0) return ErrnoError(err, path, absl::StrFormat("cannot fsync '%s'", target));
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Reading.

absl::StatusOr<H5Id> OpenForReading(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT) {
      return FileError(absl::StatusCode::kNotFound, path, "no such file");
    }
    return ErrnoError(err, path, "cannot access the file");
  }
  if (S_ISDIR(st.st_mode)) return Invalid(path, "is a directory, not a model file");
  const htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
  if (is_hdf5 == 0) return Invalid(path, "is not an HDF5 file");
  if (is_hdf5 < 0) return Hdf5Error(path, "cannot check whether it is an HDF5 file");
  H5Id fapl = FileAccessList();
  H5Id file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()), H5Fclose);
  if (!file.valid()) {
    return Hdf5Error(path, "cannot open the HDF5 file", absl::StatusCode::kInvalidArgument);
  }
  return file;
}

// Names of the links in group `where`, in name order.
absl::StatusOr<std::vector<std::string>> ChildNames(hid_t file, const std::string& where,
                                                    const std::string& path) {
  H5Id g(H5Gopen2(file, where.c_str(), H5P_DEFAULT), H5Gclose);
  if (!g.valid()) {
    return Hdf5Error(path, absl::StrFormat("'%s' is not a group", where),
                     absl::StatusCode::kInvalidArgument);
  }
  H5G_info_t info;
  if (H5Gget_info(g.get(), &info) < 0) {
    return Hdf5Error(path, absl::StrFormat("cannot list group '%s'", where));
  }
  std::vector<std::string> names;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t n =
        H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (n < 0) return Hdf5Error(path, absl::StrFormat("cannot list group '%s'", where));
    std::string name(static_cast<size_t>(n) + 1, '\0');
    if (H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size(),
                           H5P_DEFAULT) < 0) {
      return Hdf5Error(path, absl::StrFormat("cannot list group '%s'", where));
    }
    name.resize(static_cast<size_t>(n));
    names.push_back(std::move(name));
  }
  return names;
}

// H5I_GROUP, H5I_DATASET, ... of the object at `name`.
absl::StatusOr<H5I_type_t> ObjectType(hid_t file, const std::string& name,
                                      const std::string& path) {
  H5Id o(H5Oopen(file, name.c_str(), H5P_DEFAULT), H5Oclose);
  if (!o.valid()) {
    return Hdf5Error(path, absl::StrFormat("cannot open '%s'", name),
                     absl::StatusCode::kInvalidArgument);
  }
  return H5Iget_type(o.get());
}

struct DatasetData {
  std::vector<int64_t> shape;
  std::vector<float> values;
};

absl::StatusOr<std::vector<int64_t>> SpaceShape(hid_t space, const std::string& name,
                                                const std::string& path) {
  if (H5Sget_simple_extent_type(space) == H5S_NULL) {
    return Invalid(path, absl::StrFormat("dataset '%s' is empty (null dataspace)", name));
  }
  const int rank = H5Sget_simple_extent_ndims(space);
  if (rank < 0) return Hdf5Error(path, absl::StrFormat("cannot read the shape of '%s'", name));
  std::vector<hsize_t> dims(rank);
  if (rank > 0 && H5Sget_simple_extent_dims(space, dims.data(), nullptr) < 0) {
    return Hdf5Error(path, absl::StrFormat("cannot read the shape of '%s'", name));
  }
  return std::vector<int64_t>(dims.begin(), dims.end());
}

// The number of values of dataset `d` (shape `shape`, values of `value_bytes` bytes each in the
// file), once it is clear the file really stores them: a corrupt file can declare any
// dimensions, and allocating for them would abort or exhaust memory. Unfiltered data is stored
// in full; compressed (deflate) data at most 1032 times smaller.
absl::StatusOr<int64_t> StoredNumel(hid_t d, const std::vector<int64_t>& shape, size_t value_bytes,
                                    const std::string& name, const std::string& path) {
  int64_t n = 1;
  for (int64_t s : shape) {
    if (s < 0 || (s > 0 && n > std::numeric_limits<int64_t>::max() / s)) {
      return Invalid(path, absl::StrFormat("dataset '%s' has the impossible shape %s", name,
                                           ShapeString(shape)));
    }
    n *= s;
  }
  if (n == 0) return n;
  H5Id dcpl(H5Dget_create_plist(d), H5Pclose);
  const int filters = dcpl.valid() ? H5Pget_nfilters(dcpl.get()) : -1;
  if (filters < 0) return Hdf5Error(path, absl::StrFormat("cannot read the layout of '%s'", name));
  const long double needed = static_cast<long double>(n) * value_bytes;
  const long double stored = static_cast<long double>(H5Dget_storage_size(d));
  if (needed > stored * (filters > 0 ? 1032 : 1)) {
    return Invalid(path, absl::StrFormat("dataset '%s' has shape %s (%.0Lf bytes), but the file "
                                         "stores only %.0Lf bytes of it",
                                         name, ShapeString(shape), needed, stored));
  }
  return n;
}

absl::StatusOr<DatasetData> ReadFloatDataset(hid_t file, const std::string& name,
                                             const std::string& path) {
  H5Id d(H5Dopen2(file, name.c_str(), H5P_DEFAULT), H5Dclose);
  if (!d.valid()) {
    return Hdf5Error(path, absl::StrFormat("cannot open dataset '%s'", name),
                     absl::StatusCode::kInvalidArgument);
  }
  H5Id type(H5Dget_type(d.get()), H5Tclose);
  if (!type.valid() || H5Tget_class(type.get()) != H5T_FLOAT) {
    return Invalid(path,
                   absl::StrFormat("dataset '%s' does not hold floating-point numbers", name));
  }
  H5Id space(H5Dget_space(d.get()), H5Sclose);
  DatasetData out;
  ASSIGN_OR_RETURN(out.shape, SpaceShape(space.get(), name, path));
  ASSIGN_OR_RETURN(const int64_t n,
                   StoredNumel(d.get(), out.shape, H5Tget_size(type.get()), name, path));
  out.values.resize(n);
  if (!out.values.empty() &&
      H5Dread(d.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.values.data()) < 0) {
    return Hdf5Error(path, absl::StrFormat("cannot read dataset '%s'", name),
                     absl::StatusCode::kDataLoss);
  }
  return out;
}

absl::StatusOr<std::string> ReadBytes(hid_t file, const std::string& name,
                                      const std::string& path) {
  H5Id d(H5Dopen2(file, name.c_str(), H5P_DEFAULT), H5Dclose);
  if (!d.valid()) {
    return Hdf5Error(path, absl::StrFormat("cannot open dataset '%s'", name),
                     absl::StatusCode::kInvalidArgument);
  }
  H5Id type(H5Dget_type(d.get()), H5Tclose);
  if (!type.valid() || H5Tget_class(type.get()) != H5T_INTEGER || H5Tget_size(type.get()) != 1) {
    return Invalid(path, absl::StrFormat("dataset '%s' does not hold bytes (uint8)", name));
  }
  H5Id space(H5Dget_space(d.get()), H5Sclose);
  ASSIGN_OR_RETURN(std::vector<int64_t> shape, SpaceShape(space.get(), name, path));
  if (shape.size() != 1) {
    return Invalid(path, absl::StrFormat("dataset '%s' has shape %s, expected one axis", name,
                                         ShapeString(shape)));
  }
  ASSIGN_OR_RETURN(const int64_t n, StoredNumel(d.get(), shape, 1, name, path));
  std::string bytes(n, '\0');
  if (!bytes.empty() &&
      H5Dread(d.get(), H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data()) < 0) {
    return Hdf5Error(path, absl::StrFormat("cannot read dataset '%s'", name),
                     absl::StatusCode::kDataLoss);
  }
  return bytes;
}

// Opens attribute `name` of the object at `where`, which must hold a single value.
absl::StatusOr<H5Id> OpenScalarAttribute(hid_t file, const std::string& where,
                                         const std::string& name, const std::string& path) {
  const htri_t exists = H5Aexists_by_name(file, where.c_str(), name.c_str(), H5P_DEFAULT);
  if (exists < 0) return Hdf5Error(path, absl::StrFormat("cannot open '%s'", where));
  if (exists == 0) {
    return Invalid(path, absl::StrFormat("'%s' has no attribute '%s'", where, name));
  }
  H5Id a(H5Aopen_by_name(file, where.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!a.valid()) {
    return Hdf5Error(path, absl::StrFormat("cannot open attribute '%s' of '%s'", name, where));
  }
  H5Id space(H5Aget_space(a.get()), H5Sclose);
  if (!space.valid() || H5Sget_simple_extent_npoints(space.get()) != 1) {
    return Invalid(path,
                   absl::StrFormat("attribute '%s' of '%s' is not a single value", name, where));
  }
  return a;
}

constexpr size_t kMaxStringAttribute = 4096;

absl::StatusOr<std::string> ReadStringAttribute(hid_t file, const std::string& where,
                                                const std::string& name, const std::string& path) {
  ASSIGN_OR_RETURN(H5Id a, OpenScalarAttribute(file, where, name, path));
  H5Id ftype(H5Aget_type(a.get()), H5Tclose);
  if (!ftype.valid() || H5Tget_class(ftype.get()) != H5T_STRING) {
    return Invalid(path, absl::StrFormat("attribute '%s' of '%s' is not a string", name, where));
  }
  const std::string error = absl::StrFormat("cannot read attribute '%s' of '%s'", name, where);
  if (H5Tis_variable_str(ftype.get()) > 0) {
    H5Id mtype(H5Tcopy(H5T_C_S1), H5Tclose);
    if (!mtype.valid() || H5Tset_size(mtype.get(), H5T_VARIABLE) < 0 ||
        H5Tset_cset(mtype.get(), H5Tget_cset(ftype.get())) < 0) {
      return Hdf5Error(path, error);
    }
    char* s = nullptr;
    if (H5Aread(a.get(), mtype.get(), &s) < 0) return Hdf5Error(path, error);
    std::string out = s != nullptr ? s : "";
    H5free_memory(s);
    return out;
  }
  // Fixed-length (as numpy's bytes_ attributes are written by h5py). Our strings are names; a
  // corrupt type may claim gigabytes.
  const size_t size = H5Tget_size(ftype.get());
  if (size > kMaxStringAttribute) {
    return Invalid(path, absl::StrFormat("attribute '%s' of '%s' is a string of %d bytes; at most "
                                         "%d are expected",
                                         name, where, size, kMaxStringAttribute));
  }
  std::string out(size, '\0');
  if (H5Aread(a.get(), ftype.get(), out.data()) < 0) return Hdf5Error(path, error);
  out.resize(out.find('\0') == std::string::npos ? out.size() : out.find('\0'));
  return out;
}

template <typename T>
absl::StatusOr<T> ReadNumberAttribute(hid_t file, const std::string& where, const std::string& name,
                                      hid_t mem_type, const std::string& path) {
  ASSIGN_OR_RETURN(H5Id a, OpenScalarAttribute(file, where, name, path));
  H5Id ftype(H5Aget_type(a.get()), H5Tclose);
  const H5T_class_t c = ftype.valid() ? H5Tget_class(ftype.get()) : H5T_NO_CLASS;
  if (c != H5T_INTEGER && c != H5T_FLOAT) {
    return Invalid(path, absl::StrFormat("attribute '%s' of '%s' is not a number", name, where));
  }
  T v{};
  if (H5Aread(a.get(), mem_type, &v) < 0) {
    return Hdf5Error(path, absl::StrFormat("cannot read attribute '%s' of '%s'", name, where),
                     absl::StatusCode::kInvalidArgument);
  }
  return v;
}

// Collects the float datasets `depth` levels of groups below `root` into `values`/`shapes`,
// keyed by their path relative to `root`.
absl::Status ReadTree(hid_t file, const std::string& root, int depth, const std::string& path,
                      std::map<std::string, std::vector<float>>& values,
                      std::map<std::string, std::vector<int64_t>>& shapes,
                      const std::string& key_prefix = "") {
  ASSIGN_OR_RETURN(std::vector<std::string> names, ChildNames(file, root, path));
  for (const std::string& n : names) {
    const std::string child = absl::StrCat(root, "/", n);
    const std::string key = absl::StrCat(key_prefix, n);
    ASSIGN_OR_RETURN(H5I_type_t type, ObjectType(file, child, path));
    if (depth > 0) {
      if (type != H5I_GROUP) {
        return Invalid(path, absl::StrFormat("'%s' should be a group, not a dataset", child));
      }
      RETURN_IF_ERROR(ReadTree(file, child, depth - 1, path, values, shapes, key + "/"));
      continue;
    }
    if (type != H5I_DATASET) {
      return Invalid(path, absl::StrFormat("'%s' should be a dataset, not a group", child));
    }
    ASSIGN_OR_RETURN(DatasetData d, ReadFloatDataset(file, child, path));
    values[key] = std::move(d.values);
    shapes[key] = std::move(d.shape);
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> HasLink(hid_t file, const char* name, const std::string& path) {
  const htri_t e = H5Lexists(file, name, H5P_DEFAULT);
  if (e < 0) return Hdf5Error(path, absl::StrFormat("cannot look up '%s'", name));
  return e > 0;
}

absl::Status ReadOptimiser(hid_t file, const std::string& path, ModelFileContents& f) {
  ASSIGN_OR_RETURN(f.optimiser, ReadStringAttribute(file, "/optimiser", "kind", path));
  if (!ParseOptimiser(f.optimiser).ok()) {
    return Invalid(path, absl::StrFormat("'/optimiser' has unknown kind '%s'", f.optimiser));
  }
  ASSIGN_OR_RETURN(f.t,
                   ReadNumberAttribute<int64_t>(file, "/optimiser", "t", H5T_NATIVE_INT64, path));
  if (f.t < 0) return Invalid(path, absl::StrFormat("'/optimiser' has t=%d < 0", f.t));
  ASSIGN_OR_RETURN(
      f.step, ReadNumberAttribute<uint64_t>(file, "/optimiser", "step", H5T_NATIVE_UINT64, path));
  const std::pair<const char*, float*> floats[] = {
      {"lr", &f.hyper.lr}, {"mom", &f.hyper.mom}, {"wd", &f.hyper.wd}, {"beta2", &f.hyper.beta2}};
  for (const auto& [name, out] : floats) {
    ASSIGN_OR_RETURN(*out,
                     ReadNumberAttribute<float>(file, "/optimiser", name, H5T_NATIVE_FLOAT, path));
  }
  return ReadTree(file, "/optimiser", 2, path, f.slots, f.slot_shapes);
}

}  // namespace

// ---------------------------------------------------------------------------------------------

absl::Status SaveModel(const std::string& path, Network& net, const Optimiser* opt) {
  QuietHdf5Errors quiet;
  for (const Parameter* p : net.params()) {
    RETURN_IF_ERROR(CheckComponent(path, "node", p->node));
    RETURN_IF_ERROR(CheckComponent(path, "parameter", p->name));
  }
  if (opt != nullptr) {
    for (const std::string& s : opt->SlotNames()) {
      RETURN_IF_ERROR(CheckComponent(path, "optimiser slot", s));
    }
  }
  struct stat st;
  if (std::filesystem::path(path).filename().empty() ||
      (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))) {
    return Invalid(path, "is a directory; give the path of a file");
  }
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = ".";
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return FileError(absl::StatusCode::kNotFound, path,
                     absl::StrFormat("directory '%s' does not exist", dir.string()));
  }

  const std::string tmp = absl::StrCat(path, ".tmp-", ::getpid());
  absl::Status s = WriteTemporary(tmp, path, net, opt);
  if (s.ok()) s = Fsync(tmp, O_RDONLY, path);
  if (s.ok() && std::rename(tmp.c_str(), path.c_str()) != 0) {
    s = ErrnoError(errno, path, absl::StrFormat("cannot rename '%s' over it", tmp));
  }
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  // The rename is durable only once the directory entry is on disk.
  return Fsync(dir.string(), O_RDONLY | O_DIRECTORY, path);
}

absl::StatusOr<ModelFileContents> ReadModelFile(const std::string& path) {
  QuietHdf5Errors quiet;
  ASSIGN_OR_RETURN(H5Id file, OpenForReading(path));
  const hid_t h = file.get();
  ModelFileContents f;
  f.path = path;

  const htri_t has_format = H5Aexists(h, "format");
  if (has_format <= 0) {
    return Invalid(path, absl::StrFormat("is an HDF5 file but not a model file: it has no root "
                                         "attribute 'format' (expected '%s')",
                                         kModelFileFormat));
  }
  ASSIGN_OR_RETURN(const std::string format, ReadStringAttribute(h, "/", "format", path));
  if (format != kModelFileFormat) {
    return Invalid(path, absl::StrFormat("has format '%s'; this program reads '%s'", format,
                                         kModelFileFormat));
  }

  ASSIGN_OR_RETURN(bool has_spec, HasLink(h, "spec", path));
  if (!has_spec) return Invalid(path, "dataset '/spec' is missing");
  ASSIGN_OR_RETURN(const std::string spec_bytes, ReadBytes(h, "/spec", path));
  if (!f.spec.ParseFromString(spec_bytes)) {
    return Invalid(path, absl::StrFormat("dataset '/spec' (%d bytes) is not a valid ModelSpec",
                                         spec_bytes.size()));
  }

  ASSIGN_OR_RETURN(bool has_params, HasLink(h, "params", path));
  if (!has_params) return Invalid(path, "group '/params' is missing");
  RETURN_IF_ERROR(ReadTree(h, "/params", 1, path, f.params, f.param_shapes));
  for (const auto& [key, values] : f.params) {
    const std::string name = absl::StrCat("/params/", key);
    const htri_t has = H5Aexists_by_name(h, name.c_str(), "trainable", H5P_DEFAULT);
    if (has < 0) return Hdf5Error(path, absl::StrFormat("cannot open '%s'", name));
    if (has == 0) continue;
    ASSIGN_OR_RETURN(const uint8_t t,
                     ReadNumberAttribute<uint8_t>(h, name, "trainable", H5T_NATIVE_UINT8, path));
    if (t == 0) f.constant_params.insert(key);
  }

  ASSIGN_OR_RETURN(f.has_optimiser, HasLink(h, "optimiser", path));
  if (f.has_optimiser) RETURN_IF_ERROR(ReadOptimiser(h, path, f));

  if (!file.Close()) return Hdf5Error(path, "cannot close the file");
  return f;
}

absl::Status LoadInto(const ModelFileContents& f, Network& net, Optimiser* opt) {
  // Check everything first, so a mismatch leaves the network and optimiser untouched.
  auto check = [&f](const std::string& dataset, const Parameter& p,
                    const std::map<std::string, std::vector<int64_t>>& shapes,
                    const std::string& key) -> absl::Status {
    auto it = shapes.find(key);
    if (it == shapes.end()) {
      return FileError(absl::StatusCode::kNotFound, f.path,
                       absl::StrFormat("dataset '%s' is missing; the model has parameter %s "
                                       "of shape %s",
                                       dataset, p.key(), ShapeString(p.shape)));
    }
    if (it->second != p.shape) {
      return Invalid(f.path,
                     absl::StrFormat("dataset '%s' has shape %s, the model expects %s", dataset,
                                     ShapeString(it->second), ShapeString(p.shape)));
    }
    if (!p.import_fn && p.size != p.canonical_size()) {
      return FileError(absl::StatusCode::kInternal, f.path,
                       absl::StrFormat("parameter %s holds %d native values for shape %s but has "
                                       "no layout conversion",
                                       p.key(), p.size, ShapeString(p.shape)));
    }
    return absl::OkStatus();
  };
  std::set<std::string> used;
  for (const Parameter* p : net.params()) {
    RETURN_IF_ERROR(check(absl::StrCat("/params/", p->key()), *p, f.param_shapes, p->key()));
    used.insert(p->key());
  }
  for (const auto& [key, shape] : f.param_shapes) {
    if (!used.contains(key)) {
      return Invalid(f.path, absl::StrFormat("dataset '/params/%s' matches no parameter of the "
                                             "model",
                                             key));
    }
  }

  const bool load_opt = opt != nullptr && f.has_optimiser;
  std::vector<std::string> slot_names;
  if (load_opt) {
    if (f.optimiser != OptimiserName(opt->kind())) {
      return FileError(absl::StatusCode::kFailedPrecondition, f.path,
                       absl::StrFormat("holds %s optimiser state, but the optimiser is %s; "
                                       "load the parameters alone or use %s",
                                       f.optimiser, OptimiserName(opt->kind()), f.optimiser));
    }
    slot_names = opt->SlotNames();
    std::set<std::string> used_slots;
    for (const Parameter* p : opt->params()) {
      for (const std::string& s : slot_names) {
        const std::string key = absl::StrCat(p->key(), "/", s);
        RETURN_IF_ERROR(check(absl::StrCat("/optimiser/", key), *p, f.slot_shapes, key));
        used_slots.insert(key);
      }
    }
    for (const auto& [key, shape] : f.slot_shapes) {
      if (!used_slots.contains(key)) {
        return Invalid(f.path, absl::StrFormat("dataset '/optimiser/%s' matches no state of "
                                               "the optimiser",
                                               key));
      }
    }
  }

  for (Parameter* p : net.params()) {
    RETURN_IF_ERROR(net.SetParamValue(*p, f.params.at(p->key())));
    p->trainable = !f.constant_params.contains(p->key());
    if (p->fixed) p->trainable = false;  // batch_norm: statistics are never trained
  }
  if (!load_opt) return absl::OkStatus();
  kernels::Backend* backend = net.backend();
  for (size_t i = 0; i < opt->params().size(); ++i) {
    const Parameter& p = *opt->params()[i];
    for (size_t s = 0; s < slot_names.size(); ++s) {
      const std::vector<float>& canonical = f.slots.at(absl::StrCat(p.key(), "/", slot_names[s]));
      std::vector<float> native(p.size, 0.f);
      if (p.import_fn) {
        p.import_fn(canonical.data(), native.data());
      } else {
        std::copy(canonical.begin(), canonical.end(), native.begin());
      }
      backend->Upload(native.data(), opt->Slot(i, s), p.size);
    }
  }
  opt->set_t(f.t);
  opt->hyper() = f.hyper;
  net.set_step(f.step);
  return absl::OkStatus();
}

}  // namespace elektronn
