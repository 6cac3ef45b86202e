// Naive references for the structural, element-wise and probabilistic family (issue 11): plain
// loops over the definitions, double sums, host vectors in the layouts of kernels/backend.h.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/backend.h"

namespace elektronn::testing {

std::vector<float> Multiply(const std::vector<float>& a, const std::vector<float>& b);
// dst axis i = src axis perm[i].
std::vector<float> Transpose(const std::vector<int64_t>& dims, const std::vector<int>& perm,
                             const std::vector<float>& src);
double ApplyScalar(kernels::ScalarFunction f, double a, double b, double x);
double ApplyScalarDerivative(kernels::ScalarFunction f, double a, double b, double x);
std::vector<float> MaxoutForward(const std::vector<float>& src, int64_t rows, int64_t channels,
                                 int64_t k);
std::vector<float> MaxoutBackward(const std::vector<float>& src, const std::vector<float>& diff_dst,
                                  int64_t rows, int64_t channels, int64_t k);
std::vector<float> LrnForward(const kernels::LrnDesc& d, const std::vector<float>& src);
// By the chain rule over the forward definition (independent of the kernel's adjoint trick).
std::vector<float> LrnBackward(const kernels::LrnDesc& d, const std::vector<float>& src,
                               const std::vector<float>& diff_dst);
// eps of Backend::GaussianSample: Box-Muller of two SplitMix64 draws at (seed, step, 2j, 2j+1).
double StandardNormal(uint64_t seed, uint64_t step, int64_t j);
std::vector<float> GaussianSample(const std::vector<float>& mu, const std::vector<float>& log_sig,
                                  int64_t outer, int64_t samples, int64_t inner, uint64_t seed,
                                  uint64_t step);
struct GaussianGrads {
  std::vector<float> mu, log_sig;
};
GaussianGrads GaussianSampleBackward(const std::vector<float>& mu,
                                     const std::vector<float>& log_sig,
                                     const std::vector<float>& diff_dst, int64_t outer,
                                     int64_t samples, int64_t inner, uint64_t seed, uint64_t step);
std::vector<float> GaussianPriorForward(const std::vector<float>& mu,
                                        const std::vector<float>& log_sig);
GaussianGrads GaussianPriorBackward(const std::vector<float>& mu, const std::vector<float>& log_sig,
                                    const std::vector<float>& diff_dst);

}  // namespace elektronn::testing
