// Optimisers with ELEKTRONN2's exact update rules (reference §4): SGD (heavy-ball), Adam,
// AdaGrad, AdaDelta, with decoupled weight decay and live-settable hyper-parameters.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/config/hyperparams.h"
#include "engine/nodes/node.h"
#include "kernels/backend.h"

namespace elektronn {

// HyperParams (engine/config/hyperparams.h): the meta-parameters shared by all optimisers; the
// trainer and shell change them between steps.
enum class OptimiserKind { kSgd, kAdam, kAdaGrad, kAdaDelta };
absl::StatusOr<OptimiserKind> ParseOptimiser(const std::string& name);
const char* OptimiserName(OptimiserKind k);

class Optimiser {
 public:
  // State buffers are allocated here, once, for `params` (trainable ones only are updated).
  Optimiser(OptimiserKind kind, kernels::Backend* backend, std::vector<Parameter*> params);
  ~Optimiser();
  Optimiser(const Optimiser&) = delete;
  Optimiser& operator=(const Optimiser&) = delete;

  OptimiserKind kind() const { return kind_; }
  HyperParams& hyper() { return hyper_; }
  const HyperParams& hyper() const { return hyper_; }
  int64_t t() const { return t_; }  // number of updates done
  void set_t(int64_t t) { t_ = t; }

  // Applies one update from the parameters' current gradients.
  void Step();

  // Named state slots per parameter ("v"; "m","s"; "h"; "s","d"), for saving and loading.
  std::vector<std::string> SlotNames() const;
  float* Slot(size_t param_index, size_t slot) const;
  const std::vector<Parameter*>& params() const { return params_; }

 private:
  OptimiserKind kind_;
  kernels::Backend* backend_;
  std::vector<Parameter*> params_;
  std::vector<std::vector<float*>> slots_;
  HyperParams hyper_;
  int64_t t_ = 0;
};

}  // namespace elektronn
