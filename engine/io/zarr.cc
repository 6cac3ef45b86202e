// Zarr v2 arrays: a chunk-caching reader and a writer whose chunk files appear
// only once durable (their existence is the "done" mark for resuming).
#include "engine/io/zarr.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <list>
#include <map>
#include <nlohmann/json.hpp>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "engine/core/status.h"
#include "engine/io/internal/durable_file.h"

namespace elektronn {
namespace {

using Json = nlohmann::json;
using internal::ReadWholeFile;
using internal::WriteFileDurably;

size_t ItemSize(VolumeDtype d) {
  switch (d) {
    case VolumeDtype::kUint8:
      return 1;
    case VolumeDtype::kUint16:
      return 2;
    case VolumeDtype::kFloat32:
      return 4;
    case VolumeDtype::kFloat64:
      return 8;
    default:  // HDF5-only types: a .zarray never declares them (zarr_meta.cc)
      return 0;
  }
}

bool IsDir(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool Exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

// Arrays below a Zarr group (for "is a group, not an array" errors).
void FindArrays(const std::string& dir, const std::string& prefix, int depth,
                std::vector<std::string>* out) {
  if (depth > 4 || out->size() > 20) return;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') names.push_back(e->d_name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  for (const std::string& n : names) {
    const std::string p = dir + "/" + n;
    if (!IsDir(p)) continue;
    if (Exists(p + "/.zarray")) {
      out->push_back(prefix + n);
    } else {
      FindArrays(p, prefix + n + "/", depth + 1, out);
    }
  }
}

// Rank 2..4 shape → (c,z,x,y).
VolumeShape As4d(const std::vector<int64_t>& v) {
  VolumeShape s;
  const size_t r = v.size();
  s.c = r == 4 ? v[0] : 1;
  s.z = r >= 3 ? v[r - 3] : 1;
  s.x = v[r - 2];
  s.y = v[r - 1];
  return s;
}

// `divisor` 255 scales integers as ELEKTRONN2 does (a division, not a multiplication by 1/255,
// so that the values equal numpy's float32(v) / 255 bit for bit).
template <typename T>
void CopyToFloat(const T* src, int64_t n, float divisor, float* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]) / divisor;
}

class ZarrReader : public VolumeReader {
 public:
  ZarrReader(VolumeLocation loc, ZarrArrayMeta meta, VolumeReaderOptions options)
      : VolumeReader(loc, As4d(meta.shape), As4d(meta.chunks), meta.dtype),
        meta_(std::move(meta)),
        options_(options),
        chunk_bytes_(static_cast<size_t>(chunk().values()) * ItemSize(dtype())) {
    divisor_ = (dtype() == VolumeDtype::kUint8 || dtype() == VolumeDtype::kUint16) &&
                       options.integers == IntegerValues::kDivideBy255
                   ? 255.f
                   : 1.f;
  }

 protected:
  absl::Status ReadInside(const Box& box, float* out) const override {
    const VolumeShape& s = shape();
    const VolumeShape& ck = chunk();
    const int64_t lo[4] = {0, box.z0, box.x0, box.y0};
    const int64_t hi[4] = {s.c, box.z0 + box.dz, box.x0 + box.dx, box.y0 + box.dy};
    const int64_t cs[4] = {ck.c, ck.z, ck.x, ck.y};
    int64_t first[4], last[4];
    for (int a = 0; a < 4; ++a) {
      first[a] = lo[a] / cs[a];
      last[a] = (hi[a] - 1) / cs[a];
    }
    for (int64_t ic = first[0]; ic <= last[0]; ++ic) {
      for (int64_t iz = first[1]; iz <= last[1]; ++iz) {
        for (int64_t ix = first[2]; ix <= last[2]; ++ix) {
          for (int64_t iy = first[3]; iy <= last[3]; ++iy) {
            const int64_t idx[4] = {ic, iz, ix, iy};
            absl::StatusOr<std::shared_ptr<const std::string>> data = LoadChunk(idx);
            if (!data.ok()) return data.status();
            CopyChunk(idx, lo, hi, cs, data->get(), box, out);
          }
        }
      }
    }
    return absl::OkStatus();
  }

 private:
  using Key = std::array<int64_t, 4>;

  std::string ChunkPath(const int64_t idx[4]) const {
    const size_t r = meta_.shape.size();
    std::vector<int64_t> parts(idx + (4 - r), idx + 4);
    return absl::StrCat(location().path, "/",
                        absl::StrJoin(parts, std::string(1, meta_.separator)));
  }

  // The decoded chunk, or null where it was never written (it then reads as fill_value).
  absl::StatusOr<std::shared_ptr<const std::string>> LoadChunk(const int64_t idx[4]) const {
    const Key key{idx[0], idx[1], idx[2], idx[3]};
    {
      absl::MutexLock lock(&mu_);
      auto it = cache_.find(key);
      if (it != cache_.end()) {
        lru_.splice(lru_.begin(), lru_, it->second.second);
        return it->second.first;
      }
    }
    const std::string path = ChunkPath(idx);
    absl::StatusOr<std::string> encoded = ReadWholeFile(path);
    std::shared_ptr<const std::string> decoded;
    if (encoded.ok()) {
      auto buf = std::make_shared<std::string>(chunk_bytes_, '\0');
      absl::Status s = DecodeZarrChunk(meta_.codec, *encoded, buf->data(), chunk_bytes_, path);
      if (!s.ok()) return s;
      decoded = std::move(buf);
    } else if (!absl::IsNotFound(encoded.status())) {
      return encoded.status();
    }
    absl::MutexLock lock(&mu_);
    if (static_cast<int64_t>(chunk_bytes_) <= options_.cache_bytes && !cache_.count(key)) {
      while (!lru_.empty() &&
             cached_bytes_ + chunk_bytes_ > static_cast<size_t>(options_.cache_bytes)) {
        cache_.erase(lru_.back());
        lru_.pop_back();
        cached_bytes_ -= chunk_bytes_;
      }
      lru_.push_front(key);
      cache_[key] = {decoded, lru_.begin()};
      cached_bytes_ += chunk_bytes_;
    }
    return decoded;
  }

  void CopyChunk(const int64_t idx[4], const int64_t lo[4], const int64_t hi[4],
                 const int64_t cs[4], const std::string* data, const Box& box, float* out) const {
    int64_t a[4], b[4];  // the intersection, in volume coordinates
    for (int i = 0; i < 4; ++i) {
      a[i] = std::max(lo[i], idx[i] * cs[i]);
      b[i] = std::min(hi[i], (idx[i] + 1) * cs[i]);
    }
    const int64_t row = b[3] - a[3];
    for (int64_t c = a[0]; c < b[0]; ++c) {
      for (int64_t z = a[1]; z < b[1]; ++z) {
        for (int64_t x = a[2]; x < b[2]; ++x) {
          float* dst =
              out + ((c * box.dz + (z - lo[1])) * box.dx + (x - lo[2])) * box.dy + (a[3] - lo[3]);
          if (data == nullptr) {
            std::fill(dst, dst + row, static_cast<float>(meta_.fill_value) / divisor_);
            continue;
          }
          const int64_t off = (((c - idx[0] * cs[0]) * cs[1] + (z - idx[1] * cs[1])) * cs[2] +
                               (x - idx[2] * cs[2])) *
                                  cs[3] +
                              (a[3] - idx[3] * cs[3]);
          const char* src = data->data() + off * ItemSize(dtype());
          switch (dtype()) {
            case VolumeDtype::kUint8:
              CopyToFloat(reinterpret_cast<const uint8_t*>(src), row, divisor_, dst);
              break;
            case VolumeDtype::kUint16:
              CopyToFloat(reinterpret_cast<const uint16_t*>(src), row, divisor_, dst);
              break;
            case VolumeDtype::kFloat32:
              std::memcpy(dst, src, row * sizeof(float));
              break;
            case VolumeDtype::kFloat64:
              CopyToFloat(reinterpret_cast<const double*>(src), row, 1.f, dst);
              break;
            default:  // HDF5-only types: a .zarray never declares them (zarr_meta.cc)
              break;
          }
        }
      }
    }
  }

  ZarrArrayMeta meta_;
  VolumeReaderOptions options_;
  size_t chunk_bytes_;
  float divisor_ = 1.f;
  mutable absl::Mutex mu_;
  mutable std::list<Key> lru_ ABSL_GUARDED_BY(mu_);
  mutable std::map<Key, std::pair<std::shared_ptr<const std::string>, std::list<Key>::iterator>>
      cache_ ABSL_GUARDED_BY(mu_);
  mutable size_t cached_bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

Json CompressorJson(const Compression& c) {
  switch (c.kind) {
    case Compression::Kind::kNone:
      return nullptr;
    case Compression::Kind::kZlib:
      return {{"id", "zlib"}, {"level", c.level}};
    case Compression::Kind::kBlosc:
      return {{"id", "blosc"},
              {"cname", c.blosc_cname},
              {"clevel", c.level},
              {"shuffle", c.blosc_shuffle ? 1 : 0},
              {"blocksize", 0}};
  }
  return nullptr;
}

// The Compression a stored compressor object stands for, as text (for the resume check).
std::string CompressionText(const Json& j) {
  if (j.is_null()) return Compression{}.ToString();
  Compression c;
  const std::string id = j.value("id", "");
  if (id == "zlib") {
    c.kind = Compression::Kind::kZlib;
    c.level = j.value("level", -1);
  } else if (id == "blosc") {
    c.kind = Compression::Kind::kBlosc;
    c.blosc_cname = j.value("cname", "");
    c.level = j.value("clevel", -1);
    c.blosc_shuffle = j.value("shuffle", 0) == 1;
  } else {
    return j.dump();
  }
  return c.ToString();
}

class ZarrWriter : public VolumeWriter {
 public:
  ZarrWriter(VolumeLocation loc, VolumeWriterOptions options)
      : VolumeWriter(std::move(loc), std::move(options)) {}

  absl::Status Create() {
    const std::string& dir = location().path;
    RETURN_IF_ERROR(internal::MakeDirectories(dir));
    RETURN_IF_ERROR(MarkParentGroups());
    const VolumeWriterOptions& o = options();
    const Json attrs = {{"elektronn",
                         {{"fingerprint", o.fingerprint},
                          {"model", o.model},
                          {"offset", o.offset},
                          {"layout", "c,z,x,y"}}}};
    const Json meta = {{"zarr_format", 2},
                       {"shape", {o.shape.c, o.shape.z, o.shape.x, o.shape.y}},
                       {"chunks", {o.shape.c, o.chunk[0], o.chunk[1], o.chunk[2]}},
                       {"dtype", o.dtype == VolumeDtype::kUint8 ? "|u1" : "<f4"},
                       {"order", "C"},
                       {"fill_value", o.dtype == VolumeDtype::kUint8 ? Json(0) : Json(0.0)},
                       {"compressor", CompressorJson(o.compression)},
                       {"filters", nullptr},
                       {"dimension_separator", "."}};
    // .zarray last: the array exists only once its attributes (the fingerprint) do.
    RETURN_IF_ERROR(WriteFileDurably(dir + "/.zattrs", attrs.dump(4) + "\n"));
    return WriteFileDurably(dir + "/.zarray", meta.dump(4) + "\n");
  }

  absl::Status Resume(const ZarrArrayMeta& meta) {
    const std::string& dir = location().path;
    const std::string where = location().ToString();
    absl::StatusOr<std::string> text = ReadWholeFile(dir + "/.zattrs");
    Json attrs;
    if (text.ok()) attrs = Json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (!attrs.is_object() || !attrs.contains("elektronn") || !attrs["elektronn"].is_object()) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "output '%s' is a Zarr array not written by elektronn (no 'elektronn' entry in its "
          ".zattrs); refusing to write into it: remove it or write elsewhere",
          where));
    }
    const Json& e = attrs["elektronn"];
    internal::StoredRun run;
    run.shape = As4d(meta.shape);
    const VolumeShape ck = As4d(meta.chunks);
    run.chunk = {ck.z, ck.x, ck.y};
    run.dtype = meta.dtype;
    run.compression = CompressionText(Json::parse(meta.compressor_json));
    run.fingerprint = e.value("fingerprint", "");
    run.model = e.value("model", "");
    if (e.contains("offset") && e["offset"].is_array() && e["offset"].size() == 3) {
      for (int i = 0; i < 3; ++i) run.offset[i] = e["offset"][i].get<int64_t>();
    }
    const bool full_channels = meta.shape.size() == 4 && ck.c == run.shape.c;
    if (!full_channels) run.chunk = {0, 0, 0};  // not a layout we write: differs from any run
    RETURN_IF_ERROR(internal::CheckResumable(location(), run, options()));
    if (!options().resume) {
      return absl::AlreadyExistsError(absl::StrFormat(
          "output '%s' exists (%d of %d chunks written by an earlier run) and resuming is off",
          where, CountDone(), num_chunks()));
    }
    ScanDone();
    return absl::OkStatus();
  }

 protected:
  absl::Status WriteChunkData(ChunkIndex i, const Box& box, const void* data) override {
    const VolumeWriterOptions& o = options();
    const size_t item = ItemSize(o.dtype);
    const int64_t c = o.shape.c, cz = o.chunk[0], cx = o.chunk[1], cy = o.chunk[2];
    const char* src = static_cast<const char*>(data);
    // Zarr stores border chunks whole; the part past the volume holds fill_value (0).
    std::string full;
    if (box.dz == cz && box.dx == cx && box.dy == cy) {
      full.assign(src, static_cast<size_t>(c * box.voxels()) * item);
    } else {
      full.assign(static_cast<size_t>(c * cz * cx * cy) * item, '\0');
      for (int64_t ch = 0; ch < c; ++ch) {
        for (int64_t z = 0; z < box.dz; ++z) {
          for (int64_t x = 0; x < box.dx; ++x) {
            std::memcpy(&full[(((ch * cz + z) * cx + x) * cy) * item],
                        src + (((ch * box.dz + z) * box.dx + x) * box.dy) * item, box.dy * item);
          }
        }
      }
    }
    absl::StatusOr<std::string> enc =
        EncodeZarrChunk(o.compression, full.data(), full.size(), item);
    if (!enc.ok()) return enc.status();
    std::function<void()> hook;
    if (o.test_hook) hook = [&o] { o.test_hook("chunk data written"); };
    RETURN_IF_ERROR(WriteFileDurably(
        absl::StrFormat("%s/0.%d.%d.%d", location().path, i.z, i.x, i.y), *enc, hook));
    if (o.test_hook) o.test_hook("chunk done");
    return absl::OkStatus();
  }

 private:
  // "root.zarr/a/b": root.zarr and root.zarr/a become groups, so zarr-python opens the tree.
  absl::Status MarkParentGroups() {
    const std::string& path = location().path;
    const size_t root = path.find(".zarr/");
    if (root == std::string::npos) return absl::OkStatus();
    std::string dir = path.substr(0, root + 5);
    const std::vector<std::string> rest = absl::StrSplit(path.substr(root + 6), '/');
    for (size_t k = 0; k < rest.size(); ++k) {
      if (!Exists(dir + "/.zgroup") && !Exists(dir + "/.zarray")) {
        RETURN_IF_ERROR(WriteFileDurably(dir + "/.zgroup", "{\n    \"zarr_format\": 2\n}\n"));
      }
      dir += "/" + rest[k];
    }
    return absl::OkStatus();
  }

  // Chunk files are named "0.z.x.y"; anything else (.partial leftovers) is not a chunk.
  void ScanDone() {
    DIR* d = ::opendir(location().path.c_str());
    if (d == nullptr) return;
    while (dirent* e = ::readdir(d)) {
      const std::vector<std::string> parts = absl::StrSplit(e->d_name, '.');
      if (parts.size() != 4 || parts[0] != "0") continue;
      int64_t v[3];
      bool ok = true;
      for (int k = 0; k < 3; ++k) {
        ok = ok && !parts[k + 1].empty() &&
             std::all_of(parts[k + 1].begin(), parts[k + 1].end(), ::isdigit) &&
             absl::SimpleAtoi(parts[k + 1], &v[k]);
      }
      if (ok) MarkDone({v[0], v[1], v[2]});
    }
    ::closedir(d);
  }
  int64_t CountDone() {
    ScanDone();
    return static_cast<int64_t>(DoneChunks().size());
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<VolumeReader>> OpenZarrReader(const VolumeLocation& loc,
                                                             const VolumeReaderOptions& options) {
  const std::string& dir = loc.path;
  if (!Exists(dir)) {
    return absl::NotFoundError(absl::StrFormat(
        "volume '%s': no such file or directory (expected a Zarr array directory or "
        "'file.h5:/dataset')",
        dir));
  }
  if (!Exists(dir + "/.zarray")) {
    if (Exists(dir + "/.zgroup")) {
      std::vector<std::string> arrays;
      FindArrays(dir, "", 0, &arrays);
      return absl::NotFoundError(absl::StrFormat(
          "'%s' is a Zarr group, not an array; arrays in it: %s (name one as '%s/<array>')", dir,
          arrays.empty() ? "none" : absl::StrJoin(arrays, ", "), dir));
    }
    return absl::InvalidArgumentError(absl::StrFormat(
        "'%s' is neither a Zarr v2 array (no .zarray) nor an HDF5 spec 'file.h5:/dataset'", dir));
  }
  absl::StatusOr<std::string> text = ReadWholeFile(dir + "/.zarray");
  if (!text.ok()) return text.status();
  absl::StatusOr<ZarrArrayMeta> meta = ParseZarrArrayMeta(*text, dir);
  if (!meta.ok()) return meta.status();
  return std::make_unique<ZarrReader>(loc, *std::move(meta), options);
}

absl::StatusOr<std::unique_ptr<VolumeWriter>> OpenZarrWriter(const VolumeLocation& loc,
                                                             const VolumeWriterOptions& options) {
  auto w = std::make_unique<ZarrWriter>(loc, options);
  const std::string& dir = loc.path;
  if (Exists(dir + "/.zarray")) {
    absl::StatusOr<std::string> text = ReadWholeFile(dir + "/.zarray");
    if (!text.ok()) return text.status();
    absl::StatusOr<ZarrArrayMeta> meta = ParseZarrArrayMeta(*text, dir);
    if (!meta.ok()) return meta.status();
    RETURN_IF_ERROR(w->Resume(*meta));
    return w;
  }
  if (Exists(dir)) {
    if (!IsDir(dir)) {
      return absl::FailedPreconditionError(
          absl::StrFormat("output '%s' exists and is not a directory", dir));
    }
    // Only what a crash during Create can leave behind: .zattrs and temporary files.
    DIR* d = ::opendir(dir.c_str());
    std::vector<std::string> other;
    while (d != nullptr) {
      dirent* e = ::readdir(d);
      if (e == nullptr) break;
      const std::string n = e->d_name;
      if (n != "." && n != ".." && n != ".zattrs" && !(n[0] == '.' && n.ends_with(".partial"))) {
        other.push_back(n);
      }
    }
    if (d != nullptr) ::closedir(d);
    if (!other.empty()) {
      std::sort(other.begin(), other.end());
      if (other.size() > 5) other.resize(5);
      return absl::FailedPreconditionError(absl::StrFormat(
          "output '%s' is a directory that is not a Zarr array (it holds %s); remove it or "
          "write elsewhere",
          dir, absl::StrJoin(other, ", ")));
    }
  }
  RETURN_IF_ERROR(w->Create());
  return w;
}

}  // namespace elektronn
