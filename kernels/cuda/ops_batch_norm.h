// Batch normalisation of the CUDA backend (reference §2.4), as templates over an executor (see
// bodies.h): per-channel column reductions in double, then one element-wise pass; the same
// expressions as kernels/cpu/batch_norm.cc.
#pragma once

#include "kernels/cuda/bodies.h"

namespace elektronn::kernels::cuda::ops {

// Two passes (mean, then the centred second moment) keep the variance accurate for large offsets.
template <class Exec>
void BatchNormStatistics(Exec& ex, const float* src, float* mean, float* std, int64_t rows,
                         int64_t ch, float eps) {
  double* m = ex.Temp(ch);
  const double n = static_cast<double>(MaxI(rows, 1));
  ex.template ColumnReduce<1>(
      rows, ch, ELK_LAMBDA(int64_t r, int64_t c) { return One(src[r * ch + c]); },
      ELK_LAMBDA(int64_t c, Sums<1> s) { m[c] = s.v[0] / n; });
  ex.template ColumnReduce<1>(
      rows, ch,
      ELK_LAMBDA(int64_t r, int64_t c) {
        const double d = src[r * ch + c] - m[c];
        return One(d * d);
      },
      ELK_LAMBDA(int64_t c, Sums<1> s) {
        mean[c] = static_cast<float>(m[c]);
        std[c] = static_cast<float>(sqrt(s.v[0] / n) + eps);
      });
}

template <class Exec>
void BatchNormForward(Exec& ex, const float* src, const float* mean, const float* std,
                      const float* gamma, const float* beta, float* dst, int64_t rows, int64_t ch,
                      Eltwise act) {
  ex.ForEach(
      rows * ch, ELK_LAMBDA(int64_t i) {
        const int64_t c = i % ch;
        dst[i] = Act(act, gamma[c] / std[c] * (src[i] - mean[c]) + beta[c]);
      });
}

template <class Exec>
void BatchNormFade(Exec& ex, const float* mean, const float* std, const float* gamma, float rate,
                   float* fm, float* fs, float* fg, int64_t ch) {
  ex.ForEach(
      ch, ELK_LAMBDA(int64_t c) {
        const float m = mean[c], s = std[c], g = gamma[c];  // read first: outputs may be inputs
        fm[c] = rate * m;
        fs[c] = rate * s + (1.f - rate);
        fg[c] = rate * g;
      });
}

// See kernels/cpu/batch_norm.cc for the derivation: dx = a g + b (x - mean) + k per channel, the
// coefficients in double from the two column sums, applied in float.
template <class Exec>
void BatchNormBackward(Exec& ex, const float* src, const float* mean, const float* std,
                       const float* gamma, const float* dd, float* ds, float* dgamma, float* dbeta,
                       int64_t rows, int64_t ch, float eps, bool batch_statistics, float rate,
                       bool acc) {
  double* coef = ex.Temp(3 * ch);  // a, b, k per channel (float values)
  const double n = static_cast<double>(MaxI(rows, 1));
  ex.template ColumnReduce<2>(
      rows, ch,
      ELK_LAMBDA(int64_t r, int64_t c) {
        const int64_t i = r * ch + c;
        return Two(dd[i], static_cast<double>(dd[i]) * (src[i] - mean[c]));
      },
      ELK_LAMBDA(int64_t c, Sums<2> s) {
        const double sg = s.v[0], sgx = s.v[1];
        dbeta[c] = static_cast<float>(sg);
        float a, b, k;
        if (!batch_statistics) {
          const double sd = std[c];
          dgamma[c] = static_cast<float>(sgx / sd);
          a = static_cast<float>(gamma[c] / sd);
          b = 0.f;
          k = 0.f;
        } else {
          const double r = rate;
          const float faded_mean = rate * mean[c];
          const double sd = rate * std[c] + (1.f - rate);
          const double gs = static_cast<double>(rate * gamma[c]) / sd;
          const double sgx_faded = sgx + (mean[c] - faded_mean) * sg;
          dgamma[c] = static_cast<float>(r * sgx_faded / sd);
          a = static_cast<float>(gs);
          const double sigma = static_cast<double>(std[c]) - eps;
          b = sigma > 0 ? static_cast<float>(-gs * r * sgx_faded / (sd * n * sigma)) : 0.f;
          k = static_cast<float>(-gs * r * sg / n);
        }
        coef[c] = a;
        coef[ch + c] = b;
        coef[2 * ch + c] = k;
      });
  ex.ForEach(
      rows * ch, ELK_LAMBDA(int64_t i) {
        const int64_t c = i % ch;
        const float a = static_cast<float>(coef[c]), b = static_cast<float>(coef[ch + c]),
                    k = static_cast<float>(coef[2 * ch + c]);
        const float v = a * dd[i] + b * (src[i] - mean[c]) + k;
        ds[i] = Store(ds[i], v, acc);
      });
}

template <class Exec>
void BatchNormUpdateRunning(Exec& ex, const float* bm, const float* bs, float* rm, float* rs,
                            int64_t ch, float decay) {
  ex.ForEach(
      ch, ELK_LAMBDA(int64_t c) {
        rm[c] = decay * rm[c] + (1.f - decay) * bm[c];
        rs[c] = decay * rs[c] + (1.f - decay) * bs[c];
      });
}

}  // namespace elektronn::kernels::cuda::ops
