// HDF5 volumes through the C API: whole-dataset reads with type conversion, chunked gzip writes.
#include "engine/data/h5_volume.h"

#include <hdf5.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/core/status.h"
#include "engine/io/internal/hdf5_util.h"

namespace elektronn {
namespace {

using internal::H5Id;
using internal::Hdf5Detail;
using internal::QuietHdf5Errors;

absl::Status Error(absl::StatusCode code, const std::string& file, const std::string& what) {
  return absl::Status(code, absl::StrFormat("HDF5 file '%s': %s", file, what));
}
absl::Status Hdf5Error(const std::string& file, const std::string& what,
                       absl::StatusCode code = absl::StatusCode::kInternal) {
  const std::string detail = Hdf5Detail();
  return Error(code, file, detail.empty() ? what : absl::StrCat(what, " (", detail, ")"));
}

std::string ShapeString(const std::vector<hsize_t>& shape) {
  return absl::StrCat("(", absl::StrJoin(shape, ","), ")");
}

// Random 3-D patch access re-reads chunks; HDF5's 1 MiB default cache would thrash.
constexpr size_t kChunkCacheBytes = size_t{64} << 20;
constexpr size_t kChunkCacheSlots = 12421;  // prime, ~100x the chunks that fit

absl::StatusOr<H5Id> OpenFile(const std::string& file, bool write) {
  struct stat st;
  if (::stat(file.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT) {
      return Error(absl::StatusCode::kNotFound, file, "no such file");
    }
    return absl::ErrnoToStatus(err, absl::StrFormat("HDF5 file '%s': cannot access it", file));
  }
  if (S_ISDIR(st.st_mode)) {
    return Error(absl::StatusCode::kInvalidArgument, file, "is a directory, not an HDF5 file");
  }
  const htri_t is_hdf5 = H5Fis_hdf5(file.c_str());
  if (is_hdf5 == 0) return Error(absl::StatusCode::kInvalidArgument, file, "is not an HDF5 file");
  if (is_hdf5 < 0) return Hdf5Error(file, "cannot check whether it is an HDF5 file");
  H5Id f(H5Fopen(file.c_str(), write ? H5F_ACC_RDWR : H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (!f.valid()) {
    return Hdf5Error(file, write ? "cannot open for writing" : "cannot open for reading",
                     absl::StatusCode::kInvalidArgument);
  }
  return f;
}

absl::StatusOr<std::vector<std::string>> DatasetNames(hid_t f, const std::string& file) {
  std::vector<std::string> names;
  const herr_t r = H5Ovisit2(
      f, H5_INDEX_NAME, H5_ITER_INC,
      [](hid_t, const char* name, const H5O_info_t* info, void* out) -> herr_t {
        if (info->type == H5O_TYPE_DATASET) {
          static_cast<std::vector<std::string>*>(out)->push_back(name);
        }
        return 0;
      },
      &names, H5O_INFO_BASIC);
  if (r < 0) return Hdf5Error(file, "cannot list its datasets");
  return names;
}

std::string TypeDescription(hid_t type) {
  const H5T_class_t cls = H5Tget_class(type);
  const size_t bytes = H5Tget_size(type);
  switch (cls) {
    case H5T_INTEGER:
      return absl::StrFormat("%sint%d", H5Tget_sign(type) == H5T_SGN_NONE ? "u" : "", bytes * 8);
    case H5T_FLOAT:
      return absl::StrFormat("float%d", bytes * 8);
    case H5T_STRING:
      return "string";
    case H5T_COMPOUND:
      return "compound";
    case H5T_ENUM:
      return "enum (e.g. h5py bool)";
    case H5T_ARRAY:
      return "array";
    case H5T_OPAQUE:
      return "opaque";
    case H5T_REFERENCE:
      return "reference";
    case H5T_VLEN:
      return "variable-length";
    case H5T_BITFIELD:
      return "bitfield";
    default:
      return "unknown";
  }
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ListH5Datasets(const std::string& file) {
  QuietHdf5Errors quiet;
  ASSIGN_OR_RETURN(H5Id f, OpenFile(file, /*write=*/false));
  return DatasetNames(f.get(), file);
}

absl::StatusOr<Volume> ReadH5Volume(const std::string& file, const std::string& key, bool xyz_order,
                                    H5Values values) {
  QuietHdf5Errors quiet;
  ASSIGN_OR_RETURN(H5Id f, OpenFile(file, /*write=*/false));

  H5O_info_t info;
  if (key.empty() ||
      H5Oget_info_by_name2(f.get(), key.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0) {
    H5Eclear2(H5E_DEFAULT);
    ASSIGN_OR_RETURN(std::vector<std::string> names, DatasetNames(f.get(), file));
    return Error(absl::StatusCode::kNotFound, file,
                 absl::StrFormat("has no dataset '%s'; datasets in the file: %s", key,
                                 names.empty() ? "none" : absl::StrJoin(names, ", ")));
  }
  if (info.type != H5O_TYPE_DATASET) {
    ASSIGN_OR_RETURN(std::vector<std::string> names, DatasetNames(f.get(), file));
    return Error(absl::StatusCode::kInvalidArgument, file,
                 absl::StrFormat("'%s' is a group, not a dataset; datasets in the file: %s", key,
                                 names.empty() ? "none" : absl::StrJoin(names, ", ")));
  }

  H5Id dapl(H5Pcreate(H5P_DATASET_ACCESS), H5Pclose);
  if (!dapl.valid() ||
      H5Pset_chunk_cache(dapl.get(), kChunkCacheSlots, kChunkCacheBytes, 1.0) < 0) {
    return Hdf5Error(file, "cannot create a dataset access property list");
  }
  H5Id d(H5Dopen2(f.get(), key.c_str(), dapl.get()), H5Dclose);
  if (!d.valid()) return Hdf5Error(file, absl::StrFormat("cannot open dataset '%s'", key));

  H5Id type(H5Dget_type(d.get()), H5Tclose);
  if (!type.valid()) return Hdf5Error(file, absl::StrFormat("cannot read the type of '%s'", key));
  const H5T_class_t cls = H5Tget_class(type.get());
  if (cls != H5T_INTEGER && cls != H5T_FLOAT) {
    return Error(absl::StatusCode::kInvalidArgument, file,
                 absl::StrFormat("dataset '%s' has element type %s; supported are integer types "
                                 "(uint8 raw data, int16/int32/int64/uint16 label ids) and "
                                 "float32/float64",
                                 key, TypeDescription(type.get())));
  }
  const bool is_uint8 =
      cls == H5T_INTEGER && H5Tget_size(type.get()) == 1 && H5Tget_sign(type.get()) == H5T_SGN_NONE;
  const bool scale = cls == H5T_INTEGER &&
                     (values == H5Values::kRaw || (values == H5Values::kByDtype && is_uint8));

  H5Id space(H5Dget_space(d.get()), H5Sclose);
  if (!space.valid()) return Hdf5Error(file, absl::StrFormat("cannot read the shape of '%s'", key));
  const int rank = H5Sget_simple_extent_ndims(space.get());
  std::vector<hsize_t> dims(std::max(rank, 0));
  if (rank > 0 && H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr) < 0) {
    return Hdf5Error(file, absl::StrFormat("cannot read the shape of '%s'", key));
  }
  const char* layout = xyz_order ? "(x,y,z) or (x,y,z,ch)" : "(z,x,y) or (ch,z,x,y)";
  if (rank != 3 && rank != 4) {
    return Error(absl::StatusCode::kInvalidArgument, file,
                 absl::StrFormat("dataset '%s' has rank %d, shape %s; expected rank 3 or 4: %s",
                                 key, rank, ShapeString(dims), layout));
  }
  for (hsize_t s : dims) {
    if (s == 0) {
      return Error(absl::StatusCode::kInvalidArgument, file,
                   absl::StrFormat("dataset '%s' with shape %s is empty; expected a non-empty "
                                   "volume %s",
                                   key, ShapeString(dims), layout));
    }
  }

  // On-disk order → (ch, z, x, y).
  int64_t ch = 1, z, x, y;
  if (!xyz_order) {
    const int o = rank - 3;
    if (rank == 4) ch = static_cast<int64_t>(dims[0]);
    z = dims[o];
    x = dims[o + 1];
    y = dims[o + 2];
  } else {
    x = dims[0];
    y = dims[1];
    z = dims[2];
    if (rank == 4) ch = static_cast<int64_t>(dims[3]);
  }
  Volume vol;
  vol.ch = ch;
  vol.z = z;
  vol.x = x;
  vol.y = y;
  const size_t n = static_cast<size_t>(ch * z * x * y);
  std::vector<float> disk(n);
  if (H5Dread(d.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, disk.data()) < 0) {
    return Hdf5Error(file, absl::StrFormat("cannot read dataset '%s' (%s %s)", key,
                                           TypeDescription(type.get()), ShapeString(dims)));
  }
  if (scale) {
    for (float& v : disk) v = v / 255.0f;
  }
  if (!xyz_order) {
    vol.data = std::move(disk);
    return vol;
  }
  // Disk index ((i*y + j)*z + k)*ch + c → volume (c, k, i, j).
  vol.data.assign(n, 0.f);
  for (int64_t i = 0; i < x; ++i) {
    for (int64_t j = 0; j < y; ++j) {
      for (int64_t k = 0; k < z; ++k) {
        const float* src = &disk[static_cast<size_t>(((i * y + j) * z + k) * ch)];
        for (int64_t c = 0; c < ch; ++c) vol.at(c, k, i, j) = src[c];
      }
    }
  }
  return vol;
}

absl::Status WriteH5Volume(const std::string& file, const std::string& key, const Volume& volume,
                           H5Dtype dtype, bool compress) {
  QuietHdf5Errors quiet;
  const int64_t n = volume.ch * volume.z * volume.x * volume.y;
  if (volume.ch <= 0 || volume.z <= 0 || volume.x <= 0 || volume.y <= 0 ||
      static_cast<int64_t>(volume.data.size()) != n) {
    return Error(absl::StatusCode::kInvalidArgument, file,
                 absl::StrFormat("cannot write '%s': volume (ch,z,x,y)=(%d,%d,%d,%d) holds %d "
                                 "values; need positive sizes and exactly their product",
                                 key, volume.ch, volume.z, volume.x, volume.y, volume.data.size()));
  }
  if (key.empty() || key == "/") {
    return Error(absl::StatusCode::kInvalidArgument, file,
                 "cannot write a dataset with an empty key; give a name such as 'raw'");
  }

  // Convert first, so that a bad value leaves the file untouched.
  std::vector<uint8_t> u8;
  std::vector<int16_t> i16;
  const void* buf = volume.data.data();
  hid_t file_type = H5T_IEEE_F32LE, mem_type = H5T_NATIVE_FLOAT;
  if (dtype == H5Dtype::kUint8) {
    u8.resize(n);
    for (int64_t i = 0; i < n; ++i) {
      const float v = std::nearbyint(volume.data[i] * 255.0f);
      u8[i] = static_cast<uint8_t>(std::clamp(std::isnan(v) ? 0.f : v, 0.f, 255.f));
    }
    buf = u8.data();
    file_type = H5T_STD_U8LE;
    mem_type = H5T_NATIVE_UINT8;
  } else if (dtype == H5Dtype::kInt16) {
    i16.resize(n);
    for (int64_t i = 0; i < n; ++i) {
      const float v = volume.data[i];
      if (!(v == std::nearbyint(v)) || v < std::numeric_limits<int16_t>::min() ||
          v > std::numeric_limits<int16_t>::max()) {
        const int64_t vox = volume.voxels();
        const int64_t c = i / vox, r = i % vox;
        return Error(absl::StatusCode::kInvalidArgument, file,
                     absl::StrFormat("cannot write '%s' as int16: value %g at (ch,z,x,y)="
                                     "(%d,%d,%d,%d) is not an integer in [-32768, 32767]",
                                     key, v, c, r / (volume.x * volume.y),
                                     (r / volume.y) % volume.x, r % volume.y));
      }
      i16[i] = static_cast<int16_t>(v);
    }
    buf = i16.data();
    file_type = H5T_STD_I16LE;
    mem_type = H5T_NATIVE_INT16;
  }

  H5Id f;
  struct stat st;
  if (::stat(file.c_str(), &st) == 0) {
    ASSIGN_OR_RETURN(f, OpenFile(file, /*write=*/true));
    const htri_t exists = H5Lexists(f.get(), key.c_str(), H5P_DEFAULT);
    if (exists > 0 && H5Ldelete(f.get(), key.c_str(), H5P_DEFAULT) < 0) {
      return Hdf5Error(file, absl::StrFormat("cannot replace the existing dataset '%s'", key));
    }
    H5Eclear2(H5E_DEFAULT);  // H5Lexists fails, harmlessly, when an intermediate group is missing
  } else {
    errno = 0;
    f = H5Id(H5Fcreate(file.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
    if (!f.valid()) {
      const int err = errno;
      return Hdf5Error(file, "cannot create the file",
                       err != 0 ? absl::ErrnoToStatusCode(err) : absl::StatusCode::kInternal);
    }
  }

  std::vector<hsize_t> dims;
  if (volume.ch > 1) dims.push_back(volume.ch);
  for (int64_t s : {volume.z, volume.x, volume.y}) dims.push_back(static_cast<hsize_t>(s));
  H5Id space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
  H5Id lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Id dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  if (!space.valid() || !lcpl.valid() || !dcpl.valid() ||
      H5Pset_create_intermediate_group(lcpl.get(), 1) < 0) {
    return Hdf5Error(file, "cannot create property lists");
  }
  if (compress) {
    std::vector<hsize_t> chunk;
    if (volume.ch > 1) chunk.push_back(1);
    chunk.push_back(std::min<hsize_t>(volume.z, 16));
    chunk.push_back(std::min<hsize_t>(volume.x, 128));
    chunk.push_back(std::min<hsize_t>(volume.y, 128));
    if (H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data()) < 0 ||
        H5Pset_shuffle(dcpl.get()) < 0 || H5Pset_deflate(dcpl.get(), 4) < 0) {
      return Hdf5Error(file, "cannot set up chunked gzip compression");
    }
  }
  H5Id d(
      H5Dcreate2(f.get(), key.c_str(), file_type, space.get(), lcpl.get(), dcpl.get(), H5P_DEFAULT),
      H5Dclose);
  if (!d.valid()) return Hdf5Error(file, absl::StrFormat("cannot create dataset '%s'", key));
  if (H5Dwrite(d.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
    return Hdf5Error(file, absl::StrFormat("cannot write dataset '%s'", key));
  }
  if (!d.Close() || !f.Close()) {
    return Hdf5Error(file, absl::StrFormat("cannot close after writing '%s'", key));
  }
  return absl::OkStatus();
}

absl::StatusOr<H5Array> ReadH5Array(const std::string& file, const std::string& key) {
  QuietHdf5Errors quiet;
  ASSIGN_OR_RETURN(H5Id f, OpenFile(file, /*write=*/false));
  if (key.empty() || H5Lexists(f.get(), key.c_str(), H5P_DEFAULT) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    ASSIGN_OR_RETURN(std::vector<std::string> names, DatasetNames(f.get(), file));
    return Error(absl::StatusCode::kNotFound, file,
                 absl::StrFormat("has no dataset '%s'; datasets in the file: %s", key,
                                 names.empty() ? "none" : absl::StrJoin(names, ", ")));
  }
  H5Id d(H5Dopen2(f.get(), key.c_str(), H5P_DEFAULT), H5Dclose);
  if (!d.valid()) return Hdf5Error(file, absl::StrFormat("cannot open dataset '%s'", key));
  H5Id type(H5Dget_type(d.get()), H5Tclose);
  const H5T_class_t cls = type.valid() ? H5Tget_class(type.get()) : H5T_NO_CLASS;
  if (cls != H5T_INTEGER && cls != H5T_FLOAT) {
    return Error(absl::StatusCode::kInvalidArgument, file,
                 absl::StrFormat("dataset '%s' has element type %s; expected integers or floats",
                                 key, type.valid() ? TypeDescription(type.get()) : "unknown"));
  }
  H5Id space(H5Dget_space(d.get()), H5Sclose);
  const int rank = space.valid() ? H5Sget_simple_extent_ndims(space.get()) : -1;
  if (rank < 0) return Hdf5Error(file, absl::StrFormat("cannot read the shape of '%s'", key));
  std::vector<hsize_t> dims(rank);
  if (rank > 0 && H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr) < 0) {
    return Hdf5Error(file, absl::StrFormat("cannot read the shape of '%s'", key));
  }
  H5Array a;
  size_t n = 1;
  for (hsize_t s : dims) {
    a.shape.push_back(static_cast<int64_t>(s));
    n *= s;
  }
  a.data.assign(n, 0.0);
  if (n > 0 &&
      H5Dread(d.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, a.data.data()) < 0) {
    return Hdf5Error(file, absl::StrFormat("cannot read dataset '%s'", key));
  }
  return a;
}

absl::Status WriteH5Int16Array(const std::string& file, const std::string& key,
                               const H5Array& array) {
  QuietHdf5Errors quiet;
  size_t n = 1;
  for (int64_t s : array.shape) n *= static_cast<size_t>(s);
  if (array.shape.empty() || n != array.data.size()) {
    return Error(absl::StatusCode::kInvalidArgument, file,
                 absl::StrFormat("cannot write '%s': shape with %d value(s) but %d given", key, n,
                                 array.data.size()));
  }
  std::vector<int16_t> v(n);
  for (size_t i = 0; i < n; ++i) {
    const double x = array.data[i];
    if (!(x == std::nearbyint(x)) || x < -32768 || x > 32767) {
      return Error(absl::StatusCode::kInvalidArgument, file,
                   absl::StrFormat("cannot write '%s' as int16: value %g", key, x));
    }
    v[i] = static_cast<int16_t>(x);
  }
  H5Id f;
  struct stat st;
  if (::stat(file.c_str(), &st) == 0) {
    ASSIGN_OR_RETURN(f, OpenFile(file, /*write=*/true));
    if (H5Lexists(f.get(), key.c_str(), H5P_DEFAULT) > 0 &&
        H5Ldelete(f.get(), key.c_str(), H5P_DEFAULT) < 0) {
      return Hdf5Error(file, absl::StrFormat("cannot replace the existing dataset '%s'", key));
    }
    H5Eclear2(H5E_DEFAULT);
  } else {
    f = H5Id(H5Fcreate(file.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
    if (!f.valid()) return Hdf5Error(file, "cannot create the file");
  }
  std::vector<hsize_t> dims(array.shape.begin(), array.shape.end());
  H5Id space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
  H5Id d(H5Dcreate2(f.get(), key.c_str(), H5T_STD_I16LE, space.get(), H5P_DEFAULT, H5P_DEFAULT,
                    H5P_DEFAULT),
         H5Dclose);
  if (!d.valid()) return Hdf5Error(file, absl::StrFormat("cannot create dataset '%s'", key));
  if (H5Dwrite(d.get(), H5T_NATIVE_INT16, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) < 0) {
    return Hdf5Error(file, absl::StrFormat("cannot write dataset '%s'", key));
  }
  if (!d.Close() || !f.Close()) {
    return Hdf5Error(file, absl::StrFormat("cannot close after writing '%s'", key));
  }
  return absl::OkStatus();
}

}  // namespace elektronn
