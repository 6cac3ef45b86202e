// CPU kernels of the losses family: straightforward loops (memory-bound, cheap next to the
// convolutions), MultinoulliNLL's on the OpenMP team; the normalisers are reduced in double.
#include "kernels/cpu/losses.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/parallel.h"

namespace elektronn::kernels::cpu {
namespace {

constexpr float kEps = 1e-5f;  // ELEKTRONN2's EPS inside every log

// -x log(y) with ELEKTRONN2's xlogy0 convention (0 where x == 0).
inline float NegXLogY(float x, float y) { return x == 0.f ? 0.f : -x * std::log(y); }

// ln Gamma'(x) for x > 0: recurrence up to 6, then the asymptotic series.
double Digamma(double x) {
  double r = 0;
  while (x < 6) {
    r -= 1 / x;
    x += 1;
  }
  const double f = 1 / (x * x);
  return r + std::log(x) - 0.5 / x -
         f * (1.0 / 12 - f * (1.0 / 120 - f * (1.0 / 252 - f * (1.0 / 240 - f / 132))));
}

inline void Store(float* dst, int64_t i, float v, bool acc) { dst[i] = acc ? dst[i] + v : v; }

// The target element of prediction element i when the target is broadcast over 's'.
inline int64_t SampleTarget(const Backend::SampleAxis& s, int64_t i) {
  return s.samples == 1 ? i : (i / (s.samples * s.inner)) * s.inner + i % s.inner;
}

int64_t CountLabelled(const float* t, int64_t n) {
  int64_t k = 0;
  for (int64_t i = 0; i < n; ++i) k += !IsIgnoredTarget(t[i]);
  return k;
}

// The target of class c in group g of row r after the class-labelled mask (before weakness).
float HardTarget(const Backend::NllDesc& d, const float* t, int64_t r, int64_t g, int64_t c,
                 int64_t b) {
  float v;
  if (d.sparse) {
    const float id = t[r * (d.channels / d.n_class) + g];
    v = (id >= 0.f && id < static_cast<float>(d.n_class) && static_cast<int64_t>(id) == c) ? 1.f
                                                                                           : 0.f;
  } else {
    v = t[r * d.channels + g * d.n_class + c];
  }
  if (d.mask_class_labeled) v *= d.mask_class_labeled[b * d.channels + g * d.n_class + c];
  return v;
}

double NllScale(const Backend::NllDesc& d, double n_total) {
  const int64_t n_indep = d.channels / d.n_class;
  return static_cast<double>(d.rows * d.channels) / (n_total + 1e-5) / n_indep / d.n_class;
}

// Calls body(index, target_eff, not_present_mask, weight, weakness_applied) for each element of
// row r.
template <typename Body>
void ForRowElements(const Backend::NllDesc& d, const float* p, const float* t, int64_t r,
                    const Body& body) {
  const int64_t n_indep = d.channels / d.n_class;
  const int64_t b = r / std::max<int64_t>(1, d.rows / std::max<int64_t>(1, d.batch));
  const float ew = d.example_weights ? d.example_weights[r] : 1.f;
  for (int64_t g = 0; g < n_indep; ++g) {
    bool labelled = false;
    if (d.weakness > 0) {
      for (int64_t c = 0; c < d.n_class; ++c) labelled |= HardTarget(d, t, r, g, c, b) != 0.f;
    }
    for (int64_t c = 0; c < d.n_class; ++c) {
      const int64_t i = r * d.channels + g * d.n_class + c;
      float tv = HardTarget(d, t, r, g, c, b);
      if (labelled) tv = (1.f - d.weakness) * tv + d.weakness * p[i];
      const float cw = d.class_weights ? d.class_weights[c] : 1.f;
      const float m = d.mask_class_not_present
                          ? d.mask_class_not_present[b * d.channels + g * d.n_class + c]
                          : 0.f;
      body(i, tv, m, cw * ew, labelled ? d.weakness : 0.f);
    }
  }
}

}  // namespace

bool IsIgnoredTarget(float t) { return std::fabs(t + 666.f) <= 1e-8f + 1e-5f * 666.f; }

// Rows are independent: the NLL loops run on the OpenMP team (ParallelFor) above
// kMinParallelIterations rows, the normaliser and the class-weight sums are reduced per thread.
double NllForward(const Backend::NllDesc& d, const float* p, const float* t, float* loss) {
  const int64_t n_indep = d.channels / d.n_class;
  const double n_total = ParallelSum(d.rows, [&](int64_t r) {
    const int64_t b = r / std::max<int64_t>(1, d.rows / std::max<int64_t>(1, d.batch));
    double n = 0;
    for (int64_t g = 0; g < n_indep; ++g)
      for (int64_t c = 0; c < d.n_class; ++c) {
        n += HardTarget(d, t, r, g, c, b);
        if (d.mask_class_not_present)
          n += d.mask_class_not_present[b * d.channels + g * d.n_class + c];
      }
    return n;
  });
  const float scale = static_cast<float>(NllScale(d, n_total));
  ParallelFor(d.rows, [&](int64_t r) {
    float s = 0.f;
    ForRowElements(d, p, t, r, [&](int64_t i, float tv, float m, float w, float) {
      s += NegXLogY(tv * w, p[i] + kEps) + NegXLogY(m * w, 1.f - p[i] + kEps);
    });
    loss[r] = scale * s;
  });
  return n_total;
}

void NllBackward(const Backend::NllDesc& d, const float* p, const float* t, const float* dl,
                 double n_total, float* dp, bool acc) {
  const float scale = static_cast<float>(NllScale(d, n_total));
  ParallelFor(d.rows, [&](int64_t r) {
    const float k = dl[r] * scale;
    ForRowElements(d, p, t, r, [&](int64_t i, float tv, float m, float w, float weak) {
      float g = 0.f;
      if (tv != 0.f) g -= tv * w / (p[i] + kEps);
      // The weakened target depends on p too: d/dp of -(a + weak p) log(p + eps).
      if (weak != 0.f) g -= weak * w * std::log(p[i] + kEps);
      if (m != 0.f) g += m * w / (1.f - p[i] + kEps);
      Store(dp, i, k * g, acc);
    });
  });
}

void NllClassWeightsBackward(const Backend::NllDesc& d, const float* p, const float* t,
                             const float* dl, double n_total, float* dcw, bool acc) {
  const double scale = NllScale(d, n_total);
  // The loss is linear in each weight: dL/dcw_c is the class-c term without the class weight.
  // One row of n_class partial sums per thread, added up at the end.
  const int nt = d.rows > kMinParallelIterations ? omp_get_max_threads() : 1;
  thread_local std::vector<double> partial;  // grows on first use only: a step must not allocate
  partial.assign(static_cast<size_t>(nt) * d.n_class, 0.0);
  auto add_row = [&](double* sum, int64_t r) {
    const double k = dl[r] * scale;
    const float ew = d.example_weights ? d.example_weights[r] : 1.f;
    ForRowElements(d, p, t, r, [&](int64_t i, float tv, float m, float, float) {
      const int64_t c = (i - r * d.channels) % d.n_class;
      sum[c] += k * (NegXLogY(tv * ew, p[i] + kEps) + NegXLogY(m * ew, 1.f - p[i] + kEps));
    });
  };
  double* part = partial.data();
  if (nt > 1) {  // not an `if` clause: see ParallelFor
#pragma omp parallel num_threads(nt)
    {
      double* local = part + omp_get_thread_num() * d.n_class;
#pragma omp for schedule(static)
      for (int64_t r = 0; r < d.rows; ++r) add_row(local, r);
    }
  } else {
    for (int64_t r = 0; r < d.rows; ++r) add_row(part, r);
  }
  for (int64_t c = 0; c < d.n_class; ++c) {
    double s = 0;
    for (int th = 0; th < nt; ++th) s += part[th * d.n_class + c];
    Store(dcw, c, static_cast<float>(s), acc);
  }
}

int64_t RegressionLossForward(const Backend::RegressionLossDesc& d, const float* p, const float* t,
                              float* loss) {
  const int64_t n = d.rows * d.channels;
  const int64_t n_lab = CountLabelled(t, n);
  const float scale = static_cast<float>(static_cast<double>(n) / (n_lab + 1.0));
  for (int64_t r = 0; r < d.rows; ++r) {
    double s = 0;
    for (int64_t c = 0; c < d.channels; ++c) {
      const int64_t i = r * d.channels + c;
      if (IsIgnoredTarget(t[i])) continue;
      const float diff = t[i] - p[i];
      if (d.margin != 0.f && !(std::fabs(diff) >= d.margin)) continue;
      float v = d.kind == Backend::RegressionKind::kSquared ? scale * 0.5f * diff * diff
                                                            : scale * std::fabs(diff);
      if (d.scale_correction != 0.f) {
        v *= d.kind == Backend::RegressionKind::kSquared
                 ? d.scale_correction / (std::fabs(t[i]) + d.scale_correction)
                 : d.scale_correction * std::fabs(t[i]) + 1.f;
      }
      s += v;
    }
    loss[r] = static_cast<float>(s / d.channels);
  }
  return n_lab;
}

void RegressionLossBackward(const Backend::RegressionLossDesc& d, const float* p, const float* t,
                            const float* dl, int64_t n_labelled, float* dp, bool acc) {
  const int64_t n = d.rows * d.channels;
  const float scale = static_cast<float>(static_cast<double>(n) / (n_labelled + 1.0));
  for (int64_t r = 0; r < d.rows; ++r) {
    const float k = dl[r] * scale / static_cast<float>(d.channels);
    for (int64_t c = 0; c < d.channels; ++c) {
      const int64_t i = r * d.channels + c;
      const float diff = t[i] - p[i];
      float g = 0.f;
      if (!IsIgnoredTarget(t[i]) && (d.margin == 0.f || std::fabs(diff) >= d.margin)) {
        // d/dp of 0.5 (t-p)^2 = -(t-p); of |t-p| = -sign(t-p).
        g = d.kind == Backend::RegressionKind::kSquared
                ? -diff
                : (diff > 0.f ? -1.f : (diff < 0.f ? 1.f : 0.f));
        if (d.scale_correction != 0.f) {
          g *= d.kind == Backend::RegressionKind::kSquared
                   ? d.scale_correction / (std::fabs(t[i]) + d.scale_correction)
                   : d.scale_correction * std::fabs(t[i]) + 1.f;
        }
      }
      Store(dp, i, k * g, acc);
    }
  }
}

int64_t BinaryNllForward(int64_t n, bool label_entropy, const float* p, const float* t,
                         float* loss) {
  const int64_t n_lab = CountLabelled(t, n);
  const float scale = static_cast<float>(static_cast<double>(n) / (n_lab + 1.0));
  for (int64_t i = 0; i < n; ++i) {
    if (IsIgnoredTarget(t[i])) {
      loss[i] = 0.f;
      continue;
    }
    float v = NegXLogY(t[i], p[i] + kEps) + NegXLogY(1.f - t[i], 1.f - p[i] + kEps);
    // Fixed: ELEKTRONN2 *adds* the label entropy (-xlogy0(t, t+eps) - ...) despite the name;
    // subtracting it gives the KL divergence (0 where p == t). Gradients are the same.
    if (label_entropy) {
      v -= NegXLogY(t[i], t[i] + kEps) + NegXLogY(1.f - t[i], 1.f - t[i] + kEps);
    }
    loss[i] = scale * v;
  }
  return n_lab;
}

void BinaryNllBackward(int64_t n, const float* p, const float* t, const float* dl,
                       int64_t n_labelled, float* dp, bool acc) {
  const float scale = static_cast<float>(static_cast<double>(n) / (n_labelled + 1.0));
  for (int64_t i = 0; i < n; ++i) {
    float g = 0.f;
    if (!IsIgnoredTarget(t[i])) {
      if (t[i] != 0.f) g -= t[i] / (p[i] + kEps);
      if (t[i] != 1.f) g += (1.f - t[i]) / (1.f - p[i] + kEps);
    }
    Store(dp, i, dl[i] * scale * g, acc);
  }
}

void GaussianNllForward(int64_t n, Backend::SampleAxis sa, bool sig_is_log, const float* mu,
                        const float* sig, const float* t, float* loss) {
  const float half_log_2pi = static_cast<float>(0.5 * std::log(2 * M_PI));
  for (int64_t i = 0; i < n; ++i) {
    const float s = sig_is_log ? std::exp(sig[i]) : sig[i];
    const float log_s = sig_is_log ? sig[i] : std::log(sig[i]);
    const float z = (t[SampleTarget(sa, i)] - mu[i]) / s;
    loss[i] = half_log_2pi + log_s + 0.5f * z * z;
  }
}

void GaussianNllBackward(int64_t n, Backend::SampleAxis sa, bool sig_is_log, const float* mu,
                         const float* sig, const float* t, const float* dl, float* dmu, bool acc_mu,
                         float* dsig, bool acc_sig) {
  for (int64_t i = 0; i < n; ++i) {
    const float s = sig_is_log ? std::exp(sig[i]) : sig[i];
    const float z = (t[SampleTarget(sa, i)] - mu[i]) / s;
    if (dmu) Store(dmu, i, -dl[i] * z / s, acc_mu);
    if (dsig) {
      // d/d sigma = 1/sigma - z^2/sigma; d/d ln(sigma) = 1 - z^2.
      const float g = sig_is_log ? 1.f - z * z : (1.f - z * z) / s;
      Store(dsig, i, dl[i] * g, acc_sig);
    }
  }
}

void BetaNllForward(int64_t n, Backend::SampleAxis sa, const float* mode, const float* conc,
                    const float* t, float* loss) {
  for (int64_t i = 0; i < n; ++i) {
    const double m = mode[i], c = conc[i], x = t[SampleTarget(sa, i)];
    const double a = m * (c - 2) + 1, b = (1 - m) * (c - 2) + 1;
    const double log_pdf = std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) +
                           (a - 1) * std::log(x + kEps) + (b - 1) * std::log(1 - x + kEps);
    const double softplus = -c > 30 ? -c : std::log1p(std::exp(-c));
    loss[i] = static_cast<float>(-log_pdf + softplus);
  }
}

void BetaNllBackward(int64_t n, Backend::SampleAxis sa, const float* mode, const float* conc,
                     const float* t, const float* dl, float* dmode, bool acc_mode, float* dconc,
                     bool acc_conc) {
  for (int64_t i = 0; i < n; ++i) {
    const double m = mode[i], c = conc[i], x = t[SampleTarget(sa, i)];
    const double a = m * (c - 2) + 1, b = (1 - m) * (c - 2) + 1;
    const double ga = -(Digamma(a + b) - Digamma(a) + std::log(x + kEps));
    const double gb = -(Digamma(a + b) - Digamma(b) + std::log(1 - x + kEps));
    if (dmode) Store(dmode, i, static_cast<float>(dl[i] * (c - 2) * (ga - gb)), acc_mode);
    if (dconc) {
      const double sig_neg_c = 1 / (1 + std::exp(c));
      Store(dconc, i, static_cast<float>(dl[i] * (m * ga + (1 - m) * gb - sig_neg_c)), acc_conc);
    }
  }
}

void EuclideanDistanceForward(const float* a, const float* b, float* out, int64_t rows,
                              int64_t ch) {
  for (int64_t r = 0; r < rows; ++r) {
    double s = 0;
    for (int64_t c = 0; c < ch; ++c) {
      const double d = static_cast<double>(b[r * ch + c]) - a[r * ch + c];
      s += d * d;
    }
    const float v = static_cast<float>(std::sqrt(s));
    out[r] = std::isnan(v) ? 0.f : v;  // ELEKTRONN2 zeroes NaN distances
  }
}

void EuclideanDistanceBackward(const float* a, const float* b, const float* out, const float* dout,
                               float* da, bool acc_a, float* db, bool acc_b, int64_t rows,
                               int64_t ch) {
  for (int64_t r = 0; r < rows; ++r) {
    // d|b-a|/da = (a-b)/|b-a|; 0 where the distance is 0 (the norm has no gradient there).
    const float k = out[r] > 0.f ? dout[r] / out[r] : 0.f;
    for (int64_t c = 0; c < ch; ++c) {
      const int64_t i = r * ch + c;
      const float g = k * (a[i] - b[i]);
      if (da) Store(da, i, g, acc_a);
      if (db) Store(db, i, -g, acc_b);
    }
  }
}

void RampLossForward(const float* low, const float* big, float margin, float* out, int64_t rows,
                     int64_t ch) {
  for (int64_t r = 0; r < rows; ++r) {
    double s = 0;
    for (int64_t c = 0; c < ch; ++c) {
      const float v = low[r * ch + c] - big[r * ch + c] + margin;
      if (v > 0.f) s += v;  // NaN is zeroed too, as in ELEKTRONN2
    }
    out[r] = static_cast<float>(s / ch);
  }
}

void RampLossBackward(const float* low, const float* big, float margin, const float* dout,
                      float* dlow, bool acc_low, float* dbig, bool acc_big, int64_t rows,
                      int64_t ch) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < ch; ++c) {
      const int64_t i = r * ch + c;
      const float g = low[i] - big[i] + margin > 0.f ? dout[r] / static_cast<float>(ch) : 0.f;
      if (dlow) Store(dlow, i, g, acc_low);
      if (dbig) Store(dbig, i, -g, acc_big);
    }
  }
}

float SobelWeight(int ndim, int k, const int* o) {
  static const float v[3] = {1.f, 0.f, -1.f};
  static const float s[3] = {0.3f, 0.4f, 0.3f};
  // The axis each of ELEKTRONN2's filters differentiates (its concatenation order).
  static const int axis[4][3] = {{0, 0, 0}, {0, 0, 0}, {1, 0, 0}, {0, 2, 1}};
  const int ax = axis[ndim][k];
  float w = 1.f;
  for (int a = 0; a < ndim; ++a) w *= a == ax ? v[o[a]] : s[o[a]];
  return w;
}

namespace {

// Calls body(src_index, dst_index, weight) for every tap of every output voxel.
template <typename Body>
void ForSobelTaps(const Backend::SobelDesc& d, const Body& body) {
  const int nd = static_cast<int>(d.spatial.size());
  int64_t sp[3] = {1, 1, 1};
  for (int a = 0; a < nd; ++a) sp[a] = d.spatial[a];
  const int64_t c_in = d.channels, c_out = d.channels * nd;
  int n_taps = 1;
  for (int a = 0; a < nd; ++a) n_taps *= 3;
  for (int64_t b = 0; b < d.batch; ++b)
    for (int64_t x = 0; x < sp[0]; ++x)
      for (int64_t y = 0; y < sp[1]; ++y)
        for (int64_t z = 0; z < sp[2]; ++z) {
          const int64_t pos[3] = {x, y, z};
          const int64_t out_vox = ((b * sp[0] + x) * sp[1] + y) * sp[2] + z;
          for (int tap = 0; tap < n_taps; ++tap) {
            int o[3] = {0, 0, 0};
            int64_t q[3] = {0, 0, 0};
            bool inside = true;
            for (int a = 0, rest = tap; a < nd; ++a, rest /= 3) {
              o[a] = rest % 3;
              q[a] = pos[a] + o[a] - 1;
              inside &= q[a] >= 0 && q[a] < sp[a];
            }
            if (!inside) continue;
            const int64_t in_vox = ((b * sp[0] + q[0]) * sp[1] + q[1]) * sp[2] + q[2];
            for (int k = 0; k < nd; ++k) {
              const float w = SobelWeight(nd, k, o);
              if (w == 0.f) continue;
              for (int64_t i = 0; i < c_in; ++i)
                body(in_vox * c_in + i, out_vox * c_out + k * c_in + i, w);
            }
          }
        }
}

}  // namespace

void SobelForward(const Backend::SobelDesc& d, const float* src, float* dst) {
  int64_t vox = d.batch;
  for (int64_t s : d.spatial) vox *= s;
  std::fill(dst, dst + vox * d.channels * static_cast<int64_t>(d.spatial.size()), 0.f);
  ForSobelTaps(d, [&](int64_t si, int64_t di, float w) { dst[di] += w * src[si]; });
}

void SobelBackward(const Backend::SobelDesc& d, const float* ddst, float* dsrc, bool acc) {
  int64_t vox = d.batch;
  for (int64_t s : d.spatial) vox *= s;
  if (!acc) std::fill(dsrc, dsrc + vox * d.channels, 0.f);
  ForSobelTaps(d, [&](int64_t si, int64_t di, float w) { dsrc[si] += w * ddst[di]; });
}

void OneHot(const float* labels, float* out, int64_t rows, int64_t n_class) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < n_class; ++c)
      out[r * n_class + c] = labels[r] == static_cast<float>(c) ? 1.f : 0.f;
}

void Classify(const float* p, float* out, int64_t rows, int64_t ch, int64_t n_class,
              bool threshold) {
  if (threshold) {
    for (int64_t i = 0; i < rows * ch; ++i) out[i] = p[i] > 0.5f ? 1.f : 0.f;
    return;
  }
  const int64_t groups = ch / n_class;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < groups; ++g) {
      const float* x = p + r * ch + g * n_class;
      out[r * groups + g] = static_cast<float>(std::max_element(x, x + n_class) - x);
    }
}

void CountBinaryErrors(const float* p, const float* t, int64_t n, int64_t* wrong,
                       int64_t* labelled) {
  int64_t w = 0, l = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (t[i] < 0.f) continue;
    ++l;
    w += (p[i] > 0.5f) != (t[i] > 0.5f);
  }
  *wrong = w;
  *labelled = l;
}

}  // namespace elektronn::kernels::cpu
