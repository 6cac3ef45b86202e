// Batch normalisation, fine-tuning and freezing (reference §2.4, §3.4): the node's modes and
// running estimates, the statistics in model files, replace_bn and locking in the model loader,
// the trainer's conversion after training, fine-tuning jobs, and the shell's freeze/unfreeze.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "engine/graph/model_builder.h"
#include "engine/graph/network.h"
#include "engine/io/model_file.h"
#include "engine/io/model_loader.h"
#include "engine/lua/job_file.h"
#include "engine/nodes/neural.h"
#include "engine/shell/shell_session.h"
#include "engine/trainer/trainer.h"
#include "tests/support/test_dir.h"
#include "tests/support/tiny_job.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::vector<float> Random(int64_t n, uint32_t seed, float offset = 0.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> v(n);
  for (float& x : v) x = offset + 2.f * normal(rng);
  return v;
}

// Input (b=8, f=3, x=4) -> Perceptron over f (3 -> 2 features, linear) with BN; 'fadeout'
// layers get `gradnet_rate` when it is given.
v1::ModelSpec PerceptronSpec(v1::BatchNormMode mode, std::optional<float> gradnet_rate = {},
                             v1::Activation act = v1::LIN) {
  ModelBuilder m("bn", 3);
  std::string x = m.Input({8, 3, 4}, "b,f,x", "input");
  std::string p = m.Perceptron(x, 2, act, false, 0, "dot");
  v1::ModelSpec s = m.spec();
  s.mutable_nodes(1)->mutable_perceptron()->set_batch_normalisation(mode);
  if (gradnet_rate) s.mutable_nodes(1)->mutable_perceptron()->set_gradnet_rate(*gradnet_rate);
  return s;
}

NeuralNode& Layer(Network& n, const std::string& name) {
  return *dynamic_cast<NeuralNode*>(n.graph().Find(name));
}

// A pooled 2-D Conv with BN feeding a softmax loss, for the loader.
v1::ModelSpec ConvSpec() {
  ModelBuilder m("bnconv", 5);
  std::string x = m.Input({2, 1, 10, 10}, "b,f,x,y", "input");
  std::string c = m.Conv(x, 3, {3, 3}, {2, 2}, v1::RELU, v1::VALID, 0, false, "conv");
  c = m.Conv(c, 2, {1, 1}, {}, v1::LIN, v1::VALID, 0, false, "out");
  std::string p = m.Softmax(c);
  std::string t = m.InputLike(p, 1, "target");
  std::string loss = m.AggregateLoss({m.MultinoulliNLL(p, t, true)}, {}, "loss");
  m.Designate(x, t, loss, p);
  v1::ModelSpec s = m.spec();
  s.mutable_nodes(1)->mutable_conv()->set_batch_normalisation(v1::BN_TRAIN);
  return s;
}

// Per-channel mean and biased std of a (rows, channels) row-major array.
void Moments(const std::vector<float>& v, int64_t ch, std::vector<double>* mean,
             std::vector<double>* std) {
  const int64_t rows = static_cast<int64_t>(v.size()) / ch;
  mean->assign(ch, 0);
  std->assign(ch, 0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < ch; ++c) (*mean)[c] += v[r * ch + c] / rows;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < ch; ++c) {
      const double d = v[r * ch + c] - (*mean)[c];
      (*std)[c] += d * d / rows;
    }
  for (double& s : *std) s = std::sqrt(s);
}

// The Perceptron's output in (rows, channels) order: the logical (b, f, x) output transposed.
std::vector<float> Rows(Network& net, const std::string& node) {
  std::vector<float> logical = *net.Output(node);
  const TaggedShape& s = net.graph().Find(node)->shape();
  const int64_t b = s.size(0), f = s.size(1), x = s.size(2);
  std::vector<float> rows(logical.size());
  for (int64_t i = 0; i < b; ++i)
    for (int64_t c = 0; c < f; ++c)
      for (int64_t k = 0; k < x; ++k) rows[(i * x + k) * f + c] = logical[(i * f + c) * x + k];
  return rows;
}

class BatchNormTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::FreshTestDir("batch_norm_test"); }
  void TearDown() override { fs::remove_all(dir_); }
  std::unique_ptr<kernels::Backend> backend_ = kernels::CreateCpuBackend();
  fs::path dir_;
};

TEST_F(BatchNormTest, TrainModeNormalisesWithBatchStatisticsAndUpdatesRunningOnesWhenTraining) {
  auto net = Network::Create(PerceptronSpec(v1::BN_TRAIN), backend_.get());
  ASSERT_TRUE(net.ok()) << net.status();
  Network& n = **net;
  Parameter* gamma = *n.FindParam("dot", "gamma");
  Parameter* b = *n.FindParam("dot", "b");
  Parameter* mean = *n.FindParam("dot", "mean");
  Parameter* std = *n.FindParam("dot", "std");
  EXPECT_TRUE(gamma->trainable);
  EXPECT_FALSE(mean->trainable);
  EXPECT_FALSE(std->trainable);
  ASSERT_TRUE(n.SetParamValue(*gamma, std::vector<float>{2.f, 0.5f}).ok());
  ASSERT_TRUE(n.SetParamValue(*b, std::vector<float>{1.f, -3.f}).ok());
  ASSERT_TRUE(n.SetInput("input", Random(8 * 3 * 4, 1, 5.f)).ok());

  // An evaluation forward normalises with the batch's statistics but leaves the running ones.
  n.set_training(false);
  ASSERT_TRUE(n.Forward().ok());
  EXPECT_EQ(n.ParamValue(*mean), (std::vector<float>{0.f, 0.f}));
  EXPECT_EQ(n.ParamValue(*std), (std::vector<float>{1.f, 1.f}));
  std::vector<double> m, s;
  Moments(Rows(n, "dot"), 2, &m, &s);
  EXPECT_NEAR(m[0], 1.0, 1e-4);  // b
  EXPECT_NEAR(m[1], -3.0, 1e-4);
  EXPECT_NEAR(s[0], 2.0, 1e-3);  // gamma
  EXPECT_NEAR(s[1], 0.5, 1e-3);

  // A training forward moves the running estimates by 0.0005 of the batch's.
  n.set_training(true);
  ASSERT_TRUE(n.Forward().ok());
  // The linear output's statistics: from the weights, recomputed here.
  std::vector<float> in = Random(8 * 3 * 4, 1, 5.f);
  std::vector<float> w = n.ParamValue(*n.params()[0]);  // (3, 2)
  std::vector<float> lin(32 * 2);
  for (int64_t i = 0; i < 8; ++i)
    for (int64_t k = 0; k < 4; ++k)
      for (int64_t c = 0; c < 2; ++c) {
        double acc = 0;
        for (int64_t f = 0; f < 3; ++f) acc += in[(i * 3 + f) * 4 + k] * w[f * 2 + c];
        lin[(i * 4 + k) * 2 + c] = static_cast<float>(acc);
      }
  Moments(lin, 2, &m, &s);
  for (int c = 0; c < 2; ++c) {
    EXPECT_NEAR(n.ParamValue(*mean)[c], 0.0005 * m[c], 1e-6);
    EXPECT_NEAR(n.ParamValue(*std)[c], 0.9995 + 0.0005 * (s[c] + 1e-6), 1e-6);
  }
}

TEST_F(BatchNormTest, PredictModeUsesTheStoredStatisticsAndGammaIsNotTrainable) {
  auto net = Network::Create(PerceptronSpec(v1::BN_PREDICT), backend_.get());
  ASSERT_TRUE(net.ok()) << net.status();
  Network& n = **net;
  ASSERT_TRUE(n.SetParamValue(**n.FindParam("dot", "gamma"), std::vector<float>{2.f, -1.f}).ok());
  ASSERT_TRUE(n.SetParamValue(**n.FindParam("dot", "b"), std::vector<float>{0.5f, 0.25f}).ok());
  ASSERT_TRUE(n.SetParamValue(**n.FindParam("dot", "mean"), std::vector<float>{1.f, -2.f}).ok());
  ASSERT_TRUE(n.SetParamValue(**n.FindParam("dot", "std"), std::vector<float>{4.f, 0.5f}).ok());
  EXPECT_FALSE((*n.FindParam("dot", "gamma"))->trainable);
  std::vector<float> in = Random(8 * 3 * 4, 2);
  ASSERT_TRUE(n.SetInput("input", in).ok());
  ASSERT_TRUE(n.Forward().ok());
  std::vector<float> w = n.ParamValue(*n.params()[0]);
  std::vector<float> got = Rows(n, "dot");
  const double gamma[] = {2, -1}, b[] = {0.5, 0.25}, mean[] = {1, -2}, std[] = {4, 0.5};
  for (int64_t i = 0; i < 8; ++i)
    for (int64_t k = 0; k < 4; ++k)
      for (int64_t c = 0; c < 2; ++c) {
        double y = 0;
        for (int64_t f = 0; f < 3; ++f) y += in[(i * 3 + f) * 4 + k] * w[f * 2 + c];
        const double want = gamma[c] / std[c] * (y - mean[c]) + b[c];
        EXPECT_NEAR(got[(i * 4 + k) * 2 + c], want, 1e-4);
      }
}

// The linear output of PerceptronSpec's layer for `in`, as (rows, channels).
std::vector<float> LinearOutput(Network& n, const std::vector<float>& in) {
  std::vector<float> w = n.ParamValue(*n.params()[0]);  // (3, 2)
  std::vector<float> lin(32 * 2);
  for (int64_t i = 0; i < 8; ++i)
    for (int64_t k = 0; k < 4; ++k)
      for (int64_t c = 0; c < 2; ++c) {
        double acc = 0;
        for (int64_t f = 0; f < 3; ++f) acc += in[(i * 3 + f) * 4 + k] * w[f * 2 + c];
        lin[(i * 4 + k) * 2 + c] = static_cast<float>(acc);
      }
  return lin;
}

// One training step's forward and backward (from a fixed seed) of the Perceptron layer.
struct StepResult {
  std::vector<float> out, d_input, d_w, d_b, d_gamma, mean, std;
};
StepResult TrainingStep(Network& n, const std::vector<float>& in) {
  EXPECT_TRUE(n.SetInput("input", in).ok());
  n.set_training(true);
  EXPECT_TRUE(n.Forward().ok());
  StepResult r;
  r.out = *n.Output("dot");
  EXPECT_TRUE(n.BackwardFrom("dot", Random(r.out.size(), 9)).ok());
  r.d_input = *n.InputGradient("input");
  r.d_w = n.ParamGrad(**n.FindParam("dot", "w"));
  r.d_b = n.ParamGrad(**n.FindParam("dot", "b"));
  r.d_gamma = n.ParamGrad(**n.FindParam("dot", "gamma"));
  r.mean = n.ParamValue(**n.FindParam("dot", "mean"));
  r.std = n.ParamValue(**n.FindParam("dot", "std"));
  return r;
}

TEST_F(BatchNormTest, FadeoutAtRateOneIsTrainBitForBit) {
  const std::vector<float> in = Random(8 * 3 * 4, 4, 2.f);
  for (v1::Activation act : {v1::LIN, v1::TANH, v1::PRELU}) {
    NetworkOptions o;
    o.input_gradients = true;
    auto train = Network::Create(PerceptronSpec(v1::BN_TRAIN, {}, act), backend_.get(), o);
    auto fade = Network::Create(PerceptronSpec(v1::BN_FADEOUT, {}, act), backend_.get(), o);
    ASSERT_TRUE(train.ok()) << train.status();
    ASSERT_TRUE(fade.ok()) << fade.status();
    EXPECT_EQ(Layer(**fade, "dot").gradnet_rate(), 1.f);  // unset means 1
    EXPECT_TRUE((*(*fade)->FindParam("dot", "gamma"))->trainable);
    ASSERT_TRUE(
        (*train)
            ->SetParamValue(**(*train)->FindParam("dot", "gamma"), std::vector<float>{1.5f, -0.5f})
            .ok());
    ASSERT_TRUE(
        (*fade)
            ->SetParamValue(**(*fade)->FindParam("dot", "gamma"), std::vector<float>{1.5f, -0.5f})
            .ok());
    ASSERT_EQ((*train)->ParamValue(*(*train)->params()[0]),
              (*fade)->ParamValue(*(*fade)->params()[0]));
    const StepResult t = TrainingStep(**train, in), f = TrainingStep(**fade, in);
    EXPECT_EQ(f.out, t.out);
    EXPECT_EQ(f.d_input, t.d_input);
    EXPECT_EQ(f.d_w, t.d_w);
    EXPECT_EQ(f.d_b, t.d_b);
    EXPECT_EQ(f.d_gamma, t.d_gamma);
    EXPECT_EQ(f.mean, t.mean);
    EXPECT_EQ(f.std, t.std);
  }
}

TEST_F(BatchNormTest, FadeoutFadesStatisticsAndGammaAndTheRunningEstimatesFollowTheFadedOnes) {
  const double r = 0.3;
  auto net = Network::Create(PerceptronSpec(v1::BN_FADEOUT, 0.3f), backend_.get());
  ASSERT_TRUE(net.ok()) << net.status();
  Network& n = **net;
  EXPECT_FLOAT_EQ(Layer(n, "dot").gradnet_rate(), 0.3f);
  EXPECT_THAT(Layer(n, "dot").details(), HasSubstr("BN='fadeout' (gradnet_rate=0.3)"));
  ASSERT_TRUE(n.SetParamValue(**n.FindParam("dot", "gamma"), std::vector<float>{2.f, 0.5f}).ok());
  ASSERT_TRUE(n.SetParamValue(**n.FindParam("dot", "b"), std::vector<float>{1.f, -3.f}).ok());
  const std::vector<float> in = Random(8 * 3 * 4, 1, 5.f);
  ASSERT_TRUE(n.SetInput("input", in).ok());
  n.set_training(true);
  ASSERT_TRUE(n.Forward().ok());
  const std::vector<float> lin = LinearOutput(n, in);
  std::vector<double> m, s;
  Moments(lin, 2, &m, &s);
  const std::vector<float> got = Rows(n, "dot");
  const double gamma[] = {2, 0.5}, b[] = {1, -3};
  for (int64_t i = 0; i < 32; ++i)
    for (int64_t c = 0; c < 2; ++c) {
      const double mf = r * m[c], sf = r * (s[c] + 1e-6) + 1 - r, gf = r * gamma[c];
      EXPECT_NEAR(got[i * 2 + c], gf / sf * (lin[i * 2 + c] - mf) + b[c], 1e-4) << i << "," << c;
    }
  for (int c = 0; c < 2; ++c) {  // from the faded statistics, not the batch's
    EXPECT_NEAR(n.ParamValue(**n.FindParam("dot", "mean"))[c], 0.0005 * r * m[c], 1e-6);
    EXPECT_NEAR(n.ParamValue(**n.FindParam("dot", "std"))[c],
                0.9995 + 0.0005 * (r * (s[c] + 1e-6) + 1 - r), 1e-6);
  }
  // r = 0: the batch is gone, only the bias is left (ELEKTRONN2's formula fades gamma too).
  ASSERT_TRUE(Layer(n, "dot").set_gradnet_rate(0.f).ok());
  ASSERT_TRUE(n.Forward().ok());
  for (int64_t i = 0; i < 32; ++i)
    for (int64_t c = 0; c < 2; ++c) EXPECT_EQ(Rows(n, "dot")[i * 2 + c], b[c]);
}

TEST_F(BatchNormTest, GradnetRateOutsideTheUnitIntervalOrOnOtherLayersIsRefused) {
  auto bad = Network::Create(PerceptronSpec(v1::BN_FADEOUT, 1.5f), backend_.get());
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("'dot'"));
  EXPECT_THAT(bad.status().message(), HasSubstr("gradnet_rate=1.5 is outside [0, 1]"));
  auto fade = Network::Create(PerceptronSpec(v1::BN_FADEOUT), backend_.get());
  ASSERT_TRUE(fade.ok()) << fade.status();
  EXPECT_THAT(Layer(**fade, "dot").set_gradnet_rate(-0.1f).message(),
              HasSubstr("gradnet rate -0.1 is outside [0, 1]"));
  EXPECT_EQ(Layer(**fade, "dot").gradnet_rate(), 1.f);
  auto train = Network::Create(PerceptronSpec(v1::BN_TRAIN), backend_.get());
  ASSERT_TRUE(train.ok()) << train.status();
  EXPECT_FALSE(Layer(**train, "dot").has_gradnet());
  EXPECT_THAT(Layer(**train, "dot").set_gradnet_rate(0.5f).message(),
              HasSubstr("only batch_normalisation='fadeout' layers"));
}

TEST_F(BatchNormTest, ModelFileKeepsTheLiveGradnetRate) {
  auto net = Network::Create(PerceptronSpec(v1::BN_FADEOUT), backend_.get());
  ASSERT_TRUE(net.ok()) << net.status();
  ASSERT_TRUE(Layer(**net, "dot").set_gradnet_rate(0.25f).ok());
  const std::string path = (dir_ / "fade.h5").string();
  ASSERT_TRUE(SaveModel(path, **net, nullptr).ok());
  auto f = ReadModelFile(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->spec.nodes(1).perceptron().gradnet_rate(), 0.25f);
  auto loaded = LoadModel(path, {}, backend_.get());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(Layer(*loaded->net, "dot").gradnet_rate(), 0.25f);
  EXPECT_EQ(Layer(*loaded->net, "dot").bn_mode(), v1::BN_FADEOUT);
}

TEST_F(BatchNormTest, ModelFileKeepsTheStatisticsAndLoaderReplacesBatchNorm) {
  auto net = Network::Create(ConvSpec(), backend_.get());
  ASSERT_TRUE(net.ok()) << net.status();
  Network& n = **net;
  ASSERT_TRUE(n.SetParamValue(**n.FindParam("conv", "mean"), std::vector<float>{1, 2, 3}).ok());
  ASSERT_TRUE(n.SetParamValue(**n.FindParam("conv", "std"), std::vector<float>{4, 5, 6}).ok());
  ASSERT_TRUE(n.SetParamValue(**n.FindParam("conv", "gamma"), std::vector<float>{7, 8, 9}).ok());
  const std::string path = (dir_ / "bn.h5").string();
  ASSERT_TRUE(SaveModel(path, n, nullptr).ok());

  // As saved: statistics restored, never trainable, not even with unlock_all_params.
  LoadOptions unlock;
  unlock.unlock_all_params = true;
  auto kept = LoadModel(path, unlock, backend_.get());
  ASSERT_TRUE(kept.ok()) << kept.status();
  Network& k = *kept->net;
  EXPECT_EQ(k.ParamValue(**k.FindParam("conv", "mean")), (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(k.ParamValue(**k.FindParam("conv", "std")), (std::vector<float>{4, 5, 6}));
  EXPECT_FALSE((*k.FindParam("conv", "mean"))->trainable);
  EXPECT_FALSE((*k.FindParam("conv", "std"))->trainable);
  EXPECT_TRUE((*k.FindParam("conv", "gamma"))->trainable);
  EXPECT_EQ(kept->spec.nodes(1).conv().batch_normalisation(), v1::BN_TRAIN);

  for (ReplaceBn r : {ReplaceBn::kPredict, ReplaceBn::kConst}) {
    LoadOptions o;
    o.replace_bn = r;
    auto m = LoadModel(path, o, backend_.get());
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->spec.nodes(1).conv().batch_normalisation(), v1::BN_PREDICT);
    EXPECT_THAT(absl::StrJoin(m->notes, "\n"), HasSubstr("switched to 'predict'"));
    EXPECT_EQ(m->net->ParamValue(**m->net->FindParam("conv", "gamma")),
              (std::vector<float>{7, 8, 9}));
    EXPECT_FALSE((*m->net->FindParam("conv", "gamma"))->trainable);
    EXPECT_TRUE((*m->net->FindParam("conv", "w"))->trainable);
  }
  LoadOptions remove;
  remove.replace_bn = ReplaceBn::kRemove;
  auto r = LoadModel(path, remove, backend_.get());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->spec.nodes(1).conv().batch_normalisation(), v1::BN_OFF);
  EXPECT_FALSE(r->net->FindParam("conv", "gamma").ok());
  EXPECT_THAT(absl::StrJoin(r->notes, "\n"), HasSubstr("removed in 1 layers"));
}

TEST_F(BatchNormTest, ConversionToConstantsKeepsValuesAndUsesRunningStatistics) {
  auto net = Network::Create(ConvSpec(), backend_.get(), {2, 5, false});
  ASSERT_TRUE(net.ok()) << net.status();
  Network& n = **net;
  ASSERT_TRUE(n.SetParamValue(**n.FindParam("conv", "mean"), std::vector<float>{1, 2, 3}).ok());
  ASSERT_TRUE(n.SetParamValue(**n.FindParam("conv", "std"), std::vector<float>{4, 5, 6}).ok());
  auto c = ConvertBatchNormToConstants(n);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_NE(*c, nullptr);
  Network& p = **c;
  EXPECT_EQ(p.graph().spec().nodes(1).conv().batch_normalisation(), v1::BN_PREDICT);
  for (const Parameter* q : n.params()) {
    EXPECT_EQ(p.ParamValue(**p.FindParam(q->node, q->name)), n.ParamValue(*q)) << q->key();
  }
  // The converted network's output does not depend on the rest of the batch any more.
  std::vector<float> in = Random(2 * 100, 3);
  ASSERT_TRUE(p.SetInput("input", in).ok());
  ASSERT_TRUE(p.Forward().ok());
  std::vector<float> first = *p.Output("conv");
  for (size_t i = 100; i < in.size(); ++i) in[i] = -in[i];
  ASSERT_TRUE(p.SetInput("input", in).ok());
  ASSERT_TRUE(p.Forward().ok());
  std::vector<float> second = *p.Output("conv");
  ASSERT_EQ(first.size(), 2u * 3 * 4 * 4);
  for (size_t i = 0; i < first.size() / 2; ++i) EXPECT_FLOAT_EQ(first[i], second[i]) << i;
  // A network without BN in 'train' mode needs no conversion.
  auto none = ConvertBatchNormToConstants(p);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, nullptr);
}

testing::TinyJobOptions BnTinyJob() {
  testing::TinyJobOptions o;
  o.save_name = "bn";
  o.hidden =
      "out = nm.Conv{out, 4, {1, 3, 3}, batch_normalisation = 'train'}\n"
      "  out = nm.Conv{out, 3, {1, 3, 3}, batch_normalisation = true}";
  o.n_steps = 4;
  o.history_freq = 2;
  o.optimiser_params = "lr = 1e-2, mom = 0.9";
  return o;
}

TEST_F(BatchNormTest, TrainerConvertsAfterTrainingAndFinalHoldsTheConstants) {
  auto job = testing::MakeTinyJob(dir_, BnTinyJob());
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->model().nodes(1).conv().batch_normalisation(), v1::BN_TRAIN);
  EXPECT_EQ(job->model().nodes(2).conv().batch_normalisation(), v1::BN_TRAIN);
  TrainerOptions opt;
  opt.console = false;
  auto t = Trainer::Create(*job, backend_.get(), opt);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_TRUE((*t)->Run().ok());
  Network& net = (*t)->network();
  EXPECT_EQ(net.graph().spec().nodes(1).conv().batch_normalisation(), v1::BN_PREDICT);
  EXPECT_NE(net.ParamValue(**net.FindParam("conv", "mean")), std::vector<float>(4, 0.f));

  auto last = ReadModelFile((*t)->CheckpointPath("LAST"));
  auto final_ = ReadModelFile((*t)->CheckpointPath("FINAL"));
  ASSERT_TRUE(last.ok()) << last.status();
  ASSERT_TRUE(final_.ok()) << final_.status();
  EXPECT_EQ(last->spec.nodes(1).conv().batch_normalisation(), v1::BN_TRAIN);
  EXPECT_EQ(final_->spec.nodes(1).conv().batch_normalisation(), v1::BN_PREDICT);
  EXPECT_EQ(final_->params.at("conv/mean"), last->params.at("conv/mean"));
  EXPECT_TRUE(final_->constant_params.contains("conv/gamma"));
  EXPECT_FALSE(last->constant_params.contains("conv/gamma"));
}

TEST_F(BatchNormTest, FineTuningJobLoadsTheModelAndFreezesTheLockedNodes) {
  auto job = testing::MakeTinyJob(dir_, BnTinyJob());
  ASSERT_TRUE(job.ok()) << job.status();
  TrainerOptions opt;
  opt.console = false;
  std::string last;
  {
    auto t = Trainer::Create(*job, backend_.get(), opt);
    ASSERT_TRUE(t.ok()) << t.status();
    ASSERT_TRUE((*t)->Run().ok());
    last = (*t)->CheckpointPath("LAST");
  }
  // The job file of the fine-tuning run: no create_model (QUIRK 17).
  testing::TinyJobOptions o = BnTinyJob();
  o.save_name = "tuned";
  o.save_path = (dir_ / "runs").string();
  o.data_dir = (dir_ / "data").string();
  std::string source = testing::TinyJobSource(o);
  source = source.substr(0, source.find("function create_model()"));
  absl::StrAppend(&source, "model_load_path = '", last,
                  "'\nmodel_load_args = {lock_trainable_params = {'conv'}}\n");
  auto tuned_job = LoadJobSource(source, "tuned.lua");
  ASSERT_TRUE(tuned_job.ok()) << tuned_job.status();
  EXPECT_EQ(tuned_job->training().model_load_path(), last);
  EXPECT_EQ(tuned_job->model().nodes_size(), 0);

  auto t = Trainer::Create(*tuned_job, backend_.get(), opt);
  ASSERT_TRUE(t.ok()) << t.status();
  Network& net = (*t)->network();
  auto before = ReadModelFile(last);
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(net.ParamValue(**net.FindParam("conv1", "w")), before->params.at("conv1/w"));
  EXPECT_FALSE((*net.FindParam("conv", "w"))->trainable);
  EXPECT_FALSE((*net.FindParam("conv", "gamma"))->trainable);
  EXPECT_TRUE((*net.FindParam("conv1", "w"))->trainable);
  // Summaries: no trainable parameters left in conv, and its details say frozen.
  EXPECT_EQ(net.graph().Find("conv")->param_count(), 0);
  EXPECT_GT(net.graph().Find("conv1")->param_count(), 0);
  EXPECT_THAT(net.graph().Find("conv")->details(), HasSubstr("frozen"));
  EXPECT_THAT(net.graph().Summary().ToString(), HasSubstr("total: 122 trainable parameters"));
  const std::vector<float> conv_w = net.ParamValue(**net.FindParam("conv", "w"));
  const std::vector<float> conv1_w = net.ParamValue(**net.FindParam("conv1", "w"));
  ASSERT_TRUE((*t)->Run().ok());
  Network& after = (*t)->network();
  EXPECT_EQ(after.ParamValue(**after.FindParam("conv", "w")), conv_w);
  EXPECT_NE(after.ParamValue(**after.FindParam("conv1", "w")), conv1_w);
}

TEST_F(BatchNormTest, ShellFreezesAndUnfreezesANode) {
  auto job = testing::MakeTinyJob(dir_, BnTinyJob());
  ASSERT_TRUE(job.ok()) << job.status();
  TrainerOptions opt;
  opt.console = false;
  auto t = Trainer::Create(*job, backend_.get(), opt);
  ASSERT_TRUE(t.ok()) << t.status();
  auto shell = ShellSession::Create(t->get(), "tester");
  ASSERT_TRUE(shell.ok()) << shell.status();
  Network& net = (*t)->network();
  ShellOutput o = (*shell)->Execute("freeze conv");
  EXPECT_FALSE(o.error) << o.text;
  EXPECT_THAT(o.text, HasSubstr("conv: w, b, gamma frozen"));
  EXPECT_THAT(o.text, HasSubstr("mean, std never trained"));
  for (const char* p : {"w", "b", "gamma"}) EXPECT_FALSE((*net.FindParam("conv", p))->trainable);
  EXPECT_TRUE((*net.FindParam("conv1", "w"))->trainable);
  EXPECT_THAT((*shell)->Execute("nodes").text, HasSubstr("(frozen)"));
  const std::vector<float> w = net.ParamValue(**net.FindParam("conv", "w"));
  ASSERT_TRUE((*t)->Run().ok());
  EXPECT_EQ((*t)->network().ParamValue(**(*t)->network().FindParam("conv", "w")), w);

  o = (*shell)->Execute("unfreeze conv");
  EXPECT_FALSE(o.error) << o.text;
  Network& now = (*t)->network();
  EXPECT_TRUE((*now.FindParam("conv", "w"))->trainable);
  EXPECT_FALSE((*now.FindParam("conv", "mean"))->trainable);

  o = (*shell)->Execute("freeze nosuch");
  EXPECT_TRUE(o.error);
  EXPECT_THAT(o.text, HasSubstr("the model has no node 'nosuch'; nodes with parameters: conv"));
  EXPECT_TRUE((*shell)->Execute("freeze").error);
}

TEST_F(BatchNormTest, ShellSetsTheGradnetRatesAndCheckpointsKeepThem) {
  testing::TinyJobOptions o = BnTinyJob();
  o.hidden =
      "out = nm.Conv{out, 4, {1, 3, 3}, batch_normalisation = 'fadeout'}\n"
      "  out = nm.Perceptron{out, 3, batch_normalisation = 'fadeout'}";
  auto job = testing::MakeTinyJob(dir_, o);
  ASSERT_TRUE(job.ok()) << job.status();
  TrainerOptions opt;
  opt.console = false;
  std::string log;
  {
    auto t = Trainer::Create(*job, backend_.get(), opt);
    ASSERT_TRUE(t.ok()) << t.status();
    auto shell = ShellSession::Create(t->get(), "tester");
    ASSERT_TRUE(shell.ok()) << shell.status();
    EXPECT_EQ((*shell)->Execute("trainer.gradnet_rates").text, "= 1");
    ShellOutput set = (*shell)->Execute("trainer.gradnet_rates = 0.5");
    EXPECT_FALSE(set.error) << set.text;
    EXPECT_EQ((*shell)->Execute("trainer.gradnet_rates").text, "= 0.5");
    EXPECT_EQ(Layer((*t)->network(), "conv").gradnet_rate(), 0.5f);
    EXPECT_EQ(Layer((*t)->network(), "dot").gradnet_rate(), 0.5f);
    ShellOutput bad = (*shell)->Execute("trainer.gradnet_rates = 2");
    EXPECT_TRUE(bad.error);
    EXPECT_THAT(bad.text, HasSubstr("gradnet_rates must be in [0, 1], got 2"));
    ASSERT_TRUE((*t)->Run().ok());
    // LAST keeps 'fadeout' with the live rate; afterwards BN runs on the running statistics.
    auto last = ReadModelFile((*t)->CheckpointPath("LAST"));
    ASSERT_TRUE(last.ok()) << last.status();
    EXPECT_EQ(last->spec.nodes(1).conv().batch_normalisation(), v1::BN_FADEOUT);
    EXPECT_EQ(last->spec.nodes(1).conv().gradnet_rate(), 0.5f);
    EXPECT_EQ(last->spec.nodes(2).perceptron().gradnet_rate(), 0.5f);
    EXPECT_EQ((*t)->network().graph().spec().nodes(1).conv().batch_normalisation(), v1::BN_PREDICT);
    std::ifstream in(fs::path((*t)->dir()) / "0-bn.log");
    std::stringstream text;
    text << in.rdbuf();
    log = text.str();
  }
  EXPECT_THAT(log, HasSubstr("batch_normalisation='fadeout' is experimental"));
  EXPECT_THAT(log, HasSubstr("conv (gradnet_rate=1), dot (gradnet_rate=1)"));
  // A job without 'fadeout' layers has no gradnet rates to read or set.
  auto plain = testing::MakeTinyJob(dir_ / "plain", BnTinyJob());
  ASSERT_TRUE(plain.ok()) << plain.status();
  auto t = Trainer::Create(*plain, backend_.get(), opt);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT(std::string((*t)->GetHyperparameter("gradnet_rates").status().message()),
              HasSubstr("no layer uses batch_normalisation='fadeout'"));
}

// Job files: the batch_normalisation option, model_load_path and model_load_args.
absl::StatusOr<v1::JobSpec> JobWithHidden(const std::string& hidden) {
  testing::TinyJobOptions o;
  o.hidden = hidden;
  return testing::TinyJob(o);
}

TEST(BatchNormJobFile, BatchNormalisationOption) {
  const std::pair<const char*, v1::BatchNormMode> cases[] = {{"'train'", v1::BN_TRAIN},
                                                             {"'fadeout'", v1::BN_FADEOUT},
                                                             {"'predict'", v1::BN_PREDICT},
                                                             {"true", v1::BN_TRAIN},
                                                             {"false", v1::BN_OFF}};
  for (auto [value, mode] : cases) {
    auto job = JobWithHidden(
        absl::StrCat("out = nm.Conv{out, 4, {1, 3, 3}, batch_normalisation = ", value,
                     "}\n  out = nm.Perceptron{out, 3, batch_normalisation = ", value, "}"));
    ASSERT_TRUE(job.ok()) << value << ": " << job.status();
    EXPECT_EQ(job->model().nodes(1).conv().batch_normalisation(), mode) << value;
    EXPECT_EQ(job->model().nodes(2).perceptron().batch_normalisation(), mode) << value;
  }
  auto bad = JobWithHidden("out = nm.Conv{out, 4, {1, 3, 3}, batch_normalisation = 'tarin'}");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(),
              HasSubstr("nm.Conv argument 'batch_normalisation' must be one of 'train', "
                        "'fadeout', 'predict', got 'tarin'"));
  bad = JobWithHidden("out = nm.Perceptron{out, 4, batch_normalisation = 1}");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("'batch_normalisation' must be 'train'"));
  // 'fadeout' builds, with gradnet_rate 1 (unset); gradnet_rates may be scheduled.
  auto fade = JobWithHidden("out = nm.Conv{out, 4, {1, 3, 3}, batch_normalisation = 'fadeout'}");
  ASSERT_TRUE(fade.ok()) << fade.status();
  EXPECT_FALSE(fade->model().nodes(1).conv().has_gradnet_rate());
  testing::TinyJobOptions o;
  o.hidden = "out = nm.Conv{out, 4, {1, 3, 3}, batch_normalisation = 'fadeout'}";
  auto scheduled = LoadJobSource(
      testing::TinyJobSource(o) + "\nschedules = {gradnet_rates = {updates = {{2000, 0.5}}}}\n",
      "fade.lua");
  ASSERT_TRUE(scheduled.ok()) << scheduled.status();
  EXPECT_EQ(scheduled->training().schedules().at("gradnet_rates").updates().updates(0).value(),
            0.5);
}

std::string KeysOnly(const std::string& extra) {
  std::string source = testing::TinyJobSource({});
  return source.substr(0, source.find("function create_model()")) + extra;
}

TEST(BatchNormJobFile, ModelLoadPathAndArgs) {
  auto job =
      LoadJobSource(KeysOnly("model_load_path = 'models/m.h5'\n"
                             "model_load_args = {lock_trainable_params = 2, replace_bn = 'const',\n"
                             "  unlock_all_params = true, imposed_batch_size = 3,\n"
                             "  imposed_patch_size = {3, 21, 21}}\n"),
                    "tune.lua");
  ASSERT_TRUE(job.ok()) << job.status();
  const v1::ModelLoadArgs& a = job->training().model_load_args();
  EXPECT_EQ(job->training().model_load_path(), "models/m.h5");
  EXPECT_EQ(a.lock_first_n(), 2);
  EXPECT_EQ(a.replace_bn(), "const");
  EXPECT_TRUE(a.unlock_all_params());
  EXPECT_EQ(a.imposed_batch_size(), 3);
  EXPECT_EQ(std::vector<int64_t>(a.imposed_patch_size().begin(), a.imposed_patch_size().end()),
            (std::vector<int64_t>{3, 21, 21}));

  job = LoadJobSource(KeysOnly("model_load_path = 'm.h5'\n"
                               "model_load_args = {lock_trainable_params = {'conv', 'conv1'}}\n"),
                      "tune.lua");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->training().model_load_args().lock_nodes_size(), 2);

  auto bad = LoadJobSource(
      KeysOnly("model_load_path = 'm.h5'\nmodel_load_args = {replace_bn = 'constant'}\n"),
      "tune.lua");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("model_load_args.replace_bn must be one of"));
  bad = LoadJobSource(
      KeysOnly("model_load_path = 'm.h5'\nmodel_load_args = {override_mfp_to_active = true}\n"),
      "tune.lua");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("max-fragment-pooling is for prediction"));
  // Both a model file and create_model(): ambiguous.
  bad = LoadJobSource(testing::TinyJobSource({}) + "model_load_path = 'm.h5'\n", "both.lua");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("both model_load_path and create_model()"));
  // Neither: create_model is still required.
  bad = LoadJobSource(KeysOnly(""), "none.lua");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("missing required key create_model"));
}

}  // namespace
}  // namespace elektronn
