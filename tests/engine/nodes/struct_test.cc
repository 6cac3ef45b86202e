// The structural, element-wise and probabilistic nodes (issue 11): finite-difference gradient
// checks, shape rules and the forward values that gradients cannot see.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "engine/graph/model_builder.h"
#include "engine/graph/network.h"
#include "tests/engine/gradient_checker.h"

namespace elektronn {
namespace {

using testing::CheckGradients;
using testing::GradientCheckOptions;
using testing::GradientCheckReport;

// A ModelBuilder network plus nodes the builder has no method for.
class Net {
 public:
  ModelBuilder m;
  v1::ModelSpec spec;
  std::string Input(std::vector<int64_t> shape, const std::string& tags, const std::string& name) {
    std::string n = m.Input(std::move(shape), tags, name);
    spec = m.spec();
    return n;
  }
  std::string Node(const std::string& name, std::vector<std::string> inputs,
                   const std::function<void(v1::NodeSpec&)>& set) {
    v1::NodeSpec n;
    n.set_name(name);
    for (auto& i : inputs) n.add_inputs(i);
    set(n);
    return AppendNode(&spec, std::move(n));
  }
};

void ExpectGradientsMatch(const v1::ModelSpec& spec, const std::string& out,
                          std::vector<std::string> wrt, int64_t batch = 1) {
  GradientCheckOptions opt;
  opt.output = out;
  opt.wrt_inputs = std::move(wrt);
  opt.batch_size = batch;
  GradientCheckReport report;
  absl::Status s = CheckGradients(spec, opt, &report);
  std::string lines;
  for (const auto& l : report.lines) lines += "  " + l + "\n";
  EXPECT_TRUE(s.ok()) << s << "\n" << lines;
}

std::string Slice(Net& n, const std::string& in, const std::string& axis, int64_t start,
                  int64_t size, bool strip, const std::string& name = "split") {
  return n.Node(name, {in}, [&](v1::NodeSpec& s) {
    s.mutable_slice()->set_axis(axis);
    s.mutable_slice()->set_start(start);
    s.mutable_slice()->set_size(size);
    s.mutable_slice()->set_strip(strip);
  });
}

std::string Apply(Net& n, const std::string& in, v1::ApplyFunction f, float a = 0, float b = 0) {
  return n.Node("apply", {in}, [&](v1::NodeSpec& s) {
    s.mutable_apply_func()->set_function(f);
    s.mutable_apply_func()->set_a(a);
    s.mutable_apply_func()->set_b(b);
  });
}

std::string Add(Net& n, const std::string& a, const std::string& b) {
  return n.Node("add", {a, b}, [](v1::NodeSpec& s) { s.mutable_add(); });
}

absl::StatusOr<std::unique_ptr<Graph>> Build(const v1::ModelSpec& spec) {
  return Graph::Create(spec);
}

// --- gradients -------------------------------------------------------------------------------

TEST(StructuralGradient, SplitPiecesAccumulateIntoTheParent) {
  Net n;
  std::string x = n.Input({1, 5, 4, 3}, "b,f,x,y", "x");
  std::string a = Slice(n, x, "f", 0, 2, false);
  std::string b = Slice(n, x, "f", 2, 2, false);
  std::string sum = Add(n, a, b);
  ExpectGradientsMatch(n.spec, sum, {x});
  Net n2;
  x = n2.Input({2, 3, 4, 5}, "b,f,x,y", "x");
  std::string row = Slice(n2, x, "x", 1, 1, true);  // strip_singleton_dims: tags b,f,y
  ExpectGradientsMatch(n2.spec, row, {x}, 2);
}

TEST(StructuralGradient, ReshapeMovesDataBetweenFeaturesAndSpace) {
  Net n;
  std::string x = n.Input({-1, 2, 3, 4}, "b,f,x,y", "x");
  std::string r = n.Node("reshape", {x}, [](v1::NodeSpec& s) {
    for (int64_t v : {-1, 6, 4}) s.mutable_reshape()->add_shape(v);
    s.mutable_reshape()->set_tags("b,f,x");
  });
  ExpectGradientsMatch(n.spec, r, {x}, 2);
}

TEST(StructuralGradient, PadMultMergeFaithlessMerge) {
  {
    Net n;
    std::string x = n.Input({1, 2, 3, 4}, "b,f,x,y", "x");
    std::string p = n.Node("pad", {x}, [](v1::NodeSpec& s) {
      s.mutable_pad()->add_pad(1);
      s.mutable_pad()->add_pad(2);
      s.mutable_pad()->set_value(0.5f);
    });
    ExpectGradientsMatch(n.spec, p, {x});
  }
  {
    Net n;
    std::string a = n.Input({1, 2, 3, 4}, "b,f,x,y", "a");
    std::string b = n.Input({1, 2, 3, 4}, "b,f,x,y", "b");
    std::string mm = n.Node("multmerge", {a, b}, [](v1::NodeSpec& s) { s.mutable_mult_merge(); });
    std::string sq = n.Node("multmerge", {mm, mm}, [](v1::NodeSpec& s) { s.mutable_mult_merge(); });
    ExpectGradientsMatch(n.spec, sq, {a, b});
  }
  for (float fail : {0.f, 1.f}) {
    for (float ratio : {0.f, 1.f}) {
      Net n;
      std::string a = n.Input({1, 2, 3, 4}, "b,f,x,y", "hard");
      std::string b = n.Input({1, 3, 3, 4}, "b,f,x,y", "easy");
      std::string fm = n.Node("faithless", {a, b}, [&](v1::NodeSpec& s) {
        s.mutable_faithless_merge()->set_failing_prob(fail);
        s.mutable_faithless_merge()->set_hardeasy_ratio(ratio);
      });
      ExpectGradientsMatch(n.spec, fm, {a, b});
    }
  }
}

TEST(StructuralGradient, ApplyFuncFunctions) {
  struct C {
    v1::ApplyFunction f;
    float a, b;
    bool positive;  // feed exp(x)
  };
  for (const C& c : {C{v1::APPLY_AFFINE, -1.5f, 0.3f, false}, C{v1::APPLY_POW, 2.5f, 0, true},
                     C{v1::APPLY_POW, 2.f, 0, false}, C{v1::APPLY_CLIP, -0.4f, 0.5f, false},
                     C{v1::APPLY_EXP, 0, 0, false}, C{v1::APPLY_LOG, 0, 0, true},
                     C{v1::APPLY_MEAN, 0, 0, false}}) {
    Net n;
    std::string x = n.Input({2, 3, 5}, "b,f,x", "x");
    std::string in = c.positive ? Apply(n, x, v1::APPLY_EXP) : x;
    ExpectGradientsMatch(n.spec, Apply(n, in, c.f, c.a, c.b), {x}, 2);
  }
}

TEST(StructuralGradient, MaxoutAndNewActivations) {
  for (int64_t k : {1, 2, 3}) {
    Net n;
    std::string x = n.Input({2, 6, 5}, "b,f,x", "x");
    std::string m = n.Node("maxout", {x}, [&](v1::NodeSpec& s) { s.mutable_maxout()->set_k(k); });
    ExpectGradientsMatch(n.spec, m, {x}, 2);
  }
  for (v1::Activation act : {v1::SELU, v1::CONCENTRATION, v1::RADIUS}) {
    ModelBuilder m;
    std::string x = m.Input({2, 3, 5}, "b,f,x", "x");
    ExpectGradientsMatch(m.spec(), m.Activation(x, act), {x}, 2);
    // Fused into the convolution (and its pooling) and the matmul.
    ModelBuilder c;
    std::string y = c.Input({1, 2, 6, 6}, "b,f,x,y", "x");
    ExpectGradientsMatch(c.spec(), c.Conv(y, 3, {3, 3}, {2, 2}, act), {y});
    ModelBuilder p;
    std::string z = p.Input({2, 4}, "b,f", "x");
    ExpectGradientsMatch(p.spec(), p.Perceptron(z, 3, act), {z}, 2);
  }
}

TEST(StructuralGradient, LrnSpatialAndChannel) {
  struct C {
    v1::LrnMode mode;
    std::vector<int64_t> window;
  };
  for (const C& c : {C{v1::LRN_SPATIAL, {3, 3}}, C{v1::LRN_SPATIAL, {1, 3}},
                     C{v1::LRN_CHANNEL, {3}}, C{v1::LRN_CHANNEL, {5}}}) {
    Net n;
    std::string x = n.Input({2, 3, 4, 5}, "b,f,x,y", "x");
    std::string l = n.Node("lrn", {x}, [&](v1::NodeSpec& s) {
      s.mutable_lrn()->set_mode(c.mode);
      for (int64_t w : c.window) s.mutable_lrn()->add_filter_shape(w);
      s.mutable_lrn()->set_alpha(0.9f);  // large enough for the normalisation to matter
    });
    ExpectGradientsMatch(n.spec, l, {x}, 2);
  }
}

TEST(StructuralGradient, GaussianRvAndPrior) {
  for (int64_t samples : {0, 3}) {
    Net n;
    std::string mu = n.Input({2, 3, 4}, "b,f,x", "mu");
    std::string ls = n.Input({2, 3, 4}, "b,f,x", "log_sig");
    std::string rv = n.Node("state", {mu, ls}, [&](v1::NodeSpec& s) {
      s.mutable_gaussian_rv()->set_n_samples(samples);
    });
    ExpectGradientsMatch(n.spec, rv, {mu, ls}, 2);
  }
  Net n;
  std::string mu = n.Input({2, 3, 4}, "b,f,x", "mu");
  std::string ls = n.Input({2, 3, 4}, "b,f,x", "log_sig");
  std::string prior =
      n.Node("prior", {mu, ls}, [](v1::NodeSpec& s) { s.mutable_gaussian_aevb_prior(); });
  ExpectGradientsMatch(n.spec, prior, {mu, ls}, 2);
}

// --- shapes ----------------------------------------------------------------------------------

TEST(StructuralShape, SliceReshapePadMaxoutGaussian) {
  Net n;
  std::string x = n.Input({-1, 6, 4, 5}, "b,f,x,y", "x");
  std::string s = Slice(n, x, "f", 2, 1, true);
  std::string r = n.Node("reshape", {x}, [](v1::NodeSpec& sp) {
    for (int64_t v : {-1, 3, -1, 5}) sp.mutable_reshape()->add_shape(v);
  });
  std::string p = n.Node("pad", {x}, [](v1::NodeSpec& sp) {
    sp.mutable_pad()->add_pad(1);
    sp.mutable_pad()->add_pad(0);
  });
  std::string m = n.Node("maxout", {x}, [](v1::NodeSpec& sp) { sp.mutable_maxout()->set_k(3); });
  std::string g =
      n.Node("state", {x, x}, [](v1::NodeSpec& sp) { sp.mutable_gaussian_rv()->set_n_samples(4); });
  std::string mean = Apply(n, x, v1::APPLY_MEAN);
  auto graph = Build(n.spec);
  ASSERT_TRUE(graph.ok()) << graph.status();
  auto shape = [&](const std::string& name) { return (*graph)->Find(name)->shape(); };
  EXPECT_EQ(shape(s).tags_string(), "b,x,y");
  EXPECT_EQ(shape(s).sizes(), (std::vector<int64_t>{-1, 4, 5}));
  EXPECT_EQ(shape(r).sizes(), (std::vector<int64_t>{-1, 3, 8, 5}));
  EXPECT_EQ(shape(p).sizes(), (std::vector<int64_t>{-1, 6, 6, 5}));
  EXPECT_EQ(shape(m).sizes(), (std::vector<int64_t>{-1, 2, 4, 5}));
  EXPECT_EQ(shape(g).tags_string(), "b,s,f,x,y");
  EXPECT_EQ(shape(g).sizes(), (std::vector<int64_t>{-1, 4, 6, 4, 5}));
  EXPECT_EQ(shape(mean).sizes(), (std::vector<int64_t>{1}));
}

TEST(StructuralShape, ErrorsNameNodeArgumentAndValue) {
  auto error = [](const std::function<void(Net&, const std::string&)>& add) {
    Net n;
    std::string x = n.Input({1, 6, 4, 5}, "b,f,x,y", "x");
    add(n, x);
    auto g = Build(n.spec);
    return g.ok() ? std::string("ok") : std::string(g.status().message());
  };
  EXPECT_THAT(error([](Net& n, const std::string& x) {
                n.Node("mo", {x}, [](v1::NodeSpec& s) { s.mutable_maxout()->set_k(4); });
              }),
              ::testing::HasSubstr("Maxout 'mo': maxout 4 needs a channel count divisible by 4"));
  EXPECT_THAT(error([](Net& n, const std::string& x) {
                n.Node("rs", {x}, [](v1::NodeSpec& s) {
                  for (int64_t v : {-1, 7, 4, 5}) s.mutable_reshape()->add_shape(v);
                });
              }),
              ::testing::HasSubstr("Reshape 'rs': shape {-1, 7, 4, 5} holds 140 entries"));
  EXPECT_THAT(error([](Net& n, const std::string& x) {
                n.Node("l", {x}, [](v1::NodeSpec& s) {
                  s.mutable_lrn()->add_filter_shape(2);
                  s.mutable_lrn()->add_filter_shape(3);
                });
              }),
              ::testing::HasSubstr("LRN 'l': filter_shape {2, 3} must have odd"));
  EXPECT_THAT(error([](Net& n, const std::string& x) { Slice(n, x, "f", 4, 3, false, "sp"); }),
              ::testing::HasSubstr("FromTensor 'sp': slice [4, 7) is outside axis 'f' of size 6"));
}

// --- forward values --------------------------------------------------------------------------

struct Compiled {
  std::unique_ptr<kernels::Backend> backend = kernels::CreateCpuBackend();
  std::unique_ptr<Network> net;
};

Compiled Compile(const v1::ModelSpec& spec, int64_t batch = 1) {
  Compiled r;
  NetworkOptions o;
  o.batch_size = batch;
  auto net = Network::Create(spec, r.backend.get(), o);
  EXPECT_TRUE(net.ok()) << net.status();
  r.net = *std::move(net);
  return r;
}

std::vector<float> Iota(int64_t n) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<float>(i + 1);
  return v;
}

// ELEKTRONN2 reshapes in its own axis order: the logical data is unchanged, only regrouped.
TEST(StructuralForward, ReshapeKeepsTheLogicalOrder) {
  Net n;
  std::string x = n.Input({2, 2, 3, 4}, "b,f,x,y", "x");
  std::string r = n.Node("reshape", {x}, [](v1::NodeSpec& s) {
    for (int64_t v : {2, 4, 6}) s.mutable_reshape()->add_shape(v);
    s.mutable_reshape()->set_tags("b,f,x");  // f not last: both sides move data
  });
  Compiled run = Compile(n.spec, 2);
  ASSERT_TRUE(run.net->SetInput(x, Iota(48)).ok());
  ASSERT_TRUE(run.net->Forward().ok());
  EXPECT_EQ(*run.net->Output(r), Iota(48));
}

TEST(StructuralForward, MaxoutTakesConsecutiveChannelGroups) {
  Net n;
  std::string x = n.Input({1, 4, 2}, "b,f,x", "x");
  std::string m = n.Node("maxout", {x}, [](v1::NodeSpec& s) { s.mutable_maxout()->set_k(2); });
  Compiled run = Compile(n.spec);
  // logical (f, x): channels 0..3 at x = 0 and x = 1
  ASSERT_TRUE(run.net->SetInput(x, std::vector<float>{1, 8, 5, 2, 3, 4, 0, 9}).ok());
  ASSERT_TRUE(run.net->Forward().ok());
  EXPECT_EQ(*run.net->Output(m), (std::vector<float>{5, 8, 3, 9}));
}

TEST(StructuralForward, FaithlessMergeDropsABranchOnlyInTraining) {
  Net n;
  std::string a = n.Input({1, 1, 3}, "b,f,x", "hard");
  std::string b = n.Input({1, 1, 3}, "b,f,x", "easy");
  std::string fm = n.Node("faithless", {a, b}, [](v1::NodeSpec& s) {
    s.mutable_faithless_merge()->set_failing_prob(1.f);
    s.mutable_faithless_merge()->set_hardeasy_ratio(0.f);  // a failure always zeroes hard
  });
  Compiled run = Compile(n.spec);
  ASSERT_TRUE(run.net->SetInput(a, std::vector<float>{1, 2, 3}).ok());
  ASSERT_TRUE(run.net->SetInput(b, std::vector<float>{4, 5, 6}).ok());
  run.net->set_training(true);
  ASSERT_TRUE(run.net->Forward().ok());
  EXPECT_EQ(*run.net->Output(fm), (std::vector<float>{0, 0, 0, 4, 5, 6}));
  run.net->set_training(false);
  ASSERT_TRUE(run.net->Forward().ok());
  EXPECT_EQ(*run.net->Output(fm), (std::vector<float>{1, 2, 3, 4, 5, 6}));
}

TEST(StructuralForward, GaussianSamplesDifferPerSampleAndStep) {
  Net n;
  std::string mu = n.Input({1, 1, 400}, "b,f,x", "mu");
  std::string ls = n.Input({1, 1, 400}, "b,f,x", "log_sig");
  std::string rv =
      n.Node("state", {mu, ls}, [](v1::NodeSpec& s) { s.mutable_gaussian_rv()->set_n_samples(2); });
  Compiled run = Compile(n.spec);
  ASSERT_TRUE(run.net->SetInput(mu, std::vector<float>(400, 3.f)).ok());
  ASSERT_TRUE(run.net->SetInput(ls, std::vector<float>(400, std::log(0.5f))).ok());
  ASSERT_TRUE(run.net->Forward().ok());
  const std::vector<float> first = *run.net->Output(rv);
  ASSERT_EQ(first.size(), 800u);
  double mean = 0, var = 0;
  for (float v : first) mean += v / 800.0;
  for (float v : first) var += (v - mean) * (v - mean) / 800.0;
  EXPECT_NEAR(mean, 3.0, 0.1);  // 800 draws of N(3, 0.5^2): 4 standard errors
  EXPECT_NEAR(std::sqrt(var), 0.5, 0.06);
  EXPECT_NE(std::vector<float>(first.begin(), first.begin() + 400),
            std::vector<float>(first.begin() + 400, first.end()));
  run.net->set_step(run.net->step() + 1);
  ASSERT_TRUE(run.net->Forward().ok());
  EXPECT_NE(*run.net->Output(rv), first);
}

}  // namespace
}  // namespace elektronn
