// Job files for tests of the nm node functions: the training keys every such test needs (tiny
// SGD on MNISTData, never run) around the body of create_model().
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "elektronn/v1/model.pb.h"
#include "elektronn/v1/training.pb.h"

namespace elektronn::testing {

inline std::string NmTestJob(const std::string& create_model_body, int batch_size) {
  return absl::StrCat(R"(save_path = '/tmp/elk'
n_steps = 10
max_runtime = 60
history_freq = 5
monitor_batch_size = 2
optimiser = 'SGD'
optimiser_params = {lr = 0.01, mom = 0.9}
batch_size = )",
                      batch_size, "\ndata_class = 'MNISTData'\nfunction create_model()\n",
                      create_model_body, "end\n");
}

// The node called `name` of a loaded job; a test failure (and an empty node) if there is none.
inline const v1::NodeSpec& NodeNamed(const v1::JobSpec& job, const std::string& name) {
  for (const auto& n : job.model().nodes())
    if (n.name() == name) return n;
  ADD_FAILURE() << "the model has no node '" << name << "'";
  static const v1::NodeSpec* empty = new v1::NodeSpec();
  return *empty;
}

}  // namespace elektronn::testing
