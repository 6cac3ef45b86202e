// Perceptron: a dot product over the feature axis on any dimensionality, or over all non-batch
// axes with `flatten` (reference §2.2). Computed as one matrix product in channels-last layout.
#include <cmath>

#include "absl/strings/str_format.h"
#include "engine/nodes/neural.h"
#include "engine/nodes/registry.h"

namespace elektronn {
namespace {

class PerceptronNode : public NeuralNode {
 public:
  explicit PerceptronNode(const v1::NodeSpec& s) : NeuralNode(s) {
    act_ = s.perceptron().activation() == v1::ACTIVATION_UNSPECIFIED ? v1::RELU
                                                                     : s.perceptron().activation();
    set_bn_mode(s.perceptron().batch_normalisation());
  }
  std::string op() const override { return "Perceptron"; }

  absl::Status InferShape() override {
    const v1::PerceptronOp& p = spec_.perceptron();
    if (parents_.size() != 1) return NodeError(*this, "needs exactly one input node");
    RETURN_IF_ERROR(CheckBatchNorm());
    if (p.n_f() <= 0) return NodeError(*this, absl::StrFormat("n_f=%d must be positive", p.n_f()));
    const TaggedShape& in = parents_[0]->shape();
    if (!in.HasTag('f')) return NodeError(*this, "input has no feature axis 'f'");
    if (p.flatten()) {
      if (in.TagIndex('b') != 0 || in.TagIndex('f') != 1) {
        return NodeError(*this, absl::StrFormat("flatten needs tags starting \"b,f\", got \"%s\"",
                                                in.tags_string()));
      }
      auto s = TaggedShape::Create({in.size(0), p.n_f()}, "b,f");
      if (!s.ok()) return NodeError(*this, std::string(s.status().message()));
      shape_ = *std::move(s);
      n_in_ = in.stripbatch_prod();
    } else {
      shape_ = in;
      shape_.set_size(shape_.TagIndex('f'), p.n_f());
      n_in_ = in.SizeOf('f');
    }
    return absl::OkStatus();
  }
  int64_t param_count() const override {
    const int64_t n_f = spec_.perceptron().n_f();
    return TrainableCount(n_in_ * n_f + n_f + (act_ == v1::PRELU ? n_f : 0) +
                          BatchNormParamCount(n_f));
  }
  double cost() const override {
    return static_cast<double>(parents_[0]->shape().stripnone_prod()) * spec_.perceptron().n_f();
  }
  std::string details() const override {
    return absl::StrFormat("n_f=%d, act='%s'%s", spec_.perceptron().n_f(), ActivationName(act_),
                           spec_.perceptron().flatten() ? ", flatten" : "") +
           BatchNormDetails() + FrozenDetails();
  }

  absl::Status Compile(ExecContext& ctx) override {
    const v1::PerceptronOp& p = spec_.perceptron();
    kernels::Backend* b = ctx.backend;
    const int64_t m = parents_[0]->shape().stripnone_prod() / n_in_;
    fused_ = FusesActivation();
    kernels::MatmulDesc d{m, n_in_, p.n_f(), LinearOpActivation(), ctx.precision};
    auto k = b->CreateMatmul(d);
    if (!k.ok()) return NodeError(*this, std::string(k.status().message()));
    mm_ = *std::move(k);
    lin_ = Scratch(b, m * p.n_f()).data();
    value_ = lin_;
    std::mt19937_64 rng = NodeRng(ctx.seed, name());
    Parameter& w = AddParam(b, "w", {n_in_, p.n_f()}, n_in_ * p.n_f(), 1.f);
    std::vector<float> wv(w.size);
    InitNormal(wv, std::sqrt(2.0 / static_cast<double>(n_in_ + p.n_f())), rng);
    b->Upload(wv.data(), w.value, w.size);
    Parameter& bias = AddParam(b, "b", {p.n_f()}, p.n_f(), 0.f);
    std::vector<float> bv(p.n_f());
    InitBias(bv, act_, 1.0, rng);
    b->Upload(bv.data(), bias.value, p.n_f());
    CompileTail(ctx, act_, p.dropout_rate(), m, p.n_f(), rng);
    fused_ = FusesActivation();
    return absl::OkStatus();
  }
  absl::Status Forward(ExecContext& ctx) override {
    RETURN_IF_ERROR(
        mm_->Forward(parents_[0]->value(), params_[0].value, LinearOpBias(params_[1].value), lin_));
    TailForward(ctx, lin_);
    return absl::OkStatus();
  }
  absl::Status Backward(ExecContext& ctx) override {
    float* d = TailBackward(ctx, lin_);
    if (LinearOpFusesActivation() && act_ != v1::LIN) {
      const int64_t n = parents_[0]->shape().stripnone_prod() / n_in_ * spec_.perceptron().n_f();
      ctx.backend->EltwiseBackward(ToEltwise(act_), nullptr, lin_, d, d, n, false);
    }
    RETURN_IF_ERROR(mm_->BackwardWeights(parents_[0]->value(), d, params_[0].grad,
                                         LinearOpBiasGrad(params_[1].grad)));
    if (GradTarget t = ParentGrad(0)) {
      RETURN_IF_ERROR(mm_->BackwardData(d, params_[0].value, t.ptr, t.accumulate));
    }
    return absl::OkStatus();
  }

 private:
  int64_t n_in_ = 0;
  std::unique_ptr<kernels::MatmulKernel> mm_;
  float* lin_ = nullptr;
};

}  // namespace

std::unique_ptr<Node> MakePerceptron(const v1::NodeSpec& s) {
  return std::make_unique<PerceptronNode>(s);
}

}  // namespace elektronn
