// Structural ops of the CUDA backend (issue 11's family: box copies, transpose, maxout, LRN,
// Gaussian sampling), as templates over an executor (see bodies.h); one thread per output
// element, the index arithmetic in fixed-size structs passed by value (no allocation per call).
// Semantics: kernels/cpu/structural.cc and CopyBox in kernels/cpu/cpu_backend.cc.
#pragma once

#include <vector>

#include "kernels/cuda/bodies.h"

namespace elektronn::kernels::cuda::ops {

// A BoxCopy flattened for a kernel: element j of the extent (row-major) maps to
// src_base + sum_a idx_a * src_mul[a] and dst_base + sum_a idx_a * dst_mul[a].
struct BoxGeometry {
  int rank = 0;
  int64_t extent[kMaxRank];
  int64_t src_mul[kMaxRank], dst_mul[kMaxRank];
  int64_t src_base = 0, dst_base = 0, numel = 1;
};

inline BoxGeometry MakeBoxGeometry(const BoxCopy& box) {
  BoxGeometry g;
  g.rank = static_cast<int>(box.extent.size());
  auto step = [](const std::vector<int64_t>& s, int a) { return s.empty() ? 1 : s[a]; };
  int64_t sstride = 1, dstride = 1;
  for (int a = g.rank - 1; a >= 0; --a) {
    g.extent[a] = box.extent[a];
    g.src_mul[a] = step(box.src_step, a) * sstride;
    g.dst_mul[a] = step(box.dst_step, a) * dstride;
    g.src_base += box.src_origin[a] * sstride;
    g.dst_base += box.dst_origin[a] * dstride;
    g.numel *= box.extent[a];
    sstride *= box.src_shape[a];
    dstride *= box.dst_shape[a];
  }
  return g;
}

// False (and nothing launched) for a rank the fixed-size geometry cannot hold.
template <class Exec>
bool CopyBox(Exec& ex, const BoxCopy& box, const float* src, float* dst, bool acc) {
  if (box.extent.empty() || box.extent.size() > static_cast<size_t>(kMaxRank)) return false;
  const BoxGeometry g = MakeBoxGeometry(box);
  ex.ForEach(
      g.numel, ELK_LAMBDA(int64_t j) {
        int64_t rem = j, so = g.src_base, dof = g.dst_base;
        for (int a = g.rank - 1; a >= 0; --a) {
          const int64_t idx = rem % g.extent[a];
          rem /= g.extent[a];
          so += idx * g.src_mul[a];
          dof += idx * g.dst_mul[a];
        }
        dst[dof] = Store(dst[dof], src[so], acc);
      });
  return true;
}

// dst axis i is src axis perm[i]: each dst element reads its source through perm-ordered strides.
struct TransposeGeometry {
  int rank = 0;
  int64_t dst_dims[kMaxRank];
  int64_t src_stride[kMaxRank];  // the stride in src of dst axis i
  int64_t numel = 1;
};

template <class Exec>
bool Transpose(Exec& ex, const std::vector<int64_t>& dims, const std::vector<int>& perm,
               const float* src, float* dst, bool acc) {
  const int rank = static_cast<int>(dims.size());
  if (rank < 1 || rank > kMaxRank || perm.size() != dims.size()) return false;
  int64_t stride[kMaxRank];
  stride[rank - 1] = 1;
  for (int i = rank - 2; i >= 0; --i) stride[i] = stride[i + 1] * dims[i + 1];
  TransposeGeometry g;
  g.rank = rank;
  for (int i = 0; i < rank; ++i) {
    if (perm[i] < 0 || perm[i] >= rank) return false;
    g.dst_dims[i] = dims[perm[i]];
    g.src_stride[i] = stride[perm[i]];
    g.numel *= g.dst_dims[i];
  }
  ex.ForEach(
      g.numel, ELK_LAMBDA(int64_t j) {
        int64_t r = j, off = 0;
        for (int i = g.rank - 1; i >= 0; --i) {
          off += (r % g.dst_dims[i]) * g.src_stride[i];
          r /= g.dst_dims[i];
        }
        dst[j] = Store(dst[j], src[off], acc);
      });
  return true;
}

template <class Exec>
void MaxoutForward(Exec& ex, const float* src, float* dst, int64_t rows, int64_t ch, int64_t k) {
  const int64_t out = ch / k;
  ex.ForEach(
      rows * out, ELK_LAMBDA(int64_t j) {
        const float* g = src + (j / out) * ch + (j % out) * k;
        float m = g[0];
        for (int64_t i = 1; i < k; ++i) m = g[i] > m ? g[i] : m;  // std::max(m, g[i])
        dst[j] = m;
      });
}

template <class Exec>
void MaxoutBackward(Exec& ex, const float* src, const float* dd, float* ds, int64_t rows,
                    int64_t ch, int64_t k, bool acc) {
  const int64_t out = ch / k;
  ex.ForEach(
      rows * out, ELK_LAMBDA(int64_t j) {
        const int64_t o = (j / out) * ch + (j % out) * k;
        const float* g = src + o;
        int64_t arg = 0;
        for (int64_t i = 1; i < k; ++i)
          if (g[i] > g[arg]) arg = i;
        for (int64_t i = 0; i < k; ++i) ds[o + i] = Store(ds[o + i], i == arg ? dd[j] : 0.f, acc);
      });
}

// LrnDesc without its vectors: spatial extents padded to three axes (leading ones).
struct LrnGeometry {
  int64_t n, c, z, y, x, wz, wy, wx;
  bool channel_mode;
  int64_t window;  // channel mode: the window over channels
  float alpha, k, beta;
  ELK_HD int64_t numel() const { return n * z * y * x * c; }
};

inline LrnGeometry MakeLrnGeometry(const LrnDesc& d) {
  LrnGeometry g{d.batch, d.channels, 1, 1, 1, 1, 1, 1, d.channel_mode, 1, d.alpha, d.k, d.beta};
  int64_t* ext[3] = {&g.z, &g.y, &g.x};
  int64_t* win[3] = {&g.wz, &g.wy, &g.wx};
  const size_t off = 3 - d.spatial.size();
  for (size_t i = 0; i < d.spatial.size(); ++i) {
    *ext[off + i] = d.spatial[i];
    if (!d.channel_mode) *win[off + i] = d.window[i];
  }
  if (d.channel_mode) g.window = d.window[0];
  return g;
}

// Sum over the spatial window around element i (channels-last) of `in` (squared when `square`),
// zero outside the volume, in double.
ELK_HD inline double LrnWindowSum(const LrnGeometry& g, const float* in, int64_t i, bool square) {
  const int64_t c = i % g.c;
  int64_t p = i / g.c;
  const int64_t x = p % g.x;
  p /= g.x;
  const int64_t y = p % g.y;
  p /= g.y;
  const int64_t z = p % g.z;
  const int64_t n = p / g.z;
  double s = 0;
  for (int64_t oz = -(g.wz / 2); oz <= g.wz / 2; ++oz) {
    const int64_t zz = z + oz;
    if (zz < 0 || zz >= g.z) continue;
    for (int64_t oy = -(g.wy / 2); oy <= g.wy / 2; ++oy) {
      const int64_t yy = y + oy;
      if (yy < 0 || yy >= g.y) continue;
      for (int64_t ox = -(g.wx / 2); ox <= g.wx / 2; ++ox) {
        const int64_t xx = x + ox;
        if (xx < 0 || xx >= g.x) continue;
        const double v = in[(((n * g.z + zz) * g.y + yy) * g.x + xx) * g.c + c];
        s += square ? v * v : v;
      }
    }
  }
  return s;
}

template <class Exec>
void LrnForward(Exec& ex, const LrnDesc& d, const float* src, float* dst, float* ws) {
  const LrnGeometry g = MakeLrnGeometry(d);
  ex.ForEach(
      g.numel(), ELK_LAMBDA(int64_t i) {
        double m;
        if (g.channel_mode) {
          const int64_t h = g.window / 2, c = i % g.c;
          const float* x = src + (i - c);
          m = 0;
          for (int64_t o = -h; o <= h; ++o) {
            const double v = x[MinI(MaxI(c + o, 0), g.c - 1)];
            m += v * v;
          }
          m /= g.window;
        } else {
          m = LrnWindowSum(g, src, i, true) / static_cast<double>(g.wz * g.wy * g.wx);
        }
        const float s = g.k + g.alpha * static_cast<float>(m);
        ws[i] = s;
        dst[i] = src[i] * powf(s, -g.beta);
      });
}

// With t_j = diff_dst_j x_j s_j^(-b-1), the gradient is the window's adjoint sum of t (see
// kernels/cpu/structural.cc); t lives in the workspace's second half.
template <class Exec>
void LrnBackward(Exec& ex, const LrnDesc& d, const float* src, const float* dd, float* ds,
                 float* ws, bool acc) {
  const LrnGeometry g = MakeLrnGeometry(d);
  const int64_t numel = g.numel();
  const float* s = ws;
  float* t = ws + numel;
  ex.ForEach(
      numel, ELK_LAMBDA(int64_t i) { t[i] = dd[i] * src[i] * powf(s[i], -g.beta - 1.f); });
  const double wsize =
      g.channel_mode ? static_cast<double>(g.window) : static_cast<double>(g.wz * g.wy * g.wx);
  const double coef = -2.0 * g.beta * g.alpha / wsize;
  ex.ForEach(
      numel, ELK_LAMBDA(int64_t j) {
        double u = 0;
        if (g.channel_mode) {
          // Replicated edges: channel 0 stands in for every c + o < 0, channel C-1 for c + o >= C.
          const int64_t h = g.window / 2, C = g.c, i = j % C;
          const float* tr = t + (j - i);
          if (C == 1) {
            u = tr[0] * (2 * h + 1);
          } else if (i == 0) {
            for (int64_t c = 0; c <= MinI(C - 1, h); ++c) u += tr[c] * (h - c + 1);
          } else if (i == C - 1) {
            for (int64_t c = MaxI(0, C - 1 - h); c < C; ++c) u += tr[c] * (h - (C - 1 - c) + 1);
          } else {
            for (int64_t c = MaxI(0, i - h); c <= MinI(C - 1, i + h); ++c) u += tr[c];
          }
        } else {
          u = LrnWindowSum(g, t, j, false);
        }
        const float v = dd[j] * powf(s[j], -g.beta) + static_cast<float>(coef * src[j] * u);
        ds[j] = Store(ds[j], v, acc);
      });
}

template <class Exec>
void GaussianSample(Exec& ex, const float* mu, const float* ls, float* dst, int64_t outer,
                    int64_t samples, int64_t inner, uint64_t seed, uint64_t step) {
  ex.ForEach(
      outer * samples * inner, ELK_LAMBDA(int64_t j) {
        const int64_t o = j / (samples * inner), i = j % inner;
        dst[j] = mu[o * inner + i] + expf(ls[o * inner + i]) * StandardNormal(seed, step, j);
      });
}

template <class Exec>
void GaussianSampleBackward(Exec& ex, const float* mu, const float* dst, const float* dd,
                            float* dmu, bool acc_mu, float* dls, bool acc_ls, int64_t outer,
                            int64_t samples, int64_t inner) {
  ex.ForEach(
      outer * inner, ELK_LAMBDA(int64_t p) {
        const int64_t o = p / inner, i = p % inner;
        double gm = 0, gl = 0;
        for (int64_t s = 0; s < samples; ++s) {
          const int64_t j = (o * samples + s) * inner + i;
          gm += dd[j];
          gl += static_cast<double>(dd[j]) * (dst[j] - mu[p]);
        }
        if (dmu) dmu[p] = Store(dmu[p], static_cast<float>(gm), acc_mu);
        if (dls) dls[p] = Store(dls[p], static_cast<float>(gl), acc_ls);
      });
}

}  // namespace elektronn::kernels::cuda::ops
