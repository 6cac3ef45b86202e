// Pool: max or average pooling with custom strides (reference §2.7).
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/nodes/registry.h"
#include "engine/nodes/shape_rules.h"

namespace elektronn {
namespace {

class PoolNode : public Node {
 public:
  explicit PoolNode(const v1::NodeSpec& s) : Node(s) {
    pool_.assign(s.pool().pool_shape().begin(), s.pool().pool_shape().end());
    stride_.assign(s.pool().stride().begin(), s.pool().stride().end());
    if (stride_.empty()) stride_ = pool_;
  }
  std::string op() const override { return "Pool"; }

  absl::Status InferShape() override {
    if (parents_.size() != 1) return NodeError(*this, "needs exactly one input node");
    if (spec_.pool().mfp()) {
      return NodeError(*this,
                       "mfp=True is not supported on Pool (as in ELEKTRONN2); use "
                       "Conv(..., pool_shape, mfp=True)");
    }
    const TaggedShape& in = parents_[0]->shape();
    RETURN_IF_ERROR(CheckImageLayout(in, NodeRef(*this)));
    const int nd = in.ndim();
    if (static_cast<int>(pool_.size()) != nd || static_cast<int>(stride_.size()) != nd) {
      return NodeError(*this, absl::StrFormat("pool_shape (%d) and stride (%d) need %d entries",
                                              pool_.size(), stride_.size(), nd));
    }
    shape_ = in;
    for (int j = 0; j < nd; ++j) {
      const int64_t s = in.spatial_shape()[j], p = pool_[j], st = stride_[j];
      if (p < 1 || st < 1) return NodeError(*this, "pool sizes and strides must be >= 1");
      if (s < p || (s - p) % st != 0) {
        int64_t lo = s - 1, hi = s + 1;
        while (lo >= p && (lo - p) % st != 0) --lo;
        while ((hi - p) % st != 0 || hi < p) ++hi;
        return ShapeAxisError(
            absl::StrFormat(
                "%s: cannot pool spatial axis %s of size %d with pool %d and stride %d; "
                "nearest valid %s: %s%d",
                NodeRef(*this), AxisName(in, j), s, p, st, AxisName(in, j),
                lo >= p ? absl::StrCat(lo, " or ") : "", hi),
            in.tags()[in.spatial_axes()[j]]);
      }
      shape_.set_spatial_size(j, (s - p) / st + 1);
      if (in.fov()[j] > 0) shape_.set_fov(j, in.fov()[j] + (p - 1) * in.strides()[j]);
      shape_.set_stride(j, in.strides()[j] * st);
    }
    return absl::OkStatus();
  }
  std::string details() const override {
    return absl::StrFormat("pool=(%s), stride=(%s), mode=%s", absl::StrJoin(pool_, ","),
                           absl::StrJoin(stride_, ","),
                           spec_.pool().mode() == v1::MAX ? "max" : "average");
  }

  absl::Status Compile(ExecContext& ctx) override {
    const TaggedShape& in = parents_[0]->shape();
    kernels::PoolDesc d{
        in.SizeOf('b'),
        in.SizeOf('f'),
        in.spatial_shape(),
        pool_,
        stride_,
        spec_.pool().mode() == v1::MAX ? kernels::PoolMode::kMax : kernels::PoolMode::kAverage,
        ctx.precision};
    auto k = ctx.backend->CreatePool(d);
    if (!k.ok()) return NodeError(*this, std::string(k.status().message()));
    kernel_ = *std::move(k);
    AllocateOutput(ctx.backend);
    return absl::OkStatus();
  }
  absl::Status Forward(ExecContext&) override {
    return kernel_->Forward(parents_[0]->value(), value_);
  }
  absl::Status Backward(ExecContext&) override {
    if (GradTarget t = ParentGrad(0)) return kernel_->Backward(grad(), t.ptr, t.accumulate);
    return absl::OkStatus();
  }

 private:
  std::vector<int64_t> pool_, stride_;
  std::unique_ptr<kernels::PoolKernel> kernel_;
};

}  // namespace

std::unique_ptr<Node> MakePool(const v1::NodeSpec& s) { return std::make_unique<PoolNode>(s); }

}  // namespace elektronn
