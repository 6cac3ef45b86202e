// The four optimiser updates of the CUDA backend (reference §4), as templates over an executor
// (see bodies.h), element for element the CPU backend's (kernels/cpu/cpu_backend.cc).
#pragma once

#include <cmath>

#include "kernels/cuda/bodies.h"

namespace elektronn::kernels::cuda::ops {

using OptimiserStep = Backend::OptimiserStep;

template <class Exec>
void SgdUpdate(Exec& ex, const OptimiserStep& s, const float* g, float* p, float* v, int64_t n) {
  const float wdm = s.wd * s.wd_multiplier, mom = s.mom, lr = s.lr;
  ex.ForEach(
      n, ELK_LAMBDA(int64_t i) {
        v[i] = g[i] + mom * v[i];
        p[i] -= lr * (v[i] + wdm * p[i]);
      });
}

template <class Exec>
void AdamUpdate(Exec& ex, const OptimiserStep& s, const float* g, float* p, float* m, float* v,
                int64_t n) {
  const float b1 = s.mom, b2 = s.beta2, wdm = s.wd * s.wd_multiplier, lr = s.lr, eps = s.eps;
  // The bias correction in double on the host, as the CPU backend computes it.
  const float corr = static_cast<float>(std::sqrt(1.0 - std::pow(static_cast<double>(b2), s.t)) /
                                        (1.0 - std::pow(static_cast<double>(b1), s.t)));
  ex.ForEach(
      n, ELK_LAMBDA(int64_t i) {
        m[i] = b1 * m[i] + (1.f - b1) * g[i];
        v[i] = b2 * v[i] + (1.f - b2) * g[i] * g[i];
        const float dir = corr * m[i] / sqrtf(v[i] + eps);
        p[i] -= lr * (dir + wdm * p[i]);
      });
}

template <class Exec>
void AdaGradUpdate(Exec& ex, const OptimiserStep& s, const float* g, float* p, float* h, bool first,
                   int64_t n) {
  // ELEKTRONN2 accumulates g^2 once more before the first step; no epsilon; wd unscaled by the
  // regularisation multiplier and divided by sqrt(h) together with g.
  const float wd = s.wd_multiplier > 0.f ? s.wd : 0.f, lr = s.lr;
  ex.ForEach(
      n, ELK_LAMBDA(int64_t i) {
        if (first) h[i] += g[i] * g[i];
        h[i] += g[i] * g[i];
        p[i] -= lr / sqrtf(h[i]) * (g[i] + wd * p[i]);
      });
}

template <class Exec>
void AdaDeltaUpdate(Exec& ex, const OptimiserStep& s, const float* g, float* p, float* sq, float* d,
                    int64_t n) {
  const float rho = s.mom, wdm = s.wd * s.wd_multiplier, lr = s.lr, eps = s.eps;
  ex.ForEach(
      n, ELK_LAMBDA(int64_t i) {
        const float s_new = rho * sq[i] + (1.f - rho) * g[i] * g[i];
        const float dir = g[i] * sqrtf(d[i] + eps) / sqrtf(sq[i] + eps);  // old s (QUIRK kept)
        d[i] = rho * d[i] + (1.f - rho) * dir * dir;
        sq[i] = s_new;
        p[i] -= lr * (dir + wdm * p[i]);
      });
}

}  // namespace elektronn::kernels::cuda::ops
