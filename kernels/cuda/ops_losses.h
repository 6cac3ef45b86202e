// The regression and probabilistic losses, distances, Sobel filters and output helpers of the
// CUDA backend (reference §2.13), as templates over an executor (see bodies.h); the expressions
// of kernels/cpu/losses.cc, one thread per element or row, the Sobel filters as gathers.
#pragma once

#include <cmath>

#include "kernels/cuda/ops_nll.h"

namespace elektronn::kernels::cuda::ops {

// ELEKTRONN2 marks unlabelled regression targets with -666 (T.isclose(target, -666)).
ELK_HD inline bool IsIgnoredTarget(float t) { return fabsf(t + 666.f) <= 1e-8f + 1e-5f * 666.f; }

// The target element of prediction element i when the target is broadcast over 's'.
ELK_HD inline int64_t SampleTarget(int64_t samples, int64_t inner, int64_t i) {
  return samples == 1 ? i : (i / (samples * inner)) * inner + i % inner;
}

// ln Gamma'(x) for x > 0: recurrence up to 6, then the asymptotic series.
ELK_HD inline double Digamma(double x) {
  // The recurrence would take forever from -inf or a huge negative argument (a thread that never
  // ends hangs the device); such a Beta parameter has no finite loss anyway.
  if (x < -1e6) return static_cast<double>(NAN);
  double r = 0;
  while (x < 6) {
    r -= 1 / x;
    x += 1;
  }
  const double f = 1 / (x * x);
  return r + log(x) - 0.5 / x -
         f * (1.0 / 12 - f * (1.0 / 120 - f * (1.0 / 252 - f * (1.0 / 240 - f / 132))));
}

template <class Exec>
int64_t CountLabelled(Exec& ex, const float* t, int64_t n) {
  const double k =
      ex.template Reduce<1>(
            n, ELK_LAMBDA(int64_t i) { return One(IsIgnoredTarget(t[i]) ? 0.0 : 1.0); })
          .v[0];
  return static_cast<int64_t>(k);
}

// The squared (0.5 d^2) or absolute term's factor for scale correction c.
ELK_HD inline float RegressionCorrection(bool squared, float c, float t) {
  return squared ? c / (fabsf(t) + c) : c * fabsf(t) + 1.f;
}

template <class Exec>
int64_t RegressionLossForward(Exec& ex, const Backend::RegressionLossDesc& d, const float* p,
                              const float* t, float* loss) {
  const int64_t n = d.rows * d.channels;
  const int64_t n_lab = CountLabelled(ex, t, n);
  const float scale = static_cast<float>(static_cast<double>(n) / (n_lab + 1.0));
  const bool squared = d.kind == Backend::RegressionKind::kSquared;
  const float margin = d.margin, sc = d.scale_correction;
  const int64_t ch = d.channels;
  ex.ForEach(
      d.rows, ELK_LAMBDA(int64_t r) {
        double s = 0;
        for (int64_t c = 0; c < ch; ++c) {
          const int64_t i = r * ch + c;
          if (IsIgnoredTarget(t[i])) continue;
          const float diff = t[i] - p[i];
          if (margin != 0.f && !(fabsf(diff) >= margin)) continue;
          float v = squared ? scale * 0.5f * diff * diff : scale * fabsf(diff);
          if (sc != 0.f) v *= RegressionCorrection(squared, sc, t[i]);
          s += v;
        }
        loss[r] = static_cast<float>(s / ch);
      });
  return n_lab;
}

template <class Exec>
void RegressionLossBackward(Exec& ex, const Backend::RegressionLossDesc& d, const float* p,
                            const float* t, const float* dl, int64_t n_labelled, float* dp,
                            bool acc) {
  const int64_t n = d.rows * d.channels;
  const float scale = static_cast<float>(static_cast<double>(n) / (n_labelled + 1.0));
  const bool squared = d.kind == Backend::RegressionKind::kSquared;
  const float margin = d.margin, sc = d.scale_correction;
  const int64_t ch = d.channels;
  ex.ForEach(
      n, ELK_LAMBDA(int64_t i) {
        const float k = dl[i / ch] * scale / static_cast<float>(ch);
        const float diff = t[i] - p[i];
        float g = 0.f;
        if (!IsIgnoredTarget(t[i]) && (margin == 0.f || fabsf(diff) >= margin)) {
          // d/dp of 0.5 (t-p)^2 = -(t-p); of |t-p| = -sign(t-p).
          g = squared ? -diff : (diff > 0.f ? -1.f : (diff < 0.f ? 1.f : 0.f));
          if (sc != 0.f) g *= RegressionCorrection(squared, sc, t[i]);
        }
        dp[i] = Store(dp[i], k * g, acc);
      });
}

template <class Exec>
int64_t BinaryNllForward(Exec& ex, int64_t n, bool label_entropy, const float* p, const float* t,
                         float* loss) {
  const int64_t n_lab = CountLabelled(ex, t, n);
  const float scale = static_cast<float>(static_cast<double>(n) / (n_lab + 1.0));
  ex.ForEach(
      n, ELK_LAMBDA(int64_t i) {
        if (IsIgnoredTarget(t[i])) {
          loss[i] = 0.f;
          return;
        }
        float v = NegXLogY(t[i], p[i] + kLogEps) + NegXLogY(1.f - t[i], 1.f - p[i] + kLogEps);
        // Subtracting the label entropy gives the KL divergence (see kernels/cpu/losses.cc).
        if (label_entropy) {
          v -= NegXLogY(t[i], t[i] + kLogEps) + NegXLogY(1.f - t[i], 1.f - t[i] + kLogEps);
        }
        loss[i] = scale * v;
      });
  return n_lab;
}

template <class Exec>
void BinaryNllBackward(Exec& ex, int64_t n, const float* p, const float* t, const float* dl,
                       int64_t n_labelled, float* dp, bool acc) {
  const float scale = static_cast<float>(static_cast<double>(n) / (n_labelled + 1.0));
  ex.ForEach(
      n, ELK_LAMBDA(int64_t i) {
        float g = 0.f;
        if (!IsIgnoredTarget(t[i])) {
          if (t[i] != 0.f) g -= t[i] / (p[i] + kLogEps);
          if (t[i] != 1.f) g += (1.f - t[i]) / (1.f - p[i] + kLogEps);
        }
        dp[i] = Store(dp[i], dl[i] * scale * g, acc);
      });
}

template <class Exec>
void GaussianNllForward(Exec& ex, int64_t n, Backend::SampleAxis sa, bool sig_is_log,
                        const float* mu, const float* sig, const float* t, float* loss) {
  const float half_log_2pi = static_cast<float>(0.5 * std::log(2 * M_PI));
  const int64_t samples = sa.samples, inner = sa.inner;
  ex.ForEach(
      n, ELK_LAMBDA(int64_t i) {
        const float s = sig_is_log ? expf(sig[i]) : sig[i];
        const float log_s = sig_is_log ? sig[i] : logf(sig[i]);
        const float z = (t[SampleTarget(samples, inner, i)] - mu[i]) / s;
        loss[i] = half_log_2pi + log_s + 0.5f * z * z;
      });
}

template <class Exec>
void GaussianNllBackward(Exec& ex, int64_t n, Backend::SampleAxis sa, bool sig_is_log,
                         const float* mu, const float* sig, const float* t, const float* dl,
                         float* dmu, bool acc_mu, float* dsig, bool acc_sig) {
  const int64_t samples = sa.samples, inner = sa.inner;
  ex.ForEach(
      n, ELK_LAMBDA(int64_t i) {
        const float s = sig_is_log ? expf(sig[i]) : sig[i];
        const float z = (t[SampleTarget(samples, inner, i)] - mu[i]) / s;
        if (dmu) dmu[i] = Store(dmu[i], -dl[i] * z / s, acc_mu);
        if (dsig) {
          // d/d sigma = 1/sigma - z^2/sigma; d/d ln(sigma) = 1 - z^2.
          const float g = sig_is_log ? 1.f - z * z : (1.f - z * z) / s;
          dsig[i] = Store(dsig[i], dl[i] * g, acc_sig);
        }
      });
}

template <class Exec>
void BetaNllForward(Exec& ex, int64_t n, Backend::SampleAxis sa, const float* mode,
                    const float* conc, const float* t, float* loss) {
  const int64_t samples = sa.samples, inner = sa.inner;
  ex.ForEach(
      n, ELK_LAMBDA(int64_t i) {
        const double m = mode[i], c = conc[i], x = t[SampleTarget(samples, inner, i)];
        const double a = m * (c - 2) + 1, b = (1 - m) * (c - 2) + 1;
        const double log_pdf = lgamma(a + b) - lgamma(a) - lgamma(b) + (a - 1) * log(x + kLogEps) +
                               (b - 1) * log(1 - x + kLogEps);
        const double softplus = -c > 30 ? -c : log1p(exp(-c));
        loss[i] = static_cast<float>(-log_pdf + softplus);
      });
}

template <class Exec>
void BetaNllBackward(Exec& ex, int64_t n, Backend::SampleAxis sa, const float* mode,
                     const float* conc, const float* t, const float* dl, float* dmode,
                     bool acc_mode, float* dconc, bool acc_conc) {
  const int64_t samples = sa.samples, inner = sa.inner;
  ex.ForEach(
      n, ELK_LAMBDA(int64_t i) {
        const double m = mode[i], c = conc[i], x = t[SampleTarget(samples, inner, i)];
        const double a = m * (c - 2) + 1, b = (1 - m) * (c - 2) + 1;
        const double ga = -(Digamma(a + b) - Digamma(a) + log(x + kLogEps));
        const double gb = -(Digamma(a + b) - Digamma(b) + log(1 - x + kLogEps));
        if (dmode)
          dmode[i] = Store(dmode[i], static_cast<float>(dl[i] * (c - 2) * (ga - gb)), acc_mode);
        if (dconc) {
          const double sig_neg_c = 1 / (1 + exp(c));
          dconc[i] = Store(
              dconc[i], static_cast<float>(dl[i] * (m * ga + (1 - m) * gb - sig_neg_c)), acc_conc);
        }
      });
}

template <class Exec>
void EuclideanDistanceForward(Exec& ex, const float* a, const float* b, float* out, int64_t rows,
                              int64_t ch) {
  ex.ForEach(
      rows, ELK_LAMBDA(int64_t r) {
        double s = 0;
        for (int64_t c = 0; c < ch; ++c) {
          const double d = static_cast<double>(b[r * ch + c]) - a[r * ch + c];
          s += d * d;
        }
        const float v = static_cast<float>(sqrt(s));
        out[r] = v != v ? 0.f : v;  // ELEKTRONN2 zeroes NaN distances
      });
}

template <class Exec>
void EuclideanDistanceBackward(Exec& ex, const float* a, const float* b, const float* out,
                               const float* dout, float* da, bool acc_a, float* db, bool acc_b,
                               int64_t rows, int64_t ch) {
  ex.ForEach(
      rows * ch, ELK_LAMBDA(int64_t i) {
        const int64_t r = i / ch;
        // d|b-a|/da = (a-b)/|b-a|; 0 where the distance is 0 (the norm has no gradient there).
        const float k = out[r] > 0.f ? dout[r] / out[r] : 0.f;
        const float g = k * (a[i] - b[i]);
        if (da) da[i] = Store(da[i], g, acc_a);
        if (db) db[i] = Store(db[i], -g, acc_b);
      });
}

template <class Exec>
void RampLossForward(Exec& ex, const float* low, const float* big, float margin, float* out,
                     int64_t rows, int64_t ch) {
  ex.ForEach(
      rows, ELK_LAMBDA(int64_t r) {
        double s = 0;
        for (int64_t c = 0; c < ch; ++c) {
          const float v = low[r * ch + c] - big[r * ch + c] + margin;
          if (v > 0.f) s += v;  // NaN is zeroed too, as in ELEKTRONN2
        }
        out[r] = static_cast<float>(s / ch);
      });
}

template <class Exec>
void RampLossBackward(Exec& ex, const float* low, const float* big, float margin, const float* dout,
                      float* dlow, bool acc_low, float* dbig, bool acc_big, int64_t rows,
                      int64_t ch) {
  ex.ForEach(
      rows * ch, ELK_LAMBDA(int64_t i) {
        const float g =
            low[i] - big[i] + margin > 0.f ? dout[i / ch] / static_cast<float>(ch) : 0.f;
        if (dlow) dlow[i] = Store(dlow[i], g, acc_low);
        if (dbig) dbig[i] = Store(dbig[i], -g, acc_big);
      });
}

template <class Exec>
void OneHot(Exec& ex, const float* labels, float* out, int64_t rows, int64_t n_class) {
  ex.ForEach(
      rows * n_class, ELK_LAMBDA(int64_t i) {
        out[i] = labels[i / n_class] == static_cast<float>(i % n_class) ? 1.f : 0.f;
      });
}

template <class Exec>
void Classify(Exec& ex, const float* p, float* out, int64_t rows, int64_t ch, int64_t n_class,
              bool threshold) {
  if (threshold) {
    ex.ForEach(
        rows * ch, ELK_LAMBDA(int64_t i) { out[i] = p[i] > 0.5f ? 1.f : 0.f; });
    return;
  }
  ex.ForEach(
      rows * (ch / n_class), ELK_LAMBDA(int64_t g) {
        const float* x = p + g * n_class;
        int64_t am = 0;
        for (int64_t c = 1; c < n_class; ++c)
          if (x[am] < x[c]) am = c;  // std::max_element: the first maximum
        out[g] = static_cast<float>(am);
      });
}

template <class Exec>
void CountBinaryErrors(Exec& ex, const float* p, const float* t, int64_t n, int64_t* wrong,
                       int64_t* labelled) {
  const Sums<2> s = ex.template Reduce<2>(
      n, ELK_LAMBDA(int64_t i) {
        if (t[i] < 0.f) return Two(0, 0);
        return Two((p[i] > 0.5f) != (t[i] > 0.5f) ? 1 : 0, 1);
      });
  *wrong = ex.ok() ? static_cast<int64_t>(s.v[0]) : 0;
  *labelled = ex.ok() ? static_cast<int64_t>(s.v[1]) : 0;
}

}  // namespace elektronn::kernels::cuda::ops
