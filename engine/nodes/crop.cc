// Crop: removes crop[k] voxels from both sides of every spatial axis; fov and strides unchanged.
#include "absl/strings/str_format.h"
#include "engine/nodes/registry.h"

namespace elektronn {
namespace {

class CropNode : public Node {
 public:
  using Node::Node;
  std::string op() const override { return "Crop"; }
  double cost() const override { return 0; }
  absl::Status InferShape() override {
    if (parents_.size() != 1) return NodeError(*this, "needs exactly one input node");
    const TaggedShape& in = parents_[0]->shape();
    const auto& crop = spec_.crop().crop();
    if (crop.size() != in.ndim()) {
      return NodeError(*this, absl::StrFormat("crop has %d entries, the input has %d spatial axes",
                                              crop.size(), in.ndim()));
    }
    shape_ = in;
    for (int j = 0; j < in.ndim(); ++j) {
      const int64_t out = in.spatial_shape()[j] - 2 * crop[j];
      if (crop[j] < 0 || out < 1) {
        return NodeError(*this, absl::StrFormat("crop %d on an axis of size %d leaves %d voxels",
                                                crop[j], in.spatial_shape()[j], out));
      }
      shape_.set_spatial_size(j, out);
    }
    return absl::OkStatus();
  }
  absl::Status Compile(ExecContext& ctx) override {
    AllocateOutput(ctx.backend);
    const TaggedShape& in = parents_[0]->shape();
    box_.src_shape = PhysicalSizes(in);
    box_.dst_shape = PhysicalSizes(shape_);
    box_.extent = box_.dst_shape;
    box_.src_origin.assign(box_.src_shape.size(), 0);
    box_.dst_origin.assign(box_.src_shape.size(), 0);
    for (int j = 0; j < in.ndim(); ++j)
      box_.src_origin[PhysicalAxis(in, in.spatial_axes()[j])] = spec_.crop().crop(j);
    parent_numel_ = in.stripnone_prod();
    return absl::OkStatus();
  }
  absl::Status Forward(ExecContext& ctx) override {
    ctx.backend->CopyBox(box_, parents_[0]->value(), value_, false);
    return absl::OkStatus();
  }
  absl::Status Backward(ExecContext& ctx) override {
    GradTarget t = ParentGrad(0);
    if (!t) return absl::OkStatus();
    if (!t.accumulate) ctx.backend->Fill(t.ptr, 0.f, parent_numel_);
    kernels::BoxCopy back = box_;
    std::swap(back.src_shape, back.dst_shape);
    std::swap(back.src_origin, back.dst_origin);
    ctx.backend->CopyBox(back, grad(), t.ptr, t.accumulate);
    return absl::OkStatus();
  }

 private:
  kernels::BoxCopy box_;
  int64_t parent_numel_ = 0;
};

}  // namespace

std::unique_ptr<Node> MakeCrop(const v1::NodeSpec& s) { return std::make_unique<CropNode>(s); }

}  // namespace elektronn
