// Activation: a standalone element-wise activation (ELEKTRONN2's ApplyFunc with relu, tanh, ...).
#include "absl/strings/str_format.h"
#include "engine/nodes/registry.h"

namespace elektronn {
namespace {

class ActivationNode : public Node {
 public:
  using Node::Node;
  std::string op() const override { return "Activation"; }
  kernels::Eltwise activation() const override {
    return ToEltwise(spec_.activation().activation());
  }
  absl::Status InferShape() override {
    if (parents_.size() != 1) return NodeError(*this, "needs exactly one input node");
    if (spec_.activation().activation() == v1::PRELU) {
      return NodeError(*this, "prelu has a learned slope; use it as a Conv or Perceptron option");
    }
    shape_ = parents_[0]->shape();
    return absl::OkStatus();
  }
  std::string details() const override {
    return absl::StrFormat("act='%s'", ActivationName(spec_.activation().activation()));
  }
  absl::Status Compile(ExecContext& ctx) override {
    AllocateOutput(ctx.backend);
    return absl::OkStatus();
  }
  absl::Status Forward(ExecContext& ctx) override {
    ctx.backend->EltwiseForward(activation(), parents_[0]->value(), value_, numel_);
    return absl::OkStatus();
  }
  absl::Status Backward(ExecContext& ctx) override {
    if (GradTarget t = ParentGrad(0)) {
      ctx.backend->EltwiseBackward(activation(), parents_[0]->value(), value_, grad(), t.ptr,
                                   numel_, t.accumulate);
    }
    return absl::OkStatus();
  }
};

}  // namespace

std::unique_ptr<Node> MakeActivation(const v1::NodeSpec& s) {
  return std::make_unique<ActivationNode>(s);
}

}  // namespace elektronn
