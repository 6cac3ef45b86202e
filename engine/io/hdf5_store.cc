// HDF5 volume stores through the C API: hyperslab box reads, and a writer that allocates every
// chunk up front (raw writes never touch metadata) and records durable chunks in a sidecar.
#include "engine/io/hdf5_store.h"

#include <fcntl.h>
#include <hdf5.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <random>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "engine/core/status.h"
#include "engine/io/internal/durable_file.h"
#include "engine/io/internal/hdf5_util.h"

namespace elektronn {
namespace {

using internal::H5Id;
using internal::Hdf5Detail;
using internal::QuietHdf5Errors;

constexpr char kFingerprintAttr[] = "elektronn_fingerprint";
constexpr char kModelAttr[] = "elektronn_model";
constexpr char kOffsetAttr[] = "elektronn_offset";
constexpr char kTokenAttr[] = "elektronn_progress_token";
constexpr char kProgressMagic[] = "elektronn-progress 1";

absl::Status Err(absl::StatusCode code, const std::string& file, const std::string& what) {
  return absl::Status(code, absl::StrFormat("HDF5 file '%s': %s", file, what));
}
absl::Status H5Err(const std::string& file, const std::string& what) {
  const std::string detail = Hdf5Detail();
  return Err(absl::StatusCode::kInternal, file,
             detail.empty() ? what : absl::StrCat(what, " (", detail, ")"));
}

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

absl::StatusOr<H5Id> OpenFile(const std::string& file, bool write) {
  struct stat st;
  if (::stat(file.c_str(), &st) != 0) {
    if (errno == ENOENT) return Err(absl::StatusCode::kNotFound, file, "no such file");
    return absl::ErrnoToStatus(errno, absl::StrFormat("HDF5 file '%s': cannot access it", file));
  }
  if (H5Fis_hdf5(file.c_str()) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return Err(absl::StatusCode::kInvalidArgument, file, "is not an HDF5 file");
  }
  H5Id f(H5Fopen(file.c_str(), write ? H5F_ACC_RDWR : H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (!f.valid()) return H5Err(file, write ? "cannot open for writing" : "cannot open");
  return f;
}

std::string DatasetList(hid_t f) {
  std::vector<std::string> names;
  H5Ovisit2(
      f, H5_INDEX_NAME, H5_ITER_INC,
      [](hid_t, const char* name, const H5O_info_t* info, void* out) -> herr_t {
        if (info->type == H5O_TYPE_DATASET) {
          static_cast<std::vector<std::string>*>(out)->push_back(absl::StrCat("/", name));
        }
        return 0;
      },
      &names, H5O_INFO_BASIC);
  H5Eclear2(H5E_DEFAULT);
  return names.empty() ? "none" : absl::StrJoin(names, ", ");
}

// True when `key` names an object (false also when an intermediate group is missing).
bool ObjectExists(hid_t f, const std::string& key) {
  std::string prefix;
  for (absl::string_view part : absl::StrSplit(key, '/', absl::SkipEmpty())) {
    prefix = absl::StrCat(prefix, "/", part);
    if (H5Lexists(f, prefix.c_str(), H5P_DEFAULT) <= 0) {
      H5Eclear2(H5E_DEFAULT);
      return false;
    }
  }
  return !prefix.empty();
}

struct Dataset {
  H5Id d;
  VolumeDtype dtype = VolumeDtype::kFloat32;
  std::vector<hsize_t> dims, chunk;  // chunk empty when contiguous
  int nfilters = 0;
};

absl::StatusOr<Dataset> OpenDataset(hid_t f, const VolumeLocation& loc, hid_t dapl) {
  const std::string& file = loc.path;
  const std::string& key = loc.dataset;
  H5O_info_t info;
  if (!ObjectExists(f, key) ||
      H5Oget_info_by_name2(f, key.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0) {
    H5Eclear2(H5E_DEFAULT);
    return Err(
        absl::StatusCode::kNotFound, file,
        absl::StrFormat("has no dataset '/%s'; datasets in the file: %s", key, DatasetList(f)));
  }
  if (info.type != H5O_TYPE_DATASET) {
    return Err(absl::StatusCode::kInvalidArgument, file,
               absl::StrFormat("'/%s' is a group, not a dataset; datasets in the file: %s", key,
                               DatasetList(f)));
  }
  Dataset ds;
  ds.d = H5Id(H5Dopen2(f, key.c_str(), dapl), H5Dclose);
  if (!ds.d.valid()) return H5Err(file, absl::StrFormat("cannot open dataset '/%s'", key));
  H5Id type(H5Dget_type(ds.d.get()), H5Tclose);
  const H5T_class_t cls = H5Tget_class(type.get());
  const size_t size = H5Tget_size(type.get());
  const bool is_unsigned = cls == H5T_INTEGER && H5Tget_sign(type.get()) == H5T_SGN_NONE;
  if (cls == H5T_INTEGER && is_unsigned && size == 1) {
    ds.dtype = VolumeDtype::kUint8;
  } else if (cls == H5T_INTEGER && is_unsigned && size == 2) {
    ds.dtype = VolumeDtype::kUint16;
  } else if (cls == H5T_INTEGER && (size == 1 || size == 2 || size == 4 || size == 8)) {
    // Read through HDF5's conversion to float (ids above 2^24 lose precision, as in numpy).
    static constexpr VolumeDtype kSigned[] = {VolumeDtype::kInt8, VolumeDtype::kInt16,
                                              VolumeDtype::kInt32, VolumeDtype::kInt64};
    static constexpr VolumeDtype kUnsigned4or8[] = {VolumeDtype::kUint32, VolumeDtype::kUint64};
    const int log2 = size == 1 ? 0 : size == 2 ? 1 : size == 4 ? 2 : 3;
    ds.dtype = is_unsigned ? kUnsigned4or8[log2 - 2] : kSigned[log2];
  } else if (cls == H5T_FLOAT && size == 4) {
    ds.dtype = VolumeDtype::kFloat32;
  } else if (cls == H5T_FLOAT && size == 8) {
    ds.dtype = VolumeDtype::kFloat64;
  } else {
    const std::string what = cls == H5T_INTEGER
                                 ? absl::StrFormat("%sint%d", is_unsigned ? "u" : "", size * 8)
                             : cls == H5T_FLOAT ? absl::StrFormat("float%d", size * 8)
                                                : "a non-numeric type";
    return Err(absl::StatusCode::kInvalidArgument, file,
               absl::StrFormat("dataset '/%s' has element type %s; supported are integers "
                               "of 8 to 64 bits, float32 and float64",
                               key, what));
  }
  H5Id space(H5Dget_space(ds.d.get()), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  ds.dims.resize(std::max(rank, 0));
  if (rank > 0) H5Sget_simple_extent_dims(space.get(), ds.dims.data(), nullptr);
  if (rank < 2 || rank > 4 || std::count(ds.dims.begin(), ds.dims.end(), hsize_t{0}) > 0) {
    return Err(absl::StatusCode::kInvalidArgument, file,
               absl::StrFormat("dataset '/%s' has shape (%s); expected a non-empty (x,y), (z,x,y) "
                               "or (c,z,x,y) volume",
                               key, absl::StrJoin(ds.dims, ",")));
  }
  H5Id dcpl(H5Dget_create_plist(ds.d.get()), H5Pclose);
  if (H5Pget_layout(dcpl.get()) == H5D_CHUNKED) {
    ds.chunk.resize(rank);
    H5Pget_chunk(dcpl.get(), rank, ds.chunk.data());
  }
  ds.nfilters = H5Pget_nfilters(dcpl.get());
  return ds;
}

// Rank 2..4 extents → (c,z,x,y).
VolumeShape As4d(const std::vector<hsize_t>& v) {
  const size_t r = v.size();
  return VolumeShape{r == 4 ? static_cast<int64_t>(v[0]) : 1,
                     r >= 3 ? static_cast<int64_t>(v[r - 3]) : 1, static_cast<int64_t>(v[r - 2]),
                     static_cast<int64_t>(v[r - 1])};
}

class Hdf5Reader : public VolumeReader {
 public:
  Hdf5Reader(const VolumeLocation& loc, H5Id file, Dataset ds, const VolumeReaderOptions& o)
      : VolumeReader(loc, As4d(ds.dims), As4d(ds.chunk.empty() ? ds.dims : ds.chunk), ds.dtype),
        file_(std::move(file)),
        d_(std::move(ds.d)),
        rank_(static_cast<int>(ds.dims.size())) {
    scale_ = IsIntegerDtype(ds.dtype) && o.integers == IntegerValues::kDivideBy255;
  }

 protected:
  absl::Status ReadInside(const Box& b, float* out) const override {
    QuietHdf5Errors quiet;
    const hsize_t start4[4] = {0, hsize_t(b.z0), hsize_t(b.x0), hsize_t(b.y0)};
    const hsize_t count4[4] = {hsize_t(shape().c), hsize_t(b.dz), hsize_t(b.dx), hsize_t(b.dy)};
    const int skip = 4 - rank_;  // leading axes the file does not have
    H5Id fspace(H5Dget_space(d_.get()), H5Sclose);
    H5Id mspace(H5Screate_simple(rank_, count4 + skip, nullptr), H5Sclose);
    if (!fspace.valid() || !mspace.valid() ||
        H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start4 + skip, nullptr, count4 + skip,
                            nullptr) < 0 ||
        H5Dread(d_.get(), H5T_NATIVE_FLOAT, mspace.get(), fspace.get(), H5P_DEFAULT, out) < 0) {
      return H5Err(location().path, absl::StrFormat("cannot read box %s of '/%s'", b.ToString(),
                                                    location().dataset));
    }
    if (scale_) {
      const int64_t n = shape().c * b.voxels();
      for (int64_t i = 0; i < n; ++i) out[i] /= 255.f;
    }
    return absl::OkStatus();
  }

 private:
  H5Id file_, d_;
  int rank_;
  bool scale_ = false;
};

absl::Status WriteAttr(hid_t obj, const char* name, hid_t type, hid_t space, const void* data) {
  H5Id a(H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!a.valid() || H5Awrite(a.get(), type, data) < 0) return absl::InternalError(Hdf5Detail());
  return absl::OkStatus();
}

absl::Status WriteStringAttr(hid_t obj, const char* name, const std::string& value) {
  H5Id type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), std::max<size_t>(value.size(), 1));
  H5Tset_strpad(type.get(), H5T_STR_NULLPAD);
  H5Id space(H5Screate(H5S_SCALAR), H5Sclose);
  std::string padded = value;
  padded.resize(std::max<size_t>(value.size(), 1), '\0');
  return WriteAttr(obj, name, type.get(), space.get(), padded.data());
}

// A string attribute, fixed or variable length (h5py); NotFound when absent.
absl::StatusOr<std::string> ReadStringAttr(hid_t obj, const char* name) {
  if (H5Aexists(obj, name) <= 0) return absl::NotFoundError(name);
  H5Id a(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
  H5Id type(H5Aget_type(a.get()), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_STRING) return absl::NotFoundError(name);
  if (H5Tis_variable_str(type.get()) > 0) {
    char* s = nullptr;
    H5Id mem(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mem.get(), H5T_VARIABLE);
    if (H5Aread(a.get(), mem.get(), &s) < 0) return absl::InternalError(Hdf5Detail());
    std::string out = s != nullptr ? s : "";
    H5free_memory(s);
    return out;
  }
  std::string buf(H5Tget_size(type.get()), '\0');
  if (H5Aread(a.get(), type.get(), buf.data()) < 0) return absl::InternalError(Hdf5Detail());
  return std::string(buf.c_str());
}

uint32_t RecordCrc(const std::string& body) {
  return static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(body.data()), body.size()));
}

class Hdf5Writer : public VolumeWriter {
 public:
  Hdf5Writer(VolumeLocation loc, VolumeWriterOptions o)
      : VolumeWriter(std::move(loc), std::move(o)) {}
  ~Hdf5Writer() override {
    if (progress_fd_ >= 0) ::close(progress_fd_);
  }

  absl::Status Open() {
    const std::string& file = location().path;
    const std::string& key = location().dataset;
    if (FileExists(file)) {
      ASSIGN_OR_RETURN(file_, OpenFile(file, /*write=*/true));
      if (ObjectExists(file_.get(), key)) return Resume();
    } else {
      file_ = H5Id(H5Fcreate(file.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
      if (!file_.valid()) return H5Err(file, "cannot create the file");
    }
    return Create();
  }

 protected:
  absl::Status WriteChunkData(ChunkIndex i, const Box& b, const void* data) override {
    QuietHdf5Errors quiet;
    const VolumeWriterOptions& o = options();
    const hsize_t start[4] = {0, hsize_t(b.z0), hsize_t(b.x0), hsize_t(b.y0)};
    const hsize_t count[4] = {hsize_t(o.shape.c), hsize_t(b.dz), hsize_t(b.dx), hsize_t(b.dy)};
    H5Id fspace(H5Dget_space(d_.get()), H5Sclose);
    H5Id mspace(H5Screate_simple(4, count, nullptr), H5Sclose);
    const hid_t mtype = o.dtype == VolumeDtype::kUint8 ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT;
    if (H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start, nullptr, count, nullptr) < 0 ||
        H5Dwrite(d_.get(), mtype, mspace.get(), fspace.get(), H5P_DEFAULT, data) < 0) {
      return H5Err(location().path, absl::StrFormat("cannot write chunk (%d,%d,%d) of '/%s'", i.z,
                                                    i.x, i.y, location().dataset));
    }
    RETURN_IF_ERROR(SyncFile());
    if (o.test_hook) o.test_hook("chunk data written");
    const std::string body = absl::StrFormat("%d %d %d", i.z, i.x, i.y);
    const std::string line = absl::StrFormat("%s %08x\n", body, RecordCrc(body));
    const std::string progress = Hdf5ProgressPath(location());
    if (::write(progress_fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size()) ||
        ::fsync(progress_fd_) != 0) {
      return absl::ErrnoToStatus(errno,
                                 absl::StrFormat("cannot record progress in '%s'", progress));
    }
    if (o.test_hook) o.test_hook("chunk done");
    return absl::OkStatus();
  }

 private:
  absl::Status Create() {
    QuietHdf5Errors quiet;
    const std::string& file = location().path;
    const VolumeWriterOptions& o = options();
    const hsize_t dims[4] = {hsize_t(o.shape.c), hsize_t(o.shape.z), hsize_t(o.shape.x),
                             hsize_t(o.shape.y)};
    const hsize_t chunk[4] = {hsize_t(o.shape.c), hsize_t(o.chunk[0]), hsize_t(o.chunk[1]),
                              hsize_t(o.chunk[2])};
    H5Id space(H5Screate_simple(4, dims, nullptr), H5Sclose);
    H5Id lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
    H5Id dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
    // Every chunk allocated now and never filled: later writes change raw bytes only.
    if (H5Pset_create_intermediate_group(lcpl.get(), 1) < 0 ||
        H5Pset_chunk(dcpl.get(), 4, chunk) < 0 ||
        H5Pset_alloc_time(dcpl.get(), H5D_ALLOC_TIME_EARLY) < 0 ||
        H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER) < 0 ||
        H5Pset_obj_track_times(dcpl.get(), false) < 0) {
      return H5Err(file, "cannot set up the dataset's properties");
    }
    const hid_t ftype = o.dtype == VolumeDtype::kUint8 ? H5T_STD_U8LE : H5T_IEEE_F32LE;
    d_ = H5Id(H5Dcreate2(file_.get(), location().dataset.c_str(), ftype, space.get(), lcpl.get(),
                         dcpl.get(), H5P_DEFAULT),
              H5Dclose);
    if (!d_.valid()) {
      return H5Err(file, absl::StrFormat("cannot create dataset '/%s'", location().dataset));
    }
    std::random_device rd;
    token_ = absl::StrFormat("%08x%08x", rd(), rd());
    H5Id scalar(H5Screate(H5S_SCALAR), H5Sclose);
    const hsize_t three = 3;
    H5Id vec3(H5Screate_simple(1, &three, nullptr), H5Sclose);
    absl::Status s = WriteStringAttr(d_.get(), kFingerprintAttr, o.fingerprint);
    if (s.ok()) s = WriteStringAttr(d_.get(), kModelAttr, o.model);
    if (s.ok()) s = WriteAttr(d_.get(), kOffsetAttr, H5T_NATIVE_INT64, vec3.get(), o.offset.data());
    if (s.ok()) s = WriteStringAttr(d_.get(), kTokenAttr, token_);
    if (!s.ok())
      return Err(absl::StatusCode::kInternal, file,
                 "cannot write attributes: " + std::string(s.message()));
    RETURN_IF_ERROR(SyncFile());
    return StartProgress(/*keep=*/false);
  }

  absl::Status Resume() {
    QuietHdf5Errors quiet;
    const std::string where = location().ToString();
    H5Id dapl(H5Pcreate(H5P_DATASET_ACCESS), H5Pclose);
    ASSIGN_OR_RETURN(Dataset ds, OpenDataset(file_.get(), location(), dapl.get()));
    d_ = std::move(ds.d);
    absl::StatusOr<std::string> token = ReadStringAttr(d_.get(), kTokenAttr);
    if (!token.ok() || ds.dims.size() != 4 || ds.chunk.size() != 4 || ds.nfilters != 0) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "output '%s' exists and was not written by elektronn (no '%s' attribute, or not an "
          "uncompressed chunked (c,z,x,y) dataset); refusing to write into it: remove it or "
          "write elsewhere",
          where, kTokenAttr));
    }
    token_ = *token;
    internal::StoredRun run;
    run.shape = As4d(ds.dims);
    run.chunk = {int64_t(ds.chunk[1]), int64_t(ds.chunk[2]), int64_t(ds.chunk[3])};
    run.dtype = ds.dtype;
    run.compression = Compression{}.ToString();
    run.fingerprint = ReadStringAttr(d_.get(), kFingerprintAttr).value_or("");
    run.model = ReadStringAttr(d_.get(), kModelAttr).value_or("");
    if (H5Aexists(d_.get(), kOffsetAttr) > 0) {
      H5Id a(H5Aopen(d_.get(), kOffsetAttr, H5P_DEFAULT), H5Aclose);
      H5Aread(a.get(), H5T_NATIVE_INT64, run.offset.data());
    }
    RETURN_IF_ERROR(internal::CheckResumable(location(), run, options()));
    if (!options().resume) {
      return absl::AlreadyExistsError(
          absl::StrFormat("output '%s' exists and resuming is off", where));
    }
    return StartProgress(/*keep=*/true);
  }

  // Reads the sidecar's valid records (keep) or starts an empty one, then opens it to append.
  absl::Status StartProgress(bool keep) {
    const std::string path = Hdf5ProgressPath(location());
    const std::string header = absl::StrCat(kProgressMagic, " ", token_, "\n");
    size_t valid = 0;
    if (keep) {
      absl::StatusOr<std::string> text = internal::ReadWholeFile(path);
      if (text.ok() && text->starts_with(header)) valid = ParseRecords(*text, header.size());
    }
    if (valid == 0) {  // none, stale (another output's), or torn header: all chunks to do
      RETURN_IF_ERROR(internal::WriteFileDurably(path, header));
    } else if (::truncate(path.c_str(), static_cast<off_t>(valid)) != 0) {  // drop a torn tail
      return absl::ErrnoToStatus(errno, absl::StrFormat("cannot truncate '%s'", path));
    }
    progress_fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (progress_fd_ < 0 || ::fsync(progress_fd_) != 0) {
      return absl::ErrnoToStatus(errno, absl::StrFormat("cannot open '%s'", path));
    }
    return absl::OkStatus();
  }

  // Marks the chunks of each intact record; returns the end of the last one.
  size_t ParseRecords(const std::string& text, size_t pos) {
    while (true) {
      const size_t nl = text.find('\n', pos);
      if (nl == std::string::npos) return pos;
      const std::vector<std::string> f = absl::StrSplit(text.substr(pos, nl - pos), ' ');
      int64_t v[3];
      uint32_t crc = 0;
      if (f.size() != 4 || !absl::SimpleAtoi(f[0], &v[0]) || !absl::SimpleAtoi(f[1], &v[1]) ||
          !absl::SimpleAtoi(f[2], &v[2]) || !absl::SimpleHexAtoi(f[3], &crc) ||
          crc != RecordCrc(absl::StrFormat("%d %d %d", v[0], v[1], v[2])) ||
          !InGrid({v[0], v[1], v[2]})) {
        return pos;
      }
      MarkDone({v[0], v[1], v[2]});
      pos = nl + 1;
    }
  }

  // H5Fflush hands HDF5's buffers to the OS; fsync puts them on disk.
  absl::Status SyncFile() {
    void* handle = nullptr;
    if (H5Fflush(file_.get(), H5F_SCOPE_LOCAL) < 0 ||
        H5Fget_vfd_handle(file_.get(), H5P_DEFAULT, &handle) < 0 || handle == nullptr) {
      return H5Err(location().path, "cannot flush");
    }
    if (::fsync(*static_cast<int*>(handle)) != 0) {
      return absl::ErrnoToStatus(errno, absl::StrFormat("cannot fsync '%s'", location().path));
    }
    return absl::OkStatus();
  }

  H5Id file_, d_;
  std::string token_;
  int progress_fd_ = -1;
};

}  // namespace

std::string Hdf5ProgressPath(const VolumeLocation& loc) {
  return absl::StrCat(loc.path, ".", absl::StrReplaceAll(loc.dataset, {{"/", "."}}), ".progress");
}

absl::StatusOr<std::unique_ptr<VolumeReader>> OpenHdf5Reader(const VolumeLocation& loc,
                                                             const VolumeReaderOptions& options) {
  QuietHdf5Errors quiet;
  ASSIGN_OR_RETURN(H5Id f, OpenFile(loc.path, /*write=*/false));
  // Tiles read overlapping halos: the chunk cache keeps a row of chunks (1 MiB by default).
  H5Id dapl(H5Pcreate(H5P_DATASET_ACCESS), H5Pclose);
  if (!dapl.valid() ||
      H5Pset_chunk_cache(dapl.get(), 100003, static_cast<size_t>(options.cache_bytes), 1.0) < 0) {
    return H5Err(loc.path, "cannot set the chunk cache");
  }
  ASSIGN_OR_RETURN(Dataset ds, OpenDataset(f.get(), loc, dapl.get()));
  return std::make_unique<Hdf5Reader>(loc, std::move(f), std::move(ds), options);
}

absl::StatusOr<std::unique_ptr<VolumeWriter>> OpenHdf5Writer(const VolumeLocation& loc,
                                                             const VolumeWriterOptions& options) {
  QuietHdf5Errors quiet;
  auto w = std::make_unique<Hdf5Writer>(loc, options);
  RETURN_IF_ERROR(w->Open());
  return w;
}

}  // namespace elektronn
