// Convolution on oneDNN in channels-last layout, with the two shortcuts of ELEKTRONN2:
// all-1 kernels become a matrix product, 3-D kernels with kz=1 fold z into the batch (2-D path).
#include <numeric>

#include "absl/strings/str_format.h"
#include "kernels/cpu/onednn_util.h"

namespace elektronn::kernels::cpu {
namespace {

using dnnl::algorithm;
using dnnl::prop_kind;
using dt = memory::data_type;

int64_t Prod(const std::vector<int64_t>& v) {
  return std::accumulate(v.begin(), v.end(), int64_t{1}, std::multiplies<>());
}

class DnnlConv final : public ConvKernel {
 public:
  static absl::StatusOr<std::unique_ptr<ConvKernel>> Create(DnnlContext* ctx, const ConvDesc& d);

  std::vector<int64_t> out_spatial() const override { return out_spatial_; }
  int64_t weight_size() const override { return weight_bytes_ / sizeof(float); }
  std::string impl_name() const override { return impl_; }

  void ImportWeights(const float* canonical, float* native) const override {
    Reorder(plain_w_, canonical, native_w_, native);
  }
  void ExportWeights(const float* native, float* canonical) const override {
    Reorder(native_w_, native, plain_w_, canonical);
  }

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
    if (!bwd_data_.valid()) {
      return absl::FailedPreconditionError("convolution was created without backward-data");
    }
    const void* wb = w;
    if (bwd_w_reorder_.valid()) {  // always in bf16: the f32 master weights to bf16
      bwd_w_reorder_.Set(DNNL_ARG_FROM, w);
      bwd_w_reorder_.Set(DNNL_ARG_TO, bwd_weights_buf_.data());
      bwd_w_reorder_.Execute(ctx_->stream);
      wb = bwd_weights_buf_.data();
    }
    float* out = diff_src;
    if (accumulate) {
      if (acc_buf_.size() < static_cast<size_t>(src_elems_)) acc_buf_.resize(src_elems_);
      out = acc_buf_.data();
    }
    bwd_data_.Set(DNNL_ARG_DIFF_DST, ops_.DiffDst(diff_dst));
    bwd_data_.Set(DNNL_ARG_WEIGHTS, wb);
    bwd_data_.Set(DNNL_ARG_DIFF_SRC, out);
    bwd_data_.Execute(ctx_->stream);
    if (accumulate) AddInto(diff_src, out, src_elems_);
    return absl::OkStatus();
  }

  absl::Status BackwardWeights(const float* src, const float* diff_dst, float* diff_w,
                               float* diff_b) override {
    float* dw = diff_w_reorder_.valid() ? diff_w_buf_.data() : diff_w;
    bwd_weights_.Set(DNNL_ARG_SRC, ops_.Src(src));
    bwd_weights_.Set(DNNL_ARG_DIFF_DST, ops_.DiffDst(diff_dst));
    bwd_weights_.Set(DNNL_ARG_DIFF_WEIGHTS, dw);
    bwd_weights_.Set(DNNL_ARG_DIFF_BIAS, diff_b);
    bwd_weights_.Execute(ctx_->stream);
    if (diff_w_reorder_.valid()) {
      diff_w_reorder_.Set(DNNL_ARG_FROM, dw);
      diff_w_reorder_.Set(DNNL_ARG_TO, diff_w);
      diff_w_reorder_.Execute(ctx_->stream);
    }
    return absl::OkStatus();
  }

 private:
  void Reorder(const memory::desc& from, const float* a, const memory::desc& to, float* b) const {
    memory ma(from, ctx_->engine, const_cast<float*>(a)), mb(to, ctx_->engine, b);
    LibraryCallScope in_onednn;
    dnnl::reorder(ma, mb).execute(ctx_->stream, ma, mb);
    ctx_->stream.wait();
  }

  DnnlContext* ctx_ = nullptr;
  std::vector<int64_t> out_spatial_;
  memory::desc plain_w_, native_w_;
  size_t weight_bytes_ = 0;
  int64_t src_elems_ = 0;
  std::string impl_;
  PrimitiveCall fwd_, bwd_data_, bwd_weights_, bwd_w_reorder_, diff_w_reorder_;
  Bf16Operands ops_;  // the primitives' operands (bf16 roundings for DataType::kBf16)
  std::vector<float> bwd_weights_buf_, diff_w_buf_, acc_buf_;
};

absl::StatusOr<std::unique_ptr<ConvKernel>> DnnlConv::Create(DnnlContext* ctx, const ConvDesc& d) {
  auto k = std::make_unique<DnnlConv>();
  k->ctx_ = ctx;
  const int nd = static_cast<int>(d.in_spatial.size());
  memory::dims src{d.batch, d.in_channels}, wei{d.out_channels, d.in_channels},
      dst{d.batch, d.out_channels};
  memory::dims strides(nd, 1), pad(d.pad.begin(), d.pad.end());
  for (int i = 0; i < nd; ++i) {
    int64_t o = d.in_spatial[i] + 2 * d.pad[i] - d.kernel[i] + 1;
    if (o <= 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "convolution axis %d: input %d with kernel %d and padding %d leaves no output", i,
          d.in_spatial[i], d.kernel[i], d.pad[i]));
    }
    k->out_spatial_.push_back(o);
    src.push_back(d.in_spatial[i]);
    wei.push_back(d.kernel[i]);
    dst.push_back(o);
  }
  k->src_elems_ = d.batch * d.in_channels * Prod(d.in_spatial);
  const Tag act = ChannelsLast(nd);
  // c*: what the primitives compute on (bf16 in mixed precision); outputs, gradients f32.
  const bool bf16 = d.dtype == DataType::kBf16;
  const dt cdt = bf16 ? dt::bf16 : dt::f32;
  memory::desc src_md(src, dt::f32, act), dst_md(dst, dt::f32, act);
  memory::desc csrc_md(src, cdt, act), cdst_md(dst, cdt, act);
  memory::desc any_w(wei, cdt, Tag::any), any_dw(wei, dt::f32, Tag::any),
      bias_md({d.out_channels}, dt::f32, Tag::x);
  k->plain_w_ = memory::desc(wei, dt::f32, PlainWeights(nd));

  dnnl::primitive_attr attr = ctx->Attr();
  if (d.fused_activation != Eltwise::kLinear) {
    dnnl::post_ops po;
    AppendActivation(po, d.fused_activation);
    attr.set_post_ops(po);
  }
  try {
    dnnl::convolution_forward::desc fd(prop_kind::forward_training, algorithm::convolution_direct,
                                       csrc_md, any_w, bias_md, dst_md, strides, pad, pad);
    dnnl::convolution_forward::primitive_desc fpd(fd, attr, ctx->engine);
    k->native_w_ = WithType(fpd.weights_desc(), dt::f32);  // master weights: f32, same layout
    k->weight_bytes_ = k->native_w_.get_size();
    k->impl_ = fpd.impl_info_str();
    k->fwd_ = PrimitiveCall(ctx->engine, dnnl::convolution_forward(fpd), fpd, &ctx->scratch);
    k->fwd_.Arg(DNNL_ARG_SRC, fpd.src_desc());
    k->fwd_.Arg(DNNL_ARG_WEIGHTS, fpd.weights_desc());
    k->fwd_.Arg(DNNL_ARG_BIAS, fpd.bias_desc());
    k->fwd_.Arg(DNNL_ARG_DST, fpd.dst_desc());
    if (bf16) {
      k->ops_ = Bf16Operands(Bf16Copy(ctx, src_md, csrc_md),
                             Bf16Copy(ctx, k->native_w_, fpd.weights_desc()),
                             Bf16Copy(ctx, dst_md, cdst_md));
    }

    dnnl::primitive_attr battr = ctx->Attr();
    if (d.need_backward_data) {
      dnnl::convolution_backward_data::desc bd(algorithm::convolution_direct, src_md, any_w,
                                               cdst_md, strides, pad, pad);
      dnnl::convolution_backward_data::primitive_desc bpd(bd, battr, ctx->engine, fpd);
      k->bwd_data_ =
          PrimitiveCall(ctx->engine, dnnl::convolution_backward_data(bpd), bpd, &ctx->scratch);
      k->bwd_data_.Arg(DNNL_ARG_DIFF_DST, bpd.diff_dst_desc());
      k->bwd_data_.Arg(DNNL_ARG_WEIGHTS, bpd.weights_desc());
      k->bwd_data_.Arg(DNNL_ARG_DIFF_SRC, bpd.diff_src_desc());
      if (bpd.weights_desc() != k->native_w_) {
        dnnl::reorder::primitive_desc rpd(ctx->engine, k->native_w_, ctx->engine,
                                          bpd.weights_desc(), battr);
        k->bwd_w_reorder_ = PrimitiveCall(ctx->engine, dnnl::reorder(rpd), rpd, &ctx->scratch);
        k->bwd_w_reorder_.Arg(DNNL_ARG_FROM, k->native_w_);
        k->bwd_w_reorder_.Arg(DNNL_ARG_TO, bpd.weights_desc());
        k->bwd_weights_buf_.resize((bpd.weights_desc().get_size() + 3) / sizeof(float));
      }
      k->impl_ += "/" + std::string(bpd.impl_info_str());
    }
    dnnl::convolution_backward_weights::desc wd(algorithm::convolution_direct, csrc_md, any_dw,
                                                bias_md, cdst_md, strides, pad, pad);
    dnnl::convolution_backward_weights::primitive_desc wpd(wd, battr, ctx->engine, fpd);
    k->bwd_weights_ =
        PrimitiveCall(ctx->engine, dnnl::convolution_backward_weights(wpd), wpd, &ctx->scratch);
    k->bwd_weights_.Arg(DNNL_ARG_SRC, wpd.src_desc());
    k->bwd_weights_.Arg(DNNL_ARG_DIFF_DST, wpd.diff_dst_desc());
    k->bwd_weights_.Arg(DNNL_ARG_DIFF_WEIGHTS, wpd.diff_weights_desc());
    k->bwd_weights_.Arg(DNNL_ARG_DIFF_BIAS, wpd.diff_bias_desc());
    if (wpd.diff_weights_desc() != k->native_w_) {
      dnnl::reorder::primitive_desc rpd(ctx->engine, wpd.diff_weights_desc(), ctx->engine,
                                        k->native_w_, battr);
      k->diff_w_reorder_ = PrimitiveCall(ctx->engine, dnnl::reorder(rpd), rpd, &ctx->scratch);
      k->diff_w_reorder_.Arg(DNNL_ARG_FROM, wpd.diff_weights_desc());
      k->diff_w_reorder_.Arg(DNNL_ARG_TO, k->native_w_);
      k->diff_w_buf_.resize(wpd.diff_weights_desc().get_size() / sizeof(float));
    }
    k->impl_ += "/" + std::string(wpd.impl_info_str());
    if (csrc_md != fpd.src_desc() || dst_md != fpd.dst_desc()) {
      return absl::InternalError("oneDNN changed the activation layout of a convolution");
    }
  } catch (const dnnl::error& e) {
    return absl::InternalError(
        absl::StrFormat("oneDNN could not create a convolution: %s", e.what()));
  }
  return k;
}

// A convolution with all-1 kernels and no padding: a matrix product over channels.
// Native weight layout is (in, out), the transpose of the canonical (out, in).
class MatmulConv final : public ConvKernel {
 public:
  MatmulConv(std::unique_ptr<MatmulKernel> mm, const ConvDesc& d)
      : mm_(std::move(mm)), in_(d.in_channels), out_(d.out_channels), spatial_(d.in_spatial) {}
  std::vector<int64_t> out_spatial() const override { return spatial_; }
  int64_t weight_size() const override { return in_ * out_; }
  std::string impl_name() const override { return "matmul (1x1 kernel):" + mm_->impl_name(); }
  void ImportWeights(const float* canonical, float* native) const override {
    for (int64_t o = 0; o < out_; ++o)
      for (int64_t i = 0; i < in_; ++i) native[i * out_ + o] = canonical[o * in_ + i];
  }
  void ExportWeights(const float* native, float* canonical) const override {
    for (int64_t o = 0; o < out_; ++o)
      for (int64_t i = 0; i < in_; ++i) canonical[o * in_ + i] = native[i * out_ + o];
  }
  absl::Status Forward(const float* src, const float* w, const float* bias, float* dst) override {
    return mm_->Forward(src, w, bias, dst);
  }
  absl::Status BackwardData(const float* diff_dst, const float* w, float* diff_src,
                            bool accumulate) override {
    return mm_->BackwardData(diff_dst, w, diff_src, accumulate);
  }
  absl::Status BackwardWeights(const float* src, const float* diff_dst, float* diff_w,
                               float* diff_b) override {
    return mm_->BackwardWeights(src, diff_dst, diff_w, diff_b);
  }

 private:
  std::unique_ptr<MatmulKernel> mm_;
  int64_t in_, out_;
  std::vector<int64_t> spatial_;
};

// A 3-D convolution whose kernel and padding are 1 and 0 along z: in channels-last layout,
// (N, Z, X, Y, C) is (N*Z, X, Y, C), so the 2-D path computes it without any copy.
class FoldedZConv final : public ConvKernel {
 public:
  FoldedZConv(std::unique_ptr<ConvKernel> k2, int64_t z) : k2_(std::move(k2)), z_(z) {}
  std::vector<int64_t> out_spatial() const override {
    auto o = k2_->out_spatial();
    o.insert(o.begin(), z_);
    return o;
  }
  int64_t weight_size() const override { return k2_->weight_size(); }
  std::string impl_name() const override { return "2d:" + k2_->impl_name(); }
  void ImportWeights(const float* c, float* n) const override { k2_->ImportWeights(c, n); }
  void ExportWeights(const float* n, float* c) const override { k2_->ExportWeights(n, c); }
  absl::Status Forward(const float* src, const float* w, const float* bias, float* dst) override {
    return k2_->Forward(src, w, bias, dst);
  }
  absl::Status BackwardData(const float* dd, const float* w, float* ds, bool acc) override {
    return k2_->BackwardData(dd, w, ds, acc);
  }
  absl::Status BackwardWeights(const float* s, const float* dd, float* dw, float* db) override {
    return k2_->BackwardWeights(s, dd, dw, db);
  }

 private:
  std::unique_ptr<ConvKernel> k2_;
  int64_t z_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ConvKernel>> CreateDnnlConv(DnnlContext* ctx, const ConvDesc& d) {
  if (absl::Status st = ValidateConvDesc(d); !st.ok()) return st;
  const size_t nd = d.in_spatial.size();
  if (auto st = CheckPrecision(d.dtype, "convolution"); !st.ok()) return st;
  const bool all_one =
      std::all_of(d.kernel.begin(), d.kernel.end(), [](int64_t k) { return k == 1; }) &&
      std::all_of(d.pad.begin(), d.pad.end(), [](int64_t p) { return p == 0; });
  if (all_one) {
    MatmulDesc md{d.batch * Prod(d.in_spatial), d.in_channels, d.out_channels, d.fused_activation,
                  d.dtype};
    auto mm = CreateDnnlMatmul(ctx, md);
    if (!mm.ok()) return mm.status();
    return std::unique_ptr<ConvKernel>(new MatmulConv(std::move(*mm), d));
  }
  if (nd == 3 && d.kernel[0] == 1 && d.pad[0] == 0) {
    ConvDesc d2 = d;
    d2.batch = d.batch * d.in_spatial[0];
    d2.in_spatial.erase(d2.in_spatial.begin());
    d2.kernel.erase(d2.kernel.begin());
    d2.pad.erase(d2.pad.begin());
    auto k2 = DnnlConv::Create(ctx, d2);
    if (!k2.ok()) return k2.status();
    return std::unique_ptr<ConvKernel>(new FoldedZConv(std::move(*k2), d.in_spatial[0]));
  }
  return DnnlConv::Create(ctx, d);
}

}  // namespace elektronn::kernels::cpu
