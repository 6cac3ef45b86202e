// Naive references of the batch-normalisation kernels (kernels/backend.h, batch_norm family):
// plain loops over channels-last rows, double sums, each step written as reference §2.4 defines
// it. The backward is derived by hand from the forward's definition.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/backend.h"

namespace elektronn::testing {

struct BnStatistics {
  std::vector<float> mean, std;
};
struct BnGrads {
  std::vector<float> src, gamma, beta;
};

// mean[c] = sum_r x / rows; std[c] = sqrt(sum_r (x - mean)^2 / rows) + eps.
BnStatistics BatchNormStatistics(const std::vector<float>& src, int64_t rows, int64_t channels,
                                 double eps);
// act(gamma / std * (x - mean) + beta).
std::vector<float> BatchNormForward(const std::vector<float>& src, const std::vector<float>& mean,
                                    const std::vector<float>& std, const std::vector<float>& gamma,
                                    const std::vector<float>& beta, int64_t rows, int64_t channels,
                                    kernels::Eltwise act);
// 'fadeout': mean' = rate mean, std' = rate std + (1 - rate), gamma' = rate gamma.
struct BnFaded {
  std::vector<float> mean, std, gamma;
};
BnFaded BatchNormFade(const std::vector<float>& mean, const std::vector<float>& std,
                      const std::vector<float>& gamma, double rate);
// With batch_statistics the mean and std are recomputed from src (and must equal the ones given)
// and differentiated through the fade by `rate` (1: 'train'): y_i = gamma' (x_i - m') / s' +
// beta with m' = rate m, s' = rate (sigma + eps) + 1 - rate, gamma' = rate gamma.
BnGrads BatchNormBackward(const std::vector<float>& src, const std::vector<float>& mean,
                          const std::vector<float>& std, const std::vector<float>& gamma,
                          const std::vector<float>& diff_dst, int64_t rows, int64_t channels,
                          double eps, bool batch_statistics, double rate = 1.0);
// running = decay * running + (1 - decay) * batch.
std::vector<float> BatchNormRunning(const std::vector<float>& running,
                                    const std::vector<float>& batch, double decay);

}  // namespace elektronn::testing
