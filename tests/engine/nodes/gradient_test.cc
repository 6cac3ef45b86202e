// Every node and loss passes the finite-difference gradient check.
#include <gtest/gtest.h>

#include "engine/graph/model_builder.h"
#include "engine/nodes/neural.h"  // SetGradnetRate
#include "tests/engine/gradient_checker.h"

namespace elektronn {
namespace {

using testing::CheckGradients;
using testing::GradientCheckOptions;
using testing::GradientCheckReport;

void ExpectGradientsMatch(const ModelBuilder& m, const std::string& out,
                          std::vector<std::string> wrt, GradientCheckOptions opt = {}) {
  opt.output = out;
  opt.wrt_inputs = std::move(wrt);
  GradientCheckReport report;
  absl::Status s = CheckGradients(m.spec(), opt, &report);
  std::string lines;
  for (const auto& l : report.lines) lines += "  " + l + "\n";
  EXPECT_TRUE(s.ok()) << s << "\n" << lines;
}

struct ConvCase {
  std::string name;
  std::vector<int64_t> in_shape;
  std::string tags;
  std::vector<int64_t> filter, pool;
  v1::Activation act;
  v1::ConvMode mode;
  float dropout;
};

void PrintTo(const ConvCase& c, std::ostream* os) { *os << c.name; }

class ConvGradient : public ::testing::TestWithParam<ConvCase> {};

TEST_P(ConvGradient, MatchesFiniteDifferences) {
  const ConvCase& c = GetParam();
  ModelBuilder m;
  std::string x = m.Input(c.in_shape, c.tags, "x");
  std::string y = m.Conv(x, 3, c.filter, c.pool, c.act, c.mode, c.dropout);
  ExpectGradientsMatch(m, y, {x});
}

INSTANTIATE_TEST_SUITE_P(
    Nodes, ConvGradient,
    ::testing::Values(
        ConvCase{"conv1d", {2, 2, 9}, "b,f,x", {3}, {}, v1::TANH, v1::VALID, 0},
        ConvCase{"conv2d_pool", {1, 2, 8, 7}, "b,f,x,y", {3, 2}, {2, 3}, v1::RELU, v1::VALID, 0},
        ConvCase{"conv3d", {1, 2, 4, 6, 5}, "b,f,z,x,y", {2, 3, 2}, {}, v1::SIGMOID, v1::VALID, 0},
        ConvCase{"conv3d_kz1",
                 {2, 3, 3, 6, 6},
                 "b,f,z,x,y",
                 {1, 3, 3},
                 {1, 2, 2},
                 v1::ELU,
                 v1::VALID,
                 0},
        ConvCase{"conv3d_1x1", {1, 4, 2, 3, 3}, "b,f,z,x,y", {1, 1, 1}, {}, v1::LIN, v1::VALID, 0},
        ConvCase{"conv3d_pool_z",
                 {1, 2, 5, 5, 5},
                 "b,f,z,x,y",
                 {2, 2, 2},
                 {2, 1, 1},
                 v1::SOFTPLUS,
                 v1::VALID,
                 0},
        ConvCase{"conv2d_same", {1, 2, 5, 6}, "b,f,x,y", {3, 3}, {}, v1::TANH, v1::SAME, 0},
        ConvCase{"conv2d_full", {1, 2, 4, 4}, "b,f,x,y", {2, 3}, {}, v1::LIN, v1::FULL, 0},
        ConvCase{"conv2d_abs_pool", {1, 2, 7, 7}, "b,f,x,y", {2, 2}, {2, 2}, v1::ABS, v1::VALID, 0},
        ConvCase{"conv2d_prelu", {1, 2, 6, 6}, "b,f,x,y", {3, 3}, {}, v1::PRELU, v1::VALID, 0},
        ConvCase{"conv2d_dropout", {1, 2, 6, 6}, "b,f,x,y", {3, 3}, {}, v1::TANH, v1::VALID, 0.3f},
        ConvCase{"conv3d_theano_order",
                 {1, 4, 2, 5, 5},
                 "b,z,f,x,y",
                 {2, 2, 2},
                 {},
                 v1::TANH,
                 v1::VALID,
                 0}),
    [](const auto& info) { return info.param.name; });

// Max-fragment-pooling (reference §2.6): the sliding max-pool and the regrouping into
// fragments, alone (batch 2, kz=1 and 1x1 kernels) and stitched by FragmentsToDense.
TEST(MfpGradient, ConvWithMfpAndFragmentsToDense) {
  {
    ModelBuilder m;
    std::string x = m.Input({2, 2, 3, 8, 7}, "b,f,z,x,y", "x");
    ExpectGradientsMatch(
        m, m.Conv(x, 3, {1, 2, 3}, {1, 2, 2}, v1::TANH, v1::VALID, 0, /*mfp=*/true), {x});
  }
  {
    ModelBuilder m;
    std::string x = m.Input({1, 2, 5, 9, 9}, "b,f,z,x,y", "x");
    std::string c = m.Conv(x, 3, {1, 1, 1}, {2, 2, 2}, v1::TANH, v1::VALID, 0, /*mfp=*/true);
    c = m.Conv(c, 2, {2, 2, 2}, {1, 2, 2}, v1::PRELU, v1::VALID, 0.2f, /*mfp=*/true);
    v1::ModelSpec spec = m.spec();
    v1::NodeSpec* d = spec.add_nodes();
    d->set_name("to_dense");
    d->add_inputs(c);
    d->mutable_fragments_to_dense();
    GradientCheckOptions opt;
    opt.output = "to_dense";
    opt.wrt_inputs = {x};
    GradientCheckReport report;
    absl::Status s = CheckGradients(spec, opt, &report);
    std::string lines;
    for (const auto& l : report.lines) lines += "  " + l + "\n";
    EXPECT_TRUE(s.ok()) << s << "\n" << lines;
  }
}

TEST(PoolGradient, MaxAverageAndOverlapping) {
  using Case = std::tuple<v1::PoolMode, std::vector<int64_t>, std::vector<int64_t>, int64_t>;
  for (auto [mode, pool, stride, size] : std::vector<Case>{{v1::MAX, {2, 2}, {}, 8},
                                                           {v1::AVERAGE, {2, 3}, {}, 6},
                                                           {v1::MAX, {3, 3}, {2, 2}, 9},
                                                           {v1::AVERAGE, {3, 3}, {2, 2}, 7}}) {
    ModelBuilder m;
    std::string x = m.Input({2, 3, size, size}, "b,f,x,y", "x");
    std::string y = m.Pool(x, pool, stride, mode);
    ExpectGradientsMatch(m, y, {x});
  }
  ModelBuilder m3;
  std::string x = m3.Input({1, 2, 4, 6, 6}, "b,f,z,x,y", "x");
  ExpectGradientsMatch(m3, m3.Pool(x, {2, 2, 2}), {x});
}

TEST(PerceptronGradient, OverFeaturesAndFlattened) {
  for (v1::Activation act : {v1::RELU, v1::TANH, v1::LIN, v1::PRELU, v1::ABS}) {
    ModelBuilder m;
    std::string x = m.Input({2, 5, 3, 4}, "b,f,x,y", "x");
    ExpectGradientsMatch(m, m.Perceptron(x, 3, act), {x});
  }
  ModelBuilder m;
  std::string x = m.Input({3, 2, 3, 4}, "b,f,x,y", "x");
  ExpectGradientsMatch(m, m.Perceptron(x, 4, v1::SIGMOID, /*flatten=*/true, /*dropout=*/0.2f), {x});
}

// batch_norm: Conv (2-D and 3-D, pooled), Perceptron and UpConv with batch normalisation, in
// 'train' mode (gradient through the batch statistics), 'fadeout' mode (through the statistics
// faded by the gradnet rate) and 'predict' mode (stored statistics).
struct BnMode {
  v1::BatchNormMode mode;
  float gradnet_rate;  // 'fadeout' only
  const char* name;
};

void SetBatchNorm(v1::ModelSpec& spec, const std::string& node, BnMode bn) {
  for (v1::NodeSpec& n : *spec.mutable_nodes()) {
    if (n.name() != node) continue;
    if (n.has_conv()) n.mutable_conv()->set_batch_normalisation(bn.mode);
    if (n.has_perceptron()) n.mutable_perceptron()->set_batch_normalisation(bn.mode);
    if (n.has_upconv()) n.mutable_upconv()->set_batch_normalisation(bn.mode);
    if (bn.mode == v1::BN_FADEOUT) SetGradnetRate(n, bn.gradnet_rate);
  }
}

void ExpectBatchNormGradients(const ModelBuilder& m, const std::string& y, const std::string& x,
                              BnMode mode) {
  v1::ModelSpec spec = m.spec();
  SetBatchNorm(spec, y, mode);
  GradientCheckOptions opt;
  opt.output = y;
  opt.wrt_inputs = {x};
  opt.batch_size = 2;
  GradientCheckReport report;
  absl::Status s = CheckGradients(spec, opt, &report);
  std::string lines;
  for (const auto& l : report.lines) lines += "  " + l + "\n";
  EXPECT_TRUE(s.ok()) << s << "\n" << lines;
  // gamma, b and w are checked; the statistics are not parameters with a gradient.
  EXPECT_NE(lines.find(mode.mode != v1::BN_PREDICT ? "/gamma" : "/b:"), std::string::npos) << lines;
}

TEST(BatchNormGradient, ConvAndPerceptronTrainFadeoutAndPredict) {
  // Fadeout away from both ends (r = 1 is 'train', r = 0 has no gradient into x, w or gamma).
  for (BnMode mode :
       {BnMode{v1::BN_TRAIN, 1.f, "train"}, BnMode{v1::BN_FADEOUT, 0.3f, "fade.3"},
        BnMode{v1::BN_FADEOUT, 0.8f, "fade.8"}, BnMode{v1::BN_PREDICT, 1.f, "pred"}}) {
    SCOPED_TRACE(mode.name);
    {
      ModelBuilder m;  // 2-D with pooling, fused monotone activation
      std::string x = m.Input({2, 2, 7, 8}, "b,f,x,y", "x");
      ExpectBatchNormGradients(m, m.Conv(x, 3, {2, 3}, {2, 2}, v1::TANH), x, mode);
    }
    {
      ModelBuilder m;  // 3-D with pooling and PReLU (the separate activation pass) and dropout
      std::string x = m.Input({2, 2, 3, 6, 5}, "b,f,z,x,y", "x");
      ExpectBatchNormGradients(m, m.Conv(x, 3, {1, 3, 2}, {1, 2, 2}, v1::PRELU, v1::VALID, 0.3f), x,
                               mode);
    }
    {
      ModelBuilder m;  // 3-D without pooling, abs (not monotone: separate pass)
      std::string x = m.Input({2, 2, 3, 4, 4}, "b,f,z,x,y", "x");
      ExpectBatchNormGradients(m, m.Conv(x, 2, {2, 2, 2}, {}, v1::ABS), x, mode);
    }
    for (bool flatten : {false, true}) {
      ModelBuilder m;
      std::string x = m.Input({4, 3, 3, 4}, "b,f,x,y", "x");  // flatten: 4 rows per feature
      ExpectBatchNormGradients(m, m.Perceptron(x, 4, v1::SIGMOID, flatten), x, mode);
    }
    {
      ModelBuilder m;  // UpConv: transposed conv, then BN, bias and a fused activation
      std::string x = m.Input({2, 2, 2, 6, 6}, "b,f,z,x,y", "x");
      std::string c = m.Conv(x, 3, {1, 1, 1}, {1, 2, 2}, v1::LIN);  // stride 2 to upsample
      ExpectBatchNormGradients(m, m.UpConv(c, 2, {1, 2, 2}, v1::TANH, false, 0, "up"), x, mode);
    }
  }
}

TEST(ActivationGradient, EveryFunction) {
  for (v1::Activation act :
       {v1::RELU, v1::TANH, v1::SIGMOID, v1::LIN, v1::ABS, v1::SOFTPLUS, v1::ELU}) {
    ModelBuilder m;
    std::string x = m.Input({2, 3, 5}, "b,f,x", "x");
    ExpectGradientsMatch(m, m.Activation(x, act), {x});
  }
}

TEST(SoftmaxGradient, IndependentGroups) {
  ModelBuilder m;
  std::string x = m.Input({2, 6, 3, 3}, "b,f,x,y", "x");
  ExpectGradientsMatch(m, m.Softmax(x, 2, 3), {x});
}

TEST(StructureGradient, ConcatCropAdd) {
  {
    ModelBuilder m;
    std::string a = m.Input({1, 2, 4, 5}, "b,f,x,y", "a");
    std::string b = m.Input({1, 3, 4, 5}, "b,f,x,y", "b");
    ExpectGradientsMatch(m, m.Concat({a, b}), {a, b});
  }
  {
    ModelBuilder m;
    std::string a = m.Input({1, 2, 4, 5}, "b,f,x,y", "a");
    std::string b = m.Input({1, 2, 3, 5}, "b,f,x,y", "b");
    ExpectGradientsMatch(m, m.Concat({a, b}, "x"), {a, b});
  }
  {
    ModelBuilder m;
    std::string a = m.Input({2, 2, 6, 7, 5}, "b,f,z,x,y", "a");
    ExpectGradientsMatch(m, m.Crop(a, {1, 2, 1}), {a});
  }
  {
    // The same node feeds both operands: its gradient must accumulate.
    ModelBuilder m;
    std::string a = m.Input({1, 2, 6, 6}, "b,f,x,y", "a");
    std::string c = m.Conv(a, 3, {3, 3}, {}, v1::TANH);
    std::string d = m.Add(c, m.Activation(c, v1::SIGMOID));
    ExpectGradientsMatch(m, d, {a});
  }
}

TEST(LossGradient, MultinoulliNllSparseDenseAndAggregate) {
  {
    ModelBuilder m;
    std::string x = m.Input({2, 3, 4, 4}, "b,f,x,y", "x");
    std::string p = m.Softmax(m.Conv(x, 2, {1, 1}, {}, v1::LIN));
    std::string t = m.InputLike(p, 1, "target");
    std::string nll = m.MultinoulliNLL(p, t, true, {0.7f, 1.6f});
    GradientCheckOptions o;
    o.fixed_inputs_integer = {"target"};
    ExpectGradientsMatch(m, nll, {x}, o);
  }
  {
    ModelBuilder m;
    std::string x = m.Input({2, 4, 5}, "b,f,x", "x");
    std::string p = m.Softmax(x, 2, 2);
    std::string t = m.InputLike(p, 2, "target");
    std::string nll = m.MultinoulliNLL(p, t, true);
    std::string nll2 = m.MultinoulliNLL(p, t, true);
    std::string loss = m.AggregateLoss({nll, nll2}, {0.3f, 2.0f}, "loss");
    GradientCheckOptions o;
    o.fixed_inputs_integer = {"target"};
    ExpectGradientsMatch(m, loss, {x}, o);
  }
  {
    ModelBuilder m;
    std::string x = m.Input({1, 3, 4}, "b,f,x", "x");
    std::string p = m.Softmax(x);
    std::string t = m.InputLike(p, 0, "target");  // dense targets, random weights
    std::string nll = m.MultinoulliNLL(p, t, false);
    ExpectGradientsMatch(m, nll, {x});
  }
}

// Labels < 0 (and >= n_class) mark unlabelled voxels: they add nothing to the loss and take no
// gradient, while the labelled ones are renormalised by their count.
TEST(LossGradient, MultinoulliNllIgnoredLabels) {
  GradientCheckOptions o;
  o.fixed_inputs_integer = {"target"};
  o.ignored_label_share = 0.4;
  {
    ModelBuilder m;
    std::string x = m.Input({2, 3, 4, 4}, "b,f,x,y", "x");
    std::string p = m.Softmax(m.Conv(x, 2, {1, 1}, {}, v1::LIN));
    std::string t = m.InputLike(p, 1, "target");
    ExpectGradientsMatch(m, m.MultinoulliNLL(p, t, true), {x}, o);
  }
  {
    ModelBuilder m;
    std::string x = m.Input({2, 3, 4, 4}, "b,f,x,y", "x");
    std::string p = m.Softmax(m.Conv(x, 3, {1, 1}, {}, v1::LIN));
    std::string t = m.InputLike(p, 1, "target");
    GradientCheckOptions o3 = o;
    o3.n_classes = 3;
    ExpectGradientsMatch(m, m.MultinoulliNLL(p, t, true, {0.7f, 1.6f, 1.1f}), {x}, o3);
  }
  {
    ModelBuilder m;
    std::string x = m.Input({2, 4, 5}, "b,f,x", "x");
    std::string p = m.Softmax(x, 2, 2);
    std::string t = m.InputLike(p, 2, "target");
    std::string nll = m.MultinoulliNLL(p, t, true, {1.8f, 0.4f});
    ExpectGradientsMatch(m, m.AggregateLoss({nll}, {}, "loss"), {x}, o);
  }
}

}  // namespace
}  // namespace elektronn
