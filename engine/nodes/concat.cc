// Concat: concatenation along a tagged axis (default 'f'); other axes must agree.
#include "absl/strings/str_format.h"
#include "engine/nodes/registry.h"

namespace elektronn {
namespace {

class ConcatNode : public Node {
 public:
  using Node::Node;
  std::string op() const override { return "Concat"; }
  double cost() const override { return 0; }
  absl::Status InferShape() override {
    if (parents_.size() < 2) return NodeError(*this, "needs at least two input nodes");
    const std::string tag = spec_.concat().axis().empty() ? "f" : spec_.concat().axis();
    const TaggedShape& first = parents_[0]->shape();
    axis_ = tag.size() == 1 ? first.TagIndex(tag[0]) : -1;
    if (axis_ < 0) {
      return NodeError(*this, absl::StrFormat("axis '%s' is not a tag of the first input (\"%s\")",
                                              tag, first.tags_string()));
    }
    shape_ = first;
    int64_t total = 0;
    for (Node* p : parents_) {
      const TaggedShape& s = p->shape();
      if (s.tags() != first.tags()) {
        return NodeError(*this, absl::StrFormat("input %s has tags \"%s\", the first has \"%s\"",
                                                NodeRef(*p), s.tags_string(), first.tags_string()));
      }
      for (int i = 0; i < s.rank(); ++i) {
        if (i != axis_ && s.size(i) != first.size(i)) {
          return NodeError(
              *this,
              absl::StrFormat("input %s has %c=%d but the first input has %d; crop or pad to match",
                              NodeRef(*p), s.tags()[i], s.size(i), first.size(i)));
        }
      }
      total += s.size(axis_);
    }
    shape_.set_size(axis_, total);
    return absl::OkStatus();
  }
  absl::Status Compile(ExecContext& ctx) override {
    AllocateOutput(ctx.backend);
    const std::vector<int64_t> out = PhysicalSizes(shape_);
    const int pa = PhysicalAxis(shape_, axis_);
    int64_t offset = 0;
    for (Node* p : parents_) {
      kernels::BoxCopy box;
      box.src_shape = PhysicalSizes(p->shape());
      box.dst_shape = out;
      box.extent = box.src_shape;
      box.src_origin.assign(out.size(), 0);
      box.dst_origin.assign(out.size(), 0);
      box.dst_origin[pa] = offset;
      offset += box.src_shape[pa];
      boxes_.push_back(box);
    }
    return absl::OkStatus();
  }
  absl::Status Forward(ExecContext& ctx) override {
    for (size_t i = 0; i < parents_.size(); ++i)
      ctx.backend->CopyBox(boxes_[i], parents_[i]->value(), value_, false);
    return absl::OkStatus();
  }
  absl::Status Backward(ExecContext& ctx) override {
    for (size_t i = 0; i < parents_.size(); ++i) {
      GradTarget t = ParentGrad(static_cast<int>(i));
      if (!t) continue;
      kernels::BoxCopy back = boxes_[i];
      std::swap(back.src_shape, back.dst_shape);
      std::swap(back.src_origin, back.dst_origin);
      ctx.backend->CopyBox(back, grad(), t.ptr, t.accumulate);
    }
    return absl::OkStatus();
  }

 private:
  int axis_ = -1;
  std::vector<kernels::BoxCopy> boxes_;
};

}  // namespace

std::unique_ptr<Node> MakeConcat(const v1::NodeSpec& s) { return std::make_unique<ConcatNode>(s); }

}  // namespace elektronn
