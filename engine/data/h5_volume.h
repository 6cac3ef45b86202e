// HDF5 volumes: reading whole (z,x,y) / (ch,z,x,y) datasets into a Volume, and writing them back.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/data/volume.h"

namespace elektronn {

// How integer values on disk become floats. Floating-point datasets are always read as they are.
enum class H5Values {
  kByDtype,  // uint8 -> /255 (raw EM data); every other integer type -> unchanged (label ids)
  kRaw,      // every integer type -> /255 (ELEKTRONN2's raw cubes)
  kLabels,   // every integer type -> unchanged, uint8 included (label ids)
};

// Reads the dataset `key` of `file` entirely into memory. The dataset must be 3-D (z,x,y) or
// 4-D (ch,z,x,y) of an integer or floating-point type; a missing channel axis is added.
// `xyz_order`: the file stores (x,y,z) or (x,y,z,ch) (ELEKTRONN2's zxy=False); transposed to
// (ch,z,x,y). Errors name the file, the key and what would be valid (a missing key lists the
// datasets the file does have).
absl::StatusOr<Volume> ReadH5Volume(const std::string& file, const std::string& key, bool xyz_order,
                                    H5Values values = H5Values::kByDtype);

// Paths of every dataset in `file` ("raw", "group/lab"), in name order.
absl::StatusOr<std::vector<std::string>> ListH5Datasets(const std::string& file);

// On-disk element types for WriteH5Volume.
enum class H5Dtype {
  kUint8,    // round(v*255) clamped to [0,255] (inverse of reading uint8 raw data)
  kInt16,    // values must be integral and within int16 (label ids)
  kFloat32,  // as is
};

// Writes `volume` as dataset `key` (intermediate groups created) into `file`, which is created
// if missing and otherwise opened for writing (an existing dataset `key` is replaced). The
// dataset is (z,x,y) when the volume has one channel, else (ch,z,x,y). `compress`: chunked,
// shuffled and gzip-compressed.
absl::Status WriteH5Volume(const std::string& file, const std::string& key, const Volume& volume,
                           H5Dtype dtype, bool compress);

// A small numeric dataset of any rank (e.g. the lazy-label mask "ll_mask", (2, n_class)):
// row-major values as doubles and the shape.
struct H5Array {
  std::vector<int64_t> shape;
  std::vector<double> data;
};
// NotFound (listing the file's datasets) when `key` is missing.
absl::StatusOr<H5Array> ReadH5Array(const std::string& file, const std::string& key);
// Writes integral values as int16 (the file is created if missing; an existing `key` replaced).
absl::Status WriteH5Int16Array(const std::string& file, const std::string& key,
                               const H5Array& array);

}  // namespace elektronn
