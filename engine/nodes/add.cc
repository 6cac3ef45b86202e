// Add: element-wise sum of two nodes of equal shape.
#include "absl/strings/str_format.h"
#include "engine/nodes/registry.h"

namespace elektronn {
namespace {

class AddNode : public Node {
 public:
  using Node::Node;
  std::string op() const override { return "Add"; }
  absl::Status InferShape() override {
    if (parents_.size() != 2) return NodeError(*this, "needs exactly two input nodes");
    const TaggedShape& a = parents_[0]->shape();
    const TaggedShape& b = parents_[1]->shape();
    if (a.sizes() != b.sizes() || a.tags() != b.tags()) {
      return NodeError(*this,
                       absl::StrFormat("shapes differ: %s vs %s", a.ToString(), b.ToString()));
    }
    shape_ = a;
    return absl::OkStatus();
  }
  absl::Status Compile(ExecContext& ctx) override {
    AllocateOutput(ctx.backend);
    return absl::OkStatus();
  }
  absl::Status Forward(ExecContext& ctx) override {
    ctx.backend->Add(parents_[0]->value(), parents_[1]->value(), value_, numel_);
    return absl::OkStatus();
  }
  absl::Status Backward(ExecContext& ctx) override {
    for (int i = 0; i < 2; ++i)
      if (GradTarget t = ParentGrad(i))
        ctx.backend->Scale(grad(), 1.f, t.ptr, numel_, t.accumulate);
    return absl::OkStatus();
  }
};

}  // namespace

std::unique_ptr<Node> MakeAdd(const v1::NodeSpec& s) { return std::make_unique<AddNode>(s); }

}  // namespace elektronn
