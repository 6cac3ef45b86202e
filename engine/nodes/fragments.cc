// FragmentsToDense: interleaves the fragments of a max-fragment-pooling net into one dense
// (stride-1) volume (reference §2.6).
#include <numeric>
#include <set>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/nodes/registry.h"
#include "engine/nodes/shape_rules.h"

namespace elektronn {
namespace {

class FragmentsToDenseNode : public Node {
 public:
  using Node::Node;
  std::string op() const override { return "FragmentsToDense"; }

  absl::Status InferShape() override {
    if (parents_.size() != 1) return NodeError(*this, "needs exactly one input node");
    const TaggedShape& in = parents_[0]->shape();
    RETURN_IF_ERROR(CheckImageLayout(in, NodeRef(*this)));
    const int nd = in.ndim();
    const auto& offsets = in.mfp_offsets();
    const int64_t n = static_cast<int64_t>(offsets.size());
    const int64_t strides =
        std::accumulate(in.strides().begin(), in.strides().end(), int64_t{1}, std::multiplies<>());
    if (n != strides) {
      return NodeError(
          *this,
          absl::StrFormat("its input has %d fragment(s) but strides (%s), i.e. %d output "
                          "positions per input voxel; every pooling layer before it must be a "
                          "Conv with mfp=True (Pool cannot do MFP)",
                          n, absl::StrJoin(in.strides(), ","), strides));
    }
    std::set<std::vector<int64_t>> seen;
    for (const auto& o : offsets) {
      for (int j = 0; j < nd; ++j) {
        if (o[j] < 0 || o[j] >= in.strides()[j]) {
          return NodeError(
              *this, absl::StrFormat("fragment offset (%s) lies outside the "
                                     "strides (%s)",
                                     absl::StrJoin(o, ","), absl::StrJoin(in.strides(), ",")));
        }
      }
      if (!seen.insert(o).second) {
        return NodeError(
            *this, absl::StrFormat("fragment offset (%s) occurs twice", absl::StrJoin(o, ",")));
      }
    }
    const int bi = in.TagIndex('b');
    const int64_t batch = in.size(bi);
    if (batch != kUnknownSize && batch != n) {
      return NodeError(
          *this, absl::StrFormat("its input batch holds %d entries, not the %d fragments of one "
                                 "image; MFP prediction needs a network input batch of 1",
                                 batch, n));
    }
    shape_ = in;
    shape_.set_size(bi, 1);
    for (int j = 0; j < nd; ++j) {
      shape_.set_spatial_size(j, in.spatial_shape()[j] * in.strides()[j]);
      shape_.set_stride(j, 1);
    }
    shape_.set_mfp_offsets({std::vector<int64_t>(nd, 0)});
    return absl::OkStatus();
  }
  std::string details() const override {
    const TaggedShape& in = parents_[0]->shape();
    return absl::StrFormat("%d fragments, strides (%s) -> 1", in.mfp_offsets().size(),
                           absl::StrJoin(in.strides(), ","));
  }

  absl::Status Compile(ExecContext& ctx) override {
    const TaggedShape& in = parents_[0]->shape();
    const int nd = in.ndim();
    const std::vector<int64_t> src_shape = PhysicalSizes(in), dst_shape = PhysicalSizes(shape_);
    std::vector<int64_t> extent = src_shape, step(nd + 2, 1);
    extent[0] = 1;
    for (int j = 0; j < nd; ++j) step[j + 1] = in.strides()[j];
    const auto& offsets = in.mfp_offsets();
    for (size_t i = 0; i < offsets.size(); ++i) {
      std::vector<int64_t> src_origin(nd + 2, 0), dst_origin(nd + 2, 0);
      src_origin[0] = static_cast<int64_t>(i);
      for (int j = 0; j < nd; ++j) dst_origin[j + 1] = offsets[i][j];
      to_dense_.push_back({src_shape, dst_shape, src_origin, dst_origin, extent, {}, step});
      to_fragment_.push_back({dst_shape, src_shape, dst_origin, src_origin, extent, step, {}});
    }
    AllocateOutput(ctx.backend);
    return absl::OkStatus();
  }
  absl::Status Forward(ExecContext& ctx) override {
    for (const kernels::BoxCopy& box : to_dense_) {
      ctx.backend->CopyBox(box, parents_[0]->value(), value_, false);
    }
    return absl::OkStatus();
  }
  absl::Status Backward(ExecContext& ctx) override {
    // The fragments tile the parent's gradient without overlap: one flag serves every copy.
    if (GradTarget t = ParentGrad(0)) {
      for (const kernels::BoxCopy& box : to_fragment_) {
        ctx.backend->CopyBox(box, grad(), t.ptr, t.accumulate);
      }
    }
    return absl::OkStatus();
  }

 private:
  std::vector<kernels::BoxCopy> to_dense_, to_fragment_;
};

}  // namespace

std::unique_ptr<Node> MakeFragmentsToDense(const v1::NodeSpec& s) {
  return std::make_unique<FragmentsToDenseNode>(s);
}

}  // namespace elektronn
