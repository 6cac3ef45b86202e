// Volume specs, padded box reads and the chunk bookkeeping shared by the HDF5 and Zarr stores.
#include "engine/io/volume_store.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/io/hdf5_store.h"
#include "engine/io/knossos.h"
#include "engine/io/zarr.h"

namespace elektronn {
namespace {

bool HasHdf5Extension(std::string_view path) {
  for (std::string_view ext : {".h5", ".hdf5", ".hdf", ".he5"}) {
    if (path.size() >= ext.size() &&
        absl::EqualsIgnoreCase(
            absl::string_view(path.data() + path.size() - ext.size(), ext.size()),
            absl::string_view(ext.data(), ext.size()))) {
      return true;
    }
  }
  return false;
}

bool IsRegularFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// For one axis of a box: which volume index each box position reads (-1: zero padding).
std::vector<int64_t> AxisSources(int64_t origin, int64_t size, int64_t extent, PadMode pad) {
  std::vector<int64_t> src(static_cast<size_t>(size));
  for (int64_t i = 0; i < size; ++i) {
    const int64_t v = origin + i;
    if (v >= 0 && v < extent) {
      src[i] = v;
    } else {
      src[i] = pad == PadMode::kMirror ? MirrorIndex(v, extent) : -1;
    }
  }
  return src;
}

}  // namespace

std::string VolumeShape::ToString() const {
  return absl::StrFormat("(c,z,x,y)=(%d,%d,%d,%d)", c, z, x, y);
}

std::string Box::ToString() const {
  return absl::StrFormat("origin (z,x,y)=(%d,%d,%d) size (%d,%d,%d)", z0, x0, y0, dz, dx, dy);
}

std::string_view DtypeName(VolumeDtype dtype) {
  switch (dtype) {
    case VolumeDtype::kUint8:
      return "uint8";
    case VolumeDtype::kUint16:
      return "uint16";
    case VolumeDtype::kFloat32:
      return "float32";
    case VolumeDtype::kFloat64:
      return "float64";
    case VolumeDtype::kInt8:
      return "int8";
    case VolumeDtype::kInt16:
      return "int16";
    case VolumeDtype::kInt32:
      return "int32";
    case VolumeDtype::kUint32:
      return "uint32";
    case VolumeDtype::kInt64:
      return "int64";
    case VolumeDtype::kUint64:
      return "uint64";
  }
  return "?";
}

bool IsIntegerDtype(VolumeDtype dtype) {
  return dtype != VolumeDtype::kFloat32 && dtype != VolumeDtype::kFloat64;
}

int64_t MirrorIndex(int64_t i, int64_t n) {
  // numpy's "symmetric" padding, applied as often as needed, is periodic with period 2n:
  // one period is 0 1 ... n-1 n-1 ... 1 0.
  const int64_t period = 2 * n;
  int64_t m = i % period;
  if (m < 0) m += period;
  return m < n ? m : period - 1 - m;
}

std::string VolumeLocation::ToString() const {
  if (format == Format::kKnossos) return absl::StrCat(std::string(kKnossosSpecPrefix), path);
  return format == Format::kHdf5 ? absl::StrCat(path, ":/", dataset) : path;
}

absl::StatusOr<VolumeLocation> ParseVolumeSpec(std::string_view spec) {
  if (spec.empty()) {
    return absl::InvalidArgumentError(
        "empty volume spec; expected 'file.h5:/dataset' (HDF5) or 'dir.zarr' (Zarr v2 array)");
  }
  VolumeLocation loc;
  if (spec.starts_with(kKnossosSpecPrefix)) {
    loc.format = VolumeLocation::Format::kKnossos;
    loc.path = std::string(spec.substr(kKnossosSpecPrefix.size()));
    for (absl::string_view dir : absl::StrSplit(loc.path, ',')) {
      if (dir.empty()) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "volume spec '%s' names an empty KNOSSOS directory; expected 'knossos:dir' or "
            "'knossos:dir1,dir2' (one channel per dataset)",
            spec));
      }
    }
    return loc;
  }
  const size_t colon = spec.rfind(':');
  if (colon != std::string_view::npos) {
    const std::string file(spec.substr(0, colon));
    if (HasHdf5Extension(file) || IsRegularFile(file)) {
      std::string_view dataset = spec.substr(colon + 1);
      while (dataset.starts_with('/')) dataset.remove_prefix(1);
      if (dataset.empty()) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "volume spec '%s' names no dataset after ':'; expected e.g. '%s:/raw'", spec, file));
      }
      loc.format = VolumeLocation::Format::kHdf5;
      loc.path = file;
      loc.dataset = std::string(dataset);
      return loc;
    }
  }
  if (HasHdf5Extension(spec)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "volume spec '%s' is an HDF5 file without a dataset; expected e.g. '%s:/raw'", spec, spec));
  }
  loc.format = VolumeLocation::Format::kZarr;
  loc.path = std::string(spec);
  while (loc.path.size() > 1 && loc.path.back() == '/') loc.path.pop_back();
  return loc;
}

absl::StatusOr<std::unique_ptr<VolumeReader>> VolumeReader::Open(
    std::string_view spec, const VolumeReaderOptions& options) {
  absl::StatusOr<VolumeLocation> loc = ParseVolumeSpec(spec);
  if (!loc.ok()) return loc.status();
  if (loc->format == VolumeLocation::Format::kHdf5) return OpenHdf5Reader(*loc, options);
  if (loc->format == VolumeLocation::Format::kKnossos) {
    return OpenKnossosReader(*loc, KnossosOptions{.max_ram_mb = options.knossos_max_ram_mb,
                                                  .n_preload = options.knossos_n_preload,
                                                  .integers = options.integers});
  }
  return OpenZarrReader(*loc, options);
}

absl::Status VolumeReader::Read(const Box& box, PadMode pad, float* out) const {
  const VolumeShape& s = shape_;
  if (box.dz <= 0 || box.dx <= 0 || box.dy <= 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("volume '%s': cannot read box %s; sizes must be positive",
                        location_.ToString(), box.ToString()));
  }
  const bool inside = box.z0 >= 0 && box.x0 >= 0 && box.y0 >= 0 && box.z0 + box.dz <= s.z &&
                      box.x0 + box.dx <= s.x && box.y0 + box.dy <= s.y;
  if (inside) return ReadInside(box, out);
  if (pad == PadMode::kError) {
    return absl::OutOfRangeError(absl::StrFormat(
        "volume '%s' of shape %s: box %s reaches outside the volume; pad with zeros or mirror, "
        "or read inside [0,%d)x[0,%d)x[0,%d)",
        location_.ToString(), s.ToString(), box.ToString(), s.z, s.x, s.y));
  }
  const std::vector<int64_t> mz = AxisSources(box.z0, box.dz, s.z, pad);
  const std::vector<int64_t> mx = AxisSources(box.x0, box.dx, s.x, pad);
  const std::vector<int64_t> my = AxisSources(box.y0, box.dy, s.y, pad);
  // Mirrored indices of neighbouring positions differ by at most one, and zero padding only
  // drops positions, so each axis reads one contiguous range [lo, hi] of at most box size.
  auto range = [](const std::vector<int64_t>& m) {
    int64_t lo = INT64_MAX, hi = -1;
    for (int64_t v : m) {
      if (v < 0) continue;
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    return std::pair<int64_t, int64_t>(lo, hi);
  };
  const auto [lz, hz] = range(mz);
  const auto [lx, hx] = range(mx);
  const auto [ly, hy] = range(my);
  const size_t n = static_cast<size_t>(s.c * box.voxels());
  if (hz < 0 || hx < 0 || hy < 0) {  // entirely outside: all zero
    std::fill(out, out + n, 0.f);
    return absl::OkStatus();
  }
  const Box src{lz, lx, ly, hz - lz + 1, hx - lx + 1, hy - ly + 1};
  std::vector<float> tmp(static_cast<size_t>(s.c * src.voxels()));
  absl::Status st = ReadInside(src, tmp.data());
  if (!st.ok()) return st;
  size_t o = 0;
  for (int64_t c = 0; c < s.c; ++c) {
    const float* tc = tmp.data() + c * src.voxels();
    for (int64_t i = 0; i < box.dz; ++i) {
      for (int64_t j = 0; j < box.dx; ++j) {
        const bool row_zero = mz[i] < 0 || mx[j] < 0;
        const float* row = tc + ((mz[i] - lz) * src.dx + (mx[j] - lx)) * src.dy;
        for (int64_t k = 0; k < box.dy; ++k, ++o) {
          out[o] = (row_zero || my[k] < 0) ? 0.f : row[my[k] - ly];
        }
      }
    }
  }
  return absl::OkStatus();
}

std::string Compression::ToString() const {
  switch (kind) {
    case Kind::kNone:
      return "none";
    case Kind::kZlib:
      return absl::StrFormat("zlib level %d", level);
    case Kind::kBlosc:
      return absl::StrFormat("blosc %s clevel %d%s", blosc_cname, level,
                             blosc_shuffle ? " shuffle" : " noshuffle");
  }
  return "?";
}

absl::StatusOr<std::unique_ptr<VolumeWriter>> VolumeWriter::Open(
    std::string_view spec, const VolumeWriterOptions& options) {
  absl::StatusOr<VolumeLocation> loc = ParseVolumeSpec(spec);
  if (!loc.ok()) return loc.status();
  if (loc->format == VolumeLocation::Format::kKnossos) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "output '%s': KNOSSOS datasets are read only; write a Zarr array (e.g. 'out.zarr') or an "
        "HDF5 dataset ('out.h5:/pred')",
        loc->ToString()));
  }
  const VolumeShape& s = options.shape;
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrFormat("output '%s': %s", loc->ToString(), what));
  };
  if (s.c <= 0 || s.z <= 0 || s.x <= 0 || s.y <= 0) {
    return bad(absl::StrCat("shape ", s.ToString(), " must be positive on every axis"));
  }
  for (int64_t c : options.chunk) {
    if (c <= 0) {
      return bad(absl::StrFormat("chunk (z,x,y)=(%s) must be positive on every axis",
                                 absl::StrJoin(options.chunk, ",")));
    }
  }
  if (options.dtype != VolumeDtype::kFloat32 && options.dtype != VolumeDtype::kUint8) {
    return bad(absl::StrFormat("cannot write dtype %s; outputs are float32 or uint8",
                               DtypeName(options.dtype)));
  }
  const Compression& comp = options.compression;
  if (comp.kind == Compression::Kind::kZlib && (comp.level < 0 || comp.level > 9)) {
    return bad(absl::StrFormat("zlib level %d; valid levels are 0..9", comp.level));
  }
  if (comp.kind == Compression::Kind::kBlosc) {
    if (comp.level < 0 || comp.level > 9) {
      return bad(absl::StrFormat("blosc clevel %d; valid levels are 0..9", comp.level));
    }
    static constexpr std::string_view kNames[] = {"blosclz", "lz4", "lz4hc", "zlib", "zstd"};
    if (std::find(std::begin(kNames), std::end(kNames), comp.blosc_cname) == std::end(kNames)) {
      return bad(absl::StrFormat("blosc codec '%s'; valid: blosclz, lz4, lz4hc, zlib, zstd",
                                 comp.blosc_cname));
    }
  }
  VolumeWriterOptions cut = options;
  cut.chunk = {std::min(cut.chunk[0], s.z), std::min(cut.chunk[1], s.x),
               std::min(cut.chunk[2], s.y)};
  if (loc->format == VolumeLocation::Format::kHdf5) {
    if (comp.kind != Compression::Kind::kNone) {
      return bad(absl::StrFormat(
          "HDF5 outputs are written uncompressed (compression %s would make a crash able to "
          "corrupt the file); write a Zarr array (e.g. 'out.zarr') for compressed output",
          comp.ToString()));
    }
    return OpenHdf5Writer(*loc, cut);
  }
  return OpenZarrWriter(*loc, cut);
}

VolumeWriter::VolumeWriter(VolumeLocation location, VolumeWriterOptions options)
    : location_(std::move(location)), options_(std::move(options)) {
  const VolumeShape& s = options_.shape;
  grid_ = {CeilDiv(s.z, options_.chunk[0]), CeilDiv(s.x, options_.chunk[1]),
           CeilDiv(s.y, options_.chunk[2])};
  done_.assign(static_cast<size_t>(num_chunks()), false);
}

bool VolumeWriter::InGrid(ChunkIndex i) const {
  return i.z >= 0 && i.x >= 0 && i.y >= 0 && i.z < grid_[0] && i.x < grid_[1] && i.y < grid_[2];
}

Box VolumeWriter::ChunkBox(ChunkIndex i) const {
  const auto& c = options_.chunk;
  const VolumeShape& s = options_.shape;
  Box b{i.z * c[0], i.x * c[1], i.y * c[2], 0, 0, 0};
  b.dz = std::min(c[0], s.z - b.z0);
  b.dx = std::min(c[1], s.x - b.x0);
  b.dy = std::min(c[2], s.y - b.y0);
  return b;
}

absl::Status VolumeWriter::CheckChunkArgs(ChunkIndex i, size_t values, VolumeDtype given) const {
  if (!InGrid(i)) {
    return absl::OutOfRangeError(absl::StrFormat(
        "output '%s': chunk (z,x,y)=(%d,%d,%d) is outside the chunk grid (%d,%d,%d)",
        location_.ToString(), i.z, i.x, i.y, grid_[0], grid_[1], grid_[2]));
  }
  if (given != options_.dtype) {
    return absl::InvalidArgumentError(
        absl::StrFormat("output '%s' is %s; chunk (%d,%d,%d) was given as %s", location_.ToString(),
                        DtypeName(options_.dtype), i.z, i.x, i.y, DtypeName(given)));
  }
  const Box b = ChunkBox(i);
  const size_t want = static_cast<size_t>(options_.shape.c * b.voxels());
  if (values != want) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "output '%s': chunk (%d,%d,%d) covers %d channels x (%d,%d,%d) = %d values; got %d",
        location_.ToString(), i.z, i.x, i.y, options_.shape.c, b.dz, b.dx, b.dy, want, values));
  }
  return absl::OkStatus();
}

absl::Status VolumeWriter::WriteChunk(ChunkIndex index, absl::Span<const float> data) {
  absl::Status s = CheckChunkArgs(index, data.size(), VolumeDtype::kFloat32);
  if (s.ok()) s = WriteChunkData(index, ChunkBox(index), data.data());
  if (s.ok()) MarkDone(index);
  return s;
}

absl::Status VolumeWriter::WriteChunk(ChunkIndex index, absl::Span<const uint8_t> data) {
  absl::Status s = CheckChunkArgs(index, data.size(), VolumeDtype::kUint8);
  if (s.ok()) s = WriteChunkData(index, ChunkBox(index), data.data());
  if (s.ok()) MarkDone(index);
  return s;
}

void VolumeWriter::MarkDone(ChunkIndex i) {
  if (InGrid(i)) done_[static_cast<size_t>((i.z * grid_[1] + i.x) * grid_[2] + i.y)] = true;
}

bool VolumeWriter::IsDone(ChunkIndex i) const {
  return InGrid(i) && done_[static_cast<size_t>((i.z * grid_[1] + i.x) * grid_[2] + i.y)];
}

std::vector<ChunkIndex> VolumeWriter::DoneChunks() const {
  std::vector<ChunkIndex> out;
  for (int64_t z = 0; z < grid_[0]; ++z) {
    for (int64_t x = 0; x < grid_[1]; ++x) {
      for (int64_t y = 0; y < grid_[2]; ++y) {
        if (IsDone({z, x, y})) out.push_back({z, x, y});
      }
    }
  }
  return out;
}

namespace internal {

absl::Status CheckResumable(const VolumeLocation& where, const StoredRun& stored,
                            const VolumeWriterOptions& wanted) {
  std::vector<std::string> diffs;
  auto differ = [&](std::string_view what, const std::string& was, const std::string& now) {
    if (was != now) diffs.push_back(absl::StrFormat("%s was %s, now %s", what, was, now));
  };
  auto triple = [](const std::array<int64_t, 3>& a) {
    return absl::StrCat("(", absl::StrJoin(a, ","), ")");
  };
  differ("shape", stored.shape.ToString(), wanted.shape.ToString());
  differ("chunk (z,x,y)", triple(stored.chunk), triple(wanted.chunk));
  differ("dtype", std::string(DtypeName(stored.dtype)), std::string(DtypeName(wanted.dtype)));
  differ("compression", stored.compression, wanted.compression.ToString());
  differ("offset (z,x,y)", triple(stored.offset), triple(wanted.offset));
  differ("model", absl::StrCat("'", stored.model, "'"), absl::StrCat("'", wanted.model, "'"));
  differ("fingerprint of the arguments", absl::StrCat("'", stored.fingerprint, "'"),
         absl::StrCat("'", wanted.fingerprint, "'"));
  if (diffs.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrFormat(
      "output '%s' exists from another run (%s); resume with the same arguments, or remove it "
      "or write elsewhere to start over",
      where.ToString(), absl::StrJoin(diffs, "; ")));
}

}  // namespace internal
}  // namespace elektronn
