// Conv: 1-, 2- or 3-D convolution chosen from the input's tags, with max-pooling or
// max-fragment-pooling, bias, activation and dropout (reference §2.5, §2.6).
#include <cmath>
#include <numeric>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/nodes/neural.h"
#include "engine/nodes/registry.h"
#include "engine/nodes/shape_rules.h"

namespace elektronn {
namespace {

int64_t Prod(const std::vector<int64_t>& v) {
  return std::accumulate(v.begin(), v.end(), int64_t{1}, std::multiplies<>());
}

class ConvNode : public NeuralNode {
 public:
  explicit ConvNode(const v1::NodeSpec& s) : NeuralNode(s) {
    const v1::ConvOp& c = s.conv();
    filter_.assign(c.filter_shape().begin(), c.filter_shape().end());
    pool_.assign(c.pool_shape().begin(), c.pool_shape().end());
    act_ = c.activation() == v1::ACTIVATION_UNSPECIFIED ? v1::RELU : c.activation();
    set_bn_mode(c.batch_normalisation());
  }
  std::string op() const override { return "Conv"; }

  absl::Status InferShape() override {
    const v1::ConvOp& c = spec_.conv();
    if (parents_.size() != 1) return NodeError(*this, "needs exactly one input node");
    RETURN_IF_ERROR(CheckBatchNorm());
    const TaggedShape& in = parents_[0]->shape();
    RETURN_IF_ERROR(CheckImageLayout(in, NodeRef(*this)));
    const int nd = in.ndim();
    if (c.n_f() <= 0) return NodeError(*this, absl::StrFormat("n_f=%d must be positive", c.n_f()));
    if (static_cast<int>(filter_.size()) != nd) {
      return NodeError(
          *this,
          absl::StrFormat(
              "filter_shape has %d entries but the input \"%s\" has %d spatial axes; use size-1 "
              "kernels for axes not to convolve",
              filter_.size(), in.tags_string(), nd));
    }
    if (pool_.empty()) pool_.assign(nd, 1);
    if (static_cast<int>(pool_.size()) != nd) {
      return NodeError(*this,
                       absl::StrFormat("pool_shape has %d entries, need %d", pool_.size(), nd));
    }
    for (int j = 0; j < nd; ++j) {
      if (filter_[j] < 1 || pool_[j] < 1) {
        return NodeError(*this, absl::StrFormat("filter and pool sizes must be >= 1, got %d and %d",
                                                filter_[j], pool_[j]));
      }
      if (c.conv_mode() == v1::SAME && filter_[j] % 2 == 0) {
        return NodeError(*this,
                         absl::StrFormat("conv_mode 'same' needs odd kernels, axis %s has %d",
                                         AxisName(in, j), filter_[j]));
      }
    }
    shape_ = in;
    const int mode = static_cast<int>(c.conv_mode());
    for (int j = 0; j < nd; ++j) {
      const int64_t s = in.spatial_shape()[j];
      const int64_t out = ConvAxisOut(s, filter_[j], pool_[j], mode, c.mfp());
      if (out <= 0) {
        const int64_t k = mode == 0 ? 1 - filter_[j] : (mode == 2 ? filter_[j] - 1 : 0);
        auto [lo, hi] = NearestValidConvInput(s, filter_[j], pool_[j], mode, c.mfp());
        std::string why =
            s + k < 1 ? absl::StrFormat("leaves %d voxels", s + k)
            : c.mfp() ? absl::StrFormat(
                            "leaves %d voxels; with MFP that must be a multiple of %d "
                            "minus 1",
                            s + k, pool_[j])
                      : absl::StrFormat("leaves %d voxels, not divisible by %d", s + k, pool_[j]);
        std::string nearest = lo > 0 ? absl::StrFormat("%d or %d", lo, hi) : absl::StrCat(hi);
        return ShapeAxisError(
            absl::StrFormat("%s: input %s=%d with kernel %d and pool %d %s; nearest valid %s: %s",
                            NodeRef(*this), AxisName(in, j), s, filter_[j], pool_[j], why,
                            AxisName(in, j), nearest),
            in.tags()[in.spatial_axes()[j]]);
      }
      shape_.set_spatial_size(j, out);
      const int64_t fov_in = in.fov()[j];
      shape_.set_fov(j, (fov_in <= 0 || c.invalidate_fov())
                            ? -1
                            : fov_in + (filter_[j] + pool_[j] - 2) * in.strides()[j]);
      shape_.set_stride(j, in.strides()[j] * pool_[j]);
    }
    shape_.set_size(shape_.TagIndex('f'), c.n_f());
    if (c.mfp()) {
      const int bi = shape_.TagIndex('b');
      if (in.size(bi) != kUnknownSize) shape_.set_size(bi, in.size(bi) * Prod(pool_));
      std::vector<std::vector<int64_t>> offs;
      std::vector<int64_t> t(nd, 0);
      for (int64_t n = 0; n < Prod(pool_); ++n) {  // shifts in lexicographic order, z slowest
        int64_t rem = n;
        for (int j = nd - 1; j >= 0; --j) {
          t[j] = rem % pool_[j];
          rem /= pool_[j];
        }
        for (const auto& o : in.mfp_offsets()) {
          std::vector<int64_t> no(nd);
          for (int j = 0; j < nd; ++j) no[j] = o[j] + t[j] * in.strides()[j];
          offs.push_back(no);
        }
      }
      shape_.set_mfp_offsets(std::move(offs));
    }
    return absl::OkStatus();
  }

  int64_t n_in() const { return parents_[0]->shape().SizeOf('f'); }
  int64_t param_count() const override {
    const int64_t n_f = spec_.conv().n_f();
    return TrainableCount(n_f * n_in() * Prod(filter_) + n_f + (act_ == v1::PRELU ? n_f : 0) +
                          BatchNormParamCount(n_f));
  }
  double cost() const override {
    const TaggedShape& in = parents_[0]->shape();
    double positions = 1;
    for (int j = 0; j < in.ndim(); ++j) {
      const int64_t s = in.spatial_shape()[j];
      positions *= spec_.conv().conv_mode() == v1::VALID ? s - filter_[j] + 1 : s + filter_[j] - 1;
    }
    const int64_t b = in.SizeOf('b');
    return static_cast<double>(spec_.conv().n_f() * n_in() * Prod(filter_)) * positions *
           (b == kUnknownSize ? 1 : b);
  }
  std::string details() const override {
    const v1::ConvOp& c = spec_.conv();
    std::string s = absl::StrFormat("n_f=%d, %dd conv, kernel=(%s), pool=(%s), act='%s'", c.n_f(),
                                    filter_.size(), absl::StrJoin(filter_, ","),
                                    absl::StrJoin(pool_, ","), ActivationName(act_));
    if (c.dropout_rate() != 0) absl::StrAppendFormat(&s, ", Dropout rate=%g", c.dropout_rate());
    if (c.mfp()) s += ", MFP active";
    return s + BatchNormDetails() + FrozenDetails();
  }

  absl::Status Compile(ExecContext& ctx) override {
    const v1::ConvOp& c = spec_.conv();
    kernels::Backend* b = ctx.backend;
    const TaggedShape& in = parents_[0]->shape();
    const int nd = in.ndim();
    kernels::ConvDesc d;
    d.batch = in.SizeOf('b');
    d.in_channels = n_in();
    d.out_channels = c.n_f();
    d.in_spatial = in.spatial_shape();
    d.kernel = filter_;
    for (int j = 0; j < nd; ++j) {
      d.pad.push_back(c.conv_mode() == v1::VALID  ? 0
                      : c.conv_mode() == v1::SAME ? filter_[j] / 2
                                                  : filter_[j] - 1);
    }
    pooled_ = Prod(pool_) > 1;
    mfp_ = c.mfp() && pooled_;  // MFP with pool 1 everywhere is the identity
    fused_ = FusesActivation();
    d.fused_activation = LinearOpActivation();  // linear with BN (it comes before the act)
    d.need_backward_data = parents_[0]->needs_grad();
    d.dtype = ctx.precision;
    auto kernel = b->CreateConv(d);
    if (!kernel.ok()) return NodeError(*this, std::string(kernel.status().message()));
    conv_ = *std::move(kernel);
    conv_numel_ = d.batch * c.n_f() * Prod(conv_->out_spatial());
    conv_out_ = Scratch(b, conv_numel_).data();
    float* lin = conv_out_;
    if (pooled_) {
      // MFP pools with stride 1 (a sliding max) and then regroups the result: see CompileMfp.
      kernels::PoolDesc pd{d.batch,
                           c.n_f(),
                           conv_->out_spatial(),
                           pool_,
                           mfp_ ? std::vector<int64_t>(nd, 1) : pool_,
                           kernels::PoolMode::kMax,
                           ctx.precision};
      auto pk = b->CreatePool(pd);
      if (!pk.ok()) return NodeError(*this, std::string(pk.status().message()));
      pool_k_ = *std::move(pk);
      lin = Scratch(b, shape_.stripnone_prod()).data();
      d_conv_ = Scratch(b, conv_numel_).data();
      if (mfp_) CompileMfp(b, d.batch, pool_k_->out_spatial());
    }
    lin_ = lin;
    value_ = lin;

    // Parameters and their initialisation (reference §1.4).
    std::mt19937_64 rng = NodeRng(ctx.seed, name());
    std::vector<int64_t> wshape = {c.n_f(), n_in()};
    wshape.insert(wshape.end(), filter_.begin(), filter_.end());
    Parameter& w = AddParam(b, "w", wshape, conv_->weight_size(), 1.f);
    kernels::ConvKernel* k = conv_.get();
    w.import_fn = [k](const float* c, float* n) { k->ImportWeights(c, n); };
    w.export_fn = [k](const float* n, float* c) { k->ExportWeights(n, c); };
    const double fov = static_cast<double>(Prod(filter_));
    const double ps = static_cast<double>(Prod(pool_));
    std::vector<float> wv(w.canonical_size());
    InitNormal(wv, std::sqrt(2.0 / ((n_in() + c.n_f() / ps) * fov)), rng);
    std::vector<float> wn(w.size);
    k->ImportWeights(wv.data(), wn.data());
    b->Upload(wn.data(), w.value, w.size);
    Parameter& bias = AddParam(b, "b", {c.n_f()}, c.n_f(), 0.f);
    std::vector<float> bv(c.n_f());
    InitBias(bv, act_, fov, rng);
    b->Upload(bv.data(), bias.value, c.n_f());

    CompileTail(ctx, act_, c.dropout_rate(), shape_.stripnone_prod() / c.n_f(), c.n_f(), rng);
    fused_ = FusesActivation();
    return absl::OkStatus();
  }

  absl::Status Forward(ExecContext& ctx) override {
    RETURN_IF_ERROR(conv_->Forward(parents_[0]->value(), params_[0].value,
                                   LinearOpBias(params_[1].value), conv_out_));
    if (mfp_) {
      RETURN_IF_ERROR(pool_k_->Forward(conv_out_, sliding_));
      for (const kernels::BoxCopy& box : mfp_gather_)
        ctx.backend->CopyBox(box, sliding_, lin_, false);
    } else if (pooled_) {
      RETURN_IF_ERROR(pool_k_->Forward(conv_out_, lin_));
    }
    TailForward(ctx, lin_);
    return absl::OkStatus();
  }

  absl::Status Backward(ExecContext& ctx) override {
    kernels::Backend* b = ctx.backend;
    float* d = TailBackward(ctx, lin_);
    float* d_conv = d;
    const bool fused_act = LinearOpFusesActivation() && act_ != v1::LIN;
    if (pooled_) {
      // Max-pooling routes each gradient to its arg-max, whose activated value is the pooled
      // value itself, so the fused activation's derivative is applied on the pooled tensor
      // (prod(pool) times smaller) before routing.
      if (fused_act) b->EltwiseBackward(ToEltwise(act_), nullptr, lin_, d, d, numel_, false);
      if (mfp_) {
        // The fragments are a permutation of the sliding max: scatter back, then route.
        for (const kernels::BoxCopy& box : mfp_scatter_) b->CopyBox(box, d, d_sliding_, false);
        d = d_sliding_;
      }
      RETURN_IF_ERROR(pool_k_->Backward(d, d_conv_, false));
      d_conv = d_conv_;
    } else if (fused_act) {
      b->EltwiseBackward(ToEltwise(act_), nullptr, conv_out_, d_conv, d_conv, conv_numel_, false);
    }
    RETURN_IF_ERROR(conv_->BackwardWeights(parents_[0]->value(), d_conv, params_[0].grad,
                                           LinearOpBiasGrad(params_[1].grad)));
    if (GradTarget t = ParentGrad(0)) {
      RETURN_IF_ERROR(conv_->BackwardData(d_conv, params_[0].value, t.ptr, t.accumulate));
    }
    return absl::OkStatus();
  }

 private:
  // Max-fragment-pooling (reference §2.6). Fragment t (shifts in lexicographic order, z
  // slowest) max-pools conv_out[t : t + L - p + 1] non-overlapping, i.e. takes every p-th
  // value from t of the stride-1 max-pool of conv_out, whose L - p + 1 values per axis (a
  // multiple of p) are thereby split among the fragments without overlap or gap. So one
  // sliding max-pool plus one strided copy per shift computes MFP, and its backward is the
  // inverse copies plus the sliding pool's backward.
  void CompileMfp(kernels::Backend* b, int64_t batch, const std::vector<int64_t>& sliding) {
    const int64_t n_f = spec_.conv().n_f();
    const int nd = static_cast<int>(pool_.size());
    std::vector<int64_t> sliding_shape = {batch}, out_shape = {batch * Prod(pool_)};
    std::vector<int64_t> step = {1}, extent = {batch};
    for (int j = 0; j < nd; ++j) {
      sliding_shape.push_back(sliding[j]);
      out_shape.push_back(sliding[j] / pool_[j]);
      step.push_back(pool_[j]);
      extent.push_back(sliding[j] / pool_[j]);
    }
    for (auto* v : {&sliding_shape, &out_shape, &extent}) v->push_back(n_f);
    step.push_back(1);
    std::vector<int64_t> t(nd, 0);
    for (int64_t n = 0; n < Prod(pool_); ++n) {
      int64_t rem = n;
      for (int j = nd - 1; j >= 0; --j) {
        t[j] = rem % pool_[j];
        rem /= pool_[j];
      }
      std::vector<int64_t> sliding_origin = {0}, out_origin(nd + 2, 0);
      sliding_origin.insert(sliding_origin.end(), t.begin(), t.end());
      sliding_origin.push_back(0);
      out_origin[0] = n * batch;
      mfp_gather_.push_back(
          {sliding_shape, out_shape, sliding_origin, out_origin, extent, step, {}});
      mfp_scatter_.push_back(
          {out_shape, sliding_shape, out_origin, sliding_origin, extent, {}, step});
    }
    const int64_t sliding_numel = Prod(sliding_shape);
    sliding_ = Scratch(b, sliding_numel).data();
    d_sliding_ = Scratch(b, sliding_numel).data();
  }

  std::vector<int64_t> filter_, pool_;
  bool pooled_ = false;
  bool mfp_ = false;
  std::vector<kernels::BoxCopy> mfp_gather_, mfp_scatter_;
  float* sliding_ = nullptr;
  float* d_sliding_ = nullptr;
  std::unique_ptr<kernels::ConvKernel> conv_;
  std::unique_ptr<kernels::PoolKernel> pool_k_;
  int64_t conv_numel_ = 0;
  float* conv_out_ = nullptr;
  float* lin_ = nullptr;
  float* d_conv_ = nullptr;
};

}  // namespace

std::unique_ptr<Node> MakeConv(const v1::NodeSpec& s) { return std::make_unique<ConvNode>(s); }

}  // namespace elektronn
