// Matrix products on oneDNN: forward, backward-data (w transposed by strides) and
// backward-weights (src transposed by strides); the bias gradient is a column sum.
#include "absl/strings/str_format.h"
#include "kernels/cpu/onednn_util.h"

namespace elektronn::kernels::cpu {
namespace {

using dt = memory::data_type;

class DnnlMatmul final : public MatmulKernel {
 public:
  absl::Status Forward(const float* src, const float* w, const float* bias, float* dst) override {
    ops_.NewStep();
    const void* s = ops_.Src(src);
    const void* wf = ops_.Weights(w);
    fwd_.Set(DNNL_ARG_SRC, s);
    fwd_.Set(DNNL_ARG_WEIGHTS, wf);
    fwd_.Set(DNNL_ARG_BIAS, bias);
    fwd_.Set(DNNL_ARG_DST, dst);
    fwd_.Execute(ctx_->stream);
    return absl::OkStatus();
  }
  absl::Status BackwardData(const float* diff_dst, const float* w, float* diff_src,
                            bool accumulate) override {
    PrimitiveCall& p = accumulate ? bwd_data_acc_ : bwd_data_;
    p.Set(DNNL_ARG_SRC, ops_.DiffDst(diff_dst));
    p.Set(DNNL_ARG_WEIGHTS, ops_.Weights(w));
    p.Set(DNNL_ARG_DST, diff_src);
    p.Execute(ctx_->stream);
    return absl::OkStatus();
  }
  absl::Status BackwardWeights(const float* src, const float* diff_dst, float* diff_w,
                               float* diff_b) override {
    bwd_w_.Set(DNNL_ARG_SRC, ops_.Src(src));
    bwd_w_.Set(DNNL_ARG_WEIGHTS, ops_.DiffDst(diff_dst));
    bwd_w_.Set(DNNL_ARG_DST, diff_w);
    bwd_w_.Execute(ctx_->stream);
    if (diff_b != nullptr) ColumnSum(diff_dst, m_, n_, diff_b);
    return absl::OkStatus();
  }
  std::string impl_name() const override { return impl_; }

  DnnlContext* ctx_ = nullptr;
  int64_t m_ = 0, n_ = 0;
  PrimitiveCall fwd_, bwd_data_, bwd_data_acc_, bwd_w_;
  Bf16Operands ops_;  // the primitives' operands (bf16 roundings for DataType::kBf16)
  std::string impl_;
};

PrimitiveCall MakeMatmul(DnnlContext* ctx, const memory::desc& a, const memory::desc& b,
                         const memory::desc* bias, const memory::desc& c,
                         const dnnl::primitive_attr& attr, std::string* impl) {
  dnnl::matmul::desc md = bias ? dnnl::matmul::desc(a, b, *bias, c) : dnnl::matmul::desc(a, b, c);
  dnnl::matmul::primitive_desc pd(md, attr, ctx->engine);
  *impl += (impl->empty() ? "" : "/") + std::string(pd.impl_info_str());
  PrimitiveCall call(ctx->engine, dnnl::matmul(pd), pd, &ctx->scratch);
  call.Arg(DNNL_ARG_SRC, a);
  call.Arg(DNNL_ARG_WEIGHTS, b);
  if (bias) call.Arg(DNNL_ARG_BIAS, *bias);
  call.Arg(DNNL_ARG_DST, c);
  return call;
}

}  // namespace

absl::StatusOr<std::unique_ptr<MatmulKernel>> CreateDnnlMatmul(DnnlContext* ctx,
                                                               const MatmulDesc& d) {
  if (d.m <= 0 || d.k <= 0 || d.n <= 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("matrix product needs positive sizes, got m=%d k=%d n=%d", d.m, d.k, d.n));
  }
  if (auto st = CheckPrecision(d.dtype, "matrix product"); !st.ok()) return st;
  auto k = std::make_unique<DnnlMatmul>();
  k->ctx_ = ctx;
  k->m_ = d.m;
  k->n_ = d.n;
  const memory::dim m = d.m, kk = d.k, n = d.n;
  try {
    dnnl::primitive_attr fattr = ctx->Attr();
    if (d.fused_activation != Eltwise::kLinear) {
      dnnl::post_ops po;
      AppendActivation(po, d.fused_activation);
      fattr.set_post_ops(po);
    }
    // c*: the operands as the primitives read them (bf16 in mixed precision); outputs f32.
    const bool bf16 = d.dtype == DataType::kBf16;
    const dt cdt = bf16 ? dt::bf16 : dt::f32;
    memory::desc src({m, kk}, dt::f32, Tag::ab), w({kk, n}, dt::f32, Tag::ab),
        bias({1, n}, dt::f32, Tag::ab), dst({m, n}, dt::f32, Tag::ab);
    memory::desc csrc({m, kk}, cdt, Tag::ab), cw({kk, n}, cdt, Tag::ab), cdst({m, n}, cdt, Tag::ab);
    if (bf16) {
      k->ops_ =
          Bf16Operands(Bf16Copy(ctx, src, csrc), Bf16Copy(ctx, w, cw), Bf16Copy(ctx, dst, cdst));
    }
    k->fwd_ = MakeMatmul(ctx, csrc, cw, &bias, dst, fattr, &k->impl_);
    // diff_src[m,k] = diff_dst[m,n] * w^T, w^T viewed through strides.
    memory::desc wt({n, kk}, cdt, memory::dims{1, n});
    k->bwd_data_ = MakeMatmul(ctx, cdst, wt, nullptr, src, ctx->Attr(), &k->impl_);
    dnnl::primitive_attr acc = ctx->Attr();
    dnnl::post_ops sum;
    sum.append_sum(1.0f);
    acc.set_post_ops(sum);
    std::string acc_impl;
    k->bwd_data_acc_ = MakeMatmul(ctx, cdst, wt, nullptr, src, acc, &acc_impl);
    // diff_w[k,n] = src^T[k,m] * diff_dst[m,n].
    memory::desc srct({kk, m}, cdt, memory::dims{1, kk});
    k->bwd_w_ = MakeMatmul(ctx, srct, cdst, nullptr, w, ctx->Attr(), &k->impl_);
  } catch (const dnnl::error& e) {
    return absl::InternalError(absl::StrFormat("oneDNN could not create a matmul: %s", e.what()));
  }
  return std::unique_ptr<MatmulKernel>(std::move(k));
}

}  // namespace elektronn::kernels::cpu
