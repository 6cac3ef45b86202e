// Sources: Input (declared shape) and Input_like (shape copied from another node).
#include "absl/strings/str_format.h"
#include "engine/nodes/registry.h"

namespace elektronn {
namespace {

class InputNode : public Node {
 public:
  using Node::Node;
  std::string op() const override { return "Input"; }
  bool is_source() const override { return true; }
  double cost() const override { return 0; }

  absl::Status InferShape() override {
    const v1::InputOp& in = spec_.input();
    std::vector<int64_t> sizes(in.shape().begin(), in.shape().end());
    std::vector<int64_t> strides(in.strides().begin(), in.strides().end());
    std::vector<int64_t> fov(in.fov().begin(), in.fov().end());
    auto s = TaggedShape::Create(sizes, in.tags(), strides, fov);
    if (!s.ok()) return NodeError(*this, std::string(s.status().message()));
    if (!s->HasTag('b') || !s->HasTag('f')) {
      return NodeError(*this, absl::StrFormat("tags \"%s\" need a batch axis 'b' and a feature "
                                              "axis 'f'",
                                              in.tags()));
    }
    shape_ = *std::move(s);
    return absl::OkStatus();
  }
  absl::Status Compile(ExecContext& ctx) override {
    AllocateOutput(ctx.backend);
    ctx.backend->Fill(value_, 0.f, numel_);
    return absl::OkStatus();
  }
  absl::Status Forward(ExecContext&) override { return absl::OkStatus(); }
};

class InputLikeNode : public InputNode {
 public:
  using InputNode::InputNode;
  std::string op() const override { return "Input_like"; }
  absl::Status InferShape() override {
    if (parents_.size() != 1) return NodeError(*this, "needs exactly one reference node");
    shape_ = parents_[0]->shape();
    const int64_t f = spec_.input_like().override_f();
    if (f < 0) return NodeError(*this, absl::StrFormat("override_f=%d is negative", f));
    if (f > 0) shape_.set_size(shape_.TagIndex('f'), f);
    return absl::OkStatus();
  }
};

}  // namespace

std::unique_ptr<Node> MakeInput(const v1::NodeSpec& s) { return std::make_unique<InputNode>(s); }
std::unique_ptr<Node> MakeInputLike(const v1::NodeSpec& s) {
  return std::make_unique<InputLikeNode>(s);
}

}  // namespace elektronn
