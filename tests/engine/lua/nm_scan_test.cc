// nm.Scan (issue 15): the step nodes move out of the recorded model into the Scan, the model
// built from the job file runs, and every misuse is an error naming the node and argument.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/str_replace.h"
#include "engine/graph/network.h"
#include "engine/graph/one_step.h"
#include "engine/lua/job_file.h"
#include "tests/engine/gradient_checker.h"
#include "tests/support/nm_job.h"

namespace elektronn {
namespace {

using testing::CheckGradients;
using ::testing::ElementsAre;
using testing::GradientCheckOptions;
using testing::GradientCheckReport;
using ::testing::HasSubstr;

// MODEL builds the recurrence and leaves the Scan in `out`. The memory is an Input_like of the
// step input, the way ELEKTRONN2's gru.py takes InitialState_like{inp0, override_f = ...}.
constexpr const char* kCreateModel = R"(  local inp = nm.Input{{5, 2, 3}, 'r,b,f', name = 'inp'}
  local inp0 = nm.Input{{2, 3}, 'b,f', name = 'inp0'}
  local c = nm.Input{{2, 2}, 'b,f', name = 'c'}
  local mem_0 = nm.Input_like{inp0, override_f = 4, name = 'mem_0'}
  local out
  MODEL
  local pred = nm.Perceptron{out, 2, activation_func = 'lin', name = 'pred'}
  local probs = nm.Softmax{pred}
  local target = nm.Input_like{probs, override_f = 1, name = 'target'}
  local nll = nm.MultinoulliNLL{probs, target, target_is_sparse = true}
  local loss = nm.AggregateLoss{nll, name = 'loss'}
  return nm.designate_nodes{input_node = inp, target_node = target, loss_node = loss,
                            prediction_node = probs}
)";

constexpr const char* kElman = R"(local cat = nm.Concat{{inp0, mem_0, c}, name = 'cat'}
  local cell = nm.Perceptron{cat, 4, activation_func = 'tanh', name = 'cell'}
  out = nm.Scan{cell, in_memory = mem_0, in_iterate = inp, in_iterate_0 = inp0,
                last_only = true})";

std::string Job(const std::string& model) {
  return testing::NmTestJob(absl::StrReplaceAll(kCreateModel, {{"MODEL", model}}), 2);
}

v1::ModelSpec ModelOf(const std::string& model) {
  auto job = LoadJobSource(Job(model), "job.lua");
  EXPECT_TRUE(job.ok()) << job.status() << "\n" << model;
  return job.ok() ? job->model() : v1::ModelSpec();
}

std::string ErrorOf(const std::string& model) {
  auto job = LoadJobSource(Job(model), "job.lua");
  EXPECT_FALSE(job.ok()) << "accepted:\n" << model;
  return job.ok() ? "" : std::string(job.status().message());
}

std::vector<std::string> Names(const google::protobuf::RepeatedPtrField<v1::NodeSpec>& nodes) {
  std::vector<std::string> out;
  for (const auto& n : nodes) out.push_back(n.name());
  return out;
}

TEST(ScanJobFile, MovesTheStepNodesIntoTheScan) {
  const v1::ModelSpec m = ModelOf(kElman);
  // inp0 stays outside only because mem_0 reads its shape: as the sequence's first slice.
  EXPECT_THAT(Names(m.nodes()), ElementsAre("inp", "inp0", "c", "mem_0", "scan", "pred", "softmax",
                                            "target", "nll", "loss"));
  EXPECT_TRUE(m.nodes(1).has_slice());
  EXPECT_EQ(m.nodes(1).inputs(0), "inp");
  const v1::NodeSpec& scan = m.nodes(4);
  ASSERT_TRUE(scan.has_scan());
  EXPECT_THAT(scan.inputs(), ElementsAre("inp", "mem_0", "c"));
  EXPECT_THAT(Names(scan.scan().step_nodes()), ElementsAre("cat", "cell"));
  EXPECT_THAT(scan.scan().in_iterate_0(), ElementsAre("inp0"));
  EXPECT_THAT(scan.scan().in_memory(), ElementsAre("mem_0"));
  EXPECT_THAT(scan.scan().out_memory(), ElementsAre("cell"));
  EXPECT_THAT(scan.scan().constants(), ElementsAre("c"));
  EXPECT_EQ(scan.scan().step_result(), "cell");
  EXPECT_TRUE(scan.scan().last_only());
  EXPECT_EQ(scan.scan().n_steps(), 0);  // the 'r' size of inp
  auto g = Graph::Create(m);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ((*g)->Find("scan")->shape().ToString(), (*g)->Find("mem_0")->shape().ToString());
  // The parameters keep the step nodes' names.
  static std::unique_ptr<kernels::Backend> cpu = kernels::CreateCpuBackend();
  auto net = Network::Create(m, cpu.get());
  ASSERT_TRUE(net.ok()) << net.status();
  EXPECT_TRUE((*net)->FindParam("cell", "w").ok());
  ASSERT_TRUE((*net)->Forward().ok());
  ASSERT_TRUE((*net)->Backward().ok());
  // ... and the one-step model has the step's inputs.
  auto one = OneStepModel(m);
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_THAT(Names(one->nodes()), ElementsAre("inp0", "c", "mem_0", "cat", "cell", "pred",
                                               "softmax", "target", "nll", "loss"));
  EXPECT_TRUE(one->nodes(0).has_input());
  EXPECT_TRUE(one->nodes(2).has_input());
  EXPECT_EQ(one->designations().input_node(), "inp0");
}

TEST(ScanJobFile, StepResultBesideTheMemoryAndAStepInputNobodyElseReads) {
  const v1::ModelSpec m = ModelOf(R"(local mem = nm.Input{{2, 4}, 'b,f', name = 'mem'}
  local cell = nm.Perceptron{nm.Concat{{inp0, mem}}, 4, activation_func = 'tanh', name = 'cell'}
  local y = nm.Perceptron{cell, 3, activation_func = 'sigmoid', name = 'y'}
  local late = nm.Input{{2, 4}, 'b,f', name = 'late'}
  out = nm.Scan{y, in_memory = mem, out_memory = cell, in_iterate = inp, in_iterate_0 = inp0,
                n_steps = 5, unroll_scan = false}
  nm.Perceptron{late, 2, name = 'reads_late'})");
  // inp0 is read by mem_0 (an outer node), so it stays as a slice; 'mem' is the initial state.
  const v1::NodeSpec* scan = nullptr;
  for (const auto& n : m.nodes())
    if (n.has_scan()) scan = &n;
  ASSERT_NE(scan, nullptr);
  EXPECT_THAT(Names(scan->scan().step_nodes()), ElementsAre("concat", "cell", "y"));
  EXPECT_THAT(scan->scan().out_memory(), ElementsAre("cell"));
  EXPECT_EQ(scan->scan().step_result(), "y");
  EXPECT_FALSE(scan->scan().unroll_scan());
  // A handle made before the Scan still names its node after the step nodes left the model.
  for (const auto& n : m.nodes())
    if (n.name() == "reads_late") EXPECT_THAT(n.inputs(), ElementsAre("late"));
  auto g = Graph::Create(m);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ((*g)->Find("scan")->shape().tags_string(), "r,b,f");
  EXPECT_EQ((*g)->Find("scan")->shape().size(0), 5);
}

// ELEKTRONN2's gru.py and lstm.py, at a small size: the cell reads the InitialState_like, which
// is also the in_memory; outside, the Scan starts from it and its `value` trains through the
// memory gradient of the first step.
TEST(ScanJobFile, Elektronn2RecurrentExamplesRecordAndDifferentiate) {
  for (const std::string cell : {"nm.GRU{inp0, mem_0, 6}", "nm.LSTM{inp0, mem_0, 3}"}) {
    const std::string job = absl::StrReplaceAll(R"(save_path = '/tmp/elk'
n_steps = 10
max_runtime = 60
history_freq = 5
monitor_batch_size = 2
optimiser = 'SGD'
optimiser_params = {lr = 0.01, mom = 0.9}
batch_size = 2
data_class = 'PianoRollData'
function create_model()
  local inp = nm.Input{{4, 2, 5}, 'r,b,f', name = 'inp'}
  local inp0 = nm.Input{{2, 5}, 'b,f', name = 'inp0'}
  local mem_0 = nm.InitialState_like{inp0, override_f = 6, name = 'mem_0',
                                     init_kwargs = {mode = 'fix-uni', scale = 0.5}}
  local cell = CELL
  local scan = nm.Scan{cell, in_memory = mem_0, in_iterate = inp, in_iterate_0 = inp0,
                       n_steps = 4, last_only = true}
  local out = nm.Perceptron{scan, 10, activation_func = 'lin', name = 'out'}
  local probs = nm.Softmax{out, n_indep = 5}
  local target = nm.Input_like{probs, override_f = 5, name = 'target'}
  local loss = nm.AggregateLoss{nm.MultinoulliNLL{probs, target, target_is_sparse = true},
                                name = 'loss'}
  return nm.designate_nodes{input_node = inp, target_node = target, loss_node = loss,
                            prediction_node = probs}
end
)",
                                                {{"CELL", cell}});
    auto spec = LoadJobSource(job, "job.lua");
    ASSERT_TRUE(spec.ok()) << cell << ": " << spec.status();
    const v1::ModelSpec& m = spec->model();
    EXPECT_THAT(Names(m.nodes()), ElementsAre("inp", "inp0", "mem_0", "scan", "out", "softmax",
                                              "target", "nll", "loss"))
        << cell;
    GradientCheckOptions opt;
    opt.output = "scan";
    opt.wrt_inputs = {"inp"};
    GradientCheckReport report;
    absl::Status s = CheckGradients(m, opt, &report);
    std::string lines;
    for (const auto& l : report.lines) lines += "  " + l + "\n";
    EXPECT_TRUE(s.ok()) << cell << ": " << s << "\n" << lines;
    EXPECT_THAT(lines, HasSubstr("param mem_0/value")) << lines;
  }
}

TEST(ScanJobFile, MisuseIsAnError) {
  const std::string cell = R"(local cat = nm.Concat{{inp0, mem_0}, name = 'cat'}
  local cell = nm.Perceptron{cat, 4, activation_func = 'tanh', name = 'cell'}
  )";
  EXPECT_THAT(ErrorOf(cell + "out = nm.Scan{cell, in_memory = mem_0, in_iterate = inp}"),
              HasSubstr("nm.Scan: give both in_iterate (the sequences) and in_iterate_0"));
  EXPECT_THAT(ErrorOf(cell + "out = nm.Scan{cell, in_memory = mem_0, in_iterate = inp, "
                             "in_iterate_0 = inp0, n_steps = 7}"),
              HasSubstr("Scan 'scan': n_steps=7 but iterated input 'inp' has r=5"));
  EXPECT_THAT(ErrorOf(cell + "out = nm.Scan{cell, in_memory = mem_0, in_iterate = c, "
                             "in_iterate_0 = inp0}"),
              HasSubstr("nm.Scan argument 'in_iterate' 'c' has tags \"b,f\"; a sequence needs a "
                        "leading recurrence axis 'r'"));
  EXPECT_THAT(ErrorOf(R"(local cell = nm.Perceptron{nm.Concat{{inp0, mem_0}}, 5}
  out = nm.Scan{cell, in_memory = mem_0, in_iterate = inp, in_iterate_0 = inp0})"),
              HasSubstr("Scan 'scan': out_memory 'dot' has shape [(2,b), (5,f)] but in_memory "
                        "'mem_0' has [(2,b), (4,f)]; a memory must keep its shape"));
  EXPECT_THAT(ErrorOf(R"(local cell = nm.Perceptron{inp0, 4}
  out = nm.Scan{cell, in_memory = mem_0, in_iterate = inp, in_iterate_0 = inp0})"),
              HasSubstr("placeholder 'mem_0' is not an ancestor of step_result 'dot'"));
  EXPECT_THAT(ErrorOf(R"(local cell = nm.Perceptron{c, 4}
  out = nm.Scan{cell, in_memory = mem_0, in_iterate = inp, in_iterate_0 = inp0})"),
              HasSubstr("'dot' (step_result or out_memory) does not depend on any "
                        "in_memory or in_iterate_0 node ('mem_0', 'inp0')"));
  EXPECT_THAT(ErrorOf(cell + R"(local side = nm.Perceptron{cell, 2, name = 'side'}
  out = nm.Scan{cell, in_memory = mem_0, in_iterate = inp, in_iterate_0 = inp0})"),
              HasSubstr("node 'side' reads step node 'cell' but leads to neither step_result "
                        "'cell' nor an out_memory"));
  EXPECT_THAT(ErrorOf(cell + R"(out = nm.Scan{cell, in_memory = mem_0, in_iterate = inp,
                in_iterate_0 = inp0}
  out = nm.Perceptron{cell, 3})"),
              HasSubstr("job.lua:20: node 'cell' is part of the step graph of Scan 'scan' and "
                        "exists only inside it"));
  EXPECT_THAT(ErrorOf(cell + "out = nm.Scan{{cell, cat}, in_memory = mem_0}"),
              HasSubstr("nm.Scan argument 'step_result' must be one node"));
  EXPECT_THAT(ErrorOf(cell + "out = nm.Scan{cell, in_memory = {mem_0, c}, n_steps = 2}"),
              HasSubstr("nm.Scan argument 'out_memory' is needed with 2 in_memory nodes"));
  EXPECT_THAT(ErrorOf(cell + "out = nm.Scan{cell, in_memory = mem_0, n_step = 3}"),
              HasSubstr("unknown argument 'n_step' (did you mean 'n_steps'?)"));
  EXPECT_THAT(ErrorOf(cell + "out = nm.Scan{cell, in_memory = mem_0}"),
              HasSubstr("nm.Scan argument 'n_steps' is needed when nothing is iterated"));
  EXPECT_THAT(ErrorOf(R"(local x0 = nm.Input{{2, 5}, 'b,f', name = 'x0'}
  local cell = nm.Perceptron{nm.Concat{{x0, mem_0}}, 4}
  out = nm.Scan{cell, in_memory = mem_0, in_iterate = inp, in_iterate_0 = x0})"),
              HasSubstr("nm.Scan argument 'in_iterate_0' 'x0' has shape [(2,b), (5,f)], but "
                        "in_iterate 'inp' has [(5,r), (2,b), (3,f)]: in_iterate_0 must be one "
                        "step of it"));
}

}  // namespace
}  // namespace elektronn
