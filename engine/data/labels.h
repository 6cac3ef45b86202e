// Label transforms of ELEKTRONN2's data/image.py (reference §7.8): boundary ("barrier") targets
// from segmentation IDs, affinity graphs, neighbourhood targets and growing IDs into background.
//
// Volumes are single-channel (z, x, y) `Volume`s holding integral IDs as floats (how the data
// pipeline keeps labels; int16/int32 IDs up to 2^24 are exact). Only channel 0 is read.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/data/volume.h"

namespace elektronn {

// A displacement (dz, dx, dy) of a neighbourhood (ELEKTRONN2's nhood rows).
using Offset3 = std::array<int64_t, 3>;

// ELEKTRONN2's default affinity neighbourhood, eye(3): the three nearest-neighbour edges
// (+z, +x, +y).
std::vector<Offset3> DefaultAffinityNhood();
// The default of nhood_targets=True: the centre and the six face neighbours, in the order
// (0,0,0), (1,0,0), (0,1,0), (0,0,1), (-1,0,0), (0,-1,0), (0,0,-1).
std::vector<Offset3> DefaultNhoodTargets();

enum class EcsMode {
  kNone,      // ecs_as_barr=False: ID 0 is an ordinary ID
  kBarrier,   // ecs_as_barr=True: every ID-0 voxel (extracellular space) is barrier (1)
  kNewClass,  // ecs_as_barr='new_class': ID-0 voxels that are not barrier become class 2
};

struct Ids2BarriersOptions {
  std::array<bool, 3> dilute = {true, true, true};        // per axis (z, x, y)
  std::array<bool, 3> connectivity = {true, true, true};  // axes along which IDs are compared
  EcsMode ecs = EcsMode::kBarrier;
  bool smoothen = false;
};

// Boundary targets from IDs: along every enabled axis both voxels of a neighbouring pair with
// different IDs become 1; with dilute[axis] also the next voxel outward on either side (a
// boundary 2 voxels wide becomes 4 wide). Pairs and dilution stay inside the volume, which is
// what ELEKTRONN2's forward + axis-reversed passes amount to. smoothen: the 0/1 barrier map is
// convolved with a 3x3x3 kernel (centre 1.0, 6 faces 0.5, 12 edges 0.3, 8 corners 0.2; voxels
// outside count 0) and thresholded at > 4 (removes specks, fills pinholes; the reference only
// says "centre 1.0, face 0.5/0.3/0.2, threshold > 4": this is our reading). Then `ecs`.
// Output values 0, 1 (and 2 with kNewClass).
Volume Ids2Barriers(const Volume& ids, const Ids2BarriersOptions& options = {});

// ELEKTRONN2's make_affinities (malis seg_to_affgraph + connected_components_affgraph).
// aff (n_edges, z, x, y): aff[e][p] = 1 if ids[p] == ids[p + nhood[e]] and both are > 0,
// else 0; edges whose partner p + nhood[e] lies outside the volume are 0 ("undefined ->
// disconnected"). seg (1, z, x, y): connected components of the affinity graph, numbered
// 1, 2, ... by decreasing size (ties: first voxel in z,x,y raster order first); components
// smaller than size_thresh voxels become 0.
struct Affinities {
  Volume aff;
  Volume seg;
};
absl::StatusOr<Affinities> MakeAffinities(
    const Volume& ids, const std::vector<Offset3>& nhood = DefaultAffinityNhood(),
    int64_t size_thresh = 1);

// ELEKTRONN2's make_nhood_targets: (n, z, x, y) with out[i][p] = ids[p + nhood[i]], -1 where
// p + nhood[i] is outside the volume.
absl::StatusOr<Volume> MakeNhoodTargets(const Volume& ids,
                                        const std::vector<Offset3>& nhood = DefaultNhoodTargets());

// ELEKTRONN2's grow_seg: grows IDs into background (ID 0) by up to steps[a] voxels along axis a
// (default [1,3,3]: one z step, three xy steps). In round t = 1..max(steps) every background
// voxel with a face neighbour (along an axis with steps[a] >= t) that had a non-zero ID after
// round t-1 takes the smallest such ID (a deterministic tie rule).
Volume GrowSeg(const Volume& ids, const std::array<int64_t, 3>& steps = {1, 3, 3});

// Kernels for the data pipeline: the same definitions on a label cut that is larger than the
// target by `margin` voxels on each side (so edges at the target's border see real labels).
// ids: (cut = out + 2*margin) floats; out: (n, out) floats. An edge or neighbour outside the cut
// gets `undefined`.
void AffinitiesInCut(const float* ids, const std::array<int64_t, 3>& cut,
                     const std::array<int64_t, 3>& margin, const std::array<int64_t, 3>& out_shape,
                     const std::vector<Offset3>& nhood, float undefined, float* out);
void NhoodTargetsInCut(const float* ids, const std::array<int64_t, 3>& cut,
                       const std::array<int64_t, 3>& margin,
                       const std::array<int64_t, 3>& out_shape, const std::vector<Offset3>& nhood,
                       float undefined, float* out);

}  // namespace elektronn
