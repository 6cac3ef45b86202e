// Job files with the recurrent family's nm functions (GRU, LSTM, ValueNode, InitialState_like)
// and Softmax(n_indep): ELEKTRONN2's signatures, default names and argument errors; a one-step
// model shaped like §9.6 gru.py's head runs forward and backward.
#include <gtest/gtest.h>

#include <string>

#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "engine/graph/network.h"
#include "engine/lua/job_file.h"
#include "kernels/backend.h"
#include "tests/support/nm_job.h"

namespace elektronn {
namespace {

// MODEL is the body of create_model after `inp` (b, f=5).
constexpr const char* kCreateModel = R"(  local inp = nm.Input{{None, 5}, 'b,f', name = 'raw'}
  MODEL
)";

absl::StatusOr<v1::JobSpec> Load(const std::string& model) {
  return LoadJobSource(testing::NmTestJob(absl::StrReplaceAll(kCreateModel, {{"MODEL", model}}), 2),
                       "job.lua");
}

const v1::NodeSpec& N(const v1::JobSpec& job, const std::string& name) {
  return testing::NodeNamed(job, name);
}

std::string ErrorOf(const std::string& model) {
  auto job = Load(model);
  EXPECT_FALSE(job.ok()) << model;
  return job.ok() ? "" : std::string(job.status().message());
}

// gru.py's head on one step: GRU -> Perceptron(2*n, 'lin') -> Softmax(n_indep = n) ->
// MultinoulliNLL with a ValueNode of class weights; Errors for monitoring.
constexpr const char* kGruHead = R"(
  local mem = nm.InitialState_like{inp, override_f = 6,
                                   init_kwargs = {mode = 'fix-uni', scale = 0.1}}
  local gru = nm.GRU{inp, mem, 6}
  local out = nm.Perceptron{gru, 2 * 4, 'lin'}
  out = nm.Softmax{out, n_indep = 4}
  local target = nm.Input_like{out, override_f = 4, name = 'target'}
  local weights = nm.ValueNode{{2}, 'f', value = {0.2, 1.8}}
  local loss = nm.MultinoulliNLL{out, target, name = 'nll', target_is_sparse = true,
                                 class_weights = weights}
  loss = nm.AggregateLoss{loss}
  local errors = nm.Errors{out, target, target_is_sparse = true}
  return nm.designate_nodes{input_node = inp, target_node = target, loss_node = loss,
                            prediction_node = out, prediction_ext = {loss, errors, out}}
)";

TEST(NmRecurrent, EveryFunctionWithDefaultNamesAndArguments) {
  auto job = Load(R"(
  local mem = nm.InitialState_like{inp, 3}
  local g = nm.GRU{inp, mem, 3, print_repr = false}
  local g2 = nm.GRU{parent = g, memory_state = mem, n_f = 3, activation_func = 'relu',
                    batch_normalisation = false, dropout_rate = 0, flatten = false}
  local mem2 = nm.InitialState_like{inp, override_f = 8, dtype = 'float32',
                                    init_kwargs = {mode = 'const', scale = 0.5}}
  local l = nm.LSTM{inp, mem2, 4, 'sigmoid'}
  local v = nm.ValueNode{{2, 3}, 'b,f', value = {1, 2, 3, 4, 5, 6}}
  local vt = nm.ValueNode{{1, 4}, 'b,f', apply_train = true,
                          init_kwargs = {mode = 'fix-uni', scale = 0.2}, name = 'vt'}
  local v0 = nm.ValueNode{{3}, 'f', value = 0.5}
  local t = nm.Input_like{g2, name = 'target'}
  local loss = nm.SquaredLoss{g2, t}
  return nm.designate_nodes{input_node = inp, target_node = t, loss_node = loss,
                            prediction_node = g2}
)");
  ASSERT_TRUE(job.ok()) << job.status();
  const v1::JobSpec& j = *job;
  EXPECT_EQ(absl::StrJoin(N(j, "gru").inputs(), ","), "raw,initial_state");
  EXPECT_EQ(N(j, "gru").gru().n_f(), 3);
  EXPECT_EQ(N(j, "gru").gru().activation(), v1::TANH);  // ELEKTRONN2's default
  EXPECT_EQ(absl::StrJoin(N(j, "gru1").inputs(), ","), "gru,initial_state");
  EXPECT_EQ(N(j, "gru1").gru().activation(), v1::RELU);
  EXPECT_EQ(N(j, "initial_state").initial_state().override_f(), 3);
  EXPECT_FALSE(N(j, "initial_state").initial_state().has_init());
  EXPECT_EQ(N(j, "initial_state1").initial_state().init().mode(), v1::VALUE_INIT_CONST);
  EXPECT_FLOAT_EQ(N(j, "initial_state1").initial_state().init().scale(), 0.5f);
  EXPECT_EQ(absl::StrJoin(N(j, "lstm").inputs(), ","), "raw,initial_state1");
  EXPECT_EQ(N(j, "lstm").lstm().n_f(), 4);
  EXPECT_EQ(N(j, "lstm").lstm().activation(), v1::SIGMOID);
  const v1::ValueOp& v = N(j, "value_state").value_node();
  EXPECT_EQ(absl::StrJoin(v.shape(), ","), "2,3");
  EXPECT_EQ(v.tags(), "b,f");
  EXPECT_FALSE(v.apply_train());
  EXPECT_EQ(absl::StrJoin(v.value(), ","), "1,2,3,4,5,6");
  EXPECT_TRUE(N(j, "vt").value_node().apply_train());
  EXPECT_EQ(N(j, "vt").value_node().init().mode(), v1::VALUE_INIT_FIX_UNI);
  EXPECT_EQ(absl::StrJoin(N(j, "value_state1").value_node().value(), ","), "0.5,0.5,0.5");
}

TEST(NmRecurrent, GruHeadWithIndependentSoftmaxesRunsForwardAndBackward) {
  auto job = Load(kGruHead);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(N(*job, "softmax").softmax().n_indep(), 4);
  EXPECT_EQ(absl::StrJoin(N(*job, "nll").inputs(), ","), "softmax,target,value_state");
  auto backend = kernels::CreateCpuBackend();
  NetworkOptions o;
  o.batch_size = 3;
  auto net = Network::Create(job->model(), backend.get(), o);
  ASSERT_TRUE(net.ok()) << net.status();
  std::vector<float> raw(15, 0.3f), target = {0, 1, 1, 0, 1, 0, 0, 0, 1, 1, 1, 1};
  ASSERT_TRUE((*net)->SetInput("raw", raw).ok());
  ASSERT_TRUE((*net)->SetInput("target", target).ok());
  ASSERT_TRUE((*net)->Forward().ok());
  ASSERT_TRUE((*net)->Backward().ok());
  auto probs = (*net)->Output("softmax");
  ASSERT_TRUE(probs.ok());
  ASSERT_EQ(probs->size(), 24u);
  for (size_t g = 0; g < 12; ++g) {  // each of the 4 groups per row is a 2-class distribution
    EXPECT_NEAR((*probs)[2 * g] + (*probs)[2 * g + 1], 1.f, 1e-6) << "group " << g;
  }
  auto loss = (*net)->Scalar("total_loss");
  ASSERT_TRUE(loss.ok());
  EXPECT_GT(*loss, 0.f);
  bool any_grad = false;  // the GRU's weights receive a gradient through the whole head
  for (float x : (*net)->ParamGrad(**(*net)->FindParam("gru", "w"))) any_grad |= x != 0.f;
  EXPECT_TRUE(any_grad);
}

TEST(NmRecurrent, ArgumentErrorsNameTheArgument) {
  auto has = [](const std::string& model, const std::string& what) {
    const std::string e = ErrorOf(model);
    EXPECT_NE(e.find(what), std::string::npos) << "error: " << e << "\nexpected: " << what;
  };
  const std::string mem = "local mem = nm.InitialState_like{inp, 4}\n";
  has(mem + "nm.GRU{inp, mem, 4, dropout_rate = 0.5}",
      "nm.GRU argument 'dropout_rate' is not supported: ELEKTRONN2 raises NotImplementedError");
  has(mem + "nm.GRU{inp, mem, 4, batch_normalisation = 'train'}",
      "nm.GRU argument 'batch_normalisation' is not supported");
  has(mem + "nm.GRU{inp, mem, 4, flatten = true}", "nm.GRU argument 'flatten' is not supported");
  has(mem + "nm.GRU{inp, mem, 4, w = 1}", "nm.GRU argument 'w' is not supported");
  has(mem + "nm.GRU{inp, mem, 4, activation_func = 'prelu'}",
      "nm.GRU argument 'activation_func' 'prelu' is not supported by recurrent cells");
  has(mem + "nm.GRU{inp, mem, 4, activation_func = 'maxout 2'}",
      "nm.GRU argument 'activation_func' 'maxout' is not supported by recurrent cells");
  has(mem + "nm.LSTM{inp, mem}", "missing argument 'n_f'");
  has(mem + "nm.GRU{inp, 'mem', 4}",
      "nm.GRU argument 'memory_state' must be a node (the result of an nm function), got "
      "string 'mem'");
  has(mem + "nm.LSTM{inp, mem, 4}",
      "LSTM 'lstm': memory InitialState_like 'initial_state' has "
      "f=4; n_f=4 needs 2*n_f=8");
  has("local seq = nm.Input{{7, None, 5}, 'r,b,f', name = 'seq'}\n" + mem +
          "nm.GRU{seq, nm.InitialState_like{seq, 4}, 4}",
      "GRU 'gru': input Input 'seq' has a recurrence axis 'r'");
  has("nm.ValueNode{{2}, 'f', value = {1, 2, 3}}",
      "nm.ValueNode argument 'value' has 3 entries; shape {2} needs 2");
  has("nm.ValueNode{{2}, 'f', init_kwargs = {mode = 'const', scale = 1}}",
      "nm.ValueNode argument 'init_kwargs' needs apply_train = true");
  has("nm.ValueNode{{None, 2}, 'b,f'}", "nm.ValueNode argument 'shape'");
  has("nm.ValueNode{{2}}", "missing argument 'tags'");
  has("nm.InitialState_like{inp, 4, init_kwargs = {mode = 'ortho'}}",
      "nm.InitialState_like argument 'init_kwargs' entry 'mode' must be 'const' or 'fix-uni'");
  has("nm.InitialState_like{inp, 4, init_kwargs = {mode = 'const', sclae = 1}}",
      "nm.InitialState_like argument 'init_kwargs' takes the entries 'mode' and 'scale' only, "
      "got the key string 'sclae'");
  has("nm.InitialState_like{inp, 4, init_kwargs = {mode = 'fix-uni', scale = -1}}",
      "entry 'scale' must be >= 0 for 'fix-uni', got -1");
  has("nm.InitialState_like{inp, 0}",
      "nm.InitialState_like argument 'override_f' must be at "
      "least 1, got 0");
  has("nm.InitialState_like{inp, 4, init_kwargs = 3}",
      "nm.InitialState_like argument 'init_kwargs' must be a table");
}

}  // namespace
}  // namespace elektronn
