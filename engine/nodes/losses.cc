// Losses: MultinoulliNLL (per-voxel negative log-likelihood of a softmax, reference §2.13) and
// AggregateLoss (mean over components of w_i * mean(loss_i)).
#include "absl/strings/str_format.h"
#include "engine/nodes/registry.h"

namespace elektronn {
namespace {

// Checks that a target matches a prediction on every axis but 'f'.
absl::Status CheckTargetGeometry(const Node& self, const TaggedShape& pred,
                                 const TaggedShape& target, int64_t expected_f) {
  if (pred.tags() != target.tags()) {
    return NodeError(self, absl::StrFormat("target tags \"%s\" differ from prediction tags \"%s\"",
                                           target.tags_string(), pred.tags_string()));
  }
  for (int i = 0; i < pred.rank(); ++i) {
    const char t = pred.tags()[i];
    const int64_t want = t == 'f' ? expected_f : pred.size(i);
    if (target.size(i) != want &&
        !(t == 'b' && (target.size(i) == kUnknownSize || want == kUnknownSize))) {
      return NodeError(
          self, absl::StrFormat(
                    "target %c=%d does not match the prediction's %d (prediction %s, target %s)", t,
                    target.size(i), want, pred.ToString(), target.ToString()));
    }
  }
  return absl::OkStatus();
}

// Optional inputs (example_weights, mask_class_labeled, mask_class_not_present) follow
// (prediction, target) in this order when the op says they are present.
//
// Lazy-label masks, as ELEKTRONN2's code computes them: mask_class_labeled multiplies the
// (one-hot) target, so a voxel labelled with an unlabelled class k drops out of the loss and of
// the normaliser; mask_class_not_present adds -cw*ew*log(1-p_k+1e-5) for class k at *every*
// voxel of that example (labelled or not) and adds its count to the normaliser n_tot. Both masks
// are per example and per channel of the prediction, shape (b, f). example_weights is one value
// per voxel: (b, spatial...) of the prediction, or that with an 'f' axis of size 1. QUIRK fixed:
// ELEKTRONN2 broadcasts mask_class_labeled as (f, b) (its dimshuffle puts the mask's first axis on
// 'f'), contradicting its own docstring (b, num_classes) and the other mask; here both are (b, f).
// weakness w (from later ELEKTRONN2 versions; "soft bootstrapping"): for labelled groups the
// target becomes (1-w)*target + w*prediction, differentiated through the prediction as Theano
// would; the normaliser is the count of the hard labels (unchanged: a softmax group sums to 1).
// Unlabelled groups stay unlabelled. No gradient flows into the target, example weights or masks.
// class_weights may be a node (input 2, n_class values along 'f'): as in ELEKTRONN2's Theano
// graph the gradient flows into it (the loss is linear in each weight; the normaliser does not
// depend on them), so a trainable or computed weighting trains with the net.
// BlockedMultinoulliNLL: QUIRK 15 kept: ELEKTRONN2 computes a "blocked" prediction and discards
// it (T.set_subtensor's result is unused), so its loss equals MultinoulliNLL's; models trained
// with it never had blocking, so reproducing that (and storing blocking_factor) is the faithful
// choice, and inventing the unused semantics would change their training.
class MultinoulliNllNode : public Node {
 public:
  using Node::Node;
  std::string op() const override {
    return spec_.multinoulli_nll().blocked() ? "BlockedMultinoulliNLL" : "MultinoulliNLL";
  }
  absl::Status InferShape() override {
    const v1::MultinoulliNLLOp& o = spec_.multinoulli_nll();
    const size_t want = 2 + o.has_class_weights() + o.has_example_weights() +
                        o.has_mask_class_labeled() + o.has_mask_class_not_present();
    if (parents_.size() != want) {
      return NodeError(
          *this, absl::StrFormat("needs %d inputs (prediction, target%s%s%s%s), got %d", want,
                                 o.has_class_weights() ? ", class_weights" : "",
                                 o.has_example_weights() ? ", example_weights" : "",
                                 o.has_mask_class_labeled() ? ", mask_class_labeled" : "",
                                 o.has_mask_class_not_present() ? ", mask_class_not_present" : "",
                                 parents_.size()));
    }
    if (!(o.weakness() >= 0 && o.weakness() < 1)) {
      return NodeError(*this, absl::StrFormat("weakness must be in [0, 1), got %g", o.weakness()));
    }
    n_class_ = SoftmaxClasses(*parents_[0]);
    if (n_class_ == 0) {
      return NodeError(*this,
                       absl::StrFormat("prediction %s must be a Softmax", NodeRef(*parents_[0])));
    }
    const TaggedShape& pred = parents_[0]->shape();
    const int64_t f = pred.SizeOf('f');
    RETURN_IF_ERROR(CheckTargetGeometry(*this, pred, parents_[1]->shape(),
                                        o.target_is_sparse() ? f / n_class_ : f));
    if (o.class_weights_size() != 0 && o.class_weights_size() != n_class_) {
      return NodeError(*this, absl::StrFormat("class_weights has %d values for %d classes",
                                              o.class_weights_size(), n_class_));
    }
    shape_ = pred;
    shape_.set_size(shape_.TagIndex('f'), 1);
    int next = 2;
    if (o.has_class_weights()) {
      if (o.class_weights_size() != 0) {
        return NodeError(*this, "class_weights is both a node input and a list of values");
      }
      RETURN_IF_ERROR(CheckClassWeights(*parents_[next++]));
    }
    if (o.has_example_weights()) {
      // (b, spatial...) as ELEKTRONN2 has it, or with an 'f' axis of size 1 (this engine's
      // Input nodes always have 'f'); the memory layout is the same.
      const std::string& tags = parents_[next]->shape().tags();
      if (tags.find('f') != std::string::npos) {
        TaggedShape want = pred;
        want.set_size(want.TagIndex('f'), 1);
        RETURN_IF_ERROR(CheckExtra(next++, "example_weights", want));
      } else {
        RETURN_IF_ERROR(CheckExtra(next++, "example_weights", ExampleWeightsShape(pred)));
      }
    }
    const std::vector<int64_t> bf_sizes = {pred.HasTag('b') ? pred.SizeOf('b') : 1, f};
    ASSIGN_OR_RETURN(const TaggedShape batch_by_f, TaggedShape::Create(bf_sizes, "bf"));
    for (auto [has, what] : {std::pair{o.has_mask_class_labeled(), "mask_class_labeled"},
                             std::pair{o.has_mask_class_not_present(), "mask_class_not_present"}}) {
      if (!has) continue;
      if (!pred.HasTag('b')) {
        return NodeError(*this,
                         absl::StrFormat("%s needs a prediction with a batch axis 'b'", what));
      }
      RETURN_IF_ERROR(CheckExtra(next++, what, batch_by_f));
    }
    return absl::OkStatus();
  }
  // A class_weights node holds n_class values along 'f' (ELEKTRONN2: a vector of length
  // n_class); other axes are allowed if they have size 1 (e.g. a ValueNode with b = 1).
  absl::Status CheckClassWeights(const Node& cw) const {
    const TaggedShape& s = cw.shape();
    bool ok = s.HasTag('f') && s.SizeOf('f') == n_class_;
    for (int a = 0; ok && a < s.rank(); ++a) ok = s.tags()[a] == 'f' || s.size(a) == 1;
    if (ok) return absl::OkStatus();
    return NodeError(*this, absl::StrFormat("class_weights %s %s must hold %d values along 'f' "
                                            "(one per class), every other axis of size 1",
                                            NodeRef(cw), s.ToString(), n_class_));
  }
  // (b, spatial...) in the prediction's order: its shape without 'f'.
  static std::string ExampleWeightsShape(const TaggedShape& pred) {
    std::string tags;
    for (int i = 0; i < pred.rank(); ++i) {
      if (pred.tags()[i] == 'f') continue;
      if (!tags.empty()) tags += ",";
      tags += pred.tags()[i];
    }
    return tags;
  }
  // Input `i` must have these tags (as a string) and the prediction's sizes on them.
  absl::Status CheckExtra(int i, const char* what, const std::string& tags) {
    const TaggedShape& pred = parents_[0]->shape();
    const TaggedShape& s = parents_[i]->shape();
    bool ok = s.tags_string() == tags;
    for (int a = 0; ok && a < s.rank(); ++a) {
      const int64_t want = pred.SizeOf(s.tags()[a]);
      ok = s.size(a) == want ||
           (s.tags()[a] == 'b' && (s.size(a) == kUnknownSize || want == kUnknownSize));
    }
    if (ok) return absl::OkStatus();
    return NodeError(*this, absl::StrFormat("%s %s must have shape (%s) of the prediction %s", what,
                                            s.ToString(), tags, pred.ToString()));
  }
  absl::Status CheckExtra(int i, const char* what, const TaggedShape& want) {
    const TaggedShape& s = parents_[i]->shape();
    bool ok = s.tags() == want.tags();
    for (int a = 0; ok && a < s.rank(); ++a) {
      ok = s.size(a) == want.size(a) ||
           (s.tags()[a] == 'b' && (s.size(a) == kUnknownSize || want.size(a) == kUnknownSize));
    }
    if (ok) return absl::OkStatus();
    return NodeError(
        *this, absl::StrFormat("%s %s must have shape %s", what, s.ToString(), want.ToString()));
  }
  absl::Status Compile(ExecContext& ctx) override {
    AllocateOutput(ctx.backend);
    const v1::MultinoulliNLLOp& o = spec_.multinoulli_nll();
    int next = 2;
    const float* cw_input = o.has_class_weights() ? parents_[next++]->value() : nullptr;
    desc_.example_weights = o.has_example_weights() ? parents_[next++]->value() : nullptr;
    desc_.mask_class_labeled = o.has_mask_class_labeled() ? parents_[next++]->value() : nullptr;
    desc_.mask_class_not_present =
        o.has_mask_class_not_present() ? parents_[next++]->value() : nullptr;
    desc_.weakness = o.weakness();
    const int64_t b = parents_[0]->shape().SizeOf('b');
    desc_.batch = b > 0 ? b : 1;
    const auto& cw = spec_.multinoulli_nll().class_weights();
    if (!cw.empty()) {
      class_weights_ = Scratch(ctx.backend, cw.size()).data();
      ctx.backend->Upload(cw.data(), class_weights_, cw.size());
    }
    desc_.rows = parents_[0]->rows();
    desc_.channels = parents_[0]->channels();
    desc_.n_class = n_class_;
    desc_.sparse = spec_.multinoulli_nll().target_is_sparse();
    desc_.class_weights = cw_input ? cw_input : class_weights_;
    return absl::OkStatus();
  }
  absl::Status Forward(ExecContext& ctx) override {
    n_labelled_ =
        ctx.backend->NllForward(desc_, parents_[0]->value(), parents_[1]->value(), value_);
    return absl::OkStatus();
  }
  absl::Status Backward(ExecContext& ctx) override {
    if (GradTarget t = ParentGrad(0)) {
      ctx.backend->NllBackward(desc_, parents_[0]->value(), parents_[1]->value(), grad(),
                               n_labelled_, t.ptr, t.accumulate);
    }
    if (spec_.multinoulli_nll().has_class_weights()) {
      if (GradTarget t = ParentGrad(2)) {
        ctx.backend->NllClassWeightsBackward(desc_, parents_[0]->value(), parents_[1]->value(),
                                             grad(), n_labelled_, t.ptr, t.accumulate);
      }
    }
    return absl::OkStatus();
  }
  double n_labelled() const { return n_labelled_; }

 private:
  int64_t n_class_ = 0;
  double n_labelled_ = 0;
  float* class_weights_ = nullptr;
  kernels::Backend::NllDesc desc_;
};

class AggregateLossNode : public Node {
 public:
  using Node::Node;
  std::string op() const override { return "AggregateLoss"; }
  absl::Status InferShape() override {
    if (parents_.empty()) return NodeError(*this, "needs at least one loss node");
    const auto& mw = spec_.aggregate_loss().mixing_weights();
    if (!mw.empty() && mw.size() != static_cast<int>(parents_.size())) {
      return NodeError(*this, absl::StrFormat("mixing_weights has %d values for %d losses",
                                              mw.size(), parents_.size()));
    }
    weights_.assign(parents_.size(), 1.f);
    for (int i = 0; i < mw.size(); ++i) weights_[i] = mw[i];
    auto s = TaggedShape::Create({1}, "f");
    shape_ = *std::move(s);
    return absl::OkStatus();
  }
  double cost() const override { return 0; }
  // Live-settable (ELEKTRONN2's model.mixing).
  std::vector<float>& mixing_weights() { return weights_; }
  absl::Status Compile(ExecContext& ctx) override {
    AllocateOutput(ctx.backend);
    for (Node* p : parents_) fill_.push_back(Scratch(ctx.backend, p->numel()).data());
    return absl::OkStatus();
  }
  absl::Status Forward(ExecContext& ctx) override {
    double total = 0;
    for (size_t i = 0; i < parents_.size(); ++i) {
      total += weights_[i] * ctx.backend->Sum(parents_[i]->value(), parents_[i]->numel()) /
               static_cast<double>(parents_[i]->numel());
    }
    const float v = static_cast<float>(total / parents_.size());
    ctx.backend->Upload(&v, value_, 1);
    return absl::OkStatus();
  }
  absl::Status Backward(ExecContext& ctx) override {
    float g = 0;
    ctx.backend->Download(grad(), &g, 1);
    for (size_t i = 0; i < parents_.size(); ++i) {
      GradTarget t = ParentGrad(static_cast<int>(i));
      if (!t) continue;
      const int64_t n = parents_[i]->numel();
      const float c = g * weights_[i] / static_cast<float>(parents_.size() * n);
      if (t.accumulate) {
        ctx.backend->Fill(fill_[i], c, n);
        ctx.backend->Scale(fill_[i], 1.f, t.ptr, n, true);
      } else {
        ctx.backend->Fill(t.ptr, c, n);
      }
    }
    return absl::OkStatus();
  }

 private:
  std::vector<float> weights_;
  std::vector<float*> fill_;
};

// Errors: the fraction of labelled voxels whose arg-max class is wrong. For a sigmoid
// prediction (no Softmax; ELEKTRONN2's Classification then thresholds at 0.5) each channel is a
// binary decision p > 0.5 compared with target > 0.5; targets < 0 (-1, -666) are unlabelled. Unlike
// ELEKTRONN2 (QUIRK 6), ignored labels (< 0) are left out of the count, matching MultinoulliNLL.
class ErrorsNode : public Node {
 public:
  using Node::Node;
  std::string op() const override { return "Errors"; }
  bool differentiable() const override { return false; }
  absl::Status InferShape() override {
    if (parents_.size() != 2) return NodeError(*this, "needs inputs (prediction, target)");
    const TaggedShape& pred = parents_[0]->shape();
    const int64_t f = pred.SizeOf('f');
    const int64_t n_indep = spec_.errors().n_indep() > 0 ? spec_.errors().n_indep() : 0;
    binary_ = SoftmaxClasses(*parents_[0]) == 0 &&
              parents_[0]->activation() == kernels::Eltwise::kSigmoid;
    if (binary_) {
      RETURN_IF_ERROR(CheckTargetGeometry(*this, pred, parents_[1]->shape(), f));
      shape_ = *TaggedShape::Create({1}, "f");
      return absl::OkStatus();
    }
    n_class_ =
        spec_.errors().n_class() > 0 ? spec_.errors().n_class() : SoftmaxClasses(*parents_[0]);
    if (n_class_ == 0) n_class_ = n_indep > 0 ? f / n_indep : f;
    if (n_class_ <= 0 || f % n_class_ != 0) {
      return NodeError(*this, absl::StrFormat("n_class=%d does not divide f=%d", n_class_, f));
    }
    RETURN_IF_ERROR(CheckTargetGeometry(*this, pred, parents_[1]->shape(),
                                        spec_.errors().target_is_sparse() ? f / n_class_ : f));
    shape_ = *TaggedShape::Create({1}, "f");
    return absl::OkStatus();
  }
  double cost() const override { return 0; }
  absl::Status Compile(ExecContext& ctx) override {
    AllocateOutput(ctx.backend);
    return absl::OkStatus();
  }
  absl::Status Forward(ExecContext& ctx) override {
    int64_t wrong = 0, labelled = 0;
    if (binary_) {
      ctx.backend->CountBinaryErrors(parents_[0]->value(), parents_[1]->value(),
                                     parents_[0]->numel(), &wrong, &labelled);
    } else {
      ctx.backend->CountErrors(parents_[0]->value(), parents_[1]->value(), parents_[0]->rows(),
                               parents_[0]->channels(), n_class_, spec_.errors().target_is_sparse(),
                               &wrong, &labelled);
    }
    const float v = labelled > 0 ? static_cast<float>(wrong) / labelled : 0.f;
    ctx.backend->Upload(&v, value_, 1);
    return absl::OkStatus();
  }

 private:
  int64_t n_class_ = 0;
  bool binary_ = false;
};

}  // namespace

std::vector<float>* AggregateLossMixingWeights(Node& n) {
  auto* a = dynamic_cast<AggregateLossNode*>(&n);
  return a ? &a->mixing_weights() : nullptr;
}

std::unique_ptr<Node> MakeMultinoulliNLL(const v1::NodeSpec& s) {
  return std::make_unique<MultinoulliNllNode>(s);
}
std::unique_ptr<Node> MakeAggregateLoss(const v1::NodeSpec& s) {
  return std::make_unique<AggregateLossNode>(s);
}
std::unique_ptr<Node> MakeErrors(const v1::NodeSpec& s) { return std::make_unique<ErrorsNode>(s); }

}  // namespace elektronn
