// Statistics of a network's tensors for inspection (ELEKTRONN2's paramstats, gradstats and
// actstats, reference §3.1): shape, mean, standard deviation and median of |x| per tensor.
#pragma once

#include <string>
#include <vector>

#include "engine/graph/network.h"

namespace elektronn {

struct TensorStatistics {
  std::string name;  // "conv1/w" for parameters and gradients, the node name for activations
  std::vector<int64_t> shape;
  double mean = 0, std = 0, median_abs = 0;
  int64_t non_finite = 0;  // NaN or Inf entries (excluded from the moments)
};

enum class StatisticsOf { kParameters, kGradients, kActivations };

// Parameters and gradients in canonical layout; activations of every non-source node as of
// the last Forward (gradients as of the last Backward).
std::vector<TensorStatistics> ComputeStatistics(const Network& net, StatisticsOf what);
TensorStatistics Summarise(const std::string& name, std::vector<int64_t> shape,
                           std::vector<float> values);
// One line per tensor: "conv1/w  (20,1,1,6,6)  mean=+1.2e-03 std=4.1e-02 median|x|=2.7e-02".
std::string FormatStatistics(const std::vector<TensorStatistics>& stats);

}  // namespace elektronn
