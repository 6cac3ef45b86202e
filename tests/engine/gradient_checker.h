// One finite-difference gradient checker for every node and loss (after Caffe's GradientChecker).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "elektronn/v1/model.pb.h"

namespace elektronn::testing {

struct GradientCheckOptions {
  std::string output;                             // node whose output is reduced to a scalar
  std::vector<std::string> wrt_inputs;            // source nodes to check (others are held fixed)
  std::vector<std::string> fixed_inputs_integer;  // sources filled with class ids in [0, n)
  int64_t n_classes = 2;
  // Share of those ids replaced by ignored labels (-1, -2 or n_classes, drawn in turn).
  double ignored_label_share = 0;
  int64_t batch_size = 1;
  double eps = 1e-3;
  double tolerance = 2e-2;  // on ||fd - analytic|| / max(||analytic||, ||fd||)
  int max_checks_per_tensor = 24;
  uint64_t seed = 7;
  bool check_params = true;
  // losses family (issue 11): explicit values (logical layout) for some sources, e.g. targets in
  // [0, 1] with ignored entries (-666), or weights and masks; used instead of random values.
  std::map<std::string, std::vector<float>> input_values;
};

struct GradientCheckReport {
  std::vector<std::string> lines;  // one per tensor: name, relative error, entries checked
  double worst = 0;
};

// Builds the network, sets random inputs, and compares analytic gradients of
// L = sum(output * R) (R random) w.r.t. inputs and parameters against central differences.
absl::Status CheckGradients(const v1::ModelSpec& spec, const GradientCheckOptions& opt,
                            GradientCheckReport* report);

}  // namespace elektronn::testing
