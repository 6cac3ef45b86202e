// Network: a Graph compiled for a backend and a batch size into an executable plan.
// Buffers, parameters and kernels are created once here; Forward/Backward/TrainStep reuse them.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/graph/graph.h"
#include "kernels/backend.h"

namespace elektronn {

struct NetworkOptions {
  int64_t batch_size = 1;  // substituted for an unknown (None) batch size
  uint64_t seed = 0;       // 0: the ModelSpec's seed
  // Also compute gradients w.r.t. source nodes (gradient checks, saliency); costs a
  // backward-data pass through the first layer.
  bool input_gradients = false;
  // Forward only (dense prediction): no node allocates a gradient buffer, which about halves
  // the activations' memory; Backward and BackwardFrom refuse, Profile times forwards only.
  bool inference_only = false;
  // kBf16: convolutions, matrix products and pooling in bf16 mixed precision (kernels::DataType);
  // parameters, gradients and every other node stay fp32.
  kernels::DataType precision = kernels::DataType::kF32;
};

class Network {
 public:
  static absl::StatusOr<std::unique_ptr<Network>> Create(const v1::ModelSpec& spec,
                                                         kernels::Backend* backend,
                                                         NetworkOptions options = {});

  Graph& graph() { return *graph_; }
  const Graph& graph() const { return *graph_; }
  kernels::Backend* backend() const { return ctx_.backend; }

  // Copies `data` (logical layout, tags order) into a source node.
  absl::Status SetInput(const std::string& node, std::span<const float> data);
  // The value of any node in logical layout.
  absl::StatusOr<std::vector<float>> Output(const std::string& node) const;
  absl::StatusOr<float> Scalar(const std::string& node) const;

  // Runs every node in creation order.
  absl::Status Forward();
  // Back-propagates d loss / d loss = 1 from the designated loss node into parameter gradients.
  absl::Status Backward();
  // Back-propagates `seed` (logical layout) from `node` (for gradient checks).
  absl::Status BackwardFrom(const std::string& node, std::span<const float> seed);
  // Back-propagates several seeds (logical layout) in one pass, e.g. a Scan step graph's result
  // and its memory outputs; a node seeded twice gets the sum of its seeds.
  absl::Status BackwardFromMany(
      const std::vector<std::pair<std::string, std::span<const float>>>& seeds);
  // The same with seeds already on the backend in physical layout (nullptr: zeros), for nodes
  // that run a Network inside themselves (Scan). Every node reached has its gradient rewritten;
  // a source that was not reached keeps grad_written() false.
  absl::Status BackwardFromBuffers(const std::vector<std::pair<Node*, const float*>>& seeds);
  // Gradient w.r.t. a source node (logical layout), valid after BackwardFrom.
  absl::StatusOr<std::vector<float>> InputGradient(const std::string& node) const;

  std::vector<Parameter*>& params() { return params_; }
  const std::vector<Parameter*>& params() const { return params_; }
  absl::StatusOr<Parameter*> FindParam(const std::string& node, const std::string& name);
  // Canonical-layout copies of a parameter's value and gradient.
  std::vector<float> ParamValue(const Parameter& p) const;
  std::vector<float> ParamGrad(const Parameter& p) const;
  absl::Status SetParamValue(Parameter& p, std::span<const float> canonical);

  // Per-node execution time in ms of one forward and one backward pass (ELEKTRONN2's
  // measure_exectimes), averaged over `repeats` steps.
  struct NodeTiming {
    std::string name, op;
    double forward_ms = 0, backward_ms = 0;
  };
  absl::StatusOr<std::vector<NodeTiming>> Profile(int repeats);

  void set_training(bool t) { ctx_.training = t; }
  uint64_t step() const { return ctx_.step; }
  void set_step(uint64_t s) { ctx_.step = s; }
  uint64_t seed() const { return ctx_.seed; }
  const NetworkOptions& options() const { return options_; }

 private:
  absl::Status Compile();
  absl::Status RunBackward(Node* from);
  std::unique_ptr<Graph> graph_;
  NetworkOptions options_;
  ExecContext ctx_;
  std::vector<Parameter*> params_;
  std::vector<Node*> backward_order_;
};

// Converts between logical (tag order) and physical (channels-last) layouts.
void LogicalToPhysical(const TaggedShape& s, const float* logical, float* physical);
void PhysicalToLogical(const TaggedShape& s, const float* physical, float* logical);

}  // namespace elektronn
