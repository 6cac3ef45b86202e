// Naive references for the structural, element-wise and probabilistic family (issue 11).
#include "tests/kernels/reference_structural.h"

#include <algorithm>
#include <cmath>

namespace elektronn::testing {
namespace {

using kernels::LrnDesc;
using kernels::ScalarFunction;

uint64_t Mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Position (n, p[0..d), c) of a channels-last tensor, and back.
struct Layout {
  int64_t batch, channels;
  std::vector<int64_t> spatial;
  int64_t voxels() const {
    int64_t v = 1;
    for (int64_t s : spatial) v *= s;
    return v;
  }
  int64_t Index(int64_t n, const std::vector<int64_t>& p, int64_t c) const {
    int64_t v = n;
    for (size_t i = 0; i < spatial.size(); ++i) v = v * spatial[i] + p[i];
    return v * channels + c;
  }
  std::vector<int64_t> Position(int64_t voxel) const {  // within one batch entry
    std::vector<int64_t> p(spatial.size());
    for (int i = static_cast<int>(spatial.size()) - 1; i >= 0; --i) {
      p[i] = voxel % spatial[i];
      voxel /= spatial[i];
    }
    return p;
  }
};

// The (index, weight) pairs of src whose squares make up m at element (n, p, c): the window
// offsets, 'same' zero padding (spatial) or replicated edge channels (channel).
std::vector<int64_t> WindowMembers(const LrnDesc& d, const Layout& l, int64_t n,
                                   const std::vector<int64_t>& p, int64_t c) {
  std::vector<int64_t> out;
  if (d.channel_mode) {
    const int64_t h = d.window[0] / 2;
    for (int64_t o = -h; o <= h; ++o) {
      out.push_back(l.Index(n, p, std::clamp<int64_t>(c + o, 0, l.channels - 1)));
    }
    return out;
  }
  int64_t count = 1;
  for (int64_t w : d.window) count *= w;
  for (int64_t k = 0; k < count; ++k) {
    std::vector<int64_t> q = p;
    int64_t r = k;
    bool inside = true;
    for (int i = static_cast<int>(d.window.size()) - 1; i >= 0; --i) {
      q[i] += r % d.window[i] - d.window[i] / 2;
      r /= d.window[i];
      inside = inside && q[i] >= 0 && q[i] < l.spatial[i];
    }
    if (inside) out.push_back(l.Index(n, q, c));
  }
  return out;
}

double WindowSize(const LrnDesc& d) {
  double w = 1;
  for (int64_t s : d.window) w *= static_cast<double>(s);
  return w;
}

}  // namespace

std::vector<float> Multiply(const std::vector<float>& a, const std::vector<float>& b) {
  std::vector<float> out(a.size());
  for (size_t i = 0; i < a.size(); ++i) out[i] = static_cast<float>(double{a[i]} * b[i]);
  return out;
}

std::vector<float> Transpose(const std::vector<int64_t>& dims, const std::vector<int>& perm,
                             const std::vector<float>& src) {
  const int rank = static_cast<int>(dims.size());
  std::vector<float> dst(src.size());
  std::vector<int64_t> idx(rank, 0);  // multi-index into src
  for (size_t s = 0; s < src.size(); ++s) {
    int64_t j = 0;  // dst offset: dst axis i has size dims[perm[i]] and index idx[perm[i]]
    for (int i = 0; i < rank; ++i) j = j * dims[perm[i]] + idx[perm[i]];
    dst[j] = src[s];
    for (int a = rank - 1; a >= 0; --a) {
      if (++idx[a] < dims[a]) break;
      idx[a] = 0;
    }
  }
  return dst;
}

double ApplyScalar(kernels::ScalarFunction f, double a, double b, double x) {
  switch (f) {
    case ScalarFunction::kAffine:
      return a * x + b;
    case ScalarFunction::kPow:
      return std::pow(x, a);
    case ScalarFunction::kClip:
      return std::min(std::max(x, a), b);
    case ScalarFunction::kExp:
      return std::exp(x);
    case ScalarFunction::kLog:
      return std::log(x);
  }
  return x;
}

double ApplyScalarDerivative(kernels::ScalarFunction f, double a, double b, double x) {
  switch (f) {
    case ScalarFunction::kAffine:
      return a;
    case ScalarFunction::kPow:
      return a * std::pow(x, a - 1);
    case ScalarFunction::kClip:
      return x >= a && x <= b ? 1 : 0;
    case ScalarFunction::kExp:
      return std::exp(x);
    case ScalarFunction::kLog:
      return 1 / x;
  }
  return 1;
}

std::vector<float> MaxoutForward(const std::vector<float>& src, int64_t rows, int64_t channels,
                                 int64_t k) {
  const int64_t out = channels / k;
  std::vector<float> dst(rows * out);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < out; ++c) {
      float m = -INFINITY;
      for (int64_t i = 0; i < k; ++i) m = std::max(m, src[r * channels + c * k + i]);
      dst[r * out + c] = m;
    }
  }
  return dst;
}

std::vector<float> MaxoutBackward(const std::vector<float>& src, const std::vector<float>& diff_dst,
                                  int64_t rows, int64_t channels, int64_t k) {
  const int64_t out = channels / k;
  std::vector<float> ds(rows * channels, 0.f);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < out; ++c) {
      int64_t best = c * k;
      for (int64_t i = 1; i < k; ++i) {
        if (src[r * channels + c * k + i] > src[r * channels + best]) best = c * k + i;
      }
      ds[r * channels + best] = diff_dst[r * out + c];
    }
  }
  return ds;
}

std::vector<float> LrnForward(const LrnDesc& d, const std::vector<float>& src) {
  const Layout l{d.batch, d.channels, d.spatial};
  std::vector<float> dst(src.size());
  for (int64_t n = 0; n < l.batch; ++n) {
    for (int64_t v = 0; v < l.voxels(); ++v) {
      const std::vector<int64_t> p = l.Position(v);
      for (int64_t c = 0; c < l.channels; ++c) {
        double m = 0;
        for (int64_t j : WindowMembers(d, l, n, p, c)) m += double{src[j]} * src[j];
        const int64_t i = l.Index(n, p, c);
        dst[i] = static_cast<float>(src[i] / std::pow(d.k + d.alpha * m / WindowSize(d), d.beta));
      }
    }
  }
  return dst;
}

std::vector<float> LrnBackward(const LrnDesc& d, const std::vector<float>& src,
                               const std::vector<float>& diff_dst) {
  const Layout l{d.batch, d.channels, d.spatial};
  std::vector<double> ds(src.size(), 0.0);
  for (int64_t n = 0; n < l.batch; ++n) {
    for (int64_t v = 0; v < l.voxels(); ++v) {
      const std::vector<int64_t> p = l.Position(v);
      for (int64_t c = 0; c < l.channels; ++c) {
        const std::vector<int64_t> members = WindowMembers(d, l, n, p, c);
        double m = 0;
        for (int64_t j : members) m += double{src[j]} * src[j];
        const double s = d.k + d.alpha * m / WindowSize(d);
        const int64_t i = l.Index(n, p, c);
        // y_i = x_i s^-b: d/dx_i directly, and through s by each member j (repeats count).
        ds[i] += diff_dst[i] * std::pow(s, -d.beta);
        const double dy_ds = -d.beta * src[i] * std::pow(s, -d.beta - 1);
        for (int64_t j : members) {
          ds[j] += diff_dst[i] * dy_ds * d.alpha / WindowSize(d) * 2.0 * src[j];
        }
      }
    }
  }
  return {ds.begin(), ds.end()};
}

double StandardNormal(uint64_t seed, uint64_t step, int64_t j) {
  const uint64_t h1 = Mix(seed ^ Mix(step ^ Mix(2 * static_cast<uint64_t>(j))));
  const uint64_t h2 = Mix(seed ^ Mix(step ^ Mix(2 * static_cast<uint64_t>(j) + 1)));
  const double u1 = (static_cast<double>(h1 >> 40) + 0.5) / 16777216.0;
  const double u2 = static_cast<double>(h2 >> 40) / 16777216.0;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

std::vector<float> GaussianSample(const std::vector<float>& mu, const std::vector<float>& log_sig,
                                  int64_t outer, int64_t samples, int64_t inner, uint64_t seed,
                                  uint64_t step) {
  std::vector<float> dst(outer * samples * inner);
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t s = 0; s < samples; ++s) {
      for (int64_t i = 0; i < inner; ++i) {
        const int64_t j = (o * samples + s) * inner + i;
        dst[j] = static_cast<float>(mu[o * inner + i] + std::exp(double{log_sig[o * inner + i]}) *
                                                            StandardNormal(seed, step, j));
      }
    }
  }
  return dst;
}

GaussianGrads GaussianSampleBackward(const std::vector<float>& mu,
                                     const std::vector<float>& log_sig,
                                     const std::vector<float>& diff_dst, int64_t outer,
                                     int64_t samples, int64_t inner, uint64_t seed, uint64_t step) {
  GaussianGrads g{std::vector<float>(mu.size()), std::vector<float>(mu.size())};
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      double gm = 0, gl = 0;
      for (int64_t s = 0; s < samples; ++s) {
        const int64_t j = (o * samples + s) * inner + i;
        gm += diff_dst[j];
        // d/d log_sig of exp(log_sig) * eps
        gl +=
            diff_dst[j] * std::exp(double{log_sig[o * inner + i]}) * StandardNormal(seed, step, j);
      }
      g.mu[o * inner + i] = static_cast<float>(gm);
      g.log_sig[o * inner + i] = static_cast<float>(gl);
    }
  }
  return g;
}

std::vector<float> GaussianPriorForward(const std::vector<float>& mu,
                                        const std::vector<float>& log_sig) {
  std::vector<float> dst(mu.size());
  for (size_t i = 0; i < mu.size(); ++i) {
    const double m = mu[i], sigma = std::exp(double{log_sig[i]});
    dst[i] = static_cast<float>(0.5 * (m * m + sigma * sigma - 1 - 2 * std::log(sigma)));
  }
  return dst;
}

GaussianGrads GaussianPriorBackward(const std::vector<float>& mu, const std::vector<float>& log_sig,
                                    const std::vector<float>& diff_dst) {
  GaussianGrads g{std::vector<float>(mu.size()), std::vector<float>(mu.size())};
  for (size_t i = 0; i < mu.size(); ++i) {
    g.mu[i] = static_cast<float>(diff_dst[i] * double{mu[i]});
    g.log_sig[i] = static_cast<float>(diff_dst[i] * (std::exp(2.0 * log_sig[i]) - 1));
  }
  return g;
}

}  // namespace elektronn::testing
