// Element-wise, bias, softmax, arithmetic and dropout ops of the CUDA backend, as templates over
// an executor (see bodies.h); the same code runs in kernels/cuda/elementwise.cu and in
// tests/kernels/cuda_bodies_test.cc. Each mirrors its CPU loop in kernels/cpu/cpu_backend.cc.
#pragma once

#include "kernels/cuda/bodies.h"

namespace elektronn::kernels::cuda::ops {

template <class Exec>
void Fill(Exec& ex, float* dst, float v, int64_t n) {
  ex.ForEach(
      n, ELK_LAMBDA(int64_t i) { dst[i] = v; });
}

template <class Exec>
void Copy(Exec& ex, const float* src, float* dst, int64_t n) {
  ex.CopyDevice(dst, src, n);
}

template <class Exec>
void EltwiseForward(Exec& ex, Eltwise e, const float* src, float* dst, int64_t n) {
  ex.ForEach(
      n, ELK_LAMBDA(int64_t i) { dst[i] = Act(e, src[i]); });
}

template <class Exec>
void EltwiseBackward(Exec& ex, Eltwise e, const float* src, const float* dst, const float* dd,
                     float* ds, int64_t n, bool acc) {
  ex.ForEach(
      n, ELK_LAMBDA(int64_t i) {
        const float g = dd[i] * ActGrad(e, src ? src[i] : 0.f, dst ? dst[i] : 0.f);
        ds[i] = Store(ds[i], g, acc);
      });
}

template <class Exec>
void PreluForward(Exec& ex, const float* src, const float* slope, float* dst, int64_t rows,
                  int64_t ch) {
  ex.ForEach(
      rows * ch, ELK_LAMBDA(int64_t i) {
        const float x = src[i];
        dst[i] = x > 0.f ? x : slope[i % ch] * x;
      });
}

template <class Exec>
void PreluBackward(Exec& ex, const float* src, const float* slope, const float* dd, float* ds,
                   float* dslope, int64_t rows, int64_t ch, bool acc) {
  // The slope's sums first: diff_src may share memory with diff_dst.
  ex.template ColumnReduce<1>(
      rows, ch,
      ELK_LAMBDA(int64_t r, int64_t c) {
        const int64_t i = r * ch + c;
        return One(src[i] <= 0.f ? static_cast<double>(src[i] * dd[i]) : 0.0);
      },
      ELK_LAMBDA(int64_t c, Sums<1> s) { dslope[c] = static_cast<float>(s.v[0]); });
  ex.ForEach(
      rows * ch, ELK_LAMBDA(int64_t i) {
        const float x = src[i];
        const float g = x > 0.f ? dd[i] : slope[i % ch] * dd[i];
        ds[i] = Store(ds[i], g, acc);
      });
}

template <class Exec>
void AddBias(Exec& ex, float* dst, const float* bias, int64_t rows, int64_t ch) {
  ex.ForEach(
      rows * ch, ELK_LAMBDA(int64_t i) { dst[i] += bias[i % ch]; });
}

template <class Exec>
void BiasGradient(Exec& ex, const float* diff, float* db, int64_t rows, int64_t ch) {
  ex.template ColumnReduce<1>(
      rows, ch, ELK_LAMBDA(int64_t r, int64_t c) { return One(diff[r * ch + c]); },
      ELK_LAMBDA(int64_t c, Sums<1> s) { db[c] = static_cast<float>(s.v[0]); });
}

// One thread per group of n_class channels (n_class is small: classes of a voxel).
template <class Exec>
void SoftmaxForward(Exec& ex, const float* src, float* dst, int64_t rows, int64_t ch,
                    int64_t n_class) {
  ex.ForEach(
      rows * (ch / n_class), ELK_LAMBDA(int64_t g) {
        const float* x = src + g * n_class;
        float* y = dst + g * n_class;
        float mx = x[0];
        for (int64_t c = 1; c < n_class; ++c) mx = MaxF(mx, x[c]);
        float s = 0.f;
        for (int64_t c = 0; c < n_class; ++c) s += (y[c] = expf(x[c] - mx));
        const float inv = 1.f / s;
        for (int64_t c = 0; c < n_class; ++c) y[c] *= inv;
      });
}

template <class Exec>
void SoftmaxBackward(Exec& ex, const float* y, const float* dy, float* dx, int64_t rows, int64_t ch,
                     int64_t n_class, bool acc) {
  ex.ForEach(
      rows * (ch / n_class), ELK_LAMBDA(int64_t g) {
        const int64_t o = g * n_class;
        float dot = 0.f;
        for (int64_t c = 0; c < n_class; ++c) dot += y[o + c] * dy[o + c];
        for (int64_t c = 0; c < n_class; ++c) {
          const float v = y[o + c] * (dy[o + c] - dot);
          dx[o + c] = Store(dx[o + c], v, acc);
        }
      });
}

template <class Exec>
double Sum(Exec& ex, const float* src, int64_t n) {
  return ex
      .template Reduce<1>(
          n, ELK_LAMBDA(int64_t i) { return One(src[i]); })
      .v[0];
}

template <class Exec>
void Scale(Exec& ex, const float* x, float a, float* dst, int64_t n, bool acc) {
  ex.ForEach(
      n, ELK_LAMBDA(int64_t i) { dst[i] = acc ? dst[i] + a * x[i] : a * x[i]; });
}

template <class Exec>
void Add(Exec& ex, const float* a, const float* b, float* dst, int64_t n) {
  ex.ForEach(
      n, ELK_LAMBDA(int64_t i) { dst[i] = a[i] + b[i]; });
}

template <class Exec>
void Multiply(Exec& ex, const float* a, const float* b, float* dst, int64_t n, bool acc) {
  ex.ForEach(
      n, ELK_LAMBDA(int64_t i) { dst[i] = acc ? dst[i] + a[i] * b[i] : a[i] * b[i]; });
}

template <class Exec>
void Dropout(Exec& ex, const float* src, float* dst, int64_t n, float rate, uint64_t seed,
             uint64_t step) {
  const float scale = 1.f / (1.f - rate);
  ex.ForEach(
      n, ELK_LAMBDA(int64_t i) { dst[i] = Keep(seed, step, i, rate) ? src[i] * scale : 0.f; });
}

template <class Exec>
void DropoutBackward(Exec& ex, const float* dd, float* ds, int64_t n, float rate, uint64_t seed,
                     uint64_t step, bool acc) {
  const float scale = 1.f / (1.f - rate);
  ex.ForEach(
      n, ELK_LAMBDA(int64_t i) {
        const float g = Keep(seed, step, i, rate) ? dd[i] * scale : 0.f;
        ds[i] = Store(ds[i], g, acc);
      });
}

template <class Exec>
void ScalarFunctionForward(Exec& ex, ScalarFunction f, float a, float b, const float* src,
                           float* dst, int64_t n) {
  ex.ForEach(
      n, ELK_LAMBDA(int64_t i) {
        const float x = src[i];
        float y = x;
        switch (f) {
          case ScalarFunction::kAffine:
            y = a * x + b;
            break;
          case ScalarFunction::kPow:
            y = powf(x, a);
            break;
          case ScalarFunction::kClip: {  // std::min(std::max(x, a), b), NaN behaviour included
            const float lo = x < a ? a : x;
            y = b < lo ? b : lo;
            break;
          }
          case ScalarFunction::kExp:
            y = expf(x);
            break;
          case ScalarFunction::kLog:
            y = logf(x);
            break;
        }
        dst[i] = y;
      });
}

template <class Exec>
void ScalarFunctionBackward(Exec& ex, ScalarFunction f, float a, float b, const float* src,
                            const float* dd, float* ds, int64_t n, bool acc) {
  ex.ForEach(
      n, ELK_LAMBDA(int64_t i) {
        const float x = src[i];
        float d = 1.f;
        switch (f) {
          case ScalarFunction::kAffine:
            d = a;
            break;
          case ScalarFunction::kPow:
            d = a == 0.f ? 0.f : a * powf(x, a - 1.f);
            break;
          case ScalarFunction::kClip:  // Theano's clip passes the gradient inside [a, b] inclusive
            d = (x >= a && x <= b) ? 1.f : 0.f;
            break;
          case ScalarFunction::kExp:
            d = expf(x);
            break;
          case ScalarFunction::kLog:
            d = 1.f / x;
            break;
        }
        ds[i] = Store(ds[i], dd[i] * d, acc);
      });
}

template <class Exec>
void GaussianPriorForward(Exec& ex, const float* mu, const float* ls, float* dst, int64_t n) {
  ex.ForEach(
      n, ELK_LAMBDA(int64_t i) {
        dst[i] = 0.5f * (mu[i] * mu[i] + expf(2.f * ls[i]) - 1.f - 2.f * ls[i]);
      });
}

template <class Exec>
void GaussianPriorBackward(Exec& ex, const float* mu, const float* ls, const float* dd, float* dmu,
                           bool acc_mu, float* dls, bool acc_ls, int64_t n) {
  if (dmu) {
    ex.ForEach(
        n, ELK_LAMBDA(int64_t i) { dmu[i] = Store(dmu[i], dd[i] * mu[i], acc_mu); });
  }
  if (dls) {
    ex.ForEach(
        n, ELK_LAMBDA(int64_t i) {
          dls[i] = Store(dls[i], dd[i] * (expf(2.f * ls[i]) - 1.f), acc_ls);
        });
  }
}

}  // namespace elektronn::kernels::cuda::ops
