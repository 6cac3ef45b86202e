// Scan (reference §2.10): a step sub-graph repeated over the 'r' axis, run as one compiled inner
// Network looped n_steps times, with backpropagation through time by recomputation.
//
// ELEKTRONN2 unrolls the step graph n_steps times by graph cloning (unroll_scan=True) or builds
// a symbolic loop. Here both settings loop over one compiled step graph: the values and
// gradients are the same, and memory grows with n * (memory size) instead of n * (all
// activations of a step), because Backward recomputes each step's forward from its saved
// memory inputs (checkpointing) before back-propagating through it.
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/graph/network.h"
#include "engine/nodes/registry.h"

namespace elektronn {
namespace {

bool UsesBatchNorm(const v1::NodeSpec& n) {
  if (n.has_perceptron()) return n.perceptron().batch_normalisation() != v1::BN_OFF;
  if (n.has_conv()) return n.conv().batch_normalisation() != v1::BN_OFF;
  return false;
}

void SetInputShape(const TaggedShape& s, v1::InputOp* in) {
  for (int64_t v : s.sizes()) in->add_shape(v);
  in->set_tags(s.tags_string());
  for (int64_t v : s.strides()) in->add_strides(v);
  for (int64_t v : s.fov()) in->add_fov(v);
}

class ScanNode : public Node {
 public:
  using Node::Node;
  std::string op() const override { return "Scan"; }

  absl::Status InferShape() override {
    const v1::ScanOp& s = spec_.scan();
    const size_t k = s.in_iterate_0_size(), m = s.in_memory_size(), c = s.constants_size();
    if (parents_.size() != k + m + c) {
      return NodeError(*this, absl::StrFormat("has %d input nodes but names %d iterated inputs, "
                                              "%d memories and %d constants",
                                              parents_.size(), k, m, c));
    }
    if (s.out_memory_size() != static_cast<int>(m)) {
      return NodeError(*this, absl::StrFormat("has %d in_memory but %d out_memory nodes", m,
                                              s.out_memory_size()));
    }
    if (s.step_result().empty()) return NodeError(*this, "names no step_result");
    if (s.n_steps() < 0) return NodeError(*this, absl::StrFormat("n_steps=%d", s.n_steps()));
    n_ = s.n_steps();
    for (size_t i = 0; i < k; ++i) {
      const TaggedShape& in = parents_[i]->shape();
      if (in.rank() < 2 || in.tags()[0] != 'r') {
        return NodeError(*this, absl::StrFormat("iterated input '%s' has tags \"%s\"; it needs "
                                                "a leading recurrence axis 'r', e.g. \"r,b,f\"",
                                                parents_[i]->name(), in.tags_string()));
      }
      if (in.size(0) == kUnknownSize) {
        return NodeError(*this, absl::StrFormat("iterated input '%s' has an unknown 'r' size",
                                                parents_[i]->name()));
      }
      if (n_ == 0) n_ = in.size(0);
      if (in.size(0) != n_) {
        return NodeError(*this, absl::StrFormat("n_steps=%d but iterated input '%s' has r=%d "
                                                "(they must be equal)",
                                                n_, parents_[i]->name(), in.size(0)));
      }
    }
    if (n_ < 1) {
      return NodeError(*this, "needs n_steps >= 1 (given, or the 'r' size of an iterated input)");
    }
    ASSIGN_OR_RETURN(v1::ModelSpec step, StepSpec(0));
    auto g = Graph::Create(step);
    if (!g.ok()) {
      return NodeError(*this, absl::StrCat("step graph: ", g.status().message()));
    }
    step_graph_ = *std::move(g);
    const Node* result = step_graph_->Find(s.step_result());
    if (result == nullptr || result->is_source()) {
      return NodeError(*this, absl::StrFormat("step_result '%s' is not a node of the step graph",
                                              s.step_result()));
    }
    for (size_t j = 0; j < m; ++j) {
      const Node* out = step_graph_->Find(s.out_memory(j));
      if (out == nullptr || out->is_source()) {
        return NodeError(*this, absl::StrFormat("out_memory '%s' is not a node of the step graph",
                                                s.out_memory(j)));
      }
      const TaggedShape& want = parents_[k + j]->shape();
      if (out->shape().sizes() != want.sizes() || out->shape().tags() != want.tags()) {
        return NodeError(*this, absl::StrFormat("out_memory '%s' has shape %s but in_memory '%s' "
                                                "has %s; a memory must keep its shape",
                                                out->name(), out->shape().ToString(),
                                                s.in_memory(j), want.ToString()));
      }
    }
    const TaggedShape& rs = result->shape();
    if (rs.HasTag('r')) {
      return NodeError(*this, absl::StrFormat("step_result '%s' already has an 'r' axis (\"%s\")",
                                              s.step_result(), rs.tags_string()));
    }
    if (s.last_only()) {
      shape_ = rs;
    } else {
      std::vector<int64_t> sizes = {n_};
      sizes.insert(sizes.end(), rs.sizes().begin(), rs.sizes().end());
      auto o = TaggedShape::Create(sizes, "r" + rs.tags(), rs.strides(), rs.fov());
      if (!o.ok()) return NodeError(*this, std::string(o.status().message()));
      shape_ = *std::move(o);
    }
    return absl::OkStatus();
  }

  int64_t param_count() const override {
    int64_t total = 0;
    if (step_graph_)
      for (const auto& n : step_graph_->nodes()) total += n->param_count();
    return total;
  }
  // n_steps times the step graph's cost: the step nodes are counted here only (ELEKTRONN2 counts
  // them once in the graph and adds (n - 1) times their cost at the Scan; the sum is the same).
  double cost() const override {
    double c = 0;
    if (step_graph_)
      for (const auto& n : step_graph_->nodes()) c += n->cost();
    return c * static_cast<double>(n_);
  }
  std::string details() const override {
    const v1::ScanOp& s = spec_.scan();
    return absl::StrFormat("n_steps=%d%s, step '%s' over %d nodes, memory {%s}", n_,
                           s.last_only() ? ", last_only" : "", s.step_result(), s.step_nodes_size(),
                           absl::StrJoin(s.in_memory(), ", "));
  }

  absl::Status Compile(ExecContext& ctx) override {
    const v1::ScanOp& s = spec_.scan();
    kernels::Backend* b = ctx.backend;
    AllocateOutput(b);
    ASSIGN_OR_RETURN(v1::ModelSpec step, StepSpec(ctx.seed));
    NetworkOptions o;
    o.batch_size = std::max<int64_t>(1, shape_.SizeOf('b'));
    o.seed = ctx.seed;
    o.input_gradients = true;
    o.inference_only = !needs_grad();
    o.precision = ctx.precision;
    auto net = Network::Create(step, b, o);
    if (!net.ok()) return NodeError(*this, absl::StrCat("step graph: ", net.status().message()));
    inner_ = *std::move(net);
    Graph& g = inner_->graph();
    placeholders_.clear();
    for (const auto& name : s.in_iterate_0()) placeholders_.push_back(g.Find(name));
    for (const auto& name : s.in_memory()) placeholders_.push_back(g.Find(name));
    for (const auto& name : s.constants()) placeholders_.push_back(g.Find(name));
    result_ = g.Find(s.step_result());
    out_memory_.clear();
    for (const auto& name : s.out_memory()) out_memory_.push_back(g.Find(name));
    history_.clear();
    carry_.clear();
    input_grads_.clear();
    if (needs_grad()) {
      const int k = s.in_iterate_0_size(), m = s.in_memory_size();
      for (int j = 0; j < m; ++j) {
        history_.push_back(Scratch(b, n_ * placeholders_[k + j]->numel()).data());
        carry_.push_back(Scratch(b, placeholders_[k + j]->numel()).data());
      }
      for (Node* p : parents_) input_grads_.push_back(Scratch(b, p->numel()).data());
    }
    // The step nodes' parameters, under their own keys ("gru/w"): values are the inner
    // network's, gradients the sums over the steps.
    for (Parameter* p : inner_->params()) {
      Parameter q = *p;
      q.grad = needs_grad() ? Scratch(b, p->size).data() : p->grad;
      if (q.grad != nullptr) b->Fill(q.grad, 0.f, p->size);
      params_.push_back(std::move(q));
    }
    return absl::OkStatus();
  }

  absl::Status Forward(ExecContext& ctx) override {
    const v1::ScanOp& s = spec_.scan();
    kernels::Backend* b = ctx.backend;
    const int k = s.in_iterate_0_size(), m = s.in_memory_size();
    inner_->set_training(ctx.training);
    for (size_t i = k; i < parents_.size(); ++i)  // initial memories and constants
      b->Copy(parents_[i]->value(), placeholders_[i]->value(), parents_[i]->numel());
    const int64_t rs = result_->numel();
    for (int64_t t = 0; t < n_; ++t) {
      SetIterated(b, t);
      for (int j = 0; j < m && needs_grad(); ++j) {
        const Node* ph = placeholders_[k + j];
        b->Copy(ph->value(), history_[j] + t * ph->numel(), ph->numel());
      }
      inner_->set_step(StepOf(ctx, t));
      RETURN_IF_ERROR(inner_->Forward());
      if (!s.last_only()) {
        b->Copy(result_->value(), value_ + t * rs, rs);
      } else if (t == n_ - 1) {
        b->Copy(result_->value(), value_, rs);
      }
      for (int j = 0; j < m; ++j)
        b->Copy(out_memory_[j]->value(), placeholders_[k + j]->value(), out_memory_[j]->numel());
    }
    return absl::OkStatus();
  }

  absl::Status Backward(ExecContext& ctx) override {
    const v1::ScanOp& s = spec_.scan();
    kernels::Backend* b = ctx.backend;
    const int k = s.in_iterate_0_size(), m = s.in_memory_size();
    const int64_t rs = result_->numel();
    std::vector<Parameter*>& inner_params = inner_->params();
    for (size_t i = 0; i < params_.size(); ++i) b->Fill(params_[i].grad, 0.f, params_[i].size);
    for (size_t i = 0; i < parents_.size(); ++i)
      b->Fill(input_grads_[i], 0.f, parents_[i]->numel());
    inner_->set_training(ctx.training);
    for (size_t i = k + m; i < parents_.size(); ++i)
      b->Copy(parents_[i]->value(), placeholders_[i]->value(), parents_[i]->numel());
    for (int64_t t = n_ - 1; t >= 0; --t) {
      // Recompute step t from its saved inputs.
      SetIterated(b, t);
      for (int j = 0; j < m; ++j) {
        Node* ph = placeholders_[k + j];
        b->Copy(history_[j] + t * ph->numel(), ph->value(), ph->numel());
      }
      inner_->set_step(StepOf(ctx, t));
      RETURN_IF_ERROR(inner_->Forward());
      // Seeds: this step's slice of the output gradient, and the memory gradient of step t+1.
      std::vector<std::pair<Node*, const float*>> seeds;
      if (!s.last_only()) {
        seeds.emplace_back(result_, grad() + t * rs);
      } else {
        seeds.emplace_back(result_, t == n_ - 1 ? grad() : nullptr);
      }
      for (int j = 0; j < m; ++j)
        seeds.emplace_back(out_memory_[j], t == n_ - 1 ? nullptr : carry_[j]);
      for (Parameter* p : inner_params) b->Fill(p->grad, 0.f, p->size);
      RETURN_IF_ERROR(inner_->BackwardFromBuffers(seeds));
      for (size_t i = 0; i < inner_params.size(); ++i)
        b->Add(params_[i].grad, inner_params[i]->grad, params_[i].grad, params_[i].size);
      for (int i = 0; i < k; ++i) {
        Node* ph = placeholders_[i];
        float* dst = input_grads_[i] + t * ph->numel();
        if (ph->grad_written()) b->Copy(ph->grad(), dst, ph->numel());
      }
      for (int j = 0; j < m; ++j) {
        Node* ph = placeholders_[k + j];
        if (ph->grad_written()) {
          b->Copy(ph->grad(), carry_[j], ph->numel());
        } else {
          b->Fill(carry_[j], 0.f, ph->numel());
        }
      }
      for (size_t i = k + m; i < parents_.size(); ++i) {
        Node* ph = placeholders_[i];
        if (ph->grad_written()) b->Add(input_grads_[i], ph->grad(), input_grads_[i], ph->numel());
      }
    }
    for (int j = 0; j < m; ++j) b->Copy(carry_[j], input_grads_[k + j], parents_[k + j]->numel());
    for (size_t i = 0; i < parents_.size(); ++i) {
      GradTarget tg = ParentGrad(static_cast<int>(i));
      if (!tg) continue;
      if (tg.accumulate) {
        b->Add(tg.ptr, input_grads_[i], tg.ptr, parents_[i]->numel());
      } else {
        b->Copy(input_grads_[i], tg.ptr, parents_[i]->numel());
      }
    }
    return absl::OkStatus();
  }

 private:
  // The step graph as a model: one Input per placeholder (shape of the outer node, the 'r' axis
  // dropped for iterated inputs), then the step nodes.
  absl::StatusOr<v1::ModelSpec> StepSpec(uint64_t seed) const {
    const v1::ScanOp& s = spec_.scan();
    v1::ModelSpec step;
    step.set_name(name() + "/step");
    step.set_seed(seed);
    const int k = s.in_iterate_0_size(), m = s.in_memory_size();
    for (size_t i = 0; i < parents_.size(); ++i) {
      v1::NodeSpec* ph = step.add_nodes();
      TaggedShape sh = parents_[i]->shape();
      if (static_cast<int>(i) < k) {
        ph->set_name(s.in_iterate_0(i));
        std::vector<int64_t> sizes(sh.sizes().begin() + 1, sh.sizes().end());
        auto sliced = TaggedShape::Create(sizes, sh.tags().substr(1), sh.strides(), sh.fov());
        if (!sliced.ok()) return NodeError(*this, std::string(sliced.status().message()));
        sh = *std::move(sliced);
      } else if (static_cast<int>(i) < k + m) {
        ph->set_name(s.in_memory(i - k));
      } else {
        ph->set_name(s.constants(i - k - m));
      }
      SetInputShape(sh, ph->mutable_input());
    }
    for (const v1::NodeSpec& n : s.step_nodes()) {
      if (n.has_input() || n.has_input_like()) {
        return NodeError(*this, absl::StrFormat("step node '%s' is a source (%s); the step graph "
                                                "reads outer nodes through in_iterate_0, "
                                                "in_memory or as constants",
                                                n.name(), n.has_input() ? "Input" : "Input_like"));
      }
      if (UsesBatchNorm(n)) {
        return NodeError(*this, absl::StrFormat("step node '%s' uses batch normalisation, which "
                                                "a Scan step graph does not support (its running "
                                                "statistics would be updated once per step and "
                                                "again when backpropagation recomputes the step)",
                                                n.name()));
      }
      *step.add_nodes() = n;
    }
    return step;
  }

  void SetIterated(kernels::Backend* b, int64_t t) {
    const int k = spec_.scan().in_iterate_0_size();
    for (int i = 0; i < k; ++i) {
      const int64_t sz = placeholders_[i]->numel();
      b->Copy(parents_[i]->value() + t * sz, placeholders_[i]->value(), sz);
    }
  }
  // The inner network's step (drives dropout masks): distinct per training step and time step,
  // and the same again when Backward recomputes step t.
  uint64_t StepOf(const ExecContext& ctx, int64_t t) const {
    return ctx.step * static_cast<uint64_t>(n_) + static_cast<uint64_t>(t);
  }

  int64_t n_ = 0;
  std::unique_ptr<Graph> step_graph_;  // shapes only (summary, cost, parameter count)
  std::unique_ptr<Network> inner_;
  std::vector<Node*> placeholders_;  // inner sources, parallel to parents_
  Node* result_ = nullptr;
  std::vector<Node*> out_memory_;
  std::vector<float*> history_;      // per memory: its value at the start of every step
  std::vector<float*> carry_;        // per memory: d loss / d memory entering step t + 1
  std::vector<float*> input_grads_;  // per parent: its gradient, summed over the steps
};

}  // namespace

std::unique_ptr<Node> MakeScan(const v1::NodeSpec& s) { return std::make_unique<ScanNode>(s); }

}  // namespace elektronn
