// KNOSSOS datasets as volumes (reference §7.7, ELEKTRONN2's KnossosArray): knossos.conf, 128³
// uint8 cube files read on demand through a bounded cube cache that a background thread fills
// around the last request.
//
// Layout: `<dir>/mag1/knossos.conf` (or `<dir>/knossos.conf`), cubes at
//   <root>/x%04d/y%04d/z%04d/<experiment>_mag1_x%04d_y%04d_z%04d.raw
// where <root> is the folder holding knossos.conf. A cube file is 128³ bytes, x fastest, then y,
// then z. The volume's axes (z, x, y) are KNOSSOS's (z, y, x), as ELEKTRONN2's KnossosArray
// returns them: memory order equals file order, and shape.x = boundary y, shape.y = boundary x.
// A cube file that does not exist reads as zeros (KNOSSOS writes no file for empty space).
//
// Several datasets of the same boundary are one volume with one channel per dataset (ELEKTRONN2's
// KnossosArrayMulti: feature axis first); the cache budget is split equally between them.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/io/volume_store.h"

namespace elektronn {

// What knossos.conf says.
struct KnossosConf {
  std::string experiment;                // `experiment name "...";`
  std::array<int64_t, 3> boundary{};     // `boundary x|y|z N;` as (x, y, z)
  std::array<double, 3> scale{1, 1, 1};  // `scale x|y|z F;` (nm per voxel), as (x, y, z)
  int64_t magnification = 1;             // `magnification N;` (only 1 is read)
};

// Parses the text of a knossos.conf; errors name `where` and the line. Unknown keys are ignored
// (KNOSSOS writes many); experiment name and the three boundaries are required.
absl::StatusOr<KnossosConf> ParseKnossosConf(const std::string& text, const std::string& where);

// The knossos.conf of a dataset directory: `<dir>/mag1/knossos.conf`, else `<dir>/knossos.conf`.
// NotFound names both places.
absl::StatusOr<std::string> FindKnossosConf(const std::string& dir);

inline constexpr int64_t kKnossosCubeEdge = 128;
inline constexpr int kMaxPreload = 16;  // n_preload's upper bound

// Counters of one dataset's cube cache (tests and benchmarks).
struct KnossosCacheStats {
  int64_t loads = 0;       // cube files read (or found missing), by requests and prefetch
  int64_t prefetched = 0;  // of those, by the background thread
  int64_t missing = 0;     // cube files that did not exist (zeros)
  int64_t evictions = 0;
  int64_t max_resident = 0;  // the most cubes held at once
  int64_t capacity = 0;      // cubes the budget allows
};

struct KnossosOptions {
  int64_t max_ram_mb = 1000;  // cube cache budget (all datasets together); a cube is 2 MiB
  int n_preload = 2;          // prefetch ±n cubes in x and y, ±ceil(n/2) in z; 0 = none
  IntegerValues integers = IntegerValues::kDivideBy255;
};

// Opens "knossos:<dir>[,<dir>...]" (see ParseVolumeSpec): a VolumeReader whose Read assembles
// boxes from cubes. One request may not need more cubes than the cache holds (ResourceExhausted,
// naming the sizes). Read is thread-safe.
absl::StatusOr<std::unique_ptr<VolumeReader>> OpenKnossosReader(const VolumeLocation& location,
                                                                const KnossosOptions& options);

// The cache counters of a reader made by OpenKnossosReader, one per dataset (channel); empty for
// any other reader.
std::vector<KnossosCacheStats> KnossosStats(const VolumeReader& reader);
// Blocks until the background thread has nothing left to prefetch (tests).
void KnossosWaitForPrefetch(const VolumeReader& reader);

// Writes a KNOSSOS dataset (tests, benchmarks, examples): knossos.conf in `<dir>/mag1/` and every
// cube of the boundary whose `keep(cx, cy, cz)` is true. `value(x, y, z)` gives each voxel (in
// KNOSSOS coordinates); voxels past the boundary are written as 0.
absl::Status WriteKnossosDataset(const std::string& dir, const std::string& experiment,
                                 std::array<int64_t, 3> boundary_xyz,
                                 const std::function<uint8_t(int64_t, int64_t, int64_t)>& value,
                                 const std::function<bool(int64_t, int64_t, int64_t)>& keep = {});

}  // namespace elektronn
