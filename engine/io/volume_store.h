// Chunked volume stores for dense prediction: read any box of an HDF5 dataset or Zarr v2 array
// (with padding outside the volume), and write an output chunk by chunk so that a killed run
// resumes where it stopped and ends bit-identical to an uninterrupted one.
//
// Volume specs (one string names a volume):
//   "file.h5:/raw", "file.h5:raw", "file.h5:group/raw"  HDF5 dataset. The part before the last
//       ':' is the file; it is HDF5 when it ends in .h5/.hdf5/.hdf/.he5 or is an existing file.
//   "out.zarr", "group.zarr/path/to/array"              Zarr v2 array: the directory holding
//       `.zarray` (any other spec is taken as one).
//   "knossos:dir", "knossos:em,membranes"                KNOSSOS dataset(s) (engine/io/knossos.h),
//       read only: the directory holding knossos.conf or mag1/knossos.conf; several, separated
//       by ',', are one volume with a channel per dataset.
//
// Layout: every volume is seen as (c, z, x, y) in C order. On disk a 4-D array is (c,z,x,y), a
// 3-D one (z,x,y) with c = 1 and a 2-D one (x,y) with c = 1, z = 1 (one image is a volume of one
// slice). A 3-D array is never read as (c,x,y): store a multi-channel image as (c,1,x,y).
// Outputs are always written 4-D (c,z,x,y), as ELEKTRONN2's predict_dense returns them.
//
// Crash safety of outputs (WriteChunk marks a chunk done only once its data is durable):
//   Zarr  the chunk is encoded, written to ".<key>.partial" in the array's directory, fsynced,
//         renamed to its key, and the directory fsynced. The chunk file's existence is the
//         "done" mark; a leftover .partial file is not a chunk (and zarr-python ignores it).
//   HDF5  the dataset is created uncompressed with all chunks allocated up front (no fill), so
//         writing a chunk only overwrites raw bytes at fixed places and never touches HDF5's
//         metadata: a crash in the middle of a write cannot damage the file's structure or other
//         chunks. Each write is followed by H5Fflush and fsync of the file, then one record
//         "iz ix iy crc" appended to the sidecar "<file>.<dataset>.progress" and fsynced. A
//         record is only trusted when its CRC matches (a torn last line is dropped) and the
//         sidecar's token equals the one stored on the dataset (a sidecar left from an older
//         output of the same name is ignored: those chunks are simply computed again).
//         Compressed HDF5 outputs would rewrite the chunk index on every write, which a crash
//         can corrupt; they are refused: choose Zarr for compressed output.
// Resuming checks the stored shape, chunks, dtype, compressor, offset, model and the caller's
// fingerprint of the run's arguments; any difference is refused, naming it.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace elektronn {

// Extent of a volume, channels first.
struct VolumeShape {
  int64_t c = 1, z = 0, x = 0, y = 0;
  int64_t voxels() const { return z * x * y; }
  int64_t values() const { return c * z * x * y; }
  std::string ToString() const;  // "(c,z,x,y)=(2,10,20,30)"
  bool operator==(const VolumeShape&) const = default;
};

// A spatial box: origin (z0,x0,y0), may be negative or reach past the volume; size (dz,dx,dy).
// Boxes always cover every channel.
struct Box {
  int64_t z0 = 0, x0 = 0, y0 = 0;
  int64_t dz = 0, dx = 0, dy = 0;
  int64_t voxels() const { return dz * dx * dy; }
  std::string ToString() const;
  bool operator==(const Box&) const = default;
};

// Element types on disk.
// The signed and 32/64-bit integer types are read from HDF5 only (label cubes are often int16 or
// uint32/uint64 ids; streamed training cubes read them).
enum class VolumeDtype {
  kUint8,
  kUint16,
  kFloat32,
  kFloat64,
  kInt8,
  kInt16,
  kInt32,
  kUint32,
  kInt64,
  kUint64
};
bool IsIntegerDtype(VolumeDtype dtype);
std::string_view DtypeName(VolumeDtype dtype);  // "uint8", ...

// What Read fills in where a box reaches outside the volume.
enum class PadMode {
  kError,   // refuse boxes that are not inside the volume
  kZero,    // zeros
  kMirror,  // ELEKTRONN2's pad_raw (numpy.pad mode "symmetric"): the edge sample is repeated,
            // ... 1 0 | 0 1 2 ... n-1 | n-1 n-2 ...; further out the reflection repeats with
            // period 2n, as numpy's does.
};

// The index in [0, n) that mirror padding reads for index i (any integer; n > 0).
int64_t MirrorIndex(int64_t i, int64_t n);

// How integer elements become floats. ELEKTRONN2 divides every integer input by 255 for
// prediction (raw EM data is uint8); kAsIs reads integers as their values (label ids, tests).
enum class IntegerValues { kDivideBy255, kAsIs };

struct VolumeReaderOptions {
  IntegerValues integers = IntegerValues::kDivideBy255;
  // Zarr: decoded chunks kept in memory (tiles read overlapping halos). HDF5: its chunk cache.
  int64_t cache_bytes = int64_t{256} << 20;
  // KNOSSOS: the cube cache (MB, all datasets together) and the prefetch reach in cubes
  // (±n in x and y, ±ceil(n/2) in z; 0: none), ELEKTRONN2's max_ram and n_preload.
  int64_t knossos_max_ram_mb = 1000;
  int knossos_n_preload = 2;
};

// A parsed volume spec.
struct VolumeLocation {
  enum class Format { kHdf5, kZarr, kKnossos };
  Format format = Format::kZarr;
  std::string path;     // HDF5 file, Zarr array directory, KNOSSOS directories (',' between)
  std::string dataset;  // HDF5 only, without a leading '/'
  std::string ToString() const;
};
absl::StatusOr<VolumeLocation> ParseVolumeSpec(std::string_view spec);
// The prefix of a KNOSSOS volume spec.
inline constexpr std::string_view kKnossosSpecPrefix = "knossos:";

// Reads boxes of one volume. Read may be called from several threads at once.
class VolumeReader {
 public:
  static absl::StatusOr<std::unique_ptr<VolumeReader>> Open(
      std::string_view spec, const VolumeReaderOptions& options = {});
  virtual ~VolumeReader() = default;

  const VolumeLocation& location() const { return location_; }
  const VolumeShape& shape() const { return shape_; }
  VolumeDtype dtype() const { return dtype_; }
  // The storage chunk as (c,z,x,y); a contiguous HDF5 dataset reports its whole shape.
  const VolumeShape& chunk() const { return chunk_; }

  // Fills out[c][dz][dx][dy] (C order, shape.c * box.voxels() floats) with the volume's values
  // in `box`; the parts outside the volume as `pad` says. Reads only the part of the file that
  // the box needs (never more than box-sized in memory besides the chunk cache).
  absl::Status Read(const Box& box, PadMode pad, float* out) const;

 protected:
  VolumeReader(VolumeLocation location, VolumeShape shape, VolumeShape chunk, VolumeDtype dtype)
      : location_(std::move(location)), shape_(shape), chunk_(chunk), dtype_(dtype) {}
  // Reads a box that lies inside the volume into out[c][dz][dx][dy].
  virtual absl::Status ReadInside(const Box& box, float* out) const = 0;

 private:
  VolumeLocation location_;
  VolumeShape shape_, chunk_;
  VolumeDtype dtype_;
};

// Output compression. HDF5 outputs take kNone only (see the top of this file).
struct Compression {
  enum class Kind { kNone, kZlib, kBlosc };
  Kind kind = Kind::kNone;
  int level = 5;                    // zlib 1..9; blosc clevel 0..9
  std::string blosc_cname = "lz4";  // blosc: blosclz, lz4, lz4hc, zlib, zstd
  bool blosc_shuffle = true;        // byte shuffle
  std::string ToString() const;     // "none", "zlib level 5", "blosc lz4 clevel 5 shuffle"
};

struct VolumeWriterOptions {
  VolumeShape shape;                            // (c,z,x,y) of the output
  std::array<int64_t, 3> chunk = {64, 64, 64};  // (z,x,y); cut to the shape; channels whole
  VolumeDtype dtype = VolumeDtype::kFloat32;    // kFloat32 or kUint8
  Compression compression = {};
  std::array<int64_t, 3> offset = {0, 0, 0};  // output voxel 0 sits at this input voxel (z,x,y)
  std::string model = {};                     // the model file (stored, compared on resume)
  std::string fingerprint = {};  // the caller's digest of every argument that shapes the output
  bool resume = true;            // an existing output of the same run is continued; else refused
  // Tests only: called at each step of a chunk write ("chunk data written": durable but not yet
  // marked done; "chunk done"), so a test can kill the process exactly there.
  std::function<void(std::string_view step)> test_hook = {};
};

// The position of a chunk in the output's chunk grid (z,x,y).
struct ChunkIndex {
  int64_t z = 0, x = 0, y = 0;
  auto operator<=>(const ChunkIndex&) const = default;
};

// Writes an output chunk by chunk. Calls must not overlap (one writer thread).
class VolumeWriter {
 public:
  // Creates the output `spec`, or opens it for resuming (see VolumeWriterOptions::resume).
  static absl::StatusOr<std::unique_ptr<VolumeWriter>> Open(std::string_view spec,
                                                            const VolumeWriterOptions& options);
  virtual ~VolumeWriter() = default;

  const VolumeLocation& location() const { return location_; }
  // As created: chunk cut to the shape.
  const VolumeWriterOptions& options() const { return options_; }
  // Chunks per axis (z,x,y).
  std::array<int64_t, 3> grid() const { return grid_; }
  int64_t num_chunks() const { return grid_[0] * grid_[1] * grid_[2]; }
  // The part of the output chunk `index` covers, cut at the volume's end.
  Box ChunkBox(ChunkIndex index) const;

  // Writes one whole chunk: data[c][dz][dx][dy] for ChunkBox(index) (C order). Returns once the
  // data is durable and the chunk is marked done. The float overload is for float32 outputs,
  // the uint8 one for uint8 outputs (the caller chooses how to quantise).
  absl::Status WriteChunk(ChunkIndex index, absl::Span<const float> data);
  absl::Status WriteChunk(ChunkIndex index, absl::Span<const uint8_t> data);

  bool IsDone(ChunkIndex index) const;
  // Chunks written and durable (from this run or the runs it resumes), in grid order.
  std::vector<ChunkIndex> DoneChunks() const;

 protected:
  VolumeWriter(VolumeLocation location, VolumeWriterOptions options);
  // Writes `data` (the chunk's box, element type options().dtype) durably.
  virtual absl::Status WriteChunkData(ChunkIndex index, const Box& box, const void* data) = 0;
  void MarkDone(ChunkIndex index);
  bool InGrid(ChunkIndex index) const;

 private:
  absl::Status CheckChunkArgs(ChunkIndex index, size_t values, VolumeDtype given) const;
  VolumeLocation location_;
  VolumeWriterOptions options_;
  std::array<int64_t, 3> grid_;
  std::vector<bool> done_;
};

namespace internal {
// What an existing output was made with, for the resume check.
struct StoredRun {
  VolumeShape shape;
  std::array<int64_t, 3> chunk = {0, 0, 0};
  VolumeDtype dtype = VolumeDtype::kFloat32;
  std::string compression = {};
  std::array<int64_t, 3> offset = {0, 0, 0};
  std::string model = {};
  std::string fingerprint = {};
};
// OK when `stored` was made with `wanted`; otherwise FailedPrecondition listing each difference.
absl::Status CheckResumable(const VolumeLocation& where, const StoredRun& stored,
                            const VolumeWriterOptions& wanted);
}  // namespace internal

}  // namespace elektronn
