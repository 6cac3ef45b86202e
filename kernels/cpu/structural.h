// CPU kernels of the structural, element-wise and probabilistic family (issue 11): transposes,
// ApplyFunc's functions, maxout, LRN and the reparameterised Gaussian sample.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/backend.h"

namespace elektronn::kernels::cpu {

void Transpose(const std::vector<int64_t>& dims, const std::vector<int>& perm, const float* src,
               float* dst, bool accumulate);
void ScalarFunctionForward(ScalarFunction f, float a, float b, const float* src, float* dst,
                           int64_t n);
void ScalarFunctionBackward(ScalarFunction f, float a, float b, const float* src,
                            const float* diff_dst, float* diff_src, int64_t n, bool accumulate);
void MaxoutForward(const float* src, float* dst, int64_t rows, int64_t channels, int64_t k);
void MaxoutBackward(const float* src, const float* diff_dst, float* diff_src, int64_t rows,
                    int64_t channels, int64_t k, bool accumulate);
void LrnForward(const LrnDesc& d, const float* src, float* dst, float* workspace);
void LrnBackward(const LrnDesc& d, const float* src, const float* diff_dst, float* diff_src,
                 float* workspace, bool accumulate);
void GaussianSample(const float* mu, const float* log_sig, float* dst, int64_t outer,
                    int64_t samples, int64_t inner, uint64_t seed, uint64_t step);
void GaussianSampleBackward(const float* mu, const float* dst, const float* diff_dst,
                            float* diff_mu, bool accumulate_mu, float* diff_log_sig,
                            bool accumulate_log_sig, int64_t outer, int64_t samples, int64_t inner);

}  // namespace elektronn::kernels::cpu
