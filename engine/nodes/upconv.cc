// UpConv: transposed convolution with kernel = stride = pool_shape, then bias, activation and
// dropout (reference §2.8). ELEKTRONN2's default name is "upconv".
//
// Weights: canonical layout (n_f, n_in, p_0, ..., p_{d-1}), ELEKTRONN2's UpConv weight shape;
// cross-correlation convention (no kernel flip): input voxel i adds w[o, c, k] * x[c, i] to output
// voxel i * p + k, so each input voxel spreads into the block [i*p, i*p + p). This is what
// ELEKTRONN2 computes as the gradient of a convolution w.r.t. its input with the weight's first two
// axes swapped, so its UpConv weights import without flipping (unlike its Conv weights, QUIRK 14).
//
// Shape bookkeeping: output s * p per axis, f = n_f, fov -1 on every axis (QUIRK 12: the true
// receptive field is not tracked; designate_nodes repairs the prediction's fov, reference §3.2),
// strides divided by the pool. ELEKTRONN2's strides become floats when not divisible; ours are
// integers, so a non-integral stride is an error naming the node and the axis (a U-Net only
// upsamples what it pooled before, where the division is exact).
#include <algorithm>
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

class UpConvNode : public NeuralNode {
 public:
  explicit UpConvNode(const v1::NodeSpec& s) : NeuralNode(s) {
    const v1::UpConvOp& u = s.upconv();
    pool_.assign(u.pool_shape().begin(), u.pool_shape().end());
    act_ = u.activation() == v1::ACTIVATION_UNSPECIFIED ? v1::RELU : u.activation();
    set_bn_mode(u.batch_normalisation());
  }
  std::string op() const override { return "UpConv"; }
  bool identity_init() const {
    return !spec_.upconv().has_identity_init() || spec_.upconv().identity_init();
  }

  absl::Status InferShape() override {
    const v1::UpConvOp& u = spec_.upconv();
    if (parents_.size() != 1) return NodeError(*this, "needs exactly one input node");
    const TaggedShape& in = parents_[0]->shape();
    RETURN_IF_ERROR(CheckImageLayout(in, NodeRef(*this)));
    const int nd = in.ndim();
    if (u.n_f() <= 0) return NodeError(*this, absl::StrFormat("n_f=%d must be positive", u.n_f()));
    RETURN_IF_ERROR(CheckBatchNorm());
    if (!(u.dropout_rate() >= 0.f && u.dropout_rate() < 1.f)) {
      return NodeError(*this,
                       absl::StrFormat("dropout_rate=%g is outside [0, 1)", u.dropout_rate()));
    }
    if (static_cast<int>(pool_.size()) != nd) {
      return NodeError(
          *this, absl::StrFormat("pool_shape has %d entries but the input \"%s\" has %d spatial "
                                 "axes; use 1 for axes not to upsample",
                                 pool_.size(), in.tags_string(), nd));
    }
    // Max-fragment-pooling fragments are not an image an UpConv could upsample (reference §2.6).
    if (in.mfp_offsets().size() > 1) {
      return NodeError(
          *this, absl::StrFormat("follows a max-fragment-pooling (mfp=true) Conv: its input holds "
                                 "%d fragments; MFP nets cannot contain UpConv (reference §2.6)",
                                 in.mfp_offsets().size()));
    }
    shape_ = in;
    for (int j = 0; j < nd; ++j) {
      if (pool_[j] < 1) {
        return NodeError(*this, absl::StrFormat("pool_shape along %s is %d; sizes must be >= 1",
                                                AxisName(in, j), pool_[j]));
      }
      if (in.strides()[j] % pool_[j] != 0) {
        return NodeError(
            *this,
            absl::StrFormat("the input stride along %s is %d, not divisible by the pool %d; "
                            "ELEKTRONN2 would make it the fraction %d/%d, but strides here are "
                            "integers (upsample only what was pooled before)",
                            AxisName(in, j), in.strides()[j], pool_[j], in.strides()[j], pool_[j]));
      }
      shape_.set_spatial_size(j, in.spatial_shape()[j] * pool_[j]);
      shape_.set_fov(j, -1);
      shape_.set_stride(j, in.strides()[j] / pool_[j]);
    }
    shape_.set_size(shape_.TagIndex('f'), u.n_f());
    return absl::OkStatus();
  }

  int64_t n_in() const { return parents_[0]->shape().SizeOf('f'); }
  int64_t param_count() const override {
    const int64_t n_f = spec_.upconv().n_f();
    return TrainableCount(n_f * n_in() * Prod(pool_) + n_f + (act_ == v1::PRELU ? n_f : 0) +
                          BatchNormParamCount(n_f));
  }
  // ELEKTRONN2: prod(w) * prod(s*p - f + 1) * b with f = the kernel = the pool.
  double cost() const override {
    const TaggedShape& in = parents_[0]->shape();
    double positions = 1;
    for (int j = 0; j < in.ndim(); ++j)
      positions *= static_cast<double>(in.spatial_shape()[j] * pool_[j] - pool_[j] + 1);
    const int64_t b = in.SizeOf('b');
    return static_cast<double>(spec_.upconv().n_f() * n_in() * Prod(pool_)) * positions *
           (b == kUnknownSize ? 1 : b);
  }
  std::string details() const override {
    const v1::UpConvOp& u = spec_.upconv();
    std::string s = absl::StrFormat("n_f=%d, %dd upconv, pool=(%s), act='%s'", u.n_f(),
                                    pool_.size(), absl::StrJoin(pool_, ","), ActivationName(act_));
    if (identity_init()) s += ", identity init";
    if (u.dropout_rate() != 0) absl::StrAppendFormat(&s, ", Dropout rate=%g", u.dropout_rate());
    return s + BatchNormDetails() + FrozenDetails();
  }

  absl::Status Compile(ExecContext& ctx) override {
    const v1::UpConvOp& u = spec_.upconv();
    kernels::Backend* b = ctx.backend;
    const TaggedShape& in = parents_[0]->shape();
    kernels::DeconvDesc d;
    d.batch = in.SizeOf('b');
    d.in_channels = n_in();
    d.out_channels = u.n_f();
    d.in_spatial = in.spatial_shape();
    d.kernel = pool_;
    d.stride = pool_;
    fused_ = FusesActivation();
    d.fused_activation = LinearOpActivation();  // linear with BN (it comes before the act)
    d.need_backward_data = parents_[0]->needs_grad();
    d.dtype = ctx.precision;
    auto kernel = b->CreateDeconv(d);
    if (!kernel.ok()) return NodeError(*this, std::string(kernel.status().message()));
    deconv_ = *std::move(kernel);
    lin_ = Scratch(b, shape_.stripnone_prod()).data();
    value_ = lin_;

    // Initialisation: reference §1.4 applied to the weight (n_f, n_in, p...) with fov = ps =
    // prod(pool), then identity_init as §2.8.
    std::mt19937_64 rng = NodeRng(ctx.seed, name());
    std::vector<int64_t> wshape = {u.n_f(), n_in()};
    wshape.insert(wshape.end(), pool_.begin(), pool_.end());
    Parameter& w = AddParam(b, "w", wshape, deconv_->weight_size(), 1.f);
    kernels::ConvKernel* k = deconv_.get();
    w.import_fn = [k](const float* c, float* n) { k->ImportWeights(c, n); };
    w.export_fn = [k](const float* n, float* c) { k->ExportWeights(n, c); };
    const double ps = static_cast<double>(Prod(pool_));
    std::vector<float> wv(w.canonical_size());
    InitNormal(wv, std::sqrt(2.0 / ((n_in() + u.n_f() / ps) * ps)), rng);
    std::vector<float> bv(u.n_f());
    InitBias(bv, act_, ps, rng);
    if (identity_init()) {
      // Scaled by 0.1, then the whole kernel w[c, c, ...] = 1 for c < min(n_f, n_in): output
      // channel c starts as nearest-neighbour upsampling of input channel c. Bias 0.
      for (float& v : wv) v *= 0.1f;
      const int64_t kn = Prod(pool_);
      for (int64_t c = 0; c < std::min(u.n_f(), n_in()); ++c)
        std::fill_n(wv.begin() + (c * n_in() + c) * kn, kn, 1.f);
      std::fill(bv.begin(), bv.end(), 0.f);
    }
    std::vector<float> wn(w.size, 0.f);
    k->ImportWeights(wv.data(), wn.data());
    b->Upload(wn.data(), w.value, w.size);
    Parameter& bias = AddParam(b, "b", {u.n_f()}, u.n_f(), 0.f);
    b->Upload(bv.data(), bias.value, u.n_f());

    CompileTail(ctx, act_, u.dropout_rate(), shape_.stripnone_prod() / u.n_f(), u.n_f(), rng);
    fused_ = FusesActivation();
    return absl::OkStatus();
  }

  absl::Status Forward(ExecContext& ctx) override {
    RETURN_IF_ERROR(deconv_->Forward(parents_[0]->value(), params_[0].value,
                                     LinearOpBias(params_[1].value), lin_));
    TailForward(ctx, lin_);
    return absl::OkStatus();
  }

  absl::Status Backward(ExecContext& ctx) override {
    float* d = TailBackward(ctx, lin_);
    if (LinearOpFusesActivation() && act_ != v1::LIN) {
      ctx.backend->EltwiseBackward(ToEltwise(act_), nullptr, lin_, d, d, numel_, false);
    }
    RETURN_IF_ERROR(deconv_->BackwardWeights(parents_[0]->value(), d, params_[0].grad,
                                             LinearOpBiasGrad(params_[1].grad)));
    if (GradTarget t = ParentGrad(0)) {
      RETURN_IF_ERROR(deconv_->BackwardData(d, params_[0].value, t.ptr, t.accumulate));
    }
    return absl::OkStatus();
  }

 private:
  std::vector<int64_t> pool_;
  std::unique_ptr<kernels::ConvKernel> deconv_;
  float* lin_ = nullptr;
};

}  // namespace

std::unique_ptr<Node> MakeUpConv(const v1::NodeSpec& s) { return std::make_unique<UpConvNode>(s); }

}  // namespace elektronn
