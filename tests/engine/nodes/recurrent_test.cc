// Recurrent family (issue 15): GRU and LSTM against a naive reference written from the equations
// of reference §2.10, finite-difference gradients of the cells and memories (InitialState_like,
// ValueNode) and of Softmax(n_indep) with MultinoulliNLL, the orthogonal initialisation, shape
// errors, and a model-file round trip of every new parameter.
#include "engine/nodes/recurrent.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "engine/graph/model_builder.h"  // AppendNode
#include "engine/graph/network.h"
#include "engine/io/model_file.h"
#include "kernels/backend.h"
#include "tests/engine/gradient_checker.h"
#include "tests/support/test_dir.h"

namespace elektronn {
namespace {

using testing::CheckGradients;
using testing::GradientCheckOptions;
using testing::GradientCheckReport;

// A ModelSpec built node by node.
struct Spec {
  v1::ModelSpec s;
  Spec() { s.set_seed(3); }
  std::string Add(v1::NodeSpec n, std::vector<std::string> inputs) {
    for (auto& i : inputs) n.add_inputs(i);
    return AppendNode(&s, std::move(n));
  }
  static v1::NodeSpec Named(const std::string& name) {
    v1::NodeSpec n;
    n.set_name(name);
    return n;
  }
  std::string Input(std::vector<int64_t> shape, const std::string& tags, const std::string& name) {
    v1::NodeSpec n = Named(name);
    for (int64_t v : shape) n.mutable_input()->add_shape(v);
    n.mutable_input()->set_tags(tags);
    return Add(n, {});
  }
  std::string Gru(const std::string& x, const std::string& m, int64_t n_f,
                  v1::Activation a = v1::ACTIVATION_UNSPECIFIED) {
    v1::NodeSpec n = Named("gru");
    n.mutable_gru()->set_n_f(n_f);
    n.mutable_gru()->set_activation(a);
    return Add(n, {x, m});
  }
  std::string Lstm(const std::string& x, const std::string& m, int64_t n_f,
                   v1::Activation a = v1::ACTIVATION_UNSPECIFIED) {
    v1::NodeSpec n = Named("lstm");
    n.mutable_lstm()->set_n_f(n_f);
    n.mutable_lstm()->set_activation(a);
    return Add(n, {x, m});
  }
  std::string InitialState(const std::string& ref, int64_t f) {
    v1::NodeSpec n = Named("initial_state");
    n.mutable_initial_state()->set_override_f(f);
    return Add(n, {ref});
  }
  std::string Value(std::vector<int64_t> shape, const std::string& tags, bool train,
                    std::vector<float> value = {}) {
    v1::NodeSpec n = Named("value_state");
    for (int64_t v : shape) n.mutable_value_node()->add_shape(v);
    n.mutable_value_node()->set_tags(tags);
    n.mutable_value_node()->set_apply_train(train);
    for (float v : value) n.mutable_value_node()->add_value(v);
    return Add(n, {});
  }
  std::string MultMerge(const std::string& a, const std::string& b) {
    v1::NodeSpec n = Named("multmerge");
    n.mutable_mult_merge();
    return Add(n, {a, b});
  }
};

void ExpectGradientsMatch(const v1::ModelSpec& spec, const std::string& out,
                          std::vector<std::string> wrt, GradientCheckOptions opt = {}) {
  opt.output = out;
  opt.wrt_inputs = std::move(wrt);
  GradientCheckReport report;
  absl::Status s = CheckGradients(spec, opt, &report);
  std::string lines;
  for (const auto& l : report.lines) lines += "  " + l + "\n";
  EXPECT_TRUE(s.ok()) << s << "\n" << lines;
}

kernels::Backend* Cpu() {
  static std::unique_ptr<kernels::Backend> b = kernels::CreateCpuBackend();
  return b.get();
}

std::unique_ptr<Network> Build(const v1::ModelSpec& spec, int64_t batch) {
  NetworkOptions o;
  o.batch_size = batch;
  o.input_gradients = true;
  auto net = Network::Create(spec, Cpu(), o);
  EXPECT_TRUE(net.ok()) << net.status();
  return net.ok() ? *std::move(net) : nullptr;
}

std::vector<float> Random(int64_t n, std::mt19937_64& rng, float scale = 1.f) {
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

// --- gradients ------------------------------------------------------------------------------

struct CellCase {
  std::string name;
  bool lstm;
  std::vector<int64_t> x_shape;  // logical, f at index 1
  std::string tags;
  int64_t n_f;
  v1::Activation act;
};
void PrintTo(const CellCase& c, std::ostream* os) { *os << c.name; }

class CellGradient : public ::testing::TestWithParam<CellCase> {};

TEST_P(CellGradient, InputMemoryAndParameters) {
  const CellCase& c = GetParam();
  Spec s;
  std::string x = s.Input(c.x_shape, c.tags, "x");
  std::vector<int64_t> mem_shape = c.x_shape;
  mem_shape[1] = (c.lstm ? 2 : 1) * c.n_f;
  std::string m = s.Input(mem_shape, c.tags, "mem");
  std::string y = c.lstm ? s.Lstm(x, m, c.n_f, c.act) : s.Gru(x, m, c.n_f, c.act);
  GradientCheckOptions o;
  o.batch_size = c.x_shape[0];
  o.max_checks_per_tensor = 40;
  ExpectGradientsMatch(s.s, y, {x, m}, o);
}

INSTANTIATE_TEST_SUITE_P(
    Recurrent, CellGradient,
    ::testing::Values(CellCase{"gru_tanh", false, {3, 4}, "b,f", 3, v1::TANH},
                      CellCase{"gru_sigmoid_spatial", false, {2, 2, 3}, "b,f,x", 2, v1::SIGMOID},
                      CellCase{"gru_abs", false, {2, 3}, "b,f", 4, v1::ABS},
                      CellCase{"lstm_tanh", true, {3, 4}, "b,f", 3, v1::TANH},
                      CellCase{"lstm_softplus_spatial", true, {2, 3, 2}, "b,f,x", 2, v1::SOFTPLUS},
                      CellCase{"lstm_elu", true, {2, 2}, "b,f", 3, v1::ELU}),
    [](const ::testing::TestParamInfo<CellCase>& i) { return i.param.name; });

// The memory comes from a trainable InitialState_like: its gradient sums over the batch rows.
TEST(MemoryGradient, InitialStateFeedsGruAndLstm) {
  for (bool lstm : {false, true}) {
    Spec s;
    std::string x = s.Input({3, 4}, "b,f", "x");
    std::string m = s.InitialState(x, lstm ? 6 : 3);
    std::string y = lstm ? s.Lstm(x, m, 3) : s.Gru(x, m, 3);
    GradientCheckOptions o;
    o.batch_size = 3;
    ExpectGradientsMatch(s.s, y, {x}, o);
  }
  Spec s;  // alone, on a spatial reference (several rows per batch entry)
  std::string x = s.Input({2, 3, 4}, "b,f,x", "x");
  ExpectGradientsMatch(s.s, s.InitialState(x, 5), {}, GradientCheckOptions{.batch_size = 2});
}

TEST(MemoryGradient, TrainableValueNodeInItsTagOrder) {
  Spec s;  // f is not the last axis: the parameter's logical order differs from the layout
  std::string x = s.Input({2, 3, 4}, "b,f,x", "x");
  std::string v = s.Value({2, 3, 4}, "b,f,x", true);
  ExpectGradientsMatch(s.s, s.MultMerge(x, v), {x}, GradientCheckOptions{.batch_size = 2});
}

// §9.6 gru.py's head: Perceptron(2*58, 'lin') -> Softmax(n_indep=58) -> MultinoulliNLL with
// sparse targets (one class id per group) and class weights from a ValueNode; here 3 groups.
TEST(SoftmaxIndependentGroups, PerceptronSoftmaxNllWithValueNodeClassWeights) {
  Spec s;
  std::string x = s.Input({4, 5}, "b,f", "x");
  v1::NodeSpec p = Spec::Named("dot");
  p.mutable_perceptron()->set_n_f(6);
  p.mutable_perceptron()->set_activation(v1::LIN);
  std::string lin = s.Add(p, {x});
  v1::NodeSpec sm = Spec::Named("softmax");
  sm.mutable_softmax()->set_n_indep(3);
  std::string probs = s.Add(sm, {lin});
  v1::NodeSpec t = Spec::Named("target");
  t.mutable_input_like()->set_override_f(3);
  std::string target = s.Add(t, {probs});
  std::string cw = s.Value({2}, "f", false, {0.2f, 1.8f});
  v1::NodeSpec nll = Spec::Named("nll");
  nll.mutable_multinoulli_nll()->set_target_is_sparse(true);
  nll.mutable_multinoulli_nll()->set_has_class_weights(true);
  std::string loss = s.Add(nll, {probs, target, cw});
  GradientCheckOptions o;
  o.batch_size = 4;
  o.fixed_inputs_integer = {"target"};
  o.ignored_label_share = 0.2;
  ExpectGradientsMatch(s.s, loss, {x}, o);
  auto g = Graph::Create(s.s);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ((*g)->Find(probs)->details(), "n_class=2, n_indep=3");  // as `elektronn check` shows
}

// --- values against the equations -----------------------------------------------------------

double Sig(double v) { return 1.0 / (1.0 + std::exp(-v)); }
double Act(v1::Activation a, double v) {
  switch (a) {
    case v1::RELU:
      return v > 0 ? v : 0;
    case v1::SIGMOID:
      return Sig(v);
    case v1::LIN:
      return v;
    default:
      return std::tanh(v);
  }
}

// Logical arrays with tags "b,f,x" (x = 1 for "b,f"); w is (n_f + n_in, G n_f) row-major.
struct Step {
  int64_t batch, n_in, n_f, xs;
  std::vector<float> x, mem, w, b;
  float X(int64_t bi, int64_t f, int64_t xi) const { return x[(bi * n_in + f) * xs + xi]; }
  float M(int64_t bi, int64_t f, int64_t xi, int64_t mf) const {
    return mem[(bi * mf + f) * xs + xi];
  }
  // sum_k cat[k] w[k][col] + b[col]
  double Lin(const std::vector<double>& cat, int64_t col, int64_t cols) const {
    double s = b[col];
    for (size_t k = 0; k < cat.size(); ++k) s += cat[k] * w[k * cols + col];
    return s;
  }
};

std::vector<double> NaiveGru(const Step& s, v1::Activation act) {
  std::vector<double> out(s.batch * s.n_f * s.xs);
  const int64_t cols = 3 * s.n_f;
  for (int64_t bi = 0; bi < s.batch; ++bi)
    for (int64_t xi = 0; xi < s.xs; ++xi) {
      std::vector<double> m(s.n_f), cat;
      for (int64_t f = 0; f < s.n_f; ++f) cat.push_back(m[f] = s.M(bi, f, xi, s.n_f));
      for (int64_t f = 0; f < s.n_in; ++f) cat.push_back(s.X(bi, f, xi));
      std::vector<double> z(s.n_f), r(s.n_f), gated = cat;
      for (int64_t j = 0; j < s.n_f; ++j) {
        z[j] = Sig(s.Lin(cat, j, cols));
        r[j] = Sig(s.Lin(cat, s.n_f + j, cols));
        gated[j] = r[j] * m[j];
      }
      for (int64_t j = 0; j < s.n_f; ++j) {
        const double h = Act(act, s.Lin(gated, 2 * s.n_f + j, cols));
        out[(bi * s.n_f + j) * s.xs + xi] = (1 - z[j]) * m[j] + z[j] * h;
      }
    }
  return out;
}

std::vector<double> NaiveLstm(const Step& s, v1::Activation act) {
  const int64_t nf = s.n_f, cols = 4 * nf;
  std::vector<double> out(s.batch * 2 * nf * s.xs);
  for (int64_t bi = 0; bi < s.batch; ++bi)
    for (int64_t xi = 0; xi < s.xs; ++xi) {
      std::vector<double> cat;
      for (int64_t f = 0; f < nf; ++f) cat.push_back(s.M(bi, f, xi, 2 * nf));
      for (int64_t f = 0; f < s.n_in; ++f) cat.push_back(s.X(bi, f, xi));
      for (int64_t j = 0; j < nf; ++j) {
        const double fg = Sig(s.Lin(cat, j, cols)), ig = Sig(s.Lin(cat, nf + j, cols));
        const double og = Sig(s.Lin(cat, 2 * nf + j, cols));
        const double ct = Act(act, s.Lin(cat, 3 * nf + j, cols));
        const double c = fg * s.M(bi, nf + j, xi, 2 * nf) + ig * ct;
        out[(bi * 2 * nf + j) * s.xs + xi] = og * Act(act, c);
        out[(bi * 2 * nf + nf + j) * s.xs + xi] = c;
      }
    }
  return out;
}

void ExpectStepMatchesEquations(bool lstm, const std::string& tags, int64_t xs,
                                v1::Activation act) {
  Step st{2, 3, 4, xs};
  Spec s;
  std::vector<int64_t> xshape = {st.batch, st.n_in}, mshape = {st.batch, (lstm ? 2 : 1) * st.n_f};
  if (xs > 1) {
    xshape.push_back(xs);
    mshape.push_back(xs);
  }
  std::string x = s.Input(xshape, tags, "x");
  std::string m = s.Input(mshape, tags, "mem");
  std::string y = lstm ? s.Lstm(x, m, st.n_f, act) : s.Gru(x, m, st.n_f, act);
  auto net = Build(s.s, st.batch);
  ASSERT_NE(net, nullptr);
  std::mt19937_64 rng(11);
  st.x = Random(st.batch * st.n_in * xs, rng);
  st.mem = Random(st.batch * (lstm ? 2 : 1) * st.n_f * xs, rng);
  const int64_t g = lstm ? 4 : 3;
  st.w = Random((st.n_f + st.n_in) * g * st.n_f, rng, 0.8f);
  st.b = Random(g * st.n_f, rng, 0.5f);
  ASSERT_TRUE(net->SetInput(x, st.x).ok());
  ASSERT_TRUE(net->SetInput(m, st.mem).ok());
  ASSERT_TRUE(net->SetParamValue(**net->FindParam(y, "w"), st.w).ok());
  ASSERT_TRUE(net->SetParamValue(**net->FindParam(y, "b"), st.b).ok());
  ASSERT_TRUE(net->Forward().ok());
  auto got = net->Output(y);
  ASSERT_TRUE(got.ok());
  std::vector<double> want = lstm ? NaiveLstm(st, act) : NaiveGru(st, act);
  ASSERT_EQ(got->size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR((*got)[i], want[i], 2e-5) << "entry " << i;
  // The exported weight is the one set: the native per-gate blocks convert back exactly.
  EXPECT_EQ(net->ParamValue(**net->FindParam(y, "w")), st.w);
}

TEST(RecurrentValues, GruStepMatchesTheEquations) {
  ExpectStepMatchesEquations(false, "b,f", 1, v1::TANH);
  ExpectStepMatchesEquations(false, "b,f,x", 3, v1::RELU);
}

TEST(RecurrentValues, LstmStepMatchesTheEquations) {
  ExpectStepMatchesEquations(true, "b,f", 1, v1::TANH);
  ExpectStepMatchesEquations(true, "b,f,x", 2, v1::SIGMOID);
}

TEST(RecurrentValues, InitialStateRepeatsItsVectorAndValueNodeOutputsItsValue) {
  Spec s;
  std::string x = s.Input({2, 3, 2}, "b,f,x", "x");
  std::string init = s.InitialState(x, 2);
  std::string v = s.Value({1, 2, 3}, "b,f,x", false, {1, 2, 3, 4, 5, 6});
  std::string tv = s.Value({1, 3, 2}, "b,f,x", true);
  auto net = Build(s.s, 2);
  ASSERT_NE(net, nullptr);
  ASSERT_TRUE(net->SetParamValue(**net->FindParam(init, "value"), std::vector<float>{7, -8}).ok());
  const std::vector<float> logical = {9, 8, 7, 6, 5, 4};  // tag order, as model files store it
  ASSERT_TRUE(net->SetParamValue(**net->FindParam(tv, "value"), logical).ok());
  ASSERT_TRUE(net->Forward().ok());
  EXPECT_EQ(*net->Output(init), (std::vector<float>{7, 7, -8, -8, 7, 7, -8, -8}));
  EXPECT_EQ(*net->Output(v), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(*net->Output(tv), logical);
  EXPECT_EQ(net->ParamValue(**net->FindParam(tv, "value")), logical);
  EXPECT_TRUE((*net->FindParam(tv, "value"))->trainable);
  Parameter* p = *net->FindParam(v, "value");
  EXPECT_FALSE(p->trainable);
  EXPECT_TRUE(p->fixed);
  EXPECT_EQ(p->shape, (std::vector<int64_t>{1, 2, 3}));
}

// --- initialisation -------------------------------------------------------------------------

// ELEKTRONN2's 'ortho': the (n_in, n_out) weight's memory read as an (n_out, n_in) matrix V has
// orthogonal rows (n_out <= n_in) or columns (n_out > n_in), scaled to the glorot std.
void ExpectOrthoGlorot(const std::vector<float>& w, int64_t n_in, int64_t n_out) {
  ASSERT_EQ(static_cast<int64_t>(w.size()), n_in * n_out);
  const double scale = std::sqrt(2.0 / (n_in + n_out));
  auto V = [&](int64_t i, int64_t k) { return static_cast<double>(w[i * n_in + k]); };
  if (n_out <= n_in) {
    for (int64_t i = 0; i < n_out; ++i) {
      double mean = 0, sq = 0;
      for (int64_t k = 0; k < n_in; ++k) mean += V(i, k) / n_in;
      for (int64_t k = 0; k < n_in; ++k) sq += (V(i, k) - mean) * (V(i, k) - mean) / n_in;
      EXPECT_NEAR(std::sqrt(sq), scale, 1e-5) << "row " << i;
      for (int64_t j = 0; j < i; ++j) {
        double d = 0;
        for (int64_t k = 0; k < n_in; ++k) d += V(i, k) * V(j, k);
        EXPECT_NEAR(d, 0, 1e-5) << "rows " << i << ", " << j;
      }
    }
  } else {
    for (int64_t a = 0; a < n_in; ++a)
      for (int64_t b = 0; b <= a; ++b) {
        double d = 0;
        for (int64_t i = 0; i < n_out; ++i) d += V(i, a) * V(i, b);
        EXPECT_NEAR(d, a == b ? scale * scale * n_out : 0, 1e-5) << "columns " << a << ", " << b;
      }
  }
}

TEST(RecurrentInit, OrthogonalGlorotWeightsAndBiasByActivation) {
  std::mt19937_64 rng(5);
  ExpectOrthoGlorot(InitOrthoGlorot(9, 6, rng), 9, 6);
  ExpectOrthoGlorot(InitOrthoGlorot(5, 9, rng), 5, 9);
  ExpectOrthoGlorot(InitOrthoGlorot(4, 4, rng), 4, 4);
  struct Case {
    bool lstm;
    int64_t n_in, n_f;
    v1::Activation act;
    float bias_lo, bias_hi;
  };
  for (const Case& c :
       {Case{false, 7, 2, v1::TANH, -1e-6f, 1e-6f}, Case{false, 2, 3, v1::SIGMOID, 0.5f, 0.5f},
        Case{true, 3, 2, v1::RELU, 1.f, 1.f},
        Case{true, 9, 2, v1::ACTIVATION_UNSPECIFIED, -1e-6f, 1e-6f}}) {
    Spec s;
    std::string x = s.Input({1, c.n_in}, "b,f", "x");
    std::string m = s.Input({1, (c.lstm ? 2 : 1) * c.n_f}, "b,f", "mem");
    std::string y = c.lstm ? s.Lstm(x, m, c.n_f, c.act) : s.Gru(x, m, c.n_f, c.act);
    auto net = Build(s.s, 1);
    ASSERT_NE(net, nullptr);
    const int64_t g = c.lstm ? 4 : 3;
    Parameter* w = *net->FindParam(y, "w");
    EXPECT_EQ(w->shape, (std::vector<int64_t>{c.n_f + c.n_in, g * c.n_f}));
    ExpectOrthoGlorot(net->ParamValue(*w), c.n_f + c.n_in, g * c.n_f);
    std::vector<float> b = net->ParamValue(**net->FindParam(y, "b"));
    ASSERT_EQ(static_cast<int64_t>(b.size()), g * c.n_f);
    for (float v : b) {
      EXPECT_GE(v, c.bias_lo);
      EXPECT_LE(v, c.bias_hi);
    }
    if (c.bias_lo < 0) EXPECT_NE(b[0], b[1]);  // drawn, not a constant
  }
}

TEST(RecurrentInit, MemoriesFollowInitKwargs) {
  Spec s;
  std::string x = s.Input({1, 2}, "b,f", "x");
  v1::NodeSpec n = Spec::Named("initial_state");
  n.mutable_initial_state()->set_override_f(50);
  n.mutable_initial_state()->mutable_init()->set_mode(v1::VALUE_INIT_FIX_UNI);
  n.mutable_initial_state()->mutable_init()->set_scale(0.1f);
  std::string uni = s.Add(n, {x});
  n.mutable_initial_state()->mutable_init()->set_mode(v1::VALUE_INIT_CONST);
  n.mutable_initial_state()->mutable_init()->set_scale(0.25f);
  std::string con = s.Add(n, {x});
  std::string zero = s.InitialState(x, 3);
  auto net = Build(s.s, 1);
  ASSERT_NE(net, nullptr);
  std::vector<float> u = net->ParamValue(**net->FindParam(uni, "value"));
  float lo = 1, hi = -1;
  for (float v : u) lo = std::min(lo, v), hi = std::max(hi, v);
  EXPECT_GE(lo, -0.1f);
  EXPECT_LE(hi, 0.1f);
  EXPECT_GT(hi - lo, 0.1f);  // spread over the range, not constant
  EXPECT_EQ(net->ParamValue(**net->FindParam(con, "value")), std::vector<float>(50, 0.25f));
  EXPECT_EQ(net->ParamValue(**net->FindParam(zero, "value")), std::vector<float>(3, 0.f));
}

// --- errors ---------------------------------------------------------------------------------

std::string BuildError(const v1::ModelSpec& spec) {
  auto g = Graph::Create(spec);
  EXPECT_FALSE(g.ok());
  return g.ok() ? "" : std::string(g.status().message());
}

TEST(RecurrentErrors, NameTheNodeAndTheValue) {
  {
    Spec s;
    std::string x = s.Input({10, -1, 5}, "r,b,f", "x");
    std::string m = s.Input({10, -1, 4}, "r,b,f", "mem");
    s.Gru(x, m, 4);
    EXPECT_EQ(BuildError(s.s),
              "GRU 'gru': input Input 'x' has a recurrence axis 'r' (tags \"r,b,f\"); the cell "
              "takes one step, so feed it the sequence through Scan");
  }
  {
    Spec s;
    std::string x = s.Input({-1, 5}, "b,f", "x");
    std::string m = s.Input({-1, 4}, "b,f", "mem");
    s.Lstm(x, m, 4);
    EXPECT_EQ(BuildError(s.s), "LSTM 'lstm': memory Input 'mem' has f=4; n_f=4 needs 2*n_f=8");
  }
  {
    Spec s;
    std::string x = s.Input({-1, 5, 3}, "b,f,x", "x");
    std::string m = s.Input({-1, 4, 2}, "b,f,x", "mem");
    s.Gru(x, m, 4);
    EXPECT_EQ(BuildError(s.s),
              "GRU 'gru': memory Input 'mem' has shape [(None,b), (4,f), (2,x)]; it must match the "
              "input's [(None,b), (5,f), (3,x)] apart from f");
  }
  {
    Spec s;
    std::string x = s.Input({-1, 5}, "b,f", "x");
    std::string m = s.Input({-1, 4}, "b,f", "mem");
    s.Gru(x, m, 4, v1::PRELU);
    EXPECT_EQ(BuildError(s.s),
              "GRU 'gru': activation_func='prelu' is not supported (its learned "
              "slope has no place in the gate layout)");
  }
  {
    Spec s;
    s.Value({2, 3}, "b,f", false, {1, 2, 3});
    EXPECT_EQ(BuildError(s.s),
              "ValueNode 'value_state': value has 3 entries, shape [(2,b), (3,f)] needs 6");
  }
  {
    Spec s;
    std::string x = s.Input({-1, 5}, "b,f", "x");
    s.InitialState(x, 0);
    EXPECT_EQ(BuildError(s.s), "InitialState_like 'initial_state': override_f=0 must be positive");
  }
}

// --- model files ----------------------------------------------------------------------------

// Every parameter of the new nodes goes through the model file unchanged (engine/io/model_file.cc
// treats them like any other), and a loaded network computes the same outputs.
TEST(RecurrentModelFile, RoundTripKeepsParametersAndOutputs) {
  Spec s;
  std::string x = s.Input({2, 3}, "b,f", "x");
  std::string gm = s.InitialState(x, 4);
  std::string gru = s.Gru(x, gm, 4);
  std::string lm = s.Value({2, 6, 1}, "b,f,x", true);
  std::string x2 = s.Input({2, 3, 1}, "b,f,x", "x2");
  std::string lstm = s.Lstm(x2, lm, 3);
  auto a = Build(s.s, 2);
  ASSERT_NE(a, nullptr);
  std::mt19937_64 rng(17);
  for (Parameter* p : a->params())
    ASSERT_TRUE(a->SetParamValue(*p, Random(p->canonical_size(), rng)).ok());
  const std::string path = (testing::FreshTestDir("recurrent_mdl") / "m.mdl").string();
  ASSERT_TRUE(SaveModel(path, *a, nullptr).ok());
  v1::ModelSpec other = s.s;
  other.set_seed(99);  // different initial values before loading
  auto b = Build(other, 2);
  ASSERT_NE(b, nullptr);
  auto f = ReadModelFile(path);
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_TRUE(LoadInto(*f, *b, nullptr).ok());
  ASSERT_EQ(a->params().size(), 6u);  // initial_state value, gru w b, value_state, lstm w b
  ASSERT_EQ(a->params().size(), b->params().size());
  for (size_t i = 0; i < a->params().size(); ++i) {
    EXPECT_EQ(a->ParamValue(*a->params()[i]), b->ParamValue(*b->params()[i]))
        << a->params()[i]->key();
  }
  std::vector<float> in = Random(6, rng);
  for (Network* n : {a.get(), b.get()}) {
    ASSERT_TRUE(n->SetInput(x, in).ok());
    ASSERT_TRUE(n->SetInput(x2, in).ok());
    ASSERT_TRUE(n->Forward().ok());
  }
  EXPECT_EQ(*a->Output(gru), *b->Output(gru));
  EXPECT_EQ(*a->Output(lstm), *b->Output(lstm));
}

}  // namespace
}  // namespace elektronn
