// The constant Sobel filters of SobelizedLoss on the CUDA backend, as templates over an executor
// (see bodies.h). The CPU scatters each tap (kernels/cpu/losses.cc); here every output element
// gathers its taps, so no two threads write one element: forward per (voxel, axis, channel),
// backward per (voxel, channel) over the mirrored taps.
#pragma once

#include "kernels/cuda/bodies.h"

namespace elektronn::kernels::cuda::ops {

// ELEKTRONN2's weight of the derivative along filter k at tap offsets o (each 0..2): [1, 0, -1]
// along the differentiated axis, [0.3, 0.4, 0.3] along the others (kernels/cpu/losses.cc).
ELK_HD inline float SobelTapWeight(int ndim, int k, const int* o) {
  // The axis each of ELEKTRONN2's filters differentiates (its concatenation order).
  const int ax = ndim == 2 ? 1 - k : (ndim == 3 ? (k == 0 ? 0 : 3 - k) : 0);
  float w = 1.f;
  for (int a = 0; a < ndim; ++a) {
    const float along = o[a] == 0 ? 1.f : (o[a] == 1 ? 0.f : -1.f);
    const float across = o[a] == 1 ? 0.4f : 0.3f;
    w *= a == ax ? along : across;
  }
  return w;
}

// Spatial extents padded with trailing ones to three axes, as the CPU's loops take them.
struct SobelGeometry {
  int nd;
  int64_t sp[3];
  int64_t c_in;
  int64_t voxels;  // batch * prod(spatial)
};

inline SobelGeometry MakeSobelGeometry(const Backend::SobelDesc& d) {
  SobelGeometry g{static_cast<int>(d.spatial.size()), {1, 1, 1}, d.channels, d.batch};
  for (int a = 0; a < g.nd; ++a) {
    g.sp[a] = d.spatial[a];
    g.voxels *= d.spatial[a];
  }
  return g;
}

// Splits a voxel index into batch and the three (padded) positions.
ELK_HD inline void SobelPosition(const SobelGeometry& g, int64_t vox, int64_t* b, int64_t* pos) {
  pos[2] = vox % g.sp[2];
  vox /= g.sp[2];
  pos[1] = vox % g.sp[1];
  vox /= g.sp[1];
  pos[0] = vox % g.sp[0];
  *b = vox / g.sp[0];
}

// Gathers filter k's taps around `vox` in `in` (channel `ch_in` of `in_channels`); `sign` -1
// mirrors the taps (the adjoint).
ELK_HD inline float SobelGather(const SobelGeometry& g, const float* in, int64_t in_channels,
                                int64_t ch_in, int64_t vox, int sign, int k) {
  int64_t b, pos[3];
  SobelPosition(g, vox, &b, pos);
  int n_taps = 1;
  for (int a = 0; a < g.nd; ++a) n_taps *= 3;
  float s = 0.f;
  for (int tap = 0; tap < n_taps; ++tap) {
    int o[3] = {0, 0, 0};
    int64_t q[3] = {0, 0, 0};
    bool inside = true;
    for (int a = 0, rest = tap; a < g.nd; ++a, rest /= 3) {
      o[a] = rest % 3;
      q[a] = pos[a] + sign * (o[a] - 1);
      inside &= q[a] >= 0 && q[a] < g.sp[a];
    }
    if (!inside) continue;
    const int64_t other = ((b * g.sp[0] + q[0]) * g.sp[1] + q[1]) * g.sp[2] + q[2];
    s += SobelTapWeight(g.nd, k, o) * in[other * in_channels + ch_in];
  }
  return s;
}

template <class Exec>
void SobelForward(Exec& ex, const Backend::SobelDesc& d, const float* src, float* dst) {
  const SobelGeometry g = MakeSobelGeometry(d);
  const int64_t c_out = g.c_in * g.nd;
  ex.ForEach(
      g.voxels * c_out, ELK_LAMBDA(int64_t j) {
        const int64_t vox = j / c_out, kc = j % c_out;
        const int k = static_cast<int>(kc / g.c_in);
        dst[j] = SobelGather(g, src, g.c_in, kc % g.c_in, vox, 1, k);
      });
}

template <class Exec>
void SobelBackward(Exec& ex, const Backend::SobelDesc& d, const float* ddst, float* dsrc,
                   bool acc) {
  const SobelGeometry g = MakeSobelGeometry(d);
  const int64_t c_out = g.c_in * g.nd;
  ex.ForEach(
      g.voxels * g.c_in, ELK_LAMBDA(int64_t j) {
        const int64_t vox = j / g.c_in, i = j % g.c_in;
        float s = acc ? dsrc[j] : 0.f;
        for (int k = 0; k < g.nd; ++k) s += SobelGather(g, ddst, c_out, k * g.c_in + i, vox, -1, k);
        dsrc[j] = s;
      });
}

}  // namespace elektronn::kernels::cuda::ops
