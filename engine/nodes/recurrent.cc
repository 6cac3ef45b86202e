// Recurrent family (issue 15), the cells: GRU and LSTM (reference §2.10), one time step each; a
// Scan repeats them over a sequence. Composed from existing Backend functions (a matrix product
// per gate, element-wise ops and box copies), so any backend runs them as it is.
//
// Weights: the parameter "w" has ELEKTRONN2's shape (n_f + n_in, G n_f) for G gate blocks (GRU:
// z, r, h~; LSTM: f, i, o, c~), rows in the order [memory, input]. Natively it is stored as G
// contiguous (n_f + n_in, n_f) blocks, one per gate, so each gate is one matrix product with a
// contiguous weight; import_fn/export_fn convert. "b" has G n_f entries in the same gate order.
//
// Initialisation as ELEKTRONN2's: "w" orthogonal glorot (always, for both cells); "b" by the
// cell's activation_func like every neural layer (relu 1, sigmoid 0.5, others uniform +-1e-6).
// The gates use the true logistic sigmoid (ELEKTRONN2's 'sig' is Theano's T.nnet.sigmoid, not
// hard_sigmoid).
#include "engine/nodes/recurrent.h"

#include "absl/strings/str_format.h"
#include "engine/nodes/neural.h"
#include "engine/nodes/registry.h"

namespace elektronn {
namespace {

using kernels::BoxCopy;
using kernels::Eltwise;

// A box of `width` columns of a (rows, src_cols) matrix at `src_col` copied to `dst_col` of a
// (rows, dst_cols) matrix.
BoxCopy Columns(int64_t rows, int64_t src_cols, int64_t src_col, int64_t dst_cols, int64_t dst_col,
                int64_t width) {
  return BoxCopy{{rows, src_cols}, {rows, dst_cols}, {0, src_col}, {0, dst_col}, {rows, width}};
}

// What GRU and LSTM share: inputs [x, memory], shape rules, the gate weights and the matrix
// product kernel (rows, n_f + n_in) x (n_f + n_in, n_f).
class RecurrentCell : public Node {
 public:
  RecurrentCell(const v1::NodeSpec& s, int gates, int memory_blocks, int64_t n_f, v1::Activation a)
      : Node(s), gates_(gates), memory_blocks_(memory_blocks), n_f_(n_f) {
    act_ = a == v1::ACTIVATION_UNSPECIFIED ? v1::TANH : a;  // ELEKTRONN2's default 'tanh'
  }

  absl::Status InferShape() override {
    if (parents_.size() != 2) {
      return NodeError(*this, absl::StrFormat("needs two inputs (the input and the memory "
                                              "state), got %d",
                                              parents_.size()));
    }
    if (n_f_ < 1) return NodeError(*this, absl::StrFormat("n_f=%d must be positive", n_f_));
    if (act_ == v1::PRELU) {
      return NodeError(*this,
                       "activation_func='prelu' is not supported (its learned slope "
                       "has no place in the gate layout)");
    }
    const TaggedShape& in = parents_[0]->shape();
    const TaggedShape& mem = parents_[1]->shape();
    if (in.HasTag('r')) {
      return NodeError(*this,
                       absl::StrFormat("input %s has a recurrence axis 'r' (tags \"%s\"); the cell "
                                       "takes one step, so feed it the sequence through Scan",
                                       NodeRef(*parents_[0]), in.tags_string()));
    }
    if (!in.HasTag('f')) {
      return NodeError(*this,
                       absl::StrFormat("input %s has no feature axis 'f'", NodeRef(*parents_[0])));
    }
    const int64_t mem_f = memory_blocks_ * n_f_;
    if (mem.SizeOf('f') != mem_f) {
      return NodeError(*this, absl::StrFormat("memory %s has f=%d; n_f=%d needs %s=%d",
                                              NodeRef(*parents_[1]), mem.SizeOf('f'), n_f_,
                                              memory_blocks_ == 1 ? "n_f" : "2*n_f", mem_f));
    }
    TaggedShape expect = in;
    expect.set_size(in.TagIndex('f'), mem_f);
    if (mem.tags() != in.tags() || mem.sizes() != expect.sizes()) {
      return NodeError(*this,
                       absl::StrFormat("memory %s has shape %s; it must match the input's "
                                       "%s apart from f",
                                       NodeRef(*parents_[1]), mem.ToString(), in.ToString()));
    }
    n_in_ = in.SizeOf('f');
    shape_ = in;
    shape_.set_size(in.TagIndex('f'), mem_f);
    return absl::OkStatus();
  }
  int64_t param_count() const override { return (n_f_ + n_in_) * gates_ * n_f_ + gates_ * n_f_; }
  double cost() const override {
    return static_cast<double>(gates_) * parents_[0]->shape().stripnone_prod() * n_f_;
  }
  std::string details() const override {
    return absl::StrFormat("n_f=%d, act='%s'", n_f_, ActivationName(act_));
  }

 protected:
  // Kernel, parameters "w" and "b", and the rows of this batch.
  absl::Status CompileCell(ExecContext& ctx) {
    kernels::Backend* b = ctx.backend;
    k_ = n_f_ + n_in_;
    rows_ = parents_[0]->shape().stripnone_prod() / n_in_;
    n_ = rows_ * n_f_;
    auto mm =
        b->CreateMatmul(kernels::MatmulDesc{rows_, k_, n_f_, Eltwise::kLinear, ctx.precision});
    if (!mm.ok()) return NodeError(*this, std::string(mm.status().message()));
    mm_ = *std::move(mm);
    const int64_t g = gates_, k = k_, f = n_f_;
    Parameter& w = AddParam(b, "w", {k, g * f}, k * g * f, 1.f);
    w.import_fn = [g, k, f](const float* c, float* n) {
      for (int64_t gi = 0; gi < g; ++gi)
        for (int64_t r = 0; r < k; ++r)
          for (int64_t j = 0; j < f; ++j) n[(gi * k + r) * f + j] = c[r * g * f + gi * f + j];
    };
    w.export_fn = [g, k, f](const float* n, float* c) {
      for (int64_t gi = 0; gi < g; ++gi)
        for (int64_t r = 0; r < k; ++r)
          for (int64_t j = 0; j < f; ++j) c[r * g * f + gi * f + j] = n[(gi * k + r) * f + j];
    };
    std::mt19937_64 rng = NodeRng(ctx.seed, name());
    std::vector<float> canonical = InitOrthoGlorot(k, g * f, rng), native(canonical.size());
    w.import_fn(canonical.data(), native.data());
    b->Upload(native.data(), w.value, w.size);
    Parameter& bias = AddParam(b, "b", {g * f}, g * f, 0.f);
    std::vector<float> bv(g * f);
    InitBias(bv, act_, 1.0, rng);
    b->Upload(bv.data(), bias.value, bv.size());
    return absl::OkStatus();
  }
  float* Scratch(ExecContext& ctx, int64_t n) { return Node::Scratch(ctx.backend, n).data(); }
  // Gate `g`'s weight block, bias and their gradients.
  const float* W(int g) const { return params_[0].value + g * k_ * n_f_; }
  float* dW(int g) { return params_[0].grad + g * k_ * n_f_; }
  const float* B(int g) const { return params_[1].value + g * n_f_; }
  float* dB(int g) { return params_[1].grad + g * n_f_; }

  const int gates_, memory_blocks_;
  const int64_t n_f_;
  v1::Activation act_;
  int64_t n_in_ = 0, k_ = 0, rows_ = 0, n_ = 0;
  std::unique_ptr<kernels::MatmulKernel> mm_;
};

// out = (1 - z) m + z h~ with z = sig([m, x] Wz + bz), r = sig([m, x] Wr + br),
// h~ = act([r m, x] Wh + bh).
class GruNode : public RecurrentCell {
 public:
  explicit GruNode(const v1::NodeSpec& s)
      : RecurrentCell(s, 3, 1, s.gru().n_f(), s.gru().activation()) {}
  std::string op() const override { return "GRU"; }

  absl::Status Compile(ExecContext& ctx) override {
    RETURN_IF_ERROR(CompileCell(ctx));
    AllocateOutput(ctx.backend);
    for (float** p : {&cat_, &gcat_, &dcat_, &dgcat_}) *p = Scratch(ctx, rows_ * k_);
    for (float** p : {&z_, &r_, &pre_, &hpre_, &h_, &hm_, &tmp_, &dh_, &dz_, &dr_, &dm_})
      *p = Scratch(ctx, n_);
    mem_to_cat_ = Columns(rows_, n_f_, 0, k_, 0, n_f_);
    x_to_cat_ = Columns(rows_, n_in_, 0, k_, n_f_, n_in_);
    cat_to_mem_ = Columns(rows_, k_, 0, n_f_, 0, n_f_);
    cat_to_x_ = Columns(rows_, k_, n_f_, n_in_, 0, n_in_);
    return absl::OkStatus();
  }

  absl::Status Forward(ExecContext& ctx) override {
    kernels::Backend* be = ctx.backend;
    const float* x = parents_[0]->value();
    const float* m = parents_[1]->value();
    be->CopyBox(mem_to_cat_, m, cat_, false);
    be->CopyBox(x_to_cat_, x, cat_, false);
    RETURN_IF_ERROR(mm_->Forward(cat_, W(0), B(0), pre_));
    be->EltwiseForward(Eltwise::kSigmoid, pre_, z_, n_);
    RETURN_IF_ERROR(mm_->Forward(cat_, W(1), B(1), pre_));
    be->EltwiseForward(Eltwise::kSigmoid, pre_, r_, n_);
    be->Multiply(r_, m, tmp_, n_, false);
    be->CopyBox(mem_to_cat_, tmp_, gcat_, false);
    be->CopyBox(x_to_cat_, x, gcat_, false);
    RETURN_IF_ERROR(mm_->Forward(gcat_, W(2), B(2), hpre_));
    be->EltwiseForward(ToEltwise(act_), hpre_, h_, n_);
    be->Scale(m, -1.f, hm_, n_, false);  // hm = h~ - m, kept for backward
    be->Add(h_, hm_, hm_, n_);
    be->Multiply(z_, hm_, value_, n_, false);
    be->Add(value_, m, value_, n_);
    return absl::OkStatus();
  }

  absl::Status Backward(ExecContext& ctx) override {
    kernels::Backend* be = ctx.backend;
    const float* g = grad();
    const float* m = parents_[1]->value();
    be->Multiply(g, z_, dh_, n_, false);   // d h~
    be->Multiply(g, hm_, dz_, n_, false);  // d z
    be->Scale(dh_, -1.f, dm_, n_, false);  // d m = g (1 - z) + ...
    be->Add(dm_, g, dm_, n_);
    be->EltwiseBackward(ToEltwise(act_), hpre_, h_, dh_, dh_, n_, false);
    RETURN_IF_ERROR(mm_->BackwardWeights(gcat_, dh_, dW(2), dB(2)));
    RETURN_IF_ERROR(mm_->BackwardData(dh_, W(2), dgcat_, false));
    be->CopyBox(cat_to_mem_, dgcat_, tmp_, false);  // d (r m)
    be->Multiply(tmp_, m, dr_, n_, false);
    be->Multiply(tmp_, r_, dm_, n_, true);
    be->EltwiseBackward(Eltwise::kSigmoid, nullptr, z_, dz_, dz_, n_, false);
    be->EltwiseBackward(Eltwise::kSigmoid, nullptr, r_, dr_, dr_, n_, false);
    RETURN_IF_ERROR(mm_->BackwardWeights(cat_, dz_, dW(0), dB(0)));
    RETURN_IF_ERROR(mm_->BackwardWeights(cat_, dr_, dW(1), dB(1)));
    if (!parents_[0]->needs_grad() && !parents_[1]->needs_grad()) return absl::OkStatus();
    RETURN_IF_ERROR(mm_->BackwardData(dz_, W(0), dcat_, false));
    RETURN_IF_ERROR(mm_->BackwardData(dr_, W(1), dcat_, true));
    be->CopyBox(cat_to_mem_, dcat_, dm_, true);
    if (GradTarget t = ParentGrad(0)) {
      be->CopyBox(cat_to_x_, dgcat_, t.ptr, t.accumulate);
      be->CopyBox(cat_to_x_, dcat_, t.ptr, true);
    }
    if (GradTarget t = ParentGrad(1)) be->Scale(dm_, 1.f, t.ptr, n_, t.accumulate);
    return absl::OkStatus();
  }

 private:
  float *cat_ = nullptr, *gcat_ = nullptr, *dcat_ = nullptr, *dgcat_ = nullptr;
  float *z_ = nullptr, *r_ = nullptr, *pre_ = nullptr, *hpre_ = nullptr, *h_ = nullptr,
        *hm_ = nullptr, *tmp_ = nullptr, *dh_ = nullptr, *dz_ = nullptr, *dr_ = nullptr,
        *dm_ = nullptr;
  BoxCopy mem_to_cat_, x_to_cat_, cat_to_mem_, cat_to_x_;
};

// memory = [h, c]; gates f, i, o = sig([h, x] W + b), c~ = act(...);
// c' = f c + i c~, h' = o act(c'); output [h', c'].
class LstmNode : public RecurrentCell {
 public:
  explicit LstmNode(const v1::NodeSpec& s)
      : RecurrentCell(s, 4, 2, s.lstm().n_f(), s.lstm().activation()) {}
  std::string op() const override { return "LSTM"; }

  absl::Status Compile(ExecContext& ctx) override {
    RETURN_IF_ERROR(CompileCell(ctx));
    AllocateOutput(ctx.backend);
    cat_ = Scratch(ctx, rows_ * k_);
    dcat_ = Scratch(ctx, rows_ * k_);
    pre_ = Scratch(ctx, 4 * n_);  // gate blocks f, i, o, c~ one after the other
    gate_ = Scratch(ctx, 4 * n_);
    dgate_ = Scratch(ctx, 4 * n_);
    for (float** p : {&c_, &cn_, &a_, &hn_, &dhn_, &dcn_, &tmp_, &dc_}) *p = Scratch(ctx, n_);
    const int64_t m = 2 * n_f_;
    h_to_cat_ = Columns(rows_, m, 0, k_, 0, n_f_);
    x_to_cat_ = Columns(rows_, n_in_, 0, k_, n_f_, n_in_);
    c_from_mem_ = Columns(rows_, m, n_f_, n_f_, 0, n_f_);
    h_to_out_ = Columns(rows_, n_f_, 0, m, 0, n_f_);
    c_to_out_ = Columns(rows_, n_f_, 0, m, n_f_, n_f_);
    h_from_out_ = Columns(rows_, m, 0, n_f_, 0, n_f_);
    cat_to_x_ = Columns(rows_, k_, n_f_, n_in_, 0, n_in_);
    cat_to_h_ = Columns(rows_, k_, 0, m, 0, n_f_);
    return absl::OkStatus();
  }

  absl::Status Forward(ExecContext& ctx) override {
    kernels::Backend* be = ctx.backend;
    const float* x = parents_[0]->value();
    const float* mem = parents_[1]->value();
    be->CopyBox(h_to_cat_, mem, cat_, false);
    be->CopyBox(x_to_cat_, x, cat_, false);
    be->CopyBox(c_from_mem_, mem, c_, false);
    for (int g = 0; g < 4; ++g) RETURN_IF_ERROR(mm_->Forward(cat_, W(g), B(g), pre_ + g * n_));
    be->EltwiseForward(Eltwise::kSigmoid, pre_, gate_, 3 * n_);  // f, i, o
    be->EltwiseForward(ToEltwise(act_), pre_ + 3 * n_, gate_ + 3 * n_, n_);
    be->Multiply(Gate(0), c_, cn_, n_, false);
    be->Multiply(Gate(1), Gate(3), cn_, n_, true);
    be->EltwiseForward(ToEltwise(act_), cn_, a_, n_);
    be->Multiply(Gate(2), a_, hn_, n_, false);
    be->CopyBox(h_to_out_, hn_, value_, false);
    be->CopyBox(c_to_out_, cn_, value_, false);
    return absl::OkStatus();
  }

  absl::Status Backward(ExecContext& ctx) override {
    kernels::Backend* be = ctx.backend;
    be->CopyBox(h_from_out_, grad(), dhn_, false);
    be->CopyBox(c_from_mem_, grad(), dcn_, false);       // same columns of a (rows, 2 n_f) matrix
    be->Multiply(dhn_, a_, dgate_ + 2 * n_, n_, false);  // d o
    be->Multiply(dhn_, Gate(2), tmp_, n_, false);        // d act(c')
    be->EltwiseBackward(ToEltwise(act_), cn_, a_, tmp_, dcn_, n_, true);
    be->Multiply(dcn_, c_, dgate_, n_, false);                // d f
    be->Multiply(dcn_, Gate(3), dgate_ + n_, n_, false);      // d i
    be->Multiply(dcn_, Gate(1), dgate_ + 3 * n_, n_, false);  // d c~
    be->Multiply(dcn_, Gate(0), dc_, n_, false);              // d c
    be->EltwiseBackward(Eltwise::kSigmoid, nullptr, gate_, dgate_, dgate_, 3 * n_, false);
    be->EltwiseBackward(ToEltwise(act_), pre_ + 3 * n_, gate_ + 3 * n_, dgate_ + 3 * n_,
                        dgate_ + 3 * n_, n_, false);
    for (int g = 0; g < 4; ++g) {
      RETURN_IF_ERROR(mm_->BackwardWeights(cat_, dgate_ + g * n_, dW(g), dB(g)));
    }
    if (!parents_[0]->needs_grad() && !parents_[1]->needs_grad()) return absl::OkStatus();
    for (int g = 0; g < 4; ++g) {
      RETURN_IF_ERROR(mm_->BackwardData(dgate_ + g * n_, W(g), dcat_, g > 0));
    }
    if (GradTarget t = ParentGrad(0)) be->CopyBox(cat_to_x_, dcat_, t.ptr, t.accumulate);
    if (GradTarget t = ParentGrad(1)) {
      be->CopyBox(cat_to_h_, dcat_, t.ptr, t.accumulate);
      be->CopyBox(c_to_out_, dc_, t.ptr, t.accumulate);  // disjoint columns of the memory
    }
    return absl::OkStatus();
  }

 private:
  const float* Gate(int g) const { return gate_ + g * n_; }

  float *cat_ = nullptr, *dcat_ = nullptr, *pre_ = nullptr, *gate_ = nullptr, *dgate_ = nullptr;
  float *c_ = nullptr, *cn_ = nullptr, *a_ = nullptr, *hn_ = nullptr, *dhn_ = nullptr,
        *dcn_ = nullptr, *tmp_ = nullptr, *dc_ = nullptr;
  BoxCopy h_to_cat_, x_to_cat_, c_from_mem_, h_to_out_, c_to_out_, h_from_out_, cat_to_x_,
      cat_to_h_;
};

}  // namespace

std::unique_ptr<Node> MakeGru(const v1::NodeSpec& s) { return std::make_unique<GruNode>(s); }
std::unique_ptr<Node> MakeLstm(const v1::NodeSpec& s) { return std::make_unique<LstmNode>(s); }

}  // namespace elektronn
