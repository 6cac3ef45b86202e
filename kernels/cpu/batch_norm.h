// Batch normalisation kernels of the CPU backend (reference §2.4): per-channel statistics over
// channels-last rows, their fade for 'fadeout', the normalising affine map with a fused
// activation, its gradient, and the running-estimate update. See the Backend declarations in
// kernels/backend.h for the contracts.
#pragma once

#include <cstdint>

#include "kernels/backend.h"

namespace elektronn::kernels::cpu {

void BatchNormStatistics(const float* src, float* mean, float* std, int64_t rows, int64_t channels,
                         float eps);
void BatchNormForward(const float* src, const float* mean, const float* std, const float* gamma,
                      const float* beta, float* dst, int64_t rows, int64_t channels, Eltwise act);
void BatchNormFade(const float* mean, const float* std, const float* gamma, float rate,
                   float* faded_mean, float* faded_std, float* faded_gamma, int64_t channels);
void BatchNormBackward(const float* src, const float* mean, const float* std, const float* gamma,
                       const float* diff_dst, float* diff_src, float* diff_gamma, float* diff_beta,
                       int64_t rows, int64_t channels, float eps, bool batch_statistics, float rate,
                       bool accumulate);
void BatchNormUpdateRunning(const float* batch_mean, const float* batch_std, float* running_mean,
                            float* running_std, int64_t channels, float decay);

}  // namespace elektronn::kernels::cpu
