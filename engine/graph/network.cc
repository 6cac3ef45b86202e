// Compilation of a Graph into a plan and its execution.
#include "engine/graph/network.h"

#include <chrono>

#include "absl/strings/str_format.h"
#include "engine/core/status.h"

namespace elektronn {
namespace {

// Strides of logical axis i in the physical (f-last) layout.
std::vector<int64_t> PhysicalStridesOfLogical(const TaggedShape& s) {
  const std::vector<int64_t> phys = PhysicalSizes(s);
  std::vector<int64_t> pstride(phys.size(), 1);
  for (int i = static_cast<int>(phys.size()) - 2; i >= 0; --i)
    pstride[i] = pstride[i + 1] * phys[i + 1];
  std::vector<int64_t> out(s.rank());
  for (int i = 0; i < s.rank(); ++i) out[i] = pstride[PhysicalAxis(s, i)];
  return out;
}

template <bool kToPhysical>
void Permute(const TaggedShape& s, const float* in, float* out) {
  const int f = s.TagIndex('f');
  if (f < 0 || f == s.rank() - 1 || s.SizeOf('f') == 1) {
    std::copy(in, in + s.stripnone_prod(), out);
    return;
  }
  const std::vector<int64_t> ps = PhysicalStridesOfLogical(s);
  const int64_t n = s.stripnone_prod();
  std::vector<int64_t> idx(s.rank(), 0);
  for (int64_t li = 0; li < n; ++li) {
    int64_t pi = 0;
    for (int a = 0; a < s.rank(); ++a) pi += idx[a] * ps[a];
    if (kToPhysical) {
      out[pi] = in[li];
    } else {
      out[li] = in[pi];
    }
    for (int a = s.rank() - 1; a >= 0; --a) {
      if (++idx[a] < s.size(a)) break;
      idx[a] = 0;
    }
  }
}

}  // namespace

void LogicalToPhysical(const TaggedShape& s, const float* l, float* p) { Permute<true>(s, l, p); }
void PhysicalToLogical(const TaggedShape& s, const float* p, float* l) { Permute<false>(s, p, l); }

absl::StatusOr<std::unique_ptr<Network>> Network::Create(const v1::ModelSpec& spec,
                                                         kernels::Backend* backend,
                                                         NetworkOptions options) {
  if (options.batch_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("batch_size=%d must be at least 1", options.batch_size));
  }
  auto net = std::unique_ptr<Network>(new Network());
  ASSIGN_OR_RETURN(net->graph_, Graph::Create(spec));
  net->options_ = options;
  net->ctx_.backend = backend;
  net->ctx_.seed = options.seed != 0 ? options.seed : spec.seed();
  net->ctx_.precision = options.precision;
  RETURN_IF_ERROR(net->Compile());
  return net;
}

absl::Status Network::Compile() {
  const auto& nodes = graph_->nodes();
  // Concrete shapes: substitute the batch size, then re-infer so every node sees it.
  for (const auto& n : nodes) {
    if (n->is_source() && n->parents().empty()) {
      n->set_concrete_shape(n->shape().WithBatch(options_.batch_size));
    } else {
      RETURN_IF_ERROR(n->InferShape());
    }
    if (!n->shape().fully_known()) {
      return NodeError(*n, "output shape is not fully known after fixing the batch size");
    }
  }
  RETURN_IF_ERROR(graph_->RepairPredictionFov());  // re-inference reset an UpConv's fov
  // Which nodes carry gradients: descendants of parameterised nodes, ancestors of the loss.
  const std::string& loss = graph_->spec().designations().loss_node();
  absl::flat_hash_map<const Node*, bool> on_loss_path;
  if (Node* l = graph_->Find(loss)) {
    std::vector<Node*> stack = {l};
    while (!stack.empty()) {
      Node* n = stack.back();
      stack.pop_back();
      if (on_loss_path[n]) continue;
      on_loss_path[n] = true;
      for (Node* p : n->parents()) stack.push_back(p);
    }
  }
  for (const auto& n : nodes) {
    // Every differentiable non-source node may need its gradient (for gradient checks too).
    n->set_needs_grad(!options_.inference_only && n->differentiable() &&
                      (!n->is_source() || options_.input_gradients));
  }
  for (const auto& n : nodes) {
    RETURN_IF_ERROR(n->Compile(ctx_));
    if (n->needs_grad()) {
      n->AllocateGrad(ctx_.backend);
      ctx_.backend->Fill(n->grad(), 0.f, n->numel());
    }
    for (Parameter& p : n->params()) params_.push_back(&p);
    if (on_loss_path[n.get()] || loss.empty()) backward_order_.push_back(n.get());
  }
  std::reverse(backward_order_.begin(), backward_order_.end());
  return absl::OkStatus();
}

absl::Status Network::SetInput(const std::string& name, std::span<const float> data) {
  ASSIGN_OR_RETURN(Node * n, graph_->Get(name));
  if (!n->is_source()) return NodeError(*n, "is not an input node");
  if (static_cast<int64_t>(data.size()) != n->numel()) {
    return NodeError(*n, absl::StrFormat("expects %d values for shape %s, got %d", n->numel(),
                                         n->shape().ToString(), data.size()));
  }
  std::vector<float> phys(data.size());
  LogicalToPhysical(n->shape(), data.data(), phys.data());
  ctx_.backend->Upload(phys.data(), n->value(), n->numel());
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> Network::Output(const std::string& name) const {
  ASSIGN_OR_RETURN(Node * n, graph_->Get(name));
  std::vector<float> phys(n->numel()), out(n->numel());
  ctx_.backend->Download(n->value(), phys.data(), n->numel());
  PhysicalToLogical(n->shape(), phys.data(), out.data());
  return out;
}

absl::StatusOr<float> Network::Scalar(const std::string& name) const {
  ASSIGN_OR_RETURN(Node * n, graph_->Get(name));
  float v = 0;
  ctx_.backend->Download(n->value(), &v, 1);
  return v;
}

absl::Status Network::Forward() {
  ExecContext& ctx = ctx_;
  for (const auto& n : graph_->nodes()) RETURN_IF_ERROR(n->Forward(ctx));
  // Errors of asynchronous launches (CUDA) surface here, naming the call, not at a later read.
  return ctx.backend->Synchronize();
}

absl::Status Network::RunBackward(Node* from) {
  for (const auto& n : graph_->nodes()) n->ResetGradState();
  bool started = false;
  for (Node* n : backward_order_) {
    if (n == from) {
      started = true;
      n->mark_grad_written();
    }
    if (!started || !n->needs_grad() || !n->grad_written()) continue;
    RETURN_IF_ERROR(n->Backward(ctx_));
  }
  if (!started) return NodeError(*from, "is not on the backward path");
  return ctx_.backend->Synchronize();
}

absl::StatusOr<std::vector<Network::NodeTiming>> Network::Profile(int repeats) {
  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::time_point a) {
    return std::chrono::duration<double, std::milli>(Clock::now() - a).count();
  };
  const auto& nodes = graph_->nodes();
  std::vector<NodeTiming> t(nodes.size());
  absl::flat_hash_map<const Node*, size_t> index;
  for (size_t i = 0; i < nodes.size(); ++i) {
    t[i].name = nodes[i]->name();
    t[i].op = nodes[i]->op();
    index[nodes[i].get()] = i;
  }
  const std::string& loss = graph_->spec().designations().loss_node();
  for (int r = 0; r < repeats; ++r) {
    for (size_t i = 0; i < nodes.size(); ++i) {
      RETURN_IF_ERROR(ctx_.backend->Synchronize());  // asynchronous backends: time the node only
      auto t0 = Clock::now();
      RETURN_IF_ERROR(nodes[i]->Forward(ctx_));
      RETURN_IF_ERROR(ctx_.backend->Synchronize());
      t[i].forward_ms += ms(t0) / repeats;
    }
    if (loss.empty() || options_.inference_only) continue;
    ASSIGN_OR_RETURN(Node * l, graph_->Get(loss));
    for (const auto& n : nodes) n->ResetGradState();
    const float one = 1.f;
    ctx_.backend->Upload(&one, l->grad(), 1);
    l->mark_grad_written();
    for (Node* n : backward_order_) {
      if (!n->needs_grad() || !n->grad_written()) continue;
      RETURN_IF_ERROR(ctx_.backend->Synchronize());
      auto t0 = Clock::now();
      RETURN_IF_ERROR(n->Backward(ctx_));
      RETURN_IF_ERROR(ctx_.backend->Synchronize());
      t[index[n]].backward_ms += ms(t0) / repeats;
    }
  }
  return t;
}

absl::Status Network::Backward() {
  const std::string& loss = graph_->spec().designations().loss_node();
  if (loss.empty()) return absl::FailedPreconditionError("the model designates no loss node");
  if (options_.inference_only) {
    return absl::FailedPreconditionError(
        "the network was compiled for inference only (NetworkOptions::inference_only)");
  }
  ASSIGN_OR_RETURN(Node * n, graph_->Get(loss));
  const float one = 1.f;
  ctx_.backend->Upload(&one, n->grad(), 1);
  return RunBackward(n);
}

absl::Status Network::BackwardFrom(const std::string& name, std::span<const float> seed) {
  ASSIGN_OR_RETURN(Node * n, graph_->Get(name));
  if (!n->needs_grad()) return NodeError(*n, "carries no gradient");
  if (static_cast<int64_t>(seed.size()) != n->numel()) {
    return NodeError(
        *n, absl::StrFormat("gradient seed needs %d values, got %d", n->numel(), seed.size()));
  }
  std::vector<float> phys(seed.size());
  LogicalToPhysical(n->shape(), seed.data(), phys.data());
  ctx_.backend->Upload(phys.data(), n->grad(), n->numel());
  return RunBackward(n);
}

absl::Status Network::BackwardFromBuffers(
    const std::vector<std::pair<Node*, const float*>>& seeds) {
  if (options_.inference_only) {
    return absl::FailedPreconditionError(
        "the network was compiled for inference only (NetworkOptions::inference_only)");
  }
  for (const auto& n : graph_->nodes()) n->ResetGradState();
  for (const auto& [n, seed] : seeds) {
    if (!n->needs_grad()) return NodeError(*n, "carries no gradient");
    if (n->grad_written()) {
      if (seed != nullptr) ctx_.backend->Add(n->grad(), seed, n->grad(), n->numel());
    } else if (seed != nullptr) {
      ctx_.backend->Copy(seed, n->grad(), n->numel());
    } else {
      ctx_.backend->Fill(n->grad(), 0.f, n->numel());
    }
    n->mark_grad_written();
  }
  for (Node* n : backward_order_) {
    if (!n->needs_grad() || !n->grad_written()) continue;
    RETURN_IF_ERROR(n->Backward(ctx_));
  }
  return absl::OkStatus();
}

absl::Status Network::BackwardFromMany(
    const std::vector<std::pair<std::string, std::span<const float>>>& seeds) {
  std::vector<Buffer> phys;
  std::vector<std::pair<Node*, const float*>> device;
  for (const auto& [name, seed] : seeds) {
    ASSIGN_OR_RETURN(Node * n, graph_->Get(name));
    if (static_cast<int64_t>(seed.size()) != n->numel()) {
      return NodeError(
          *n, absl::StrFormat("gradient seed needs %d values, got %d", n->numel(), seed.size()));
    }
    std::vector<float> p(seed.size());
    LogicalToPhysical(n->shape(), seed.data(), p.data());
    phys.emplace_back(ctx_.backend, n->numel());
    ctx_.backend->Upload(p.data(), phys.back().data(), n->numel());
    device.emplace_back(n, phys.back().data());
  }
  return BackwardFromBuffers(device);
}

absl::StatusOr<std::vector<float>> Network::InputGradient(const std::string& name) const {
  ASSIGN_OR_RETURN(Node * n, graph_->Get(name));
  if (n->grad() == nullptr) return NodeError(*n, "has no gradient buffer");
  std::vector<float> phys(n->numel()), out(n->numel());
  ctx_.backend->Download(n->grad(), phys.data(), n->numel());
  PhysicalToLogical(n->shape(), phys.data(), out.data());
  return out;
}

absl::StatusOr<Parameter*> Network::FindParam(const std::string& node, const std::string& name) {
  for (Parameter* p : params_)
    if (p->node == node && p->name == name) return p;
  return absl::NotFoundError(absl::StrFormat("no parameter '%s' in node '%s'", name, node));
}

// Canonical-layout copy of a native buffer of `p` (its value or its gradient).
static std::vector<float> ToCanonical(kernels::Backend* b, const Parameter& p, const float* src) {
  std::vector<float> native(p.size);
  b->Download(src, native.data(), p.size);
  if (!p.export_fn) return native;
  std::vector<float> canonical(p.canonical_size());
  p.export_fn(native.data(), canonical.data());
  return canonical;
}

std::vector<float> Network::ParamValue(const Parameter& p) const {
  return ToCanonical(ctx_.backend, p, p.value);
}

std::vector<float> Network::ParamGrad(const Parameter& p) const {
  return ToCanonical(ctx_.backend, p, p.grad);
}

absl::Status Network::SetParamValue(Parameter& p, std::span<const float> canonical) {
  if (static_cast<int64_t>(canonical.size()) != p.canonical_size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "parameter %s needs %d values, got %d", p.key(), p.canonical_size(), canonical.size()));
  }
  std::vector<float> native(p.size, 0.f);
  if (p.import_fn) {
    p.import_fn(canonical.data(), native.data());
  } else {
    std::copy(canonical.begin(), canonical.end(), native.begin());
  }
  ctx_.backend->Upload(native.data(), p.value, p.size);
  return absl::OkStatus();
}

}  // namespace elektronn
