// Softmax over the feature axis, optionally in n_indep independent groups (reference §2.13).
#include "absl/strings/str_format.h"
#include "engine/nodes/neural.h"
#include "engine/nodes/registry.h"

namespace elektronn {
namespace {

class SoftmaxNode : public Node {
 public:
  using Node::Node;
  std::string op() const override { return "Softmax"; }
  int64_t n_class() const { return n_class_; }
  absl::Status InferShape() override {
    if (parents_.size() != 1) return NodeError(*this, "needs exactly one input node");
    const TaggedShape& in = parents_[0]->shape();
    if (!in.HasTag('f')) return NodeError(*this, "input has no feature axis 'f'");
    if (auto* nn = dynamic_cast<const NeuralNode*>(parents_[0]);
        nn != nullptr && nn->activation_proto() != v1::LIN) {
      return NodeError(
          *this, absl::StrFormat("its input %s must have activation_func='lin', not '%s'",
                                 NodeRef(*parents_[0]), ActivationName(nn->activation_proto())));
    }
    const int64_t f = in.SizeOf('f');
    const int64_t n_indep = spec_.softmax().n_indep() > 0 ? spec_.softmax().n_indep() : 1;
    n_class_ = spec_.softmax().n_class() > 0 ? spec_.softmax().n_class() : f / n_indep;
    if (n_class_ * n_indep != f) {
      return NodeError(*this, absl::StrFormat("n_class=%d times n_indep=%d must equal f=%d",
                                              n_class_, n_indep, f));
    }
    shape_ = in;
    return absl::OkStatus();
  }
  std::string details() const override {
    const int64_t n_indep = shape_.SizeOf('f') / n_class_;
    return n_indep > 1 ? absl::StrFormat("n_class=%d, n_indep=%d", n_class_, n_indep)
                       : absl::StrFormat("n_class=%d", n_class_);
  }
  absl::Status Compile(ExecContext& ctx) override {
    AllocateOutput(ctx.backend);
    return absl::OkStatus();
  }
  absl::Status Forward(ExecContext& ctx) override {
    ctx.backend->SoftmaxForward(parents_[0]->value(), value_, rows(), channels(), n_class_);
    return absl::OkStatus();
  }
  absl::Status Backward(ExecContext& ctx) override {
    if (GradTarget t = ParentGrad(0)) {
      ctx.backend->SoftmaxBackward(value_, grad(), t.ptr, rows(), channels(), n_class_,
                                   t.accumulate);
    }
    return absl::OkStatus();
  }

 private:
  int64_t n_class_ = 0;
};

}  // namespace

std::unique_ptr<Node> MakeSoftmax(const v1::NodeSpec& s) {
  return std::make_unique<SoftmaxNode>(s);
}
int64_t SoftmaxClasses(const Node& n) {
  auto* s = dynamic_cast<const SoftmaxNode*>(&n);
  return s ? s->n_class() : 0;
}

}  // namespace elektronn
