// The element-wise activations of kernels::Eltwise as scalar functions, for the CPU loops that
// apply an activation themselves (the element-wise kernels, batch normalisation's fused pass).
#pragma once

#include <cmath>

#include "kernels/backend.h"

namespace elektronn::kernels::cpu {

inline float Act(Eltwise e, float x) {
  switch (e) {
    case Eltwise::kLinear:
      return x;
    case Eltwise::kRelu:
      return x > 0.f ? x : 0.f;
    case Eltwise::kTanh:
      return std::tanh(x);
    case Eltwise::kSigmoid:
      return 1.f / (1.f + std::exp(-x));
    case Eltwise::kAbs:
      return std::fabs(x);
    case Eltwise::kSoftplus:
      return x > 20.f ? x : std::log1p(std::exp(x));
    case Eltwise::kElu:
      return x > 0.f ? x : std::expm1(x);
    // Structural family (issue 11): ELEKTRONN2's selu, concentration and radius.
    case Eltwise::kSelu:
      return 1.0507009873554805f * (x > 0.f ? x : 1.6732632423543772f * std::expm1(x));
    case Eltwise::kConcentration:
      return 7.f * (x > 20.f ? x : std::log1p(std::exp(x))) + 2.f;
    case Eltwise::kRadius:
      return 3.f + 15.f * std::exp(0.15f * x);
  }
  return x;
}

}  // namespace elektronn::kernels::cpu
