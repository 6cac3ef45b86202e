// Per-tensor statistics for the shell and the Model service.
#include "engine/graph/statistics.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace elektronn {

TensorStatistics Summarise(const std::string& name, std::vector<int64_t> shape,
                           std::vector<float> values) {
  TensorStatistics s;
  s.name = name;
  s.shape = std::move(shape);
  double sum = 0, sq = 0;
  std::vector<float> abs_values;
  abs_values.reserve(values.size());
  for (float v : values) {
    if (!std::isfinite(v)) {
      ++s.non_finite;
      continue;
    }
    sum += v;
    sq += static_cast<double>(v) * v;
    abs_values.push_back(std::fabs(v));
  }
  const double n = static_cast<double>(abs_values.size());
  if (n > 0) {
    s.mean = sum / n;
    s.std = std::sqrt(std::max(0.0, sq / n - s.mean * s.mean));
    auto mid = abs_values.begin() + abs_values.size() / 2;
    std::nth_element(abs_values.begin(), mid, abs_values.end());
    s.median_abs = *mid;
  }
  return s;
}

std::vector<TensorStatistics> ComputeStatistics(const Network& net, StatisticsOf what) {
  std::vector<TensorStatistics> out;
  const Network& n = net;
  if (what == StatisticsOf::kActivations) {
    for (const auto& node : n.graph().nodes()) {
      if (node->is_source()) continue;
      auto v = n.Output(node->name());
      if (v.ok()) out.push_back(Summarise(node->name(), node->shape().sizes(), *std::move(v)));
    }
    return out;
  }
  for (const Parameter* p : n.params()) {
    std::vector<float> v = what == StatisticsOf::kParameters ? n.ParamValue(*p) : n.ParamGrad(*p);
    out.push_back(Summarise(p->key(), p->shape, std::move(v)));
  }
  return out;
}

std::string FormatStatistics(const std::vector<TensorStatistics>& stats) {
  std::string out;
  for (const TensorStatistics& s : stats) {
    absl::StrAppendFormat(&out, "%-24s (%s)  mean=%+.3e  std=%.3e  median|x|=%.3e%s\n", s.name,
                          absl::StrJoin(s.shape, ","), s.mean, s.std, s.median_abs,
                          s.non_finite ? absl::StrFormat("  non-finite=%d", s.non_finite) : "");
  }
  return out;
}

}  // namespace elektronn
