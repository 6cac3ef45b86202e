// Max and average pooling on oneDNN in channels-last layout (workspace kept per kernel).
#include "absl/strings/str_format.h"
#include "kernels/cpu/onednn_util.h"

namespace elektronn::kernels::cpu {
namespace {

using dt = memory::data_type;

class DnnlPool final : public PoolKernel {
 public:
  std::vector<int64_t> out_spatial() const override { return out_; }

  absl::Status Forward(const float* src, float* dst) override {
    fwd_.Set(DNNL_ARG_SRC, src);
    fwd_.Set(DNNL_ARG_DST, dst);
    if (!workspace_.empty()) fwd_.Set(DNNL_ARG_WORKSPACE, workspace_.data());
    fwd_.Execute(ctx_->stream);
    return absl::OkStatus();
  }

  absl::Status Backward(const float* diff_dst, float* diff_src, bool accumulate) override {
    float* out = diff_src;
    if (accumulate) {
      if (acc_.size() < static_cast<size_t>(src_elems_)) acc_.resize(src_elems_);
      out = acc_.data();
    }
    bwd_.Set(DNNL_ARG_DIFF_DST, diff_dst);
    bwd_.Set(DNNL_ARG_DIFF_SRC, out);
    if (!workspace_.empty()) bwd_.Set(DNNL_ARG_WORKSPACE, workspace_.data());
    bwd_.Execute(ctx_->stream);
    if (accumulate) AddInto(diff_src, out, src_elems_);
    return absl::OkStatus();
  }

  DnnlContext* ctx_ = nullptr;
  std::vector<int64_t> out_;
  int64_t src_elems_ = 0;
  std::vector<uint8_t> workspace_;
  std::vector<float> acc_;
  PrimitiveCall fwd_, bwd_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<PoolKernel>> CreateDnnlPool(DnnlContext* ctx, const PoolDesc& d) {
  const size_t nd = d.in_spatial.size();
  if (nd < 1 || nd > 3 || d.kernel.size() != nd || d.stride.size() != nd) {
    return absl::InvalidArgumentError(
        "pooling needs 1 to 3 spatial axes with matching kernel and stride");
  }
  // kBf16 pools in fp32 (see PoolDesc::dtype); still refused where bf16 is unavailable.
  if (auto st = CheckPrecision(d.dtype, "pooling"); !st.ok()) return st;
  auto k = std::make_unique<DnnlPool>();
  k->ctx_ = ctx;
  memory::dims src{d.batch, d.channels}, dst{d.batch, d.channels}, kernel, strides, pad(nd, 0);
  k->src_elems_ = d.batch * d.channels;
  for (size_t i = 0; i < nd; ++i) {
    if (d.in_spatial[i] < d.kernel[i] || (d.in_spatial[i] - d.kernel[i]) % d.stride[i] != 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("pooling axis %d: size %d does not fit pool %d with stride %d", i,
                          d.in_spatial[i], d.kernel[i], d.stride[i]));
    }
    int64_t o = (d.in_spatial[i] - d.kernel[i]) / d.stride[i] + 1;
    k->out_.push_back(o);
    src.push_back(d.in_spatial[i]);
    dst.push_back(o);
    kernel.push_back(d.kernel[i]);
    strides.push_back(d.stride[i]);
    k->src_elems_ *= d.in_spatial[i];
  }
  const Tag tag = ChannelsLast(static_cast<int>(nd));
  memory::desc src_md(src, dt::f32, tag), dst_md(dst, dt::f32, tag);
  auto alg = d.mode == PoolMode::kMax ? dnnl::algorithm::pooling_max
                                      : dnnl::algorithm::pooling_avg_exclude_padding;
  try {
    dnnl::pooling_forward::desc fd(dnnl::prop_kind::forward_training, alg, src_md, dst_md, strides,
                                   kernel, pad, pad);
    dnnl::pooling_forward::primitive_desc fpd(fd, ctx->Attr(), ctx->engine);
    k->fwd_ = PrimitiveCall(ctx->engine, dnnl::pooling_forward(fpd), fpd, &ctx->scratch);
    k->fwd_.Arg(DNNL_ARG_SRC, src_md);
    k->fwd_.Arg(DNNL_ARG_DST, dst_md);
    memory::desc ws = fpd.workspace_desc();
    if (ws.get_size() > 0) {
      k->workspace_.resize(ws.get_size());
      k->fwd_.Arg(DNNL_ARG_WORKSPACE, ws);
    }
    dnnl::pooling_backward::desc bd(alg, src_md, dst_md, strides, kernel, pad, pad);
    dnnl::pooling_backward::primitive_desc bpd(bd, ctx->Attr(), ctx->engine, fpd);
    k->bwd_ = PrimitiveCall(ctx->engine, dnnl::pooling_backward(bpd), bpd, &ctx->scratch);
    k->bwd_.Arg(DNNL_ARG_DIFF_DST, dst_md);
    k->bwd_.Arg(DNNL_ARG_DIFF_SRC, src_md);
    if (ws.get_size() > 0) k->bwd_.Arg(DNNL_ARG_WORKSPACE, ws);
  } catch (const dnnl::error& e) {
    return absl::InternalError(absl::StrFormat("oneDNN could not create a pooling: %s", e.what()));
  }
  return std::unique_ptr<PoolKernel>(std::move(k));
}

}  // namespace elektronn::kernels::cpu
