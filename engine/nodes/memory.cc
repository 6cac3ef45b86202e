// Recurrent family (issue 15), the memories: ValueNode (a stored, optionally trainable tensor)
// and InitialState_like (a trainable vector broadcast to a reference's shape; an RNN's initial
// state). Reference §2.1; both keep their tensor in the parameter "value".
#include <cmath>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/graph/network.h"  // LogicalToPhysical
#include "engine/nodes/neural.h"   // NodeRng
#include "engine/nodes/recurrent.h"
#include "engine/nodes/registry.h"

namespace elektronn {

std::vector<float> InitOrthoGlorot(int64_t n_in, int64_t n_out, std::mt19937_64& rng) {
  const double scale = std::sqrt(2.0 / static_cast<double>(n_in + n_out));
  std::normal_distribution<double> normal(0.0, 1.0);
  // The orthonormal vectors: `count` vectors of length `len`. Rows of the (n_out, n_in) matrix
  // when n_out <= n_in, else its columns. Gram-Schmidt of Gaussian vectors gives the same
  // (Haar) distribution as the SVD factor ELEKTRONN2 takes, without a LAPACK dependency.
  const bool rows = n_out <= n_in;
  const int64_t count = rows ? n_out : n_in, len = rows ? n_in : n_out;
  std::vector<double> q(count * len);
  for (int64_t i = 0; i < count; ++i) {
    double* v = &q[i * len];
    for (double norm = 0; norm < 1e-6;) {
      for (int64_t k = 0; k < len; ++k) v[k] = normal(rng);
      for (int pass = 0; pass < 2; ++pass) {  // twice: orthogonal to working precision
        for (int64_t j = 0; j < i; ++j) {
          const double* u = &q[j * len];
          double d = 0;
          for (int64_t k = 0; k < len; ++k) d += u[k] * v[k];
          for (int64_t k = 0; k < len; ++k) v[k] -= d * u[k];
        }
      }
      norm = 0;
      for (int64_t k = 0; k < len; ++k) norm += v[k] * v[k];
      norm = std::sqrt(norm);
      if (norm >= 1e-6)
        for (int64_t k = 0; k < len; ++k) v[k] /= norm;
    }
  }
  std::vector<float> w(n_in * n_out);
  if (rows) {
    // Each row divided by its own std (numpy's, about its mean), times the glorot std.
    for (int64_t i = 0; i < n_out; ++i) {
      const double* v = &q[i * n_in];
      double mean = 0, sq = 0;
      for (int64_t k = 0; k < n_in; ++k) mean += v[k];
      mean /= static_cast<double>(n_in);
      for (int64_t k = 0; k < n_in; ++k) sq += (v[k] - mean) * (v[k] - mean);
      const double sd = std::sqrt(sq / static_cast<double>(n_in));
      for (int64_t k = 0; k < n_in; ++k) w[i * n_in + k] = static_cast<float>(v[k] / sd * scale);
    }
  } else {
    // ELEKTRONN2 divides each full row of the n_out x n_out orthogonal matrix by its std before
    // dropping columns; a unit row of length n_out has std sqrt(1/n_out - mean^2), and we drop
    // the mean^2 term (relative size O(1/n_out)) instead of building the whole matrix.
    const double row_scale = scale * std::sqrt(static_cast<double>(n_out));
    for (int64_t i = 0; i < n_out; ++i)
      for (int64_t k = 0; k < n_in; ++k)
        w[i * n_in + k] = static_cast<float>(q[k * n_out + i] * row_scale);
  }
  return w;
}

void InitValue(std::vector<float>& v, const v1::ValueInit& init, std::mt19937_64& rng) {
  if (init.mode() == v1::VALUE_INIT_FIX_UNI) {
    std::uniform_real_distribution<double> d(-init.scale(), init.scale());
    for (float& x : v) x = static_cast<float>(d(rng));
    return;
  }
  std::fill(v.begin(), v.end(), init.scale());
}

namespace {

absl::Status CheckInit(const Node& n, const v1::ValueInit& init) {
  if (init.mode() != v1::VALUE_INIT_CONST && init.mode() != v1::VALUE_INIT_FIX_UNI) {
    return NodeError(n, absl::StrFormat("init mode %d is not 'const' or 'fix-uni'",
                                        static_cast<int>(init.mode())));
  }
  if (!std::isfinite(init.scale()) || (init.mode() == v1::VALUE_INIT_FIX_UNI && init.scale() < 0)) {
    return NodeError(n, absl::StrFormat("init scale %g is not valid for mode '%s'", init.scale(),
                                        init.mode() == v1::VALUE_INIT_CONST ? "const" : "fix-uni"));
  }
  return absl::OkStatus();
}

// ValueNode: outputs its parameter "value" (logical layout in the parameter, channels-last as
// output). Not a source: it is fed by nothing and always holds its stored value.
class ValueNode : public Node {
 public:
  using Node::Node;
  std::string op() const override { return "ValueNode"; }
  double cost() const override { return 0; }
  bool differentiable() const override { return spec_.value_node().apply_train(); }
  int64_t param_count() const override {
    return spec_.value_node().apply_train() ? shape_.stripnone_prod() : 0;
  }
  std::string details() const override {
    return spec_.value_node().apply_train() ? "trainable" : "fixed";
  }

  absl::Status InferShape() override {
    const v1::ValueOp& v = spec_.value_node();
    if (!parents_.empty()) return NodeError(*this, "takes no input nodes");
    std::vector<int64_t> sizes(v.shape().begin(), v.shape().end());
    if (sizes.empty()) return NodeError(*this, "shape is empty");
    for (int64_t s : sizes) {
      if (s < 1) {
        return NodeError(*this, absl::StrFormat("shape {%s} has the size %d; every size of a "
                                                "ValueNode must be known and positive",
                                                absl::StrJoin(sizes, ", "), s));
      }
    }
    auto s = TaggedShape::Create(sizes, v.tags(), {v.strides().begin(), v.strides().end()},
                                 {v.fov().begin(), v.fov().end()});
    if (!s.ok()) return NodeError(*this, std::string(s.status().message()));
    shape_ = *std::move(s);
    if (v.value_size() > 0 && v.value_size() != shape_.stripnone_prod()) {
      return NodeError(*this,
                       absl::StrFormat("value has %d entries, shape %s needs %d", v.value_size(),
                                       shape_.ToString(), shape_.stripnone_prod()));
    }
    if (!v.apply_train() && v.has_init()) {
      return NodeError(*this,
                       "init_kwargs need apply_train=true (ELEKTRONN2 raises "
                       "NotImplementedError for a fixed value with init_kwargs)");
    }
    return CheckInit(*this, v.init());
  }

  absl::Status Compile(ExecContext& ctx) override {
    const v1::ValueOp& v = spec_.value_node();
    kernels::Backend* b = ctx.backend;
    numel_ = shape_.stripnone_prod();
    Parameter& p = AddParam(b, "value", shape_.sizes(), numel_, v.apply_train() ? 1.f : 0.f);
    p.trainable = v.apply_train();
    p.fixed = !v.apply_train();
    const TaggedShape shape = shape_;
    p.import_fn = [shape](const float* c, float* n) { LogicalToPhysical(shape, c, n); };
    p.export_fn = [shape](const float* n, float* c) { PhysicalToLogical(shape, n, c); };
    std::vector<float> logical(v.value().begin(), v.value().end());
    if (logical.empty()) {
      logical.resize(numel_);
      std::mt19937_64 rng = NodeRng(ctx.seed, name());
      InitValue(logical, v.init(), rng);
    }
    std::vector<float> physical(numel_);
    LogicalToPhysical(shape_, logical.data(), physical.data());
    b->Upload(physical.data(), p.value, numel_);
    value_ = p.value;  // the output is the parameter itself
    return absl::OkStatus();
  }
  absl::Status Forward(ExecContext&) override { return absl::OkStatus(); }
  absl::Status Backward(ExecContext& ctx) override {
    if (params_[0].trainable) ctx.backend->Copy(grad(), params_[0].grad, numel_);
    return absl::OkStatus();
  }
};

// InitialState_like: the vector "value" (override_f entries) repeated over every row of the
// reference's shape with f replaced; the reference only lends its shape.
class InitialStateNode : public Node {
 public:
  using Node::Node;
  std::string op() const override { return "InitialState_like"; }
  double cost() const override { return 0; }
  int64_t param_count() const override { return spec_.initial_state().override_f(); }
  std::string details() const override {
    return absl::StrFormat("override_f=%d", spec_.initial_state().override_f());
  }

  absl::Status InferShape() override {
    const v1::InitialStateOp& op = spec_.initial_state();
    if (parents_.size() != 1) return NodeError(*this, "needs exactly one reference node");
    if (op.override_f() < 1) {
      return NodeError(*this, absl::StrFormat("override_f=%d must be positive", op.override_f()));
    }
    const TaggedShape& ref = parents_[0]->shape();
    if (!ref.HasTag('f')) {
      return NodeError(*this, absl::StrFormat("reference %s has no feature axis 'f' (tags \"%s\")",
                                              NodeRef(*parents_[0]), ref.tags_string()));
    }
    shape_ = ref;
    shape_.set_size(shape_.TagIndex('f'), op.override_f());
    return CheckInit(*this, op.init());
  }

  absl::Status Compile(ExecContext& ctx) override {
    const int64_t f = spec_.initial_state().override_f();
    AllocateOutput(ctx.backend);
    Parameter& p = AddParam(ctx.backend, "value", {f}, f, 1.f);
    std::vector<float> v(f);
    std::mt19937_64 rng = NodeRng(ctx.seed, name());
    InitValue(v, spec_.initial_state().init(), rng);
    ctx.backend->Upload(v.data(), p.value, f);
    return absl::OkStatus();
  }
  absl::Status Forward(ExecContext& ctx) override {
    ctx.backend->Fill(value_, 0.f, numel_);
    ctx.backend->AddBias(value_, params_[0].value, rows(), channels());
    return absl::OkStatus();
  }
  absl::Status Backward(ExecContext& ctx) override {
    ctx.backend->BiasGradient(grad(), params_[0].grad, rows(), channels());
    return absl::OkStatus();
  }
};

}  // namespace

std::unique_ptr<Node> MakeValueNode(const v1::NodeSpec& s) {
  return std::make_unique<ValueNode>(s);
}
std::unique_ptr<Node> MakeInitialState(const v1::NodeSpec& s) {
  return std::make_unique<InitialStateNode>(s);
}

}  // namespace elektronn
