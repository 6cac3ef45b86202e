// The per-element math of the CUDA backend's own kernels, written once for the device and the
// host: nvcc compiles these functions into the kernels (kernels/cuda/*.cu), the host compiler into
// tests/kernels/cuda_bodies_test.cc, which runs the same ops on host loops against the naive
// references. Only the launch machinery (kernels/cuda/cuda_exec.cuh) is device-only.
//
// Every op in ops_*.h is a template over an executor `Exec` offering
//   ex.ForEach(n, f)                      f(i) for every i in [0, n)
//   ex.template Reduce<W>(n, f)           Sums<W> over i of f(i) (accumulated in double), on host
//   ex.template ColumnReduce<W>(rows, cols, f, fin)
//                                         fin(c, Sums<W> over r of f(r, c)) for every column c
//   ex.Temp(n)                            n floats of scratch kept until the next op
//   ex.CopyDevice(dst, src, n)            a plain copy
//   ex.ok()                               false once an earlier launch failed (then skip)
// with functors written as ELK_LAMBDA (a __host__ __device__ lambda under nvcc).
#pragma once

#include <math.h>
#include <stdint.h>

#include "kernels/backend.h"

#ifdef __CUDACC__
#define ELK_HD __host__ __device__
#define ELK_LAMBDA [=] __host__ __device__
#else
#define ELK_HD
#define ELK_LAMBDA [=]
#endif

namespace elektronn::kernels::cuda {

// W double sums carried through a reduction.
template <int W>
struct Sums {
  double v[W];
  ELK_HD static Sums Zero() {
    Sums s;
    for (int k = 0; k < W; ++k) s.v[k] = 0;
    return s;
  }
  ELK_HD Sums& operator+=(const Sums& o) {
    for (int k = 0; k < W; ++k) v[k] += o.v[k];
    return *this;
  }
};
ELK_HD inline Sums<1> One(double a) {
  Sums<1> s;
  s.v[0] = a;
  return s;
}
ELK_HD inline Sums<2> Two(double a, double b) {
  Sums<2> s;
  s.v[0] = a;
  s.v[1] = b;
  return s;
}

ELK_HD inline float MaxF(float a, float b) { return a > b ? a : b; }
ELK_HD inline float MinF(float a, float b) { return a < b ? a : b; }
ELK_HD inline int64_t MaxI(int64_t a, int64_t b) { return a > b ? a : b; }
ELK_HD inline int64_t MinI(int64_t a, int64_t b) { return a < b ? a : b; }
ELK_HD inline float Store(float old, float v, bool acc) { return acc ? old + v : v; }

// --- activations (kernels/cpu/activation.h and ActGrad of cpu_backend.cc) ---

ELK_HD inline float Act(Eltwise e, float x) {
  switch (e) {
    case Eltwise::kLinear:
      return x;
    case Eltwise::kRelu:
      return x > 0.f ? x : 0.f;
    case Eltwise::kTanh:
      return tanhf(x);
    case Eltwise::kSigmoid:
      return 1.f / (1.f + expf(-x));
    case Eltwise::kAbs:
      return fabsf(x);
    case Eltwise::kSoftplus:
      return x > 20.f ? x : log1pf(expf(x));
    case Eltwise::kElu:
      return x > 0.f ? x : expm1f(x);
    case Eltwise::kSelu:
      return 1.0507009873554805f * (x > 0.f ? x : 1.6732632423543772f * expm1f(x));
    case Eltwise::kConcentration:
      return 7.f * (x > 20.f ? x : log1pf(expf(x))) + 2.f;
    case Eltwise::kRadius:
      return 3.f + 15.f * expf(0.15f * x);
  }
  return x;
}

// The derivative through the output y (and x for abs), as the fused paths pass no x.
ELK_HD inline float ActGrad(Eltwise e, float x, float y) {
  switch (e) {
    case Eltwise::kLinear:
      return 1.f;
    case Eltwise::kRelu:
      return y > 0.f ? 1.f : 0.f;
    case Eltwise::kTanh:
      return 1.f - y * y;
    case Eltwise::kSigmoid:
      return y * (1.f - y);
    case Eltwise::kAbs:
      return x > 0.f ? 1.f : (x < 0.f ? -1.f : 0.f);
    case Eltwise::kSoftplus:
      return -expm1f(-y);  // sigmoid(x) = 1 - exp(-softplus(x))
    case Eltwise::kElu:
      return y > 0.f ? 1.f : y + 1.f;
    case Eltwise::kSelu:
      return y > 0.f ? 1.0507009873554805f : y + 1.0507009873554805f * 1.6732632423543772f;
    case Eltwise::kConcentration:
      return -7.f * expm1f(-(y - 2.f) / 7.f);
    case Eltwise::kRadius:
      return 0.15f * (y - 3.f);
  }
  return 1.f;
}

// --- counter-based randomness: the CPU backend's SplitMix64, so masks match bit for bit ---

ELK_HD inline uint64_t Mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
ELK_HD inline bool Keep(uint64_t seed, uint64_t step, int64_t i, float rate) {
  const uint64_t h = Mix(seed ^ Mix(step ^ Mix(static_cast<uint64_t>(i))));
  return static_cast<float>((h >> 40) * (1.0 / 16777216.0)) >= rate;
}
// Box-Muller on two counter-based uniforms (Backend::GaussianSample).
ELK_HD inline float StandardNormal(uint64_t seed, uint64_t step, int64_t i) {
  const uint64_t h1 = Mix(seed ^ Mix(step ^ Mix(2 * static_cast<uint64_t>(i))));
  const uint64_t h2 = Mix(seed ^ Mix(step ^ Mix(2 * static_cast<uint64_t>(i) + 1)));
  const double u1 = (static_cast<double>(h1 >> 40) + 0.5) * (1.0 / 16777216.0);
  const double u2 = static_cast<double>(h2 >> 40) * (1.0 / 16777216.0);
  return static_cast<float>(sqrt(-2.0 * log(u1)) * cos(2.0 * 3.14159265358979323846 * u2));
}

// --- fixed-rank index arithmetic passed by value into kernels (no allocation per call) ---

constexpr int kMaxRank = 8;

struct Strides {
  int64_t v[kMaxRank];
};

}  // namespace elektronn::kernels::cuda
