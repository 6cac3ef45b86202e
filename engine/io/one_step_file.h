// The one-step model of a saved recurrent model, as a model file (`elektronn one-step`).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace elektronn {

struct OneStepFileReport {
  std::vector<std::string> inputs;          // the one-step model's inputs (placeholders)
  std::vector<std::string> dropped_params;  // saved parameters the one-step model has no use for
};

// Reads the model file `in` (a model with one Scan), turns its spec into the one-step model
// (engine/graph/one_step.h), sets the saved parameters into it by key ("gru/w") and writes it to
// `out` (without optimiser state). Parameters of nodes the one-step model replaced by inputs
// (the InitialState_like's trained initial memory) are reported as dropped: feed that value as
// the memory input of the first step.
absl::StatusOr<OneStepFileReport> WriteOneStepModelFile(const std::string& in,
                                                        const std::string& out,
                                                        kernels::Backend* backend);

}  // namespace elektronn
