// Demo data: a small synthetic EM-like training set (raw cubes + "barrier" labels) in the layout
// of ELEKTRONN2's neuro_data_zxy, so that the shipped 3-D examples run without a download.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "engine/data/volume.h"

namespace elektronn {

struct DemoDataOptions {
  int num_cubes = 3;                                      // raw_<i>.h5 / barrier_<i>.h5 pairs
  std::array<int64_t, 3> shape = {64, 256, 256};          // (z, x, y) of every training cube
  std::array<int64_t, 3> preview_shape = {32, 200, 200};  // preview.h5 (fits neuro3d's input)
  double aniso_factor = 2.0;                              // a z voxel is this many xy voxels thick
  double cell_size = 28.0;                                // mean cell diameter in xy voxels
  double empty_cell_fraction = 0.15;  // grid cells without a seed: a few larger cells
  double membrane_thickness = 2.5;    // barrier width across a membrane, in xy voxels
  double noise_sigma = 0.025;         // Gaussian noise (grey values in [0,1]) before the blur
  uint64_t seed = 1;                  // everything is a deterministic function of this
  bool compress = true;               // gzip the HDF5 datasets
  // img-scalar demo (examples/demo_patches.lua): per cube, a stack of 2-D patches cut around
  // random voxels, half of them centred on a barrier, with the centre's barrier label.
  int64_t patches_per_cube = 512;  // 0: no patch files
  int64_t patch_side = 23;         // odd, so a voxel sits at the centre
};

// One cube pair: raw (1, z, x, y) grey values in [0,1] and barrier (1, z, x, y) with 1 on
// membranes between cells and 0 inside cells. Cells are Voronoi regions of jittered-grid seeds
// under an anisotropic metric (a z step counts aniso_factor xy steps); membranes are dark, each
// cell has its own mid-grey tone, smooth texture and a few dark vesicle-like blobs; Gaussian
// noise and a slight xy blur finish it. Deterministic in (options.seed, cube_index) whatever
// the number of OpenMP threads.
void GenerateDemoCube(const DemoDataOptions& options, const std::array<int64_t, 3>& shape,
                      int cube_index, Volume* raw, Volume* barrier);
// The same, also giving the segmentation: (1, z, x, y) cell IDs 1, 2, ... (every voxel, membranes
// included, belongs to its nearest seed's cell), numbered in order of first appearance.
void GenerateDemoCube(const DemoDataOptions& options, const std::array<int64_t, 3>& shape,
                      int cube_index, Volume* raw, Volume* barrier, Volume* ids);

// Writes into `dir` (created if needed; existing files of the same names are replaced):
//   raw_<i>.h5      dataset "raw", uint8 (z,x,y)         for i in [0, num_cubes)
//   barrier_<i>.h5  dataset "lab", int16 (z,x,y), 1 = barrier, same size as the raw cube
//   ids_<i>.h5      dataset "lab", int16 (z,x,y) cell IDs 1.. (float32 beyond 32767), for
//                   affinity targets or ids2barriers
//   preview.h5      dataset "raw", uint8 (z,x,y) of preview_shape (an unseen cube)
//   patches_<i>.h5  datasets "raw", uint8 (n, side, side): 2-D patches of cube i (z-slices of
//                   the stack), and "lab", int16 (n, 1): 1 where the patch's centre voxel is a
//                   barrier (about half of them), 0 else; only for cubes at least `side` wide
absl::Status MakeDemoData(const std::string& dir, const DemoDataOptions& options);

}  // namespace elektronn
