// The losses family beyond MultinoulliNLL (reference §2.13): BinaryNLL, GaussianNLL, BetaNLL,
// SquaredLoss, AbsLoss, EuclideanDistance, RampLoss, the Sobel filter of SobelizedLoss, and the
// output nodes OneHot and Classification. The arithmetic is in the Backend (kernels/backend.h,
// "losses family"); these classes check geometry and route buffers.
//
// Targets are data: no gradient flows into a target input (ELEKTRONN2's Theano graph would
// differentiate a computed target too, but every shipped model feeds targets from an Input).
// EuclideanDistance and RampLoss compare two computed values and differentiate both.
#include "absl/strings/str_format.h"
#include "engine/nodes/registry.h"

namespace elektronn {
namespace {

// `other` must have the shape of `ref` (the batch may be unknown in either).
absl::Status CheckSameShape(const Node& self, const TaggedShape& ref, const TaggedShape& other,
                            const char* ref_arg, const char* other_arg) {
  bool same = ref.tags() == other.tags();
  for (int i = 0; same && i < ref.rank(); ++i) {
    const bool batch_unknown =
        ref.tags()[i] == 'b' && (ref.size(i) == kUnknownSize || other.size(i) == kUnknownSize);
    same = ref.size(i) == other.size(i) || batch_unknown;
  }
  if (same) return absl::OkStatus();
  return NodeError(self, absl::StrFormat("%s %s does not match %s %s", other_arg, other.ToString(),
                                         ref_arg, ref.ToString()));
}

absl::Status NeedParents(const Node& self, size_t n, const char* names) {
  if (self.parents().size() == n) return absl::OkStatus();
  return NodeError(self,
                   absl::StrFormat("needs inputs (%s), got %d", names, self.parents().size()));
}

// Shape with the 'f' axis set to `f` (the loss keeps f with size 1, like ELEKTRONN2's keepdims).
absl::StatusOr<TaggedShape> WithF(const Node& self, const TaggedShape& s, int64_t f,
                                  const char* arg) {
  if (!s.HasTag('f')) {
    return NodeError(self, absl::StrFormat("%s %s has no feature axis 'f'", arg, s.ToString()));
  }
  TaggedShape out = s;
  out.set_size(out.TagIndex('f'), f);
  return out;
}

// GaussianNLL and BetaNLL as in ELEKTRONN2's loss.py: when the prediction has a sample axis 's'
// (GaussianRV with n_samples), the target has the prediction's shape without 's' and is broadcast
// over the samples (Theano's dimshuffle with 'x' at the sample index). Otherwise the shapes match.
absl::Status CheckSampledTarget(const Node& self, const TaggedShape& pred,
                                const TaggedShape& target, const char* pred_arg) {
  if (!pred.HasTag('s')) return CheckSameShape(self, pred, target, pred_arg, "target");
  std::vector<int64_t> sizes = pred.sizes();
  std::string tags = pred.tags();
  const int s = pred.TagIndex('s');
  sizes.erase(sizes.begin() + s);
  tags.erase(tags.begin() + s);
  ASSIGN_OR_RETURN(const TaggedShape want, TaggedShape::Create(sizes, tags));
  return CheckSameShape(
      self, want, target,
      absl::StrFormat("%s %s without its sample axis 's':", pred_arg, pred.ToString()).c_str(),
      "target");
}

// The target's broadcast over 's' for the kernels: the samples and the elements after 's' in
// the channels-last memory order.
kernels::Backend::SampleAxis SampleAxisOf(const TaggedShape& pred) {
  kernels::Backend::SampleAxis a;
  if (!pred.HasTag('s')) return a;
  const std::vector<int64_t> phys = PhysicalSizes(pred);
  const int s = PhysicalAxis(pred, pred.TagIndex('s'));
  a.samples = phys[s];
  for (size_t i = s + 1; i < phys.size(); ++i) a.inner *= phys[i];
  return a;
}

// ---------------------------------------------------------------------------------------------

class BinaryNllNode : public Node {
 public:
  using Node::Node;
  std::string op() const override { return "BinaryNLL"; }
  absl::Status InferShape() override {
    RETURN_IF_ERROR(NeedParents(*this, 2, "pred, target"));
    RETURN_IF_ERROR(
        CheckSameShape(*this, parents_[0]->shape(), parents_[1]->shape(), "pred", "target"));
    shape_ = parents_[0]->shape();
    return absl::OkStatus();
  }
  std::string details() const override {
    return spec_.binary_nll().subtract_label_entropy() ? "subtract_label_entropy" : "";
  }
  absl::Status Compile(ExecContext& ctx) override {
    AllocateOutput(ctx.backend);
    return absl::OkStatus();
  }
  absl::Status Forward(ExecContext& ctx) override {
    n_labelled_ = ctx.backend->BinaryNllForward(numel_, spec_.binary_nll().subtract_label_entropy(),
                                                parents_[0]->value(), parents_[1]->value(), value_);
    return absl::OkStatus();
  }
  absl::Status Backward(ExecContext& ctx) override {
    if (GradTarget t = ParentGrad(0)) {
      ctx.backend->BinaryNllBackward(numel_, parents_[0]->value(), parents_[1]->value(), grad(),
                                     n_labelled_, t.ptr, t.accumulate);
    }
    return absl::OkStatus();
  }

 private:
  int64_t n_labelled_ = 0;
};

class GaussianNllNode : public Node {
 public:
  using Node::Node;
  std::string op() const override { return "GaussianNLL"; }
  absl::Status InferShape() override {
    RETURN_IF_ERROR(NeedParents(*this, 3, "mu, sig, target"));
    const TaggedShape& mu = parents_[0]->shape();
    RETURN_IF_ERROR(CheckSameShape(*this, mu, parents_[1]->shape(), "mu", "sig"));
    RETURN_IF_ERROR(CheckSampledTarget(*this, mu, parents_[2]->shape(), "mu"));
    shape_ = mu;
    return absl::OkStatus();
  }
  std::string details() const override {
    return spec_.gaussian_nll().sig_is_log() ? "sig_is_log" : "";
  }
  absl::Status Compile(ExecContext& ctx) override {
    AllocateOutput(ctx.backend);
    samples_ = SampleAxisOf(parents_[0]->shape());
    return absl::OkStatus();
  }
  absl::Status Forward(ExecContext& ctx) override {
    ctx.backend->GaussianNllForward(numel_, samples_, spec_.gaussian_nll().sig_is_log(),
                                    parents_[0]->value(), parents_[1]->value(),
                                    parents_[2]->value(), value_);
    return absl::OkStatus();
  }
  absl::Status Backward(ExecContext& ctx) override {
    GradTarget mu = ParentGrad(0);
    GradTarget sig = ParentGrad(1);
    if (mu || sig) {
      ctx.backend->GaussianNllBackward(numel_, samples_, spec_.gaussian_nll().sig_is_log(),
                                       parents_[0]->value(), parents_[1]->value(),
                                       parents_[2]->value(), grad(), mu.ptr, mu.accumulate, sig.ptr,
                                       sig.accumulate);
    }
    return absl::OkStatus();
  }

 private:
  kernels::Backend::SampleAxis samples_;
};

class BetaNllNode : public Node {
 public:
  using Node::Node;
  std::string op() const override { return "BetaNLL"; }
  absl::Status InferShape() override {
    RETURN_IF_ERROR(NeedParents(*this, 3, "mode, concentration, target"));
    const TaggedShape& mode = parents_[0]->shape();
    RETURN_IF_ERROR(CheckSameShape(*this, mode, parents_[1]->shape(), "mode", "concentration"));
    RETURN_IF_ERROR(CheckSampledTarget(*this, mode, parents_[2]->shape(), "mode"));
    shape_ = mode;
    return absl::OkStatus();
  }
  absl::Status Compile(ExecContext& ctx) override {
    AllocateOutput(ctx.backend);
    samples_ = SampleAxisOf(parents_[0]->shape());
    return absl::OkStatus();
  }
  absl::Status Forward(ExecContext& ctx) override {
    ctx.backend->BetaNllForward(numel_, samples_, parents_[0]->value(), parents_[1]->value(),
                                parents_[2]->value(), value_);
    return absl::OkStatus();
  }
  absl::Status Backward(ExecContext& ctx) override {
    GradTarget m = ParentGrad(0);
    GradTarget c = ParentGrad(1);
    if (m || c) {
      ctx.backend->BetaNllBackward(numel_, samples_, parents_[0]->value(), parents_[1]->value(),
                                   parents_[2]->value(), grad(), m.ptr, m.accumulate, c.ptr,
                                   c.accumulate);
    }
    return absl::OkStatus();
  }

 private:
  kernels::Backend::SampleAxis samples_;
};

// SquaredLoss and AbsLoss. ELEKTRONN2's margin QUIRK (the margin m subtracted from every element
// after masking by |t - p| >= m) is fixed: the subtraction is dropped. It is a constant (times
// the target-only scale correction), so gradients and training are identical; only the reported
// loss value differs (it no longer goes negative inside the margin).
class RegressionLossNode : public Node {
 public:
  using Node::Node;
  std::string op() const override { return spec_.has_squared_loss() ? "SquaredLoss" : "AbsLoss"; }
  const v1::RegressionLossOp& o() const {
    return spec_.has_squared_loss() ? spec_.squared_loss() : spec_.abs_loss();
  }
  absl::Status InferShape() override {
    RETURN_IF_ERROR(NeedParents(*this, 2, "pred, target"));
    RETURN_IF_ERROR(
        CheckSameShape(*this, parents_[0]->shape(), parents_[1]->shape(), "pred", "target"));
    if (o().margin() < 0) {
      return NodeError(*this, absl::StrFormat("margin must be >= 0, got %g", o().margin()));
    }
    if (o().scale_correction() < 0) {
      return NodeError(
          *this, absl::StrFormat("scale_correction must be >= 0, got %g", o().scale_correction()));
    }
    ASSIGN_OR_RETURN(shape_, WithF(*this, parents_[0]->shape(), 1, "pred"));
    return absl::OkStatus();
  }
  std::string details() const override {
    return absl::StrFormat("margin=%g, scale_correction=%g", o().margin(), o().scale_correction());
  }
  absl::Status Compile(ExecContext& ctx) override {
    AllocateOutput(ctx.backend);
    desc_.rows = parents_[0]->rows();
    desc_.channels = parents_[0]->channels();
    desc_.kind = spec_.has_squared_loss() ? kernels::Backend::RegressionKind::kSquared
                                          : kernels::Backend::RegressionKind::kAbs;
    desc_.margin = o().margin();
    desc_.scale_correction = o().scale_correction();
    return absl::OkStatus();
  }
  absl::Status Forward(ExecContext& ctx) override {
    n_labelled_ = ctx.backend->RegressionLossForward(desc_, parents_[0]->value(),
                                                     parents_[1]->value(), value_);
    return absl::OkStatus();
  }
  absl::Status Backward(ExecContext& ctx) override {
    if (GradTarget t = ParentGrad(0)) {
      ctx.backend->RegressionLossBackward(desc_, parents_[0]->value(), parents_[1]->value(), grad(),
                                          n_labelled_, t.ptr, t.accumulate);
    }
    return absl::OkStatus();
  }

 private:
  kernels::Backend::RegressionLossDesc desc_;
  int64_t n_labelled_ = 0;
};

class EuclideanDistanceNode : public Node {
 public:
  using Node::Node;
  std::string op() const override { return "EuclideanDistance"; }
  absl::Status InferShape() override {
    RETURN_IF_ERROR(NeedParents(*this, 2, "pred, target"));
    RETURN_IF_ERROR(
        CheckSameShape(*this, parents_[0]->shape(), parents_[1]->shape(), "pred", "target"));
    ASSIGN_OR_RETURN(shape_, WithF(*this, parents_[0]->shape(), 1, "pred"));
    return absl::OkStatus();
  }
  absl::Status Compile(ExecContext& ctx) override {
    AllocateOutput(ctx.backend);
    return absl::OkStatus();
  }
  absl::Status Forward(ExecContext& ctx) override {
    ctx.backend->EuclideanDistanceForward(parents_[0]->value(), parents_[1]->value(), value_,
                                          rows(), parents_[0]->channels());
    return absl::OkStatus();
  }
  absl::Status Backward(ExecContext& ctx) override {
    GradTarget a = ParentGrad(0);
    GradTarget b = ParentGrad(1);
    if (a || b) {
      ctx.backend->EuclideanDistanceBackward(parents_[0]->value(), parents_[1]->value(), value_,
                                             grad(), a.ptr, a.accumulate, b.ptr, b.accumulate,
                                             rows(), parents_[0]->channels());
    }
    return absl::OkStatus();
  }
};

class RampLossNode : public Node {
 public:
  using Node::Node;
  std::string op() const override { return "RampLoss"; }
  absl::Status InferShape() override {
    RETURN_IF_ERROR(NeedParents(*this, 2, "d_low, d_big"));
    RETURN_IF_ERROR(
        CheckSameShape(*this, parents_[0]->shape(), parents_[1]->shape(), "d_low", "d_big"));
    ASSIGN_OR_RETURN(shape_, WithF(*this, parents_[0]->shape(), 1, "d_low"));
    return absl::OkStatus();
  }
  std::string details() const override {
    return absl::StrFormat("margin=%g", spec_.ramp_loss().margin());
  }
  absl::Status Compile(ExecContext& ctx) override {
    AllocateOutput(ctx.backend);
    return absl::OkStatus();
  }
  absl::Status Forward(ExecContext& ctx) override {
    ctx.backend->RampLossForward(parents_[0]->value(), parents_[1]->value(),
                                 spec_.ramp_loss().margin(), value_, rows(),
                                 parents_[0]->channels());
    return absl::OkStatus();
  }
  absl::Status Backward(ExecContext& ctx) override {
    GradTarget lo = ParentGrad(0);
    GradTarget bg = ParentGrad(1);
    if (lo || bg) {
      ctx.backend->RampLossBackward(parents_[0]->value(), parents_[1]->value(),
                                    spec_.ramp_loss().margin(), grad(), lo.ptr, lo.accumulate,
                                    bg.ptr, bg.accumulate, rows(), parents_[0]->channels());
    }
    return absl::OkStatus();
  }
};

// The constant Sobel filter bank of SobelizedLoss (ELEKTRONN2 builds it as a 'same' Conv with
// constant weights and zero bias; here it is one backend function, no parameters).
class SobelNode : public Node {
 public:
  using Node::Node;
  std::string op() const override { return "Sobel"; }
  absl::Status InferShape() override {
    RETURN_IF_ERROR(NeedParents(*this, 1, "parent"));
    const TaggedShape& in = parents_[0]->shape();
    if (in.ndim() < 1 || in.ndim() > 3) {
      return NodeError(*this, absl::StrFormat("input %s must have 1 to 3 spatial axes, has %d",
                                              in.ToString(), in.ndim()));
    }
    ASSIGN_OR_RETURN(shape_, WithF(*this, in, in.SizeOf('f') * in.ndim(), "input"));
    return absl::OkStatus();
  }
  absl::Status Compile(ExecContext& ctx) override {
    AllocateOutput(ctx.backend);
    const TaggedShape& in = parents_[0]->shape();
    desc_.channels = in.SizeOf('f');
    desc_.spatial = in.spatial_shape();
    int64_t vox = 1;
    for (int64_t s : desc_.spatial) vox *= s;
    desc_.batch = parents_[0]->rows() / vox;
    return absl::OkStatus();
  }
  absl::Status Forward(ExecContext& ctx) override {
    ctx.backend->SobelForward(desc_, parents_[0]->value(), value_);
    return absl::OkStatus();
  }
  absl::Status Backward(ExecContext& ctx) override {
    if (GradTarget t = ParentGrad(0)) {
      ctx.backend->SobelBackward(desc_, grad(), t.ptr, t.accumulate);
    }
    return absl::OkStatus();
  }

 private:
  kernels::Backend::SobelDesc desc_;
};

// ELEKTRONN2 takes an `axis` argument but always uses 'f' (the nm function rejects others).
class OneHotNode : public Node {
 public:
  using Node::Node;
  std::string op() const override { return "OneHot"; }
  bool differentiable() const override { return false; }
  absl::Status InferShape() override {
    RETURN_IF_ERROR(NeedParents(*this, 1, "target"));
    const int64_t n = spec_.one_hot().n_class();
    if (n < 1) return NodeError(*this, absl::StrFormat("n_class must be >= 1, got %d", n));
    const TaggedShape& t = parents_[0]->shape();
    if (t.SizeOf('f') != 1) {
      return NodeError(*this, absl::StrFormat("target %s must have a feature axis 'f' of size 1 "
                                              "(sparse labels)",
                                              t.ToString()));
    }
    ASSIGN_OR_RETURN(shape_, WithF(*this, t, n, "target"));
    return absl::OkStatus();
  }
  double cost() const override { return 0; }
  absl::Status Compile(ExecContext& ctx) override {
    AllocateOutput(ctx.backend);
    return absl::OkStatus();
  }
  absl::Status Forward(ExecContext& ctx) override {
    ctx.backend->OneHot(parents_[0]->value(), value_, parents_[0]->rows(),
                        spec_.one_hot().n_class());
    return absl::OkStatus();
  }
};

class ClassificationNode : public Node {
 public:
  using Node::Node;
  std::string op() const override { return "Classification"; }
  bool differentiable() const override { return false; }
  absl::Status InferShape() override {
    RETURN_IF_ERROR(NeedParents(*this, 1, "pred"));
    const TaggedShape& p = parents_[0]->shape();
    const int64_t f = p.SizeOf('f');
    if (f < 1) return NodeError(*this, absl::StrFormat("pred %s has no axis 'f'", p.ToString()));
    const int64_t sm = SoftmaxClasses(*parents_[0]);
    const int64_t n_class = spec_.classification().n_class();
    const int64_t n_indep = spec_.classification().n_indep();
    if (sm > 0) {  // ELEKTRONN2 ignores n_class/n_indep for a Softmax input
      n_class_ = sm;
      n_indep_ = f / sm;
      threshold_ = false;
    } else if (parents_[0]->activation() == kernels::Eltwise::kSigmoid) {
      n_class_ = 2;
      n_indep_ = f;
      threshold_ = true;
    } else {
      if (n_class <= 0 || n_indep <= 0) {
        return NodeError(*this, absl::StrFormat("pred %s is neither a Softmax nor sigmoid; give "
                                                "n_class and n_indep (got %d, %d)",
                                                NodeRef(*parents_[0]), n_class, n_indep));
      }
      n_class_ = n_class;
      n_indep_ = n_indep;
      threshold_ = n_indep == f;  // ELEKTRONN2: softmax-like input iff n_indep != f
      if (!threshold_ && n_class * n_indep != f) {
        return NodeError(*this, absl::StrFormat("n_class=%d times n_indep=%d must equal f=%d",
                                                n_class, n_indep, f));
      }
    }
    ASSIGN_OR_RETURN(shape_, WithF(*this, p, n_indep_, "pred"));
    return absl::OkStatus();
  }
  std::string details() const override {
    return absl::StrFormat("n_class=%d, n_indep=%d%s", n_class_, n_indep_,
                           threshold_ ? ", > 0.5" : "");
  }
  double cost() const override { return 0; }
  absl::Status Compile(ExecContext& ctx) override {
    AllocateOutput(ctx.backend);
    return absl::OkStatus();
  }
  absl::Status Forward(ExecContext& ctx) override {
    ctx.backend->Classify(parents_[0]->value(), value_, parents_[0]->rows(),
                          parents_[0]->channels(), n_class_, threshold_);
    return absl::OkStatus();
  }

 private:
  int64_t n_class_ = 0, n_indep_ = 0;
  bool threshold_ = false;
};

}  // namespace

std::unique_ptr<Node> MakeBinaryNLL(const v1::NodeSpec& s) {
  return std::make_unique<BinaryNllNode>(s);
}
std::unique_ptr<Node> MakeGaussianNLL(const v1::NodeSpec& s) {
  return std::make_unique<GaussianNllNode>(s);
}
std::unique_ptr<Node> MakeBetaNLL(const v1::NodeSpec& s) {
  return std::make_unique<BetaNllNode>(s);
}
std::unique_ptr<Node> MakeRegressionLoss(const v1::NodeSpec& s) {
  return std::make_unique<RegressionLossNode>(s);
}
std::unique_ptr<Node> MakeEuclideanDistance(const v1::NodeSpec& s) {
  return std::make_unique<EuclideanDistanceNode>(s);
}
std::unique_ptr<Node> MakeRampLoss(const v1::NodeSpec& s) {
  return std::make_unique<RampLossNode>(s);
}
std::unique_ptr<Node> MakeSobel(const v1::NodeSpec& s) { return std::make_unique<SobelNode>(s); }
std::unique_ptr<Node> MakeOneHot(const v1::NodeSpec& s) { return std::make_unique<OneHotNode>(s); }
std::unique_ptr<Node> MakeClassification(const v1::NodeSpec& s) {
  return std::make_unique<ClassificationNode>(s);
}

}  // namespace elektronn
