// The losses family's nodes (reference §2.13): finite-difference gradient checks for every loss
// and option, their normalisations against hand-computed values, the output nodes, and the live
// `mixing` hyper-parameter.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>

#include "engine/config/hyperparams.h"
#include "engine/graph/graph.h"
#include "engine/graph/model_builder.h"
#include "engine/graph/network.h"
#include "engine/nodes/registry.h"
#include "tests/engine/gradient_checker.h"

namespace elektronn {
namespace {

using testing::CheckGradients;
using testing::GradientCheckOptions;
using testing::GradientCheckReport;

// A ModelSpec under construction: ModelBuilder for the common nodes, Add for the family's own.
struct Spec {
  ModelBuilder m;
  v1::ModelSpec extra;  // nodes appended after m's
  v1::ModelSpec Get() const {
    v1::ModelSpec s = m.spec();
    for (const auto& n : extra.nodes()) *s.add_nodes() = n;
    return s;
  }
  std::string Add(const std::string& name, std::vector<std::string> inputs,
                  const std::function<void(v1::NodeSpec&)>& set) {
    v1::NodeSpec n;
    n.set_name(name);
    for (auto& i : inputs) n.add_inputs(i);
    set(n);
    *extra.add_nodes() = n;
    return name;
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

// Forward with the given inputs (logical layout); returns the outputs of `outs`.
std::map<std::string, std::vector<float>> Eval(
    const v1::ModelSpec& spec, const std::map<std::string, std::vector<float>>& inputs,
    const std::vector<std::string>& outs) {
  static std::unique_ptr<kernels::Backend> backend = kernels::CreateCpuBackend();
  auto net = Network::Create(spec, backend.get());
  EXPECT_TRUE(net.ok()) << net.status();
  std::map<std::string, std::vector<float>> r;
  if (!net.ok()) return r;
  for (const auto& [name, v] : inputs) EXPECT_TRUE((*net)->SetInput(name, v).ok()) << name;
  EXPECT_TRUE((*net)->Forward().ok());
  for (const auto& o : outs) r[o] = *(*net)->Output(o);
  return r;
}

absl::Status BuildError(const v1::ModelSpec& spec) {
  Graph g;
  return Graph::BuildWithoutHints(spec, &g);
}

// Targets in [0, 1] with every 4th ignored (-666), and some exact 0 / 1.
std::vector<float> BinaryTargets(int n) {
  std::vector<float> t(n);
  for (int i = 0; i < n; ++i) t[i] = i % 4 == 0 ? -666.f : (i % 3 == 0 ? 1.f : 0.13f * (i % 7));
  return t;
}

// --- gradient checks ---

TEST(LossesGradient, BinaryNll) {
  for (bool entropy : {false, true}) {
    Spec s;
    std::string x = s.m.Input({2, 3, 4}, "b,f,x", "x");
    std::string p = s.m.Activation(x, v1::SIGMOID);
    std::string t = s.m.InputLike(p, 0, "target");
    s.Add("bnll", {p, t},
          [&](v1::NodeSpec& n) { n.mutable_binary_nll()->set_subtract_label_entropy(entropy); });
    GradientCheckOptions o;
    o.input_values["target"] = BinaryTargets(24);
    ExpectGradientsMatch(s.Get(), "bnll", {x}, o);
  }
}

TEST(LossesGradient, SquaredAndAbsLossEveryOption) {
  for (bool squared : {true, false}) {
    for (auto [margin, corr] : {std::pair{0.f, 0.f}, {0.4f, 0.f}, {0.f, 1.5f}, {0.3f, 0.7f}}) {
      SCOPED_TRACE(::testing::Message() << squared << " " << margin << " " << corr);
      Spec s;
      std::string x = s.m.Input({2, 3, 5}, "b,f,x", "x");
      std::string t = s.m.InputLike(x, 0, "target");
      s.Add("loss", {x, t}, [&](v1::NodeSpec& n) {
        v1::RegressionLossOp* op = squared ? n.mutable_squared_loss() : n.mutable_abs_loss();
        if (margin != 0) op->set_margin(margin);
        if (corr != 0) op->set_scale_correction(corr);
      });
      GradientCheckOptions o;
      std::vector<float> tv(30);
      for (int i = 0; i < 30; ++i) tv[i] = i % 5 == 0 ? -666.f : 1.7f * std::sin(1.3f * i);
      o.input_values["target"] = tv;
      ExpectGradientsMatch(s.Get(), "loss", {x}, o);
    }
  }
}

TEST(LossesGradient, GaussianNll) {
  for (bool log_sig : {false, true}) {
    Spec s;
    std::string mu = s.m.Input({2, 2, 3}, "b,f,x", "mu");
    std::string raw = s.m.Input({2, 2, 3}, "b,f,x", "sig_raw");
    // Keep sigma positive when it is not a log: softplus of a free input.
    std::string sig = log_sig ? raw : s.m.Activation(raw, v1::SOFTPLUS);
    std::string t = s.m.InputLike(mu, 0, "target");
    s.Add("g", {mu, sig, t},
          [&](v1::NodeSpec& n) { n.mutable_gaussian_nll()->set_sig_is_log(log_sig); });
    ExpectGradientsMatch(s.Get(), "g", {mu, raw});
  }
}

TEST(LossesGradient, BetaNll) {
  Spec s;
  std::string m_raw = s.m.Input({1, 2, 4}, "b,f,x", "mode_raw");
  std::string mode = s.m.Activation(m_raw, v1::SIGMOID);
  std::string c = s.m.Input({1, 2, 4}, "b,f,x", "conc");
  std::string t = s.m.InputLike(mode, 0, "target");
  s.Add("beta", {mode, c, t}, [](v1::NodeSpec& n) { n.mutable_beta_nll(); });
  GradientCheckOptions o;
  o.input_values["conc"] = {3.f, 4.5f, 6.f, 2.5f, 8.f, 3.5f, 5.f, 7.f};
  o.input_values["target"] = {0.1f, 0.3f, 0.5f, 0.7f, 0.9f, 0.2f, 0.6f, 0.8f};
  ExpectGradientsMatch(s.Get(), "beta", {m_raw, c}, o);
}

// GaussianNLL and BetaNLL on a prediction with a sample axis 's' (GaussianRV with n_samples):
// the target (b, f, x) is broadcast over the samples, as ELEKTRONN2's loss.py does.
TEST(LossesGradient, GaussianAndBetaNllTargetBroadcastOverSamples) {
  for (int kind : {0, 1, 2}) {  // Gaussian, Gaussian with sig_is_log, Beta
    SCOPED_TRACE(kind);
    Spec s;
    std::string mu_in = s.m.Input({2, 2, 3}, "b,f,x", "mu_in");
    std::string ls_in = s.m.Input({2, 2, 3}, "b,f,x", "ls_in");
    std::string rv = s.Add("rv", {mu_in, ls_in},
                           [](v1::NodeSpec& n) { n.mutable_gaussian_rv()->set_n_samples(3); });
    std::string t = s.m.Input({2, 2, 3}, "b,f,x", "target");
    GradientCheckOptions o;
    if (kind < 2) {
      std::string sig = kind == 1 ? rv : "sig";
      if (kind == 0) {
        s.Add("sig", {rv},
              [](v1::NodeSpec& n) { n.mutable_activation()->set_activation(v1::SOFTPLUS); });
      }
      s.Add("loss", {rv, sig, t},
            [&](v1::NodeSpec& n) { n.mutable_gaussian_nll()->set_sig_is_log(kind == 1); });
    } else {
      s.Add("mode", {rv},
            [](v1::NodeSpec& n) { n.mutable_activation()->set_activation(v1::SIGMOID); });
      s.Add("conc", {rv},
            [](v1::NodeSpec& n) { n.mutable_activation()->set_activation(v1::CONCENTRATION); });
      s.Add("loss", {"mode", "conc", t}, [](v1::NodeSpec& n) { n.mutable_beta_nll(); });
      o.input_values["target"] = {0.1f, 0.3f, 0.5f, 0.7f,  0.9f,  0.2f,
                                  0.6f, 0.8f, 0.4f, 0.15f, 0.85f, 0.55f};
    }
    ExpectGradientsMatch(s.Get(), "loss", {mu_in, ls_in}, o);
  }
}

TEST(LossesGradient, EuclideanDistanceAndRampLossBothInputs) {
  {
    Spec s;
    std::string a = s.m.Input({2, 3, 4}, "b,f,x", "a");
    std::string b = s.m.Input({2, 3, 4}, "b,f,x", "b");
    s.Add("d", {a, b}, [](v1::NodeSpec& n) { n.mutable_euclidean_distance(); });
    ExpectGradientsMatch(s.Get(), "d", {a, b});
  }
  for (float margin : {0.f, 0.5f}) {
    Spec s;
    std::string a = s.m.Input({2, 3, 4}, "b,f,x", "low");
    std::string b = s.m.Input({2, 3, 4}, "b,f,x", "big");
    s.Add("ramp", {a, b}, [&](v1::NodeSpec& n) { n.mutable_ramp_loss()->set_margin(margin); });
    // Values at least 0.04 away from the kink of max(., 0), so central differences see no kink.
    GradientCheckOptions o;
    for (int i = 0; i < 24; ++i) {
      o.input_values["low"].push_back(0.8f * std::sin(1.1f * i + 0.3f));
      o.input_values["big"].push_back(0.8f * std::cos(1.7f * i));
      ASSERT_GT(std::fabs(o.input_values["low"][i] - o.input_values["big"][i] + margin), 0.04f);
    }
    ExpectGradientsMatch(s.Get(), "ramp", {a, b}, o);
  }
}

TEST(LossesGradient, SobelizedLoss) {
  for (auto [shape, tags] : {std::pair{std::vector<int64_t>{1, 2, 6}, "b,f,x"},
                             {std::vector<int64_t>{1, 2, 4, 5}, "b,f,x,y"},
                             {std::vector<int64_t>{1, 1, 3, 4, 4}, "b,f,z,x,y"}}) {
    Spec s;
    std::string x = s.m.Input(shape, tags, "x");
    std::string t = s.m.InputLike(x, 0, "target");
    s.Add("pred_sobel", {x}, [](v1::NodeSpec& n) { n.mutable_sobel(); });
    s.Add("target_sobel", {t}, [](v1::NodeSpec& n) { n.mutable_sobel(); });
    s.Add("absloss", {"pred_sobel", "target_sobel"},
          [](v1::NodeSpec& n) { n.mutable_abs_loss()->set_scale_correction(0.5f); });
    ExpectGradientsMatch(s.Get(), "absloss", {x});
    ExpectGradientsMatch(s.Get(), "pred_sobel", {x});
  }
}

// MultinoulliNLL's options: example weights, both lazy-label masks, weakness, and their mix,
// sparse and dense, with ignored labels; BlockedMultinoulliNLL too.
TEST(LossesGradient, MultinoulliNllOptions) {
  struct Case {
    bool ew, ml, mn, sparse, blocked;
    float weak;
  };
  for (const Case& c : {Case{true, false, false, true, false, 0},
                        {false, true, false, true, false, 0},
                        {false, false, true, true, false, 0},
                        {false, false, false, true, false, 0.3f},
                        {true, true, true, false, false, 0.2f},
                        {true, true, true, true, true, 0.1f}}) {
    SCOPED_TRACE(::testing::Message() << c.ew << c.ml << c.mn << c.sparse << c.blocked << c.weak);
    Spec s;
    std::string x = s.m.Input({2, 3, 4}, "b,f,x", "x");
    std::string p = s.m.Softmax(x);
    std::string t = s.m.InputLike(p, c.sparse ? 1 : 0, "target");
    std::vector<std::string> inputs = {p, t};
    GradientCheckOptions o;
    if (c.sparse) {
      o.fixed_inputs_integer = {"target"};
      o.n_classes = 3;
      o.ignored_label_share = 0.3;
    } else {
      std::vector<float> tv(24, 0.f);
      for (int r = 0; r < 8; ++r) {
        if (r % 3 == 0) continue;  // an unlabelled (all-zero) voxel
        tv[r * 3 + r % 3] = 1.f;
      }
      // Logical layout (b, f, x): element (b, f, x) at (b * 3 + f) * 4 + x; rows are (b, x).
      std::vector<float> logical(24);
      for (int b = 0; b < 2; ++b)
        for (int f = 0; f < 3; ++f)
          for (int xx = 0; xx < 4; ++xx) logical[(b * 3 + f) * 4 + xx] = tv[(b * 4 + xx) * 3 + f];
      o.input_values["target"] = logical;
    }
    if (c.ew) {
      inputs.push_back(s.m.Input({2, 1, 4}, "b,f,x", "ew"));
      o.input_values["ew"] = {0.5f, 1.f, 2.f, 1.5f, 0.f, 1.f, 3.f, 0.7f};
    }
    if (c.ml) {
      inputs.push_back(s.m.Input({2, 3}, "b,f", "ml"));
      o.input_values["ml"] = {1.f, 0.f, 1.f, 1.f, 1.f, 0.f};
    }
    if (c.mn) {
      inputs.push_back(s.m.Input({2, 3}, "b,f", "mn"));
      o.input_values["mn"] = {0.f, 0.f, 1.f, 1.f, 0.f, 0.f};
    }
    s.Add("nll", inputs, [&](v1::NodeSpec& n) {
      v1::MultinoulliNLLOp* op = n.mutable_multinoulli_nll();
      op->set_target_is_sparse(c.sparse);
      op->add_class_weights(0.6f);
      op->add_class_weights(1.4f);
      op->add_class_weights(1.f);
      op->set_has_example_weights(c.ew);
      op->set_has_mask_class_labeled(c.ml);
      op->set_has_mask_class_not_present(c.mn);
      op->set_weakness(c.weak);
      op->set_blocked(c.blocked);
      op->set_blocking_factor(0.5f);
    });
    s.Add("loss", {"nll"}, [](v1::NodeSpec& n) { n.mutable_aggregate_loss(); });
    ExpectGradientsMatch(s.Get(), "loss", {x}, o);
  }
}

// class_weights as a node: the gradient flows into it (and into the prediction), with the
// example weights and both masks after it in the input list.
TEST(LossesGradient, MultinoulliNllClassWeightsNode) {
  for (bool sparse : {true, false}) {
    for (bool extras : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "sparse " << sparse << " extras " << extras);
      Spec s;
      std::string x = s.m.Input({2, 3, 4}, "b,f,x", "x");
      std::string p = s.m.Softmax(x);
      std::string t = s.m.InputLike(p, sparse ? 1 : 0, "target");
      std::string cw = s.m.Input({1, 3}, "b,f", "cw");
      std::vector<std::string> inputs = {p, t, cw};
      GradientCheckOptions o;
      o.input_values["cw"] = {0.6f, 1.4f, 0.9f};
      if (sparse) {
        o.fixed_inputs_integer = {"target"};
        o.n_classes = 3;
        o.ignored_label_share = 0.25;
      } else {
        std::vector<float> logical(24, 0.f);  // (b, f, x): one-hot, x = 0 unlabelled
        for (int b = 0; b < 2; ++b)
          for (int xx = 1; xx < 4; ++xx) logical[(b * 3 + (b + xx) % 3) * 4 + xx] = 1.f;
        o.input_values["target"] = logical;
      }
      if (extras) {
        inputs.push_back(s.m.Input({2, 1, 4}, "b,f,x", "ew"));
        inputs.push_back(s.m.Input({2, 3}, "b,f", "mn"));
        o.input_values["ew"] = {0.5f, 1.f, 2.f, 1.5f, 0.f, 1.f, 3.f, 0.7f};
        o.input_values["mn"] = {0.f, 0.f, 1.f, 1.f, 0.f, 0.f};
      }
      s.Add("nll", inputs, [&](v1::NodeSpec& n) {
        v1::MultinoulliNLLOp* op = n.mutable_multinoulli_nll();
        op->set_target_is_sparse(sparse);
        op->set_has_class_weights(true);
        op->set_has_example_weights(extras);
        op->set_has_mask_class_not_present(extras);
        op->set_weakness(extras ? 0.2f : 0.f);
      });
      s.Add("loss", {"nll"}, [](v1::NodeSpec& n) { n.mutable_aggregate_loss(); });
      ExpectGradientsMatch(s.Get(), "loss", {x, cw}, o);
    }
  }
}

// --- normalisations against hand-computed values ---

constexpr double kEps = 1e-5;

TEST(LossesValue, BinaryNllScaleAndIgnoredTargets) {
  Spec s;
  std::string p = s.m.Input({1, 4}, "b,f", "p");
  std::string t = s.m.InputLike(p, 0, "t");
  s.Add("bnll", {p, t}, [](v1::NodeSpec& n) { n.mutable_binary_nll(); });
  s.Add("ent", {p, t},
        [](v1::NodeSpec& n) { n.mutable_binary_nll()->set_subtract_label_entropy(true); });
  auto r = Eval(s.Get(), {{"p", {0.5f, 0.9f, 0.3f, 0.7f}}, {"t", {1.f, 0.f, 0.3f, -666.f}}},
                {"bnll", "ent"});
  // N_total / (N_labelled + 1) = 4 / 4 = 1.
  EXPECT_NEAR(r["bnll"][0], -std::log(0.5 + kEps), 1e-5);
  EXPECT_NEAR(r["bnll"][1], -std::log(0.1 + kEps), 1e-5);
  EXPECT_NEAR(r["bnll"][2], -0.3 * std::log(0.3 + kEps) - 0.7 * std::log(0.7 + kEps), 1e-5);
  EXPECT_EQ(r["bnll"][3], 0.f);
  // With the label entropy subtracted, a prediction equal to a soft target costs 0.
  EXPECT_NEAR(r["ent"][2], 0.0, 1e-5);
  EXPECT_NEAR(r["ent"][0], -std::log(0.5 + kEps) + std::log(1 + kEps), 1e-5);
}

TEST(LossesValue, SquaredAndAbsLossNormalisation) {
  // pred (1, 2) = {0, 1}, target {1, 3}: scale = 2 / (2 + 1), mean over f.
  auto value = [](bool squared, float margin, float corr) {
    Spec s;
    std::string p = s.m.Input({1, 2}, "b,f", "p");
    std::string t = s.m.InputLike(p, 0, "t");
    s.Add("l", {p, t}, [&](v1::NodeSpec& n) {
      v1::RegressionLossOp* op = squared ? n.mutable_squared_loss() : n.mutable_abs_loss();
      if (margin != 0) op->set_margin(margin);
      if (corr != 0) op->set_scale_correction(corr);
    });
    return Eval(s.Get(), {{"p", {0.f, 1.f}}, {"t", {1.f, 3.f}}}, {"l"})["l"][0];
  };
  const double k = 2.0 / 3;
  EXPECT_NEAR(value(true, 0, 0), k * (0.5 * 1 + 0.5 * 4) / 2, 1e-6);
  // Margin 1.5: only |d| = 2 counts; the QUIRK's "- margin" is not subtracted (fixed).
  EXPECT_NEAR(value(true, 1.5f, 0), k * (0.5 * 4) / 2, 1e-6);
  EXPECT_NEAR(value(true, 0, 1.f), k * (0.5 * 1 / 2 + 0.5 * 4 / 4) / 2, 1e-6);
  EXPECT_NEAR(value(false, 0, 0), k * (1 + 2) / 2.0, 1e-6);
  EXPECT_NEAR(value(false, 0, 1.f), k * (1 * 2 + 2 * 4) / 2.0, 1e-6);
  EXPECT_NEAR(value(false, 1.5f, 1.f), k * (2 * 4) / 2.0, 1e-6);
  // An ignored target: scale = 2 / (1 + 1) = 1; the ignored element adds nothing.
  Spec s;
  std::string p = s.m.Input({1, 2}, "b,f", "p");
  std::string t = s.m.InputLike(p, 0, "t");
  s.Add("l", {p, t}, [](v1::NodeSpec& n) { n.mutable_squared_loss(); });
  EXPECT_NEAR(Eval(s.Get(), {{"p", {0.f, 1.f}}, {"t", {-666.f, 3.f}}}, {"l"})["l"][0],
              1.0 * 0.5 * 4 / 2, 1e-6);
}

TEST(LossesValue, GaussianBetaEuclideanRamp) {
  Spec s;
  std::string a = s.m.Input({1, 2}, "b,f", "a");
  std::string b = s.m.InputLike(a, 0, "b");
  std::string c = s.m.InputLike(a, 0, "c");
  s.Add("g", {a, b, c}, [](v1::NodeSpec& n) { n.mutable_gaussian_nll(); });
  s.Add("glog", {a, b, c}, [](v1::NodeSpec& n) { n.mutable_gaussian_nll()->set_sig_is_log(true); });
  s.Add("beta", {b, c, b}, [](v1::NodeSpec& n) { n.mutable_beta_nll(); });
  s.Add("d", {a, c}, [](v1::NodeSpec& n) { n.mutable_euclidean_distance(); });
  s.Add("ramp", {a, c}, [](v1::NodeSpec& n) { n.mutable_ramp_loss()->set_margin(0.5f); });
  // a = mu = {0, 3}, b = sigma = {0.5, 0.5}, c = target = {4, 0}... beta uses (mode b, conc c).
  auto r = Eval(s.Get(), {{"a", {0.f, 3.f}}, {"b", {0.5f, 0.5f}}, {"c", {4.f, 0.f}}},
                {"g", "glog", "beta", "d", "ramp"});
  const double h = 0.5 * std::log(2 * M_PI);
  EXPECT_NEAR(r["g"][0], h + std::log(0.5) + 0.5 * 64, 1e-4);  // ((4 - 0) / 0.5)^2 = 64
  EXPECT_NEAR(r["glog"][1], h + 0.5 + 0.5 * std::pow(3 / std::exp(0.5), 2), 1e-5);
  // mode 0.5, concentration 4 -> Beta(2, 2), pdf 6 x (1 - x) = 1.5 at x = 0.5.
  EXPECT_NEAR(
      r["beta"][0],
      -(std::log(6.0) + std::log(0.5 + kEps) + std::log(0.5 + kEps)) + std::log1p(std::exp(-4.0)),
      1e-5);
  EXPECT_NEAR(r["d"][0], 5.0, 1e-6);  // |(0, 3) - (4, 0)|
  // mean over f of max(a - c + 0.5, 0) = (0 + 3.5) / 2.
  EXPECT_NEAR(r["ramp"][0], 1.75, 1e-6);
}

// GaussianNLL with samples: every sample (b, s, f, x) is compared with target (b, f, x).
TEST(LossesValue, GaussianNllTargetBroadcastOverSamples) {
  Spec s;
  std::string mu_in = s.m.Input({2, 2, 3}, "b,f,x", "mu_in");
  std::string ls_in = s.m.Input({2, 2, 3}, "b,f,x", "ls_in");
  s.Add("rv", {mu_in, ls_in}, [](v1::NodeSpec& n) { n.mutable_gaussian_rv()->set_n_samples(3); });
  std::string t = s.m.Input({2, 2, 3}, "b,f,x", "t");
  s.Add("g", {"rv", "rv", t},
        [](v1::NodeSpec& n) { n.mutable_gaussian_nll()->set_sig_is_log(true); });
  std::vector<float> tv(12), mv(12), lv(12, -0.5f);
  for (int i = 0; i < 12; ++i) {
    tv[i] = 0.3f * i - 1.f;
    mv[i] = 0.1f * i;
  }
  auto r = Eval(s.Get(), {{"mu_in", mv}, {"ls_in", lv}, {"t", tv}}, {"rv", "g"});
  ASSERT_EQ(r["g"].size(), 36u);
  for (int b = 0; b < 2; ++b)
    for (int smp = 0; smp < 3; ++smp)
      for (int f = 0; f < 2; ++f)
        for (int x = 0; x < 3; ++x) {
          const int i = ((b * 3 + smp) * 2 + f) * 3 + x;  // logical (b, s, f, x)
          const double v = r["rv"][i], target = tv[(b * 2 + f) * 3 + x];
          const double want =
              0.5 * std::log(2 * M_PI) + v + 0.5 * std::pow((target - v) / std::exp(v), 2);
          EXPECT_NEAR(r["g"][i], want, 1e-5 * std::max(1.0, std::fabs(want))) << i;
        }
}

// After AggregateLoss, MultinoulliNLL is (sum of -cw ew log p_true + not-present terms) /
// (n_tot + 1e-5) (reference §2.13); every option moves it as ELEKTRONN2's code says.
TEST(LossesValue, MultinoulliNllOptionsNormalisation) {
  // 4 voxels, every prediction (0.25, 0.75) (softmax of (0, ln 3)); labels {0, 1, 1, -1}.
  auto value = [](const std::function<void(Spec&, std::vector<std::string>&, v1::MultinoulliNLLOp*,
                                           std::map<std::string, std::vector<float>>&)>& opts) {
    Spec s;
    std::string x = s.m.Input({1, 2, 4}, "b,f,x", "x");
    std::string p = s.m.Softmax(x);
    std::string t = s.m.InputLike(p, 1, "t");
    std::vector<std::string> inputs = {p, t};
    v1::MultinoulliNLLOp op;
    op.set_target_is_sparse(true);
    std::map<std::string, std::vector<float>> in = {
        {"x", {0, 0, 0, 0, std::log(3.f), std::log(3.f), std::log(3.f), std::log(3.f)}},
        {"t", {0.f, 1.f, 1.f, -1.f}}};
    opts(s, inputs, &op, in);
    s.Add("nll", inputs, [&](v1::NodeSpec& n) { *n.mutable_multinoulli_nll() = op; });
    s.Add("loss", {"nll"}, [](v1::NodeSpec& n) { n.mutable_aggregate_loss(); });
    return static_cast<double>(Eval(s.Get(), in, {"loss"})["loss"][0]);
  };
  const double l0 = -std::log(0.25 + kEps), l1 = -std::log(0.75 + kEps);
  const double n0 = -std::log(1 - 0.25 + kEps), n1 = -std::log(1 - 0.75 + kEps);
  using In = std::map<std::string, std::vector<float>>;
  EXPECT_NEAR(value([](Spec&, auto&, auto*, In&) {}), (l0 + 2 * l1) / (3 + kEps), 2e-6);
  // Example weights multiply each voxel's term; the normaliser stays the label count.
  EXPECT_NEAR(value([](Spec& s, auto& inputs, auto* op, In& in) {
                inputs.push_back(s.m.Input({1, 1, 4}, "b,f,x", "ew"));
                op->set_has_example_weights(true);
                in["ew"] = {2.f, 0.5f, 1.f, 9.f};
              }),
              (2 * l0 + 0.5 * l1 + l1) / (3 + kEps), 2e-6);
  // mask_class_labeled (1, 0): class-1 labels drop out of the loss and the count.
  EXPECT_NEAR(value([](Spec& s, auto& inputs, auto* op, In& in) {
                inputs.push_back(s.m.Input({1, 2}, "b,f", "ml"));
                op->set_has_mask_class_labeled(true);
                in["ml"] = {1.f, 0.f};
              }),
              l0 / (1 + kEps), 2e-6);
  // mask_class_not_present (0, 1): -log(1 - p_1) at all 4 voxels, n_tot = 3 + 4.
  EXPECT_NEAR(value([](Spec& s, auto& inputs, auto* op, In& in) {
                inputs.push_back(s.m.Input({1, 2}, "b,f", "mn"));
                op->set_has_mask_class_not_present(true);
                in["mn"] = {0.f, 1.f};
              }),
              (l0 + 2 * l1 + 4 * n1) / (7 + kEps), 2e-6);
  (void)n0;
  // weakness 0.5: labelled targets become 0.5 one-hot + 0.5 (0.25, 0.75).
  EXPECT_NEAR(value([](Spec&, auto&, auto* op, In&) { op->set_weakness(0.5f); }),
              ((0.625 * l0 + 0.375 * l1) + 2 * (0.125 * l0 + 0.875 * l1)) / (3 + kEps), 2e-6);
  // class_weights (3, 0.5), as a list and as a node: each term times its class's weight.
  const double weighted = (3 * l0 + 2 * 0.5 * l1) / (3 + kEps);
  EXPECT_NEAR(value([](Spec&, auto&, auto* op, In&) {
                op->add_class_weights(3.f);
                op->add_class_weights(0.5f);
              }),
              weighted, 2e-6);
  EXPECT_NEAR(value([](Spec& s, auto& inputs, auto* op, In& in) {
                inputs.push_back(s.m.Input({1, 2}, "b,f", "cw"));
                op->set_has_class_weights(true);
                in["cw"] = {3.f, 0.5f};
              }),
              weighted, 2e-6);
  // BlockedMultinoulliNLL: QUIRK 15 kept, the blocking has no effect.
  EXPECT_NEAR(value([](Spec&, auto&, auto* op, In&) {
                op->set_blocked(true);
                op->set_blocking_factor(0.9f);
              }),
              (l0 + 2 * l1) / (3 + kEps), 2e-6);
}

TEST(LossesValue, OneHotClassificationAndSigmoidErrors) {
  Spec s;
  std::string lab = s.m.Input({1, 1, 4}, "b,f,x", "lab");
  s.Add("onehot", {lab}, [](v1::NodeSpec& n) { n.mutable_one_hot()->set_n_class(3); });
  std::string x = s.m.Input({1, 4, 2}, "b,f,x", "x");
  std::string sm = s.m.Softmax(x, 2, 2);
  std::string sig = s.m.Activation(x, v1::SIGMOID, "sig");
  s.Add("cls", {sm}, [](v1::NodeSpec& n) { n.mutable_classification(); });
  s.Add("cls_sig", {sig}, [](v1::NodeSpec& n) { n.mutable_classification(); });
  std::string t = s.m.InputLike(sig, 0, "t");
  s.Add("errors", {sig, t}, [](v1::NodeSpec& n) { n.mutable_errors(); });
  // x (f, x): channel values at x=0 and x=1.
  auto r = Eval(s.Get(),
                {{"lab", {0.f, 2.f, 1.f, -1.f}},
                 {"x", {1.f, -1.f, 0.f, 2.f, 3.f, 0.5f, -2.f, 1.f}},
                 {"t", {1.f, 1.f, 0.f, -1.f, 1.f, 0.f, -666.f, 1.f}}},
                {"onehot", "cls", "cls_sig", "errors"});
  EXPECT_EQ(r["onehot"], (std::vector<float>{1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0}));  // (f=3, x=4)
  // Groups (f0, f1) and (f2, f3): at x=0 (1, 0) -> 0 and (3, -2) -> 0; x=1 (-1, 2) -> 1,
  // (0.5, 1) -> 1. Output (f=2, x=2).
  EXPECT_EQ(r["cls"], (std::vector<float>{0, 1, 0, 1}));
  EXPECT_EQ(r["cls_sig"], (std::vector<float>{1, 0, 0, 1, 1, 1, 0, 1}));
  // Labelled: 6 (t >= 0); predictions 1 0 0 . 1 1 . 1 vs 1 1 0 . 1 0 . 1: 2 wrong.
  EXPECT_NEAR(r["errors"][0], 2.0 / 6, 1e-6);
}

TEST(LossesShape, BadInputsNameNodeArgumentAndValue) {
  {
    Spec s;
    std::string p = s.m.Input({1, 2, 4}, "b,f,x", "p");
    std::string t = s.m.Input({1, 2, 5}, "b,f,x", "t");
    s.Add("se", {p, t}, [](v1::NodeSpec& n) { n.mutable_squared_loss(); });
    const std::string msg(BuildError(s.Get()).message());
    EXPECT_NE(msg.find("'se'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("target"), std::string::npos) << msg;
  }
  {
    Spec s;
    std::string p = s.m.Input({1, 2, 4}, "b,f,x", "p");
    s.Add("oh", {p}, [](v1::NodeSpec& n) { n.mutable_one_hot()->set_n_class(3); });
    const std::string msg(BuildError(s.Get()).message());
    EXPECT_NE(msg.find("size 1"), std::string::npos) << msg;
  }
  {
    Spec s;
    std::string x = s.m.Input({2, 3, 4}, "b,f,x", "x");
    std::string p = s.m.Softmax(x);
    std::string t = s.m.InputLike(p, 1, "t");
    std::string ew = s.m.Input({2, 1, 5}, "b,f,x", "ew");
    s.Add("nll", {p, t, ew}, [](v1::NodeSpec& n) {
      n.mutable_multinoulli_nll()->set_target_is_sparse(true);
      n.mutable_multinoulli_nll()->set_has_example_weights(true);
    });
    const std::string msg(BuildError(s.Get()).message());
    EXPECT_NE(msg.find("example_weights"), std::string::npos) << msg;
  }
}

// --- the live `mixing` hyper-parameter ---

class FakeTarget : public HyperparameterTarget {
 public:
  explicit FakeTarget(Graph* g) : g_(g) {}
  HyperParams& optimiser_hyper() override { return h_; }
  const HyperParams& optimiser_hyper() const override { return h_; }
  Graph& model_graph() override { return *g_; }
  const Graph& model_graph() const override { return *g_; }
  int64_t history_freq() const override { return 1; }
  void set_history_freq(int64_t) override {}

 private:
  Graph* g_;
  HyperParams h_;
};

TEST(LossesMixing, SetLiveChangesTheAggregateLoss) {
  Spec s;
  std::string a = s.m.Input({1, 1}, "b,f", "a");
  std::string b = s.m.Input({1, 1}, "b,f", "b");
  std::string loss = s.m.AggregateLoss({a, b}, {1.f, 3.f}, "loss");
  auto backend = kernels::CreateCpuBackend();
  auto net = Network::Create(s.Get(), backend.get());
  ASSERT_TRUE(net.ok()) << net.status();
  ASSERT_TRUE((*net)->SetInput("a", std::vector<float>{2.f}).ok());
  ASSERT_TRUE((*net)->SetInput("b", std::vector<float>{10.f}).ok());
  auto forward = [&] {
    EXPECT_TRUE((*net)->Forward().ok());
    return (*(*net)->Output("loss"))[0];
  };
  EXPECT_NEAR(forward(), (1 * 2 + 3 * 10) / 2.0, 1e-5);
  const HyperparameterDef* d = FindHyperparameter("mixing");
  ASSERT_NE(d, nullptr);
  EXPECT_TRUE(d->schedulable);
  FakeTarget t(&(*net)->graph());
  EXPECT_DOUBLE_EQ(*d->get(t), 1.0);
  // Unequal weights: scaled together (ratios kept), as a `dec` schedule does to the vector.
  ASSERT_TRUE(d->set(t, 0.5).ok());
  EXPECT_NEAR(forward(), (0.5 * 2 + 1.5 * 10) / 2.0, 1e-5);
  EXPECT_DOUBLE_EQ(*d->get(t), 0.5);
  // No AggregateLoss: a clear error.
  Spec plain;
  plain.m.Input({1, 1}, "b,f", "a");
  auto net2 = Network::Create(plain.Get(), backend.get());
  ASSERT_TRUE(net2.ok());
  FakeTarget t2(&(*net2)->graph());
  EXPECT_NE(std::string(d->get(t2).status().message()).find("AggregateLoss"), std::string::npos);
}

TEST(LossesMixing, EqualWeightsAreAllSet) {
  Spec s;
  std::string a = s.m.Input({1, 1}, "b,f", "a");
  std::string b = s.m.Input({1, 1}, "b,f", "b");
  s.m.AggregateLoss({a, b}, {}, "loss");
  Graph g;
  ASSERT_TRUE(Graph::BuildWithoutHints(s.Get(), &g).ok());
  FakeTarget t(&g);
  const HyperparameterDef* d = FindHyperparameter("mixing");
  ASSERT_TRUE(d->set(t, 0.25).ok());
  Node* loss = g.Find("loss");
  ASSERT_NE(loss, nullptr);
  EXPECT_EQ(*AggregateLossMixingWeights(*loss), (std::vector<float>{0.25f, 0.25f}));
}

}  // namespace
}  // namespace elektronn
