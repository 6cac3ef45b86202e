// CPU kernels of the structural, element-wise and probabilistic family (issue 11). Plain OpenMP
// loops: these ops are memory-bound and rare in a network, so clarity wins over blocking.
#include "kernels/cpu/structural.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "kernels/cpu/parallel.h"

namespace elektronn::kernels::cpu {
namespace {

inline float Store(float old, float v, bool acc) { return acc ? old + v : v; }

// SplitMix64, as the dropout mask (cpu_backend.cc).
inline uint64_t Mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Box-Muller on two counter-based uniforms: the contract of Backend::GaussianSample.
inline float StandardNormal(uint64_t seed, uint64_t step, int64_t i) {
  const uint64_t h1 = Mix(seed ^ Mix(step ^ Mix(2 * static_cast<uint64_t>(i))));
  const uint64_t h2 = Mix(seed ^ Mix(step ^ Mix(2 * static_cast<uint64_t>(i) + 1)));
  const double u1 = (static_cast<double>(h1 >> 40) + 0.5) * (1.0 / 16777216.0);
  const double u2 = static_cast<double>(h2 >> 40) * (1.0 / 16777216.0);
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2));
}

// Spatial extents padded to three axes (leading ones).
struct Grid {
  int64_t n, c, z, y, x, wz, wy, wx;
  int64_t numel() const { return n * z * y * x * c; }
};

Grid MakeGrid(const LrnDesc& d) {
  Grid g{d.batch, d.channels, 1, 1, 1, 1, 1, 1};
  int64_t* ext[3] = {&g.z, &g.y, &g.x};
  int64_t* win[3] = {&g.wz, &g.wy, &g.wx};
  const size_t off = 3 - d.spatial.size();
  for (size_t i = 0; i < d.spatial.size(); ++i) {
    *ext[off + i] = d.spatial[i];
    if (!d.channel_mode) *win[off + i] = d.window[i];
  }
  return g;
}

// sum over the spatial window around (n, z, y, x) of f(in[.., c]), zero outside the volume.
template <typename F>
double WindowSum(const Grid& g, const float* in, int64_t n, int64_t z, int64_t y, int64_t x,
                 int64_t c, const F& f) {
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
        s += f(in[(((n * g.z + zz) * g.y + yy) * g.x + xx) * g.c + c]);
      }
    }
  }
  return s;
}

// Runs body(n, z, y, x, c, linear index) over every element.
template <typename Body>
void ForEachElement(const Grid& g, const Body& body) {
  ParallelFor(g.n * g.z * g.y * g.x, [&](int64_t p) {
    int64_t r = p;
    const int64_t x = r % g.x;
    r /= g.x;
    const int64_t y = r % g.y;
    r /= g.y;
    const int64_t z = r % g.z;
    const int64_t n = r / g.z;
    for (int64_t c = 0; c < g.c; ++c) body(n, z, y, x, c, p * g.c + c);
  });
}

}  // namespace

void Transpose(const std::vector<int64_t>& dims, const std::vector<int>& perm, const float* src,
               float* dst, bool acc) {
  // Fixed arrays: a steady-state step must not allocate (TaggedShape has at most 7 axes).
  const int rank = static_cast<int>(dims.size());
  std::array<int64_t, 8> src_stride, dst_dims;
  src_stride[rank - 1] = 1;
  for (int i = rank - 2; i >= 0; --i) src_stride[i] = src_stride[i + 1] * dims[i + 1];
  int64_t n = 1;
  for (int i = 0; i < rank; ++i) {
    dst_dims[i] = dims[perm[i]];
    n *= dst_dims[i];
  }
  ParallelFor(n, [&](int64_t j) {
    int64_t r = j, off = 0;
    for (int i = rank - 1; i >= 0; --i) {
      off += (r % dst_dims[i]) * src_stride[perm[i]];
      r /= dst_dims[i];
    }
    dst[j] = Store(dst[j], src[off], acc);
  });
}

void ScalarFunctionForward(ScalarFunction f, float a, float b, const float* src, float* dst,
                           int64_t n) {
  ParallelFor(n, [&](int64_t i) {
    const float x = src[i];
    switch (f) {
      case ScalarFunction::kAffine:
        dst[i] = a * x + b;
        break;
      case ScalarFunction::kPow:
        dst[i] = std::pow(x, a);
        break;
      case ScalarFunction::kClip:
        dst[i] = std::min(std::max(x, a), b);
        break;
      case ScalarFunction::kExp:
        dst[i] = std::exp(x);
        break;
      case ScalarFunction::kLog:
        dst[i] = std::log(x);
        break;
    }
  });
}

void ScalarFunctionBackward(ScalarFunction f, float a, float b, const float* src, const float* dd,
                            float* ds, int64_t n, bool acc) {
  ParallelFor(n, [&](int64_t i) {
    const float x = src[i];
    float d = 1.f;
    switch (f) {
      case ScalarFunction::kAffine:
        d = a;
        break;
      case ScalarFunction::kPow:
        d = a == 0.f ? 0.f : a * std::pow(x, a - 1.f);
        break;
      case ScalarFunction::kClip:  // Theano's clip passes the gradient inside [a, b] inclusive
        d = (x >= a && x <= b) ? 1.f : 0.f;
        break;
      case ScalarFunction::kExp:
        d = std::exp(x);
        break;
      case ScalarFunction::kLog:
        d = 1.f / x;
        break;
    }
    ds[i] = Store(ds[i], dd[i] * d, acc);
  });
}

void MaxoutForward(const float* src, float* dst, int64_t rows, int64_t ch, int64_t k) {
  const int64_t out = ch / k;
  ParallelFor(rows, [&](int64_t r) {
    for (int64_t c = 0; c < out; ++c) {
      const float* g = src + r * ch + c * k;
      float m = g[0];
      for (int64_t i = 1; i < k; ++i) m = std::max(m, g[i]);
      dst[r * out + c] = m;
    }
  });
}

void MaxoutBackward(const float* src, const float* dd, float* ds, int64_t rows, int64_t ch,
                    int64_t k, bool acc) {
  const int64_t out = ch / k;
  ParallelFor(rows, [&](int64_t r) {
    for (int64_t c = 0; c < out; ++c) {
      const float* g = src + r * ch + c * k;
      int64_t arg = 0;
      for (int64_t i = 1; i < k; ++i)
        if (g[i] > g[arg]) arg = i;
      float* d = ds + r * ch + c * k;
      for (int64_t i = 0; i < k; ++i) d[i] = Store(d[i], i == arg ? dd[r * out + c] : 0.f, acc);
    }
  });
}

void LrnForward(const LrnDesc& d, const float* src, float* dst, float* ws) {
  const Grid g = MakeGrid(d);
  const auto sq = [](float v) { return static_cast<double>(v) * v; };
  if (d.channel_mode) {
    const int64_t h = d.window[0] / 2, c_max = g.c - 1;
    ParallelFor(g.numel() / g.c, [&](int64_t r) {
      const float* x = src + r * g.c;
      for (int64_t c = 0; c < g.c; ++c) {
        double m = 0;
        for (int64_t o = -h; o <= h; ++o) m += sq(x[std::clamp(c + o, int64_t{0}, c_max)]);
        const float s = d.k + d.alpha * static_cast<float>(m / d.window[0]);
        ws[r * g.c + c] = s;
        dst[r * g.c + c] = x[c] * std::pow(s, -d.beta);
      }
    });
    return;
  }
  const double w = static_cast<double>(g.wz * g.wy * g.wx);
  ForEachElement(g, [&](int64_t n, int64_t z, int64_t y, int64_t x, int64_t c, int64_t i) {
    const float s = d.k + d.alpha * static_cast<float>(WindowSum(g, src, n, z, y, x, c, sq) / w);
    ws[i] = s;
    dst[i] = src[i] * std::pow(s, -d.beta);
  });
}

// d dst_j / d src_i = [i == j] s_j^-b - 2 b alpha / |W| x_j s_j^(-b-1) x_i [i in window(j)], so
// with t_j = diff_dst_j x_j s_j^(-b-1) the gradient is the window's adjoint sum of t.
void LrnBackward(const LrnDesc& d, const float* src, const float* dd, float* ds, float* ws,
                 bool acc) {
  const Grid g = MakeGrid(d);
  const int64_t numel = g.numel();
  const float* s = ws;
  float* t = ws + numel;
  ParallelFor(numel, [&](int64_t i) { t[i] = dd[i] * src[i] * std::pow(s[i], -d.beta - 1.f); });
  if (d.channel_mode) {
    const int64_t h = d.window[0] / 2, C = g.c;
    const double coef = -2.0 * d.beta * d.alpha / static_cast<double>(d.window[0]);
    ParallelFor(numel / C, [&](int64_t r) {
      const float* tr = t + r * C;
      for (int64_t i = 0; i < C; ++i) {
        // Replicated edges: channel 0 stands in for every c + o < 0, channel C-1 for c + o >= C.
        double u = 0;
        for (int64_t c = std::max<int64_t>(0, i - h); c <= std::min(C - 1, i + h); ++c) u += tr[c];
        if (C == 1) {
          u = tr[0] * (2 * h + 1);
        } else if (i == 0) {
          u = 0;
          for (int64_t c = 0; c <= std::min(C - 1, h); ++c) u += tr[c] * (h - c + 1);
        } else if (i == C - 1) {
          u = 0;
          for (int64_t c = std::max<int64_t>(0, C - 1 - h); c < C; ++c)
            u += tr[c] * (h - (C - 1 - c) + 1);
        }
        const int64_t j = r * C + i;
        const float v = dd[j] * std::pow(s[j], -d.beta) + static_cast<float>(coef * src[j] * u);
        ds[j] = Store(ds[j], v, acc);
      }
    });
    return;
  }
  const double coef = -2.0 * d.beta * d.alpha / static_cast<double>(g.wz * g.wy * g.wx);
  const auto id = [](float v) { return static_cast<double>(v); };
  ForEachElement(g, [&](int64_t n, int64_t z, int64_t y, int64_t x, int64_t c, int64_t i) {
    const double u = WindowSum(g, t, n, z, y, x, c, id);
    const float v = dd[i] * std::pow(s[i], -d.beta) + static_cast<float>(coef * src[i] * u);
    ds[i] = Store(ds[i], v, acc);
  });
}

void GaussianSample(const float* mu, const float* ls, float* dst, int64_t outer, int64_t samples,
                    int64_t inner, uint64_t seed, uint64_t step) {
  ParallelFor(outer * samples * inner, [&](int64_t j) {
    const int64_t o = j / (samples * inner), i = j % inner;
    dst[j] = mu[o * inner + i] + std::exp(ls[o * inner + i]) * StandardNormal(seed, step, j);
  });
}

void GaussianSampleBackward(const float* mu, const float* dst, const float* dd, float* dmu,
                            bool acc_mu, float* dls, bool acc_ls, int64_t outer, int64_t samples,
                            int64_t inner) {
  ParallelFor(outer * inner, [&](int64_t p) {
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

}  // namespace elektronn::kernels::cpu
