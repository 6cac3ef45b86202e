// Job-file functions of the structural family (issue 11): what each records and its errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "engine/graph/graph.h"
#include "engine/lua/job_file.h"
#include "tests/support/nm_job.h"

namespace elektronn {
namespace {

using ::testing::HasSubstr;

// MODEL goes after `out` = (None, 4, 12, 12) 'b,f,x,y' and must leave a node in `out`.
constexpr const char* kCreateModel =
    R"(  local inp = nm.Input{{None, 1, 26, 26}, 'b,f,x,y', name = 'raw'}
  local out = nm.Conv{inp, 4, {3, 3}, {2, 2}}
  MODEL
  out = nm.Perceptron{out, 10, activation_func = 'lin', flatten = true}
  local probs = nm.Softmax{out}
  local target = nm.Input_like{probs, override_f = 1, name = 'target'}
  local nll = nm.MultinoulliNLL{probs, target, target_is_sparse = true}
  local loss = nm.AggregateLoss{nll, name = 'loss'}
  return nm.designate_nodes{input_node = inp, target_node = target, loss_node = loss,
                            prediction_node = probs}
)";

std::string Job(const std::string& model) {
  return testing::NmTestJob(absl::StrReplaceAll(kCreateModel, {{"MODEL", model}}), 2);
}

v1::ModelSpec ModelOf(const std::string& model) {
  auto job = LoadJobSource(Job(model), "job.lua");
  EXPECT_TRUE(job.ok()) << job.status() << "\n" << model;
  return job.ok() ? job->model() : v1::ModelSpec();
}

const v1::NodeSpec* Find(const v1::ModelSpec& m, const std::string& name) {
  for (const auto& n : m.nodes())
    if (n.name() == name) return &n;
  ADD_FAILURE() << "no node " << name;
  static const v1::NodeSpec kEmpty;
  return &kEmpty;
}

std::string ErrorOf(const std::string& model) {
  auto job = LoadJobSource(Job(model), "job.lua");
  EXPECT_FALSE(job.ok()) << "accepted:\n" << model;
  return job.ok() ? "" : std::string(job.status().message());
}

TEST(StructuralJobFile, SplitReturnsEveryPiece) {
  v1::ModelSpec m = ModelOf(R"(local a, b = nm.split{out, n_out = 2}
  local c, d, e = nm.split{out, 'f', {1, 3}, name = {'p', 'q', 'r'}}
  out = nm.Concat{{a, b, c, d, e}})");
  EXPECT_EQ(Find(m, "split")->slice().start(), 0);
  EXPECT_EQ(Find(m, "split1")->slice().start(), 2);
  EXPECT_EQ(Find(m, "split1")->slice().size(), 2);
  EXPECT_EQ(Find(m, "q")->slice().start(), 1);
  EXPECT_EQ(Find(m, "q")->slice().size(), 2);
  EXPECT_EQ(Find(m, "r")->slice().size(), 1);
  auto g = Graph::Create(m);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ((*g)->Find("concat")->shape().SizeOf('f'), 8);
}

TEST(StructuralJobFile, EveryFunctionRecordsItsNode) {
  v1::ModelSpec m = ModelOf(R"(local r = nm.Reshape{out, {None, 2, 24, 12}}
  r = nm.Reshape{r, {None, 4, 12, 12}, name = 'back'}
  local p = nm.Pad{r, {1, 1}, value = 0.5}
  p = nm.Crop{p, {1, 1}}
  local mm = nm.MultMerge{p, out}
  local fm = nm.FaithlessMerge{mm, out, failing_prob = 0.3, hardeasy_ratio = 0.6}
  local l = nm.LRN{fm, {3, 3}, alpha = 0.01}
  local lc = nm.LRN{l, 3, mode = 'channel', beta = 0.5, name = 'lrn_c'}
  local s = nm.ApplyFunc{lc, 'scale', {2}}
  local c = nm.ApplyFunc{s, 'clip', {-1, 1}, name = 'clipped'}
  local mu = nm.ApplyFunc{c, 'selu', name = 'mu'}
  local rv = nm.GaussianRV{mu, nm.ApplyFunc{c, 'mean', name = 'avg'} and c}
  local prior = nm.GaussianAEVBPrior{rv}
  out = nm.Add{rv, prior})");
  EXPECT_EQ(Find(m, "reshape")->reshape().shape(0), -1);
  EXPECT_EQ(Find(m, "pad")->pad().value(), 0.5f);
  EXPECT_TRUE(Find(m, "multmerge")->has_mult_merge());
  EXPECT_FLOAT_EQ(Find(m, "faithless_merge")->faithless_merge().failing_prob(), 0.3f);
  EXPECT_EQ(Find(m, "lrn")->lrn().filter_shape_size(), 2);
  EXPECT_EQ(Find(m, "lrn_c")->lrn().mode(), v1::LRN_CHANNEL);
  EXPECT_EQ(Find(m, "apply")->apply_func().function(), v1::APPLY_AFFINE);
  EXPECT_EQ(Find(m, "apply")->apply_func().a(), 2.f);
  EXPECT_EQ(Find(m, "clipped")->apply_func().b(), 1.f);
  EXPECT_EQ(Find(m, "mu")->activation().activation(), v1::SELU);
  EXPECT_EQ(Find(m, "avg")->apply_func().function(), v1::APPLY_MEAN);
  const v1::NodeSpec* prior = Find(m, "prior");
  ASSERT_EQ(prior->inputs_size(), 2);
  EXPECT_EQ(prior->inputs(0), "mu");
  EXPECT_EQ(prior->inputs(1), "clipped");
}

// ApplyFunc's kwargs (ELEKTRONN2 calls functor(x, *args, **kwargs)): each functor's arguments
// by name, alone or after positional ones, give the same node as args.
TEST(StructuralJobFile, ApplyFuncKeywordArguments) {
  v1::ModelSpec m = ModelOf(R"(local a = nm.ApplyFunc{out, 'clip', kwargs = {max = 2, min = -1}}
  local b = nm.ApplyFunc{a, 'clip', {-1}, kwargs = {max = 2}, name = 'mixed'}
  local c = nm.ApplyFunc{b, 'affine', kwargs = {b = 0.5, a = 3}, name = 'aff'}
  local d = nm.ApplyFunc{c, 'add', kwargs = {shift = 4}, name = 'shifted'}
  local e = nm.ApplyFunc{d, 'pow', kwargs = {p = 2}, name = 'powered'}
  local f = nm.ApplyFunc{e, 'scale', kwargs = {factor = 0.25}, name = 'scaled'}
  out = nm.ApplyFunc{f, 'tanh', kwargs = {}, name = 'th'})");
  for (const char* clip : {"apply", "mixed"}) {
    SCOPED_TRACE(clip);
    EXPECT_EQ(Find(m, clip)->apply_func().function(), v1::APPLY_CLIP);
    EXPECT_EQ(Find(m, clip)->apply_func().a(), -1.f);
    EXPECT_EQ(Find(m, clip)->apply_func().b(), 2.f);
  }
  EXPECT_EQ(Find(m, "aff")->apply_func().a(), 3.f);
  EXPECT_EQ(Find(m, "aff")->apply_func().b(), 0.5f);
  EXPECT_EQ(Find(m, "shifted")->apply_func().a(), 1.f);
  EXPECT_EQ(Find(m, "shifted")->apply_func().b(), 4.f);
  EXPECT_EQ(Find(m, "powered")->apply_func().function(), v1::APPLY_POW);
  EXPECT_EQ(Find(m, "powered")->apply_func().a(), 2.f);
  EXPECT_EQ(Find(m, "scaled")->apply_func().a(), 0.25f);
  EXPECT_EQ(Find(m, "th")->activation().activation(), v1::TANH);
}

// 'maxout <k>' on a layer records the linear layer "<name>_lin" and a Maxout node named <name>.
TEST(StructuralJobFile, MaxoutActivationRecordsLinearLayerAndMaxout) {
  v1::ModelSpec m =
      ModelOf(R"(out = nm.Conv{out, 6, {3, 3}, activation_func = 'maxout 3', name = 'mc'}
  out = nm.Perceptron{out, 4, activation_func = 'maxout2', name = 'mp'}
  out = nm.Activation{out, 'maxout 2', name = 'ma'}
  out = nm.Conv{out, 2, {1, 1}, activation_func = 'radius'})");
  EXPECT_EQ(Find(m, "mc_lin")->conv().activation(), v1::LIN);
  EXPECT_EQ(Find(m, "mc")->maxout().k(), 3);
  EXPECT_EQ(Find(m, "mc")->inputs(0), "mc_lin");
  EXPECT_EQ(Find(m, "mp_lin")->perceptron().activation(), v1::LIN);
  EXPECT_EQ(Find(m, "mp")->maxout().k(), 2);
  EXPECT_EQ(Find(m, "ma")->maxout().k(), 2);
  EXPECT_EQ(Find(m, "conv1")->conv().activation(), v1::RADIUS);
  auto g = Graph::Create(m);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ((*g)->Find("mc")->shape().SizeOf('f'), 2);
  EXPECT_EQ((*g)->Find("ma")->shape().SizeOf('f'), 1);
}

TEST(StructuralJobFile, ErrorsNameFunctionArgumentAndValue) {
  EXPECT_THAT(ErrorOf("out = nm.ApplyFunc{out, 'cube'}"),
              HasSubstr("nm.ApplyFunc argument 'functor' 'cube' is not a function this engine"));
  EXPECT_THAT(ErrorOf("out = nm.ApplyFunc{out, 'clip', {1}}"),
              HasSubstr("nm.ApplyFunc: 'clip' needs its argument 'max' ({min, max})"));
  EXPECT_THAT(ErrorOf("out = nm.ApplyFunc{out, 'clip', {1, 2, 3}}"),
              HasSubstr("nm.ApplyFunc argument 'args' must hold at most 2 number(s) for 'clip'"));
  EXPECT_THAT(ErrorOf("out = nm.ApplyFunc{out, 'tanh', kwargs = {x = 1}}"),
              HasSubstr("nm.ApplyFunc argument 'kwargs' must be empty for the activation 'tanh'"));
  EXPECT_THAT(ErrorOf("out = nm.ApplyFunc{out, 'clip', kwargs = {min = 0, maxx = 1}}"),
              HasSubstr("nm.ApplyFunc argument 'kwargs' has 'maxx' (did you mean 'max'?)"));
  EXPECT_THAT(ErrorOf("out = nm.ApplyFunc{out, 'clip', {0, 1}, kwargs = {min = 0}}"),
              HasSubstr("gives 'min' for 'clip' a second time"));
  EXPECT_THAT(ErrorOf("out = nm.ApplyFunc{out, 'pow', kwargs = {p = 'two'}}"),
              HasSubstr("'p' must be a number"));
  EXPECT_THAT(ErrorOf("out = nm.ApplyFunc{out, 'clip', kwargs = {max = 0, min = 1}}"),
              HasSubstr("clip bounds {1, 0} are reversed"));
  EXPECT_THAT(ErrorOf("out = nm.Conv{out, 4, {1, 1}, activation_func = 'maxout'}"),
              HasSubstr("'maxout' needs a positive group size"));
  EXPECT_THAT(ErrorOf("out = nm.Conv{out, 4, {1, 1}, activation_func = 'maxout 3'}"),
              HasSubstr("Maxout 'conv1': maxout 3 needs a channel count divisible by 3"));
  EXPECT_THAT(
      ErrorOf("out = nm.Conv{out, 4, {1, 1}, activation_func = 'maxout 2', dropout_rate = 0.5}"),
      HasSubstr("nm.Conv argument 'dropout_rate' cannot be combined with a 'maxout'"));
  EXPECT_THAT(ErrorOf("local a, b = nm.split{out, n_out = 3}"),
              HasSubstr("nm.split argument 'n_out' 3 does not divide axis 'f' of size 4"));
  EXPECT_THAT(ErrorOf("out = nm.GaussianAEVBPrior{out}"),
              HasSubstr("nm.GaussianAEVBPrior argument 'rv' must be a GaussianRV node"));
  EXPECT_THAT(ErrorOf("out = nm.LRN{out, {2, 3}}"), HasSubstr("must have odd positive entries"));
  EXPECT_THAT(ErrorOf("out = nm.GaussianRV{out}"), HasSubstr("missing argument 'log_sig'"));
  EXPECT_THAT(ErrorOf("out = nm.GenericInput{out}"),
              HasSubstr("nm.GenericInput exists in ELEKTRONN2 but not (yet) in this engine"));
  // The skeleton-tracing agent's nodes are named with the reason they are absent.
  for (const char* skel : {"SkelLoss", "SkelLossRec", "SkelPrior", "SkelGetBatch", "SkelGridUpdate",
                           "StereographicMap"}) {
    EXPECT_THAT(ErrorOf(absl::StrCat("out = nm.", skel, "{out}")),
                AllOf(HasSubstr(absl::StrCat("nm.", skel, " exists in ELEKTRONN2 but not")),
                      HasSubstr("skeleton-tracing agent")))
        << skel;
  }
  // A typo is not one of them: it gets a suggestion instead.
  EXPECT_THAT(ErrorOf("out = nm.Comv{out, 2, {3, 3}}"), HasSubstr("did you mean 'Conv'"));
}

}  // namespace
}  // namespace elektronn
