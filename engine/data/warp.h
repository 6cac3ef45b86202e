// Geometric and intensity augmentation with ELEKTRONN2's exact semantics (reference §7.4, §7.5):
// a random affine/perspective warp with flips and axis swaps, sampled trilinearly for raw data
// and by nearest neighbour for labels, and grey-value (histogram) distortion.
#pragma once

#include <array>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/data/volume.h"

namespace elektronn {

struct WarpOptions {
  double aniso_factor = 2.0;  // z voxel size / xy voxel size of the data
  bool sample_aniso = true;   // output patch keeps the data's anisotropy
  double warp_amount = 1.0;   // 0: only flips and axis swaps
  bool lock_z = true;         // rotations in the x-y plane only; z never swapped
  bool no_x_flip = false;
  bool perspective = false;
};

// Homogeneous transform over (z, x, y, 1).
using WarpMatrix = std::array<std::array<double, 4>, 4>;

// How the target channels are sampled (ELEKTRONN2's target_discrete_ix / target_vec_ix, §7.4):
// discrete channels by nearest neighbour (class ids keep their values), the others trilinearly;
// each vector triple (channels holding the z, x, y components of a vector field) is afterwards
// multiplied by the linear part of the forward transform, so vectors turn with the patch.
struct TargetSampling {
  // Per target channel; empty = every channel discrete (ELEKTRONN2's default).
  std::vector<bool> discrete;
  std::vector<std::array<int64_t, 3>> vectors;
  bool all_discrete() const {
    for (bool d : discrete) {
      if (!d) return false;
    }
    return true;
  }
};

// Checks `s` against a target of `channels` channels: indices in range, triples of distinct
// channels, no channel in two triples. Errors name the index and the valid range.
absl::Status CheckTargetSampling(const TargetSampling& s, int64_t channels);

// One drawn geometric augmentation: `forward` maps raw voxel coordinates to patch coordinates
// (ELEKTRONN2's M); `centre` is the raw position that lands on the patch centre.
struct WarpTransform {
  WarpMatrix forward{};
  std::array<double, 3> centre{};
};

// Draws exactly what GetWarpedSlice draws from the same rng state, so tests (and debugging
// tools) can copy the rng and see the transform. label_shape = nullptr: no label cube.
absl::StatusOr<WarpTransform> DrawWarpTransform(const std::array<int64_t, 3>& raw_shape,
                                                const std::array<int64_t, 3>* label_shape,
                                                const std::array<int64_t, 3>& ps,
                                                const std::array<int64_t, 3>& tps,
                                                const WarpOptions& opt, std::mt19937_64& rng);

// Samples through a given forward transform (ELEKTRONN2's warp_slice). Returns false, leaving
// the outputs untouched, when the patch or the target leaves its volume.
// `sampling` = nullptr: every target channel discrete, no vectors. Vector triples need an affine
// transform (an error with perspective, whose linear part varies over the patch).
absl::StatusOr<bool> WarpSlice(const Volume& raw, const Volume* label,
                               const std::array<int64_t, 3>& ps, const std::array<int64_t, 3>& tps,
                               const WarpMatrix& forward, float* out_raw, float* out_target,
                               const TargetSampling* sampling = nullptr);

// The source (raw cube) coordinates (z, x, y) that patch position (z, x, y) is read from.
absl::StatusOr<std::array<double, 3>> WarpSourceOf(const WarpMatrix& forward,
                                                   const std::array<double, 3>& patch_pos);

// The part of the raw cube that WarpSlice through `forward` reads: origin and size per axis
// (z, x, y), with one voxel to spare on each side where the cube allows. Returns false when the
// patch or the target leaves its volume (exactly when WarpSlice would). Lazy readers fetch only
// this box and sample it through forward * Translate(origin).
absl::StatusOr<bool> WarpSourceBox(const std::array<int64_t, 3>& raw_shape,
                                   const std::array<int64_t, 3>* label_shape,
                                   const std::array<int64_t, 3>& ps,
                                   const std::array<int64_t, 3>& tps, const WarpMatrix& forward,
                                   std::array<int64_t, 3>* origin, std::array<int64_t, 3>* size);

// forward * Translate(origin): the transform of a sub-box whose voxel 0 is `origin` of the cube.
WarpMatrix ShiftSource(const WarpMatrix& forward, const std::array<int64_t, 3>& origin);

// diag(±1, ±1, ±1, 1), each spatial axis flipped with p = 0.5; axis 2 never with no_x_flip.
WarpMatrix RandomFlipMatrix(bool no_x_flip, std::mt19937_64& rng);

// Cuts one example. `ps` is the input patch (z, x, y) (z = 1 for 2-D nets); `tps` the dense
// target patch, centred in the same sampling grid (pass label = nullptr for none).
// Outputs: raw (raw.ch, ps...) and target (label->ch, tps...) in channels-first order.
// Returns false when the warped patch leaves the volume (ELEKTRONN2's WarpingOOBError: the
// caller draws again); errors only for inconsistent arguments.
absl::StatusOr<bool> GetWarpedSlice(const Volume& raw, const Volume* label,
                                    const std::array<int64_t, 3>& ps,
                                    const std::array<int64_t, 3>& tps, const WarpOptions& opt,
                                    std::mt19937_64& rng, float* out_raw, float* out_target,
                                    const TargetSampling* sampling = nullptr);

// Per listed channel of a (ch, voxels) block: x <- clip(x*alpha + c, 0, 1)^gamma with
// alpha in [0.85, 1.15], c in [-0.15, 0.15], gamma in [0.5, 2] (ELEKTRONN2's greyAugment,
// with its multi-channel broadcasting bug fixed: each channel gets its own factors).
void GreyAugment(float* data, int64_t channels, int64_t voxels, const std::vector<int64_t>& which,
                 std::mt19937_64& rng);

}  // namespace elektronn
