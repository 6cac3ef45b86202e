// img-scalar border treatment of raw cubes (ELEKTRONN2's border_treatment, reference §7.2).
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "engine/data/volume.h"

namespace elektronn {

// Treats the spatial axes z (only if `treat_z`), x and y of `v` for a patch `ps` (z, x, y):
//   "crop":   where the cube is larger than the patch, keep its centre (size - ps) / 2 onwards;
//   "keep":   unchanged;
//   "mirror": where the cube is smaller, pad up to the patch by symmetric reflection (numpy's
//             'symmetric': the edge voxel repeated), ceil((ps - size) / 2) before, the rest after;
//   "0-pad":  the same padding with zeros.
// Axes the mode does not apply to are left as they are (ELEKTRONN2 would slice oddly or fail).
absl::StatusOr<Volume> ApplyBorderMode(const Volume& v, const std::array<int64_t, 3>& ps,
                                       const std::string& mode, bool treat_z);

// Pads every spatial axis by `n` voxels on each side, repeating the edge voxel.
Volume PadEdge(const Volume& v, int64_t n);

}  // namespace elektronn
