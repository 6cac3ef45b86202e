// Tests of Lua job files: the examples, the sandbox, error positions, keys and CheckJson.
#include "engine/lua/job_file.h"

#include <gmock/gmock.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "engine/graph/graph.h"
#include "engine/graph/model_builder.h"
#include "tests/support/examples.h"

namespace elektronn {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::HasSubstr;
using ::testing::Not;

// The repository's examples/ folder, found upwards from the working directory or the binary.
using testing::ExamplePath;

// A small valid job; EXTRA is inserted after the keys, MODEL inside create_model.
constexpr const char* kJob = R"(save_path = '/tmp/elk'
n_steps = 10
max_runtime = 60
history_freq = 5
monitor_batch_size = 2
optimiser = 'SGD'
optimiser_params = {lr = 0.01, mom = 0.9}
batch_size = 1
data_class = 'MNISTData'
EXTRA
function create_model()
  local inp = nm.Input{{None, 1, 26, 26}, 'b,f,x,y', name = 'raw'}
  local out = nm.Conv{inp, 4, {3, 3}, {2, 2}}
  MODEL
  out = nm.Perceptron{out, 10, activation_func = 'lin', flatten = true}
  local probs = nm.Softmax{out}
  local target = nm.Input_like{probs, override_f = 1, name = 'target'}
  local nll = nm.MultinoulliNLL{probs, target, target_is_sparse = true}
  local loss = nm.AggregateLoss{nll, name = 'loss'}
  local errors = nm.Errors{probs, target, target_is_sparse = true}
  return nm.designate_nodes{input_node = inp, target_node = target, loss_node = loss,
                            prediction_node = probs, prediction_ext = {loss, errors, probs}}
end
)";

std::string Job(const std::string& extra, const std::string& model = "") {
  return absl::StrReplaceAll(kJob, {{"EXTRA", extra}, {"MODEL", model}});
}

// "job.lua:<line of the first occurrence of `marker`>:"
std::string At(const std::string& source, const std::string& marker) {
  const size_t pos = source.find(marker);
  EXPECT_NE(pos, std::string::npos) << marker;
  return absl::StrCat("job.lua:", 1 + std::count(source.begin(), source.begin() + pos, '\n'), ":");
}

std::string ErrorOf(const std::string& source, JobFileOptions options = {}) {
  auto job = LoadJobSource(source, "job.lua", options);
  EXPECT_FALSE(job.ok()) << "accepted:\n" << source;
  return job.ok() ? "" : std::string(job.status().message());
}

void ExpectSameNodes(const v1::ModelSpec& got, const v1::ModelSpec& want) {
  ASSERT_EQ(got.nodes_size(), want.nodes_size());
  for (int i = 0; i < want.nodes_size(); ++i) {
    EXPECT_TRUE(MessageDifferencer::Equals(got.nodes(i), want.nodes(i)))
        << "node " << i << "\ngot:  " << got.nodes(i).ShortDebugString()
        << "\nwant: " << want.nodes(i).ShortDebugString();
  }
  EXPECT_TRUE(MessageDifferencer::Equals(got.designations(), want.designations()))
      << got.designations().ShortDebugString() << "\n"
      << want.designations().ShortDebugString();
  auto g = Graph::Create(got);
  auto w = Graph::Create(want);
  ASSERT_TRUE(g.ok()) << g.status();
  ASSERT_TRUE(w.ok()) << w.status();
  for (const auto& node : (*w)->nodes()) {
    const Node* mine = (*g)->Find(node->name());
    ASSERT_NE(mine, nullptr) << node->name();
    EXPECT_EQ(mine->shape(), node->shape())
        << node->name() << ": " << mine->shape().ToString() << " vs " << node->shape().ToString();
  }
}

TEST(JobFileTest, Neuro3dMatchesTheBuilderNetwork) {
  auto job = LoadJobFile(ExamplePath("neuro3d.lua"));
  ASSERT_TRUE(job.ok()) << job.status();
  ExpectSameNodes(job->model(), Neuro3dSpec());
  EXPECT_EQ(job->model().name(), "neuro3d");
}

TEST(JobFileTest, Neuro3dLiteMatchesTheBuilderNetwork) {
  auto job = LoadJobFile(ExamplePath("neuro3d_lite.lua"));
  ASSERT_TRUE(job.ok()) << job.status();
  ExpectSameNodes(job->model(), Neuro3dSpec({11, 155, 155}, /*lite=*/true));
}

TEST(JobFileTest, Neuro3dTrainingSettings) {
  const std::string path = ExamplePath("neuro3d.lua");
  auto job = LoadJobFile(path);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->job_file_name(), path);
  EXPECT_THAT(job->job_file_source(), HasSubstr("function create_model()"));
  const v1::TrainingSpec& t = job->training();
  EXPECT_EQ(t.save_path(), "~/elektronn_training/");
  EXPECT_EQ(t.save_name(), "neuro3d");
  EXPECT_EQ(t.n_steps(), 1000000);
  EXPECT_EQ(t.max_runtime(), 7 * 24 * 3600);
  EXPECT_EQ(t.history_freq(), 200);
  EXPECT_EQ(t.monitor_batch_size(), 30);
  EXPECT_EQ(t.optimiser(), "Adam");
  EXPECT_DOUBLE_EQ(t.optimiser_params().learning_rate(), 5e-4);
  EXPECT_DOUBLE_EQ(t.optimiser_params().momentum(), 0.9);
  EXPECT_DOUBLE_EQ(t.optimiser_params().beta2(), 0.999);
  EXPECT_DOUBLE_EQ(t.optimiser_params().weight_decay(), 0.5e-4);
  ASSERT_EQ(t.schedules().count("lr"), 1u);
  EXPECT_DOUBLE_EQ(t.schedules().at("lr").dec(), 0.995);
  EXPECT_EQ(t.batch_size(), 1);
  EXPECT_EQ(t.data_class(), "BatchCreatorImage");
  ASSERT_TRUE(t.has_batch_creator_image());
  const v1::BatchCreatorImageParams& d = t.batch_creator_image();
  EXPECT_EQ(d.d_path(), "demo-data/");
  EXPECT_EQ(d.l_path(), "demo-data/");
  ASSERT_EQ(d.d_files_size(), 3);
  ASSERT_EQ(d.l_files_size(), 3);
  EXPECT_EQ(d.d_files(2).file(), "raw_2.h5");
  EXPECT_EQ(d.d_files(2).key(), "raw");
  EXPECT_EQ(d.l_files(0).file(), "barrier_0.h5");
  EXPECT_EQ(d.l_files(0).key(), "lab");
  EXPECT_THAT(d.valid_cubes(), ::testing::ElementsAre(2));
  EXPECT_DOUBLE_EQ(d.aniso_factor(), 2);
  EXPECT_FALSE(d.xyz_order());
  const v1::DataBatchArgs& b = t.data_batch_args();
  EXPECT_THAT(b.grey_augment_channels(), ::testing::ElementsAre(0));
  EXPECT_DOUBLE_EQ(b.warp(), 0.5);
  EXPECT_TRUE(b.warp_args().has_sample_aniso() && b.warp_args().sample_aniso());
  EXPECT_TRUE(b.warp_args().perspective());
  EXPECT_FALSE(b.warp_args().has_lock_z());
  EXPECT_EQ(t.preview_data_path(), "demo-data/preview.h5");
  EXPECT_EQ(t.preview_data_key(), "");
  EXPECT_THAT(t.preview_kwargs().export_class(), ::testing::ElementsAre(1));
  EXPECT_EQ(t.preview_kwargs().max_z_pred(), 3);
  EXPECT_DOUBLE_EQ(t.initial_prev_h(), 1.0);
  EXPECT_DOUBLE_EQ(t.prev_save_h(), 1.0);
  EXPECT_EQ(t.background_processes(), 2);
}

TEST(JobFileTest, MnistExampleLoads) {
  auto job = LoadJobFile(ExamplePath("mnist.lua"));
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->training().data_class(), "MNISTData");
  EXPECT_TRUE(job->training().has_mnist());
  EXPECT_EQ(job->training().batch_size(), 20);
  auto g = Graph::Create(job->model());
  ASSERT_TRUE(g.ok()) << g.status();
  const Node* probs = (*g)->Find(job->model().designations().prediction_node());
  ASSERT_NE(probs, nullptr);
  EXPECT_EQ(probs->shape().tags_string(), "b,f");
  EXPECT_EQ(probs->shape().SizeOf('f'), 10);
}

TEST(JobFileTest, SmallJobLoads) {
  auto job = LoadJobSource(Job(""), "job.lua");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->model().name(), "job");
  EXPECT_EQ(job->model().designations().error_node(), "errors");
  EXPECT_EQ(job->model().nodes(1).name(), "conv");
}

TEST(JobFileTest, EveryNodeFunctionRecords) {
  std::string printed;
  JobFileOptions o;
  o.print = [&](std::string_view s) { printed += s; };
  auto job = LoadJobSource(Job("", R"(
  local a = nm.Conv{out, 4, 3, conv_mode = 'same', name = 'same', dropout_rate = 0.5}
  local b = nm.Activation{a, 'tanh'}
  local c = nm.ApplyFunc{b, 'abs'}
  local d = nm.Add{c, out}
  local e = nm.Concat{{d, out}, axis = 'f'}
  local f = nm.Crop{e, {1, 1}}
  local g = nm.Pool{f, {2, 2}, mode = 'average'}
  print(f.shape.repr, g.shape.x, g.shape.f, g.shape.strides[1], g.op)
  out = nm.Dot{g, 6, activation_func = 'sigmoid'})"),
                           "job.lua", o);
  ASSERT_TRUE(job.ok()) << job.status();
  std::vector<std::string> names;
  for (const auto& n : job->model().nodes()) names.push_back(n.name());
  EXPECT_THAT(names, ::testing::ElementsAre("raw", "conv", "same", "activation", "apply", "add",
                                            "concat", "crop", "pool", "dot", "dot1", "softmax",
                                            "target", "nll", "loss", "errors"));
  const auto& nodes = job->model().nodes();
  EXPECT_THAT(nodes[2].conv().filter_shape(), ::testing::ElementsAre(3, 3));
  EXPECT_EQ(nodes[2].conv().conv_mode(), v1::SAME);
  EXPECT_FLOAT_EQ(nodes[2].conv().dropout_rate(), 0.5f);
  EXPECT_EQ(nodes[3].activation().activation(), v1::TANH);
  EXPECT_EQ(nodes[4].activation().activation(), v1::ABS);
  EXPECT_THAT(nodes[5].inputs(), ::testing::ElementsAre("apply", "conv"));
  EXPECT_EQ(nodes[6].concat().axis(), "f");
  EXPECT_THAT(nodes[7].crop().crop(), ::testing::ElementsAre(1, 1));
  EXPECT_EQ(nodes[8].pool().mode(), v1::AVERAGE);
  EXPECT_EQ(nodes[9].perceptron().activation(), v1::SIGMOID);
  EXPECT_EQ(nodes[9].perceptron().n_f(), 6);
  EXPECT_THAT(printed, HasSubstr("(10,x), (10,y)"));
  EXPECT_THAT(printed, HasSubstr("\t5\t8\t4\tPool\n"));
}

// --- the sandbox -------------------------------------------------------------------------

TEST(JobFileTest, SandboxRejectsFileAndProcessAccess) {
  for (const std::string call :
       {"io.open('/etc/passwd')", "os.execute('ls')", "require 'lfs'", "dofile('x.lua')",
        "loadfile('x.lua')", "debug.getinfo(1)", "load('return 1')", "package.loadlib('x', 'y')"}) {
    const std::string src = Job("local x = 1\n" + call);
    const std::string name = call.substr(0, call.find_first_of(".( "));
    const std::string msg = ErrorOf(src);
    EXPECT_THAT(msg, HasSubstr(At(src, call))) << call;
    EXPECT_THAT(msg, HasSubstr("job files cannot use " + name +
                               ": the sandbox has no file or "
                               "process access"))
        << msg;
  }
}

TEST(JobFileTest, SandboxForbidsAccessInsideCreateModel) {
  const std::string src = Job("", "os.remove('x')");
  EXPECT_THAT(ErrorOf(src), HasSubstr(At(src, "os.remove") + " job files cannot use os"));
}

TEST(JobFileTest, EndlessLoopIsStopped) {
  const std::string src = Job("local i = 0\nwhile true do i = i + 1 end");
  JobFileOptions small;
  small.max_instructions = 1'000'000;
  const std::string msg = ErrorOf(src, small);
  EXPECT_THAT(msg, HasSubstr(At(src, "while true")));
  EXPECT_THAT(msg, HasSubstr("more than 1000000 Lua instructions (an endless loop?)"));
  // The default limit stops it too (in about a second).
  EXPECT_THAT(ErrorOf(src), HasSubstr("Lua instructions"));
}

TEST(JobFileTest, EndlessLoopCaughtByPcallIsStillStopped) {
  const std::string src = Job("while true do pcall(function() while true do end end) end");
  JobFileOptions small;
  small.max_instructions = 1'000'000;
  EXPECT_THAT(ErrorOf(src, small), HasSubstr("Lua instructions"));
}

// Found by fuzz_job_file: a create_model that calls itself (or loops) kept adding nodes, each
// of which re-inferred the whole model. Shapes are inferred a node at a time now, and the node
// count is capped; both stop in well under a second.
TEST(JobFileTest, RunawayModelIsStopped) {
  const std::string loop = Job("", "for i = 1, 1e9 do out = nm.Conv{out, 4, {1, 1}} end");
  const std::string msg = ErrorOf(loop);
  EXPECT_THAT(msg, HasSubstr(At(loop, "for i = 1")));
  EXPECT_THAT(msg, HasSubstr("nm.Conv: a model may have at most 4096 nodes; is create_model "
                             "looping?"));
  const std::string recursive = Job("", "create_model()");
  EXPECT_THAT(ErrorOf(recursive), HasSubstr("at most 4096 nodes"));
}

TEST(JobFileTest, HugeAllocationIsStopped) {
  JobFileOptions small;
  small.max_bytes = 16 << 20;
  EXPECT_THAT(ErrorOf(Job("local s = string.rep('x', 64 * 1024 * 1024)"), small),
              HasSubstr("job.lua: the job file used more than 16 MiB of memory"));
  EXPECT_THAT(ErrorOf(Job("local t = {}\nfor i = 1, 1e8 do t[i] = i end"), small),
              HasSubstr("more than 16 MiB"));
}

TEST(JobFileTest, CatastrophicPatternIsRefused) {
  const std::string src =
      Job("local s = string.rep('a', 40)\nlocal i = s:find(string.rep('a*', 40) .. 'b')");
  EXPECT_THAT(ErrorOf(src), HasSubstr(At(src, "local i") + " string.find: the pattern 'a*a*"));
  EXPECT_THAT(ErrorOf(src), HasSubstr("the sandbox refuses"));
  // Every quantifier backtracks: '?' doubles the work per item, '*', '+', '-' multiply it by
  // the length. Each of these would run for minutes to centuries; each is refused at once.
  for (const char* hostile :
       {"s:find(('a?'):rep(32)..('a'):rep(32)..'b')", "s:match(('a+'):rep(12)..'b')",
        "s:gsub(('a-'):rep(12)..'b', '')", "for m in s:gmatch(('a*'):rep(12)..'b') do end",
        "s:find(('[a]?'):rep(40)..'b')", "s:find('%f[a]'..('a?'):rep(30)..('a'):rep(30))"}) {
    const std::string job = Job(absl::StrCat("local s = ('a'):rep(32)\n", hostile));
    // In a child with a 10 s alarm: a pattern that is not refused runs for minutes, and the
    // alarm turns that into a failure instead of a hung test.
    EXPECT_EXIT(
        {
          alarm(10);
          const std::string error = ErrorOf(job);
          std::fprintf(stderr, "%s\n", error.c_str());
          std::exit(error.find("the sandbox refuses") != std::string::npos ? 0 : 1);
        },
        ::testing::ExitedWithCode(0), "string\\.")
        << hostile;
  }
  // Linear patterns on long strings are not refused.
  auto long_ok =
      LoadJobSource(Job("local s = ('x y '):rep(1000) .. '12'\nassert(s:match('(%d+)$') == '12')\n"
                        "assert(#s:gsub('%s+', '') == 2002)\nassert(s:find('^x y'))"),
                    "job.lua");
  EXPECT_TRUE(long_ok.ok()) << long_ok.status();
  // Ordinary patterns still work, through the string methods too.
  std::string printed;
  JobFileOptions o;
  o.print = [&](std::string_view s) { printed += s; };
  auto job = LoadJobSource(Job("print(('raw_12.h5'):match('raw_(%d+)%.h5'), "
                               "('a-b'):gsub('-', '_'), ('x.y'):find('.', 1, true))"),
                           "job.lua", o);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(printed, "12\ta_b\t2\t2\n");  // gsub mid-list gives one value
}

TEST(JobFileTest, PrintGoesToTheSink) {
  std::string printed;
  JobFileOptions o;
  o.print = [&](std::string_view s) { printed += s; };
  auto job = LoadJobSource(Job("print('hello', 1)",
                               "print(out.name, out.shape.f, out.shape.tags, #out.shape, "
                               "out.shape[1], out.shape.x, tostring(out))"),
                           "job.lua", o);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_THAT(printed, HasSubstr("hello\t1\n"));
  EXPECT_THAT(printed, HasSubstr("conv\t4\tb,f,x,y\t4\tNone\t12\tConv 'conv'"));
}

// --- error positions ---------------------------------------------------------------------

TEST(JobFileTest, UnknownKeyNamesLineAndSuggestion) {
  const std::string src = Job("n_step = 5");
  EXPECT_EQ(ErrorOf(src), At(src, "n_step =") + " unknown key 'n_step' (did you mean 'n_steps'?)");
}

TEST(JobFileTest, UnknownKeyWithoutSuggestionExplainsLocals) {
  const std::string src = Job("layers = {1, 2}");
  EXPECT_THAT(ErrorOf(src),
              HasSubstr(At(src, "layers") + " unknown key 'layers'; a helper value "
                                            "must be declared local (local layers = ...)"));
}

TEST(JobFileTest, HelpersAreAllowed) {
  // Global functions, locals, and globals assigned inside create_model are not keys.
  auto job = LoadJobSource(Job("local n = 3\nfunction helper(x) return x end", "tmp = helper(out)"),
                           "job.lua");
  EXPECT_TRUE(job.ok()) << job.status();
}

TEST(JobFileTest, WrongTypeNamesLine) {
  std::string src = Job("");
  absl::StrReplaceAll({{"history_freq = 5", "history_freq = 'often'"}}, &src);
  EXPECT_EQ(ErrorOf(src),
            At(src, "history_freq") + " history_freq must be an integer, got string 'often'");
  src = Job("data_batch_args = {warp_args = {lock_z = 1}}");
  EXPECT_EQ(ErrorOf(src), At(src, "data_batch_args") +
                              " data_batch_args.warp_args.lock_z must be true or false, got "
                              "number 1");
}

TEST(JobFileTest, BadConvArgumentNamesLine) {
  std::string src = Job("", "out = nm.Conv{out, 8, filtershape = {3, 3}}");
  EXPECT_THAT(ErrorOf(src), HasSubstr(At(src, "filtershape") +
                                      " nm.Conv: unknown argument 'filtershape' (did you mean "
                                      "'filter_shape'?)"));
  src = Job("", "out = nm.Conv{out, 'eight', {3, 3}}");
  EXPECT_EQ(ErrorOf(src),
            At(src, "'eight'") + " nm.Conv argument 'n_f' must be an integer, got string 'eight'");
  src = Job("", "out = nm.Conv{out, 8, {3, 3}, activation_func = 'rleu'}");
  EXPECT_THAT(ErrorOf(src), HasSubstr("(did you mean 'relu'?)"));
  src = Job("", "out = nm.Conv{outt, 8, {3, 3}}");
  EXPECT_EQ(ErrorOf(src), At(src, "outt") + " name 'outt' is not defined (did you mean 'out'?)");
  src = Job("", "out = nm.Cnv{out, 8, {3, 3}}");
  EXPECT_THAT(ErrorOf(src), HasSubstr(At(src, "nm.Cnv") + " nm has no function 'Cnv' (did you "
                                                          "mean 'Conv'?)"));
  src = Job("", "out = nm.MalisNLL{out, 8}");  // nm.UpConv and nm.GRU exist now
  EXPECT_THAT(ErrorOf(src), HasSubstr("nm.MalisNLL exists in ELEKTRONN2 but not (yet) in this"));
  // batch_normalisation is supported now; BN initial values are not.
  src = Job("", "out = nm.Conv{out, 8, {3, 3}, batch_normalisation = 'train', gamma = 2}");
  EXPECT_THAT(ErrorOf(src), HasSubstr("nm.Conv argument 'gamma' is not supported"));
  src = Job("", "out = nm.Conv(out, 8, {3, 3})");
  EXPECT_THAT(ErrorOf(src), HasSubstr("nm.Conv: call it with braces and one table of arguments"));
  src = Job("", "out = nm.Conv{out, 8, {3, 3}, n_f = 3}");
  EXPECT_THAT(ErrorOf(src), HasSubstr("argument 'n_f' is given twice"));
}

TEST(JobFileTest, WrongInputSizeNamesTheFailingLayer) {
  std::string src = Job("");
  absl::StrReplaceAll({{"{None, 1, 26, 26}", "{None, 1, 27, 26}"}}, &src);
  const std::string msg = ErrorOf(src);
  EXPECT_THAT(msg, HasSubstr(At(src, "nm.Conv{inp") + " nm.Conv: Conv 'conv'"));
  EXPECT_THAT(msg, HasSubstr("nearest valid"));
  // Reading a shape after the failure reports the failure where it happened.
  src = Job("", "local s = out.shape");
  absl::StrReplaceAll({{"{None, 1, 26, 26}", "{None, 1, 27, 26}"}}, &src);
  EXPECT_THAT(ErrorOf(src), HasSubstr(At(src, "nm.Conv{inp") + " nm.Conv: Conv 'conv'"));
}

TEST(JobFileTest, Neuro3dWithAWrongInputSizeFailsAtTheRightLine) {
  auto job = LoadJobFile(ExamplePath("neuro3d.lua"));
  ASSERT_TRUE(job.ok()) << job.status();
  std::string src = job->job_file_source();
  absl::StrReplaceAll({{"{None, 1, 23, 185, 185}", "{None, 1, 23, 184, 185}"}}, &src);
  auto bad = LoadJobSource(src, "neuro3d.lua");
  ASSERT_FALSE(bad.ok());
  const std::string line = At(src, "nm.Conv{inp, 20");
  EXPECT_THAT(std::string(bad.status().message()),
              HasSubstr(absl::StrReplaceAll(line, {{"job.lua", "neuro3d.lua"}}) + " nm.Conv:"));
  // The suggested input sizes hold for the whole network, not just the layers before the error.
  EXPECT_THAT(std::string(bad.status().message()),
              HasSubstr("nearest valid sizes of input 'raw' along x: 181 or 185"));
  v1::JobSpec fixed = *job;
  fixed.mutable_model()->mutable_nodes(0)->mutable_input()->set_shape(3, 181);
  EXPECT_TRUE(Graph::Create(fixed.model()).ok());
}

TEST(JobFileTest, MissingKeysAreListed) {
  const std::string src = "n_steps = 10\nfunction create_model() end\n";
  EXPECT_THAT(ErrorOf(src), HasSubstr("job.lua: missing required keys max_runtime, history_freq, "
                                      "monitor_batch_size, optimiser, optimiser_params, "
                                      "batch_size, data_class"));
}

TEST(JobFileTest, CreateModelMustReturnTheModel) {
  std::string src = Job("");
  absl::StrReplaceAll({{"return nm.designate_nodes", "nm.designate_nodes"}}, &src);
  EXPECT_THAT(ErrorOf(src),
              HasSubstr(At(src, "function create_model") + " create_model() must end with 'return "
                                                           "nm.designate_nodes{"));
}

TEST(JobFileTest, NodesOnlyInsideCreateModel) {
  const std::string src = Job("local x = nm.Input{{None, 1, 4, 4}, 'b,f,x,y'}");
  EXPECT_THAT(ErrorOf(src),
              HasSubstr(At(src, "local x") + " nm.Input: nodes can only be created inside"));
}

TEST(JobFileTest, SyntaxAndRuntimeErrorsNameTheLine) {
  std::string src = Job("x = = 1");
  EXPECT_THAT(ErrorOf(src), HasSubstr(At(src, "x = =")));
  src = Job("", "local y = nil + 1");
  EXPECT_THAT(ErrorOf(src), HasSubstr(At(src, "nil + 1") + " attempt to perform arithmetic"));
  src = Job("", "error('my own message')");
  EXPECT_THAT(ErrorOf(src), HasSubstr(At(src, "error(") + " my own message"));
  src = Job("True = 1");
  EXPECT_THAT(ErrorOf(src), HasSubstr("unknown key 'True'"));
  src = Job("local x = True");
  EXPECT_THAT(ErrorOf(src), HasSubstr("Lua writes booleans as true"));
  src = Job("print = 1");
  EXPECT_THAT(ErrorOf(src), HasSubstr("'print' is a built-in name"));
}

TEST(JobFileTest, BatchSizeMustMatchAFixedModelBatch) {
  std::string src = Job("");
  absl::StrReplaceAll({{"{None, 1, 26, 26}", "{2, 1, 26, 26}"}}, &src);
  EXPECT_THAT(ErrorOf(src),
              HasSubstr(At(src, "batch_size = 1") + " batch_size = 1, but the model's "
                                                    "input 'raw' has the fixed batch size 2"));
}

// --- keys --------------------------------------------------------------------------------

TEST(JobFileTest, SchedulesParse) {
  auto job = LoadJobSource(Job("schedules = {lr = {dec = 0.995}, mom = {updates = {{10000, 0.95}, "
                               "{20000, 0.99}}}, dropout_rates = {lindec = {100000, 0.5}}}"),
                           "job.lua");
  ASSERT_TRUE(job.ok()) << job.status();
  const auto& s = job->training().schedules();
  ASSERT_EQ(s.size(), 3u);
  EXPECT_DOUBLE_EQ(s.at("lr").dec(), 0.995);
  ASSERT_EQ(s.at("mom").updates().updates_size(), 2);
  EXPECT_EQ(s.at("mom").updates().updates(0).step(), 10000);
  EXPECT_DOUBLE_EQ(s.at("mom").updates().updates(0).value(), 0.95);
  EXPECT_EQ(s.at("mom").updates().updates(1).step(), 20000);
  EXPECT_EQ(s.at("dropout_rates").lindec().n(), 100000);
  EXPECT_DOUBLE_EQ(s.at("dropout_rates").lindec().v0(), 0.5);

  std::string src = Job("schedules = {lr = {dec = 0.9, lindec = {1000, 1}}}");
  EXPECT_THAT(ErrorOf(src), HasSubstr(At(src, "schedules") + " schedules.lr must have only one"));
  src = Job("schedules = {lrr = {dec = 0.9}}");
  EXPECT_THAT(ErrorOf(src), HasSubstr("schedules has an unknown key 'lrr' (did you mean 'lr'?)"));
  src = Job("schedules = {mom = {updates = {{10, 0.9}, 5}}}");
  EXPECT_THAT(ErrorOf(src), HasSubstr("schedules.mom.updates[2] must be a pair {step, value}"));
  src = Job("schedules = {mom = {updates = {{10, 0.9}, {5, 0.8}}}}");
  EXPECT_THAT(ErrorOf(src), HasSubstr("update steps must increase"));
}

TEST(JobFileTest, DataAndPreviewKeys) {
  auto job = LoadJobSource(
      Job("preview_data_path = {'p.h5', 'raw'}\npreview_kwargs = {export_class = 'all'}\n"
          "data_init_kwargs = {path = '/data/mnist'}\nseed = 7\nclass_weights = {1, 2.5}\n"
          "background_processes = true\nparam_save_it = 500\ninitial_prev_h = 0.5\n"
          "data_batch_args = {warp = true, ignore_thresh = false, force_dense = true}"),
      "job.lua");
  ASSERT_TRUE(job.ok()) << job.status();
  const v1::TrainingSpec& t = job->training();
  EXPECT_EQ(t.preview_data_path(), "p.h5");
  EXPECT_EQ(t.preview_data_key(), "raw");
  EXPECT_EQ(t.preview_kwargs().export_class_size(), 0);
  EXPECT_EQ(t.mnist().path(), "/data/mnist");
  EXPECT_EQ(t.seed(), 7u);
  EXPECT_EQ(job->model().seed(), 7u);
  EXPECT_THAT(t.class_weights(), ::testing::ElementsAre(1.f, 2.5f));
  EXPECT_EQ(t.background_processes(), 2);
  EXPECT_EQ(t.param_save_it(), 500);
  EXPECT_DOUBLE_EQ(t.initial_prev_h(), 0.5);
  EXPECT_FALSE(t.has_prev_save_h());
  EXPECT_DOUBLE_EQ(t.data_batch_args().warp(), 1.0);
  EXPECT_FALSE(t.data_batch_args().has_ignore_thresh());
  EXPECT_TRUE(t.data_batch_args().force_dense());

  std::string src = Job("data_batch_args = {wrap = 0.5}");
  EXPECT_THAT(ErrorOf(src), HasSubstr("data_batch_args has an unknown key 'wrap' (did you mean "
                                      "'warp'?)"));
  src = Job("optimiser = 'adam'");
  EXPECT_THAT(ErrorOf(src), HasSubstr("optimiser must be one of 'SGD', 'Adam', 'AdaGrad', "
                                      "'AdaDelta', got 'adam' (did you mean 'Adam'?)"));
  src = Job("plot_on = false");
  EXPECT_THAT(ErrorOf(src), HasSubstr("plot_on is not supported: it is an ELEKTRONN2 "
                                      "installation setting"));
}

TEST(JobFileTest, BatchCreatorImageChecks) {
  std::string src = Job("");
  absl::StrReplaceAll({{"data_class = 'MNISTData'", "data_class = 'BatchCreatorImage'"}}, &src);
  EXPECT_THAT(ErrorOf(src), HasSubstr("data_class 'BatchCreatorImage' needs data_init_kwargs"));
  src =
      Job("data_init_kwargs = {d_files = {{'a.h5', 'raw'}}, l_files = {{'b.h5', 'lab'}}, "
          "valid_cubes = {1}}");
  absl::StrReplaceAll({{"data_class = 'MNISTData'", "data_class = 'BatchCreatorImage'"}}, &src);
  EXPECT_THAT(ErrorOf(src), HasSubstr(At(src, "data_init_kwargs") +
                                      " data_init_kwargs.valid_cubes names cube 1, but there "
                                      "are 1 cubes"));
  src = Job("data_init_kwargs = {d_files = {'a.h5'}, l_files = {{'b.h5', 'lab'}}}");
  absl::StrReplaceAll({{"data_class = 'MNISTData'", "data_class = 'BatchCreatorImage'"}}, &src);
  EXPECT_THAT(ErrorOf(src), HasSubstr("data_init_kwargs.d_files[1] must be a pair of strings"));
}

// --- summaries ---------------------------------------------------------------------------

TEST(JobFileTest, CheckJsonHasTheDocumentedKeys) {
  auto job = LoadJobFile(ExamplePath("neuro3d.lua"));
  ASSERT_TRUE(job.ok()) << job.status();
  auto text = CheckJson(*job);
  ASSERT_TRUE(text.ok()) << text.status();
  const nlohmann::json j = nlohmann::json::parse(*text);
  ASSERT_TRUE(j.contains("nodes") && j.contains("prediction") && j.contains("total_params") &&
              j.contains("warnings"));
  EXPECT_EQ(j.size(), 4u);
  EXPECT_EQ(j["warnings"].size(), 0u);  // neuro3d's fov is odd: centred
  ASSERT_EQ(j["nodes"].size(), static_cast<size_t>(job->model().nodes_size()));
  for (const auto& n : j["nodes"]) {
    for (const char* key : {"name", "op", "shape", "tags", "fov", "strides", "offsets", "params"}) {
      EXPECT_TRUE(n.contains(key)) << key;
    }
    EXPECT_EQ(n.size(), 8u);
  }
  const auto& raw = j["nodes"][0];
  EXPECT_EQ(raw["name"], "raw");
  EXPECT_EQ(raw["op"], "Input");
  EXPECT_TRUE(raw["shape"][0].is_null());
  EXPECT_EQ(raw["shape"][4], 185);
  EXPECT_EQ(raw["tags"], "b,f,z,x,y");
  EXPECT_EQ(j["prediction"]["name"], "softmax");
  for (const char* key : {"fov", "offsets", "strides"}) {
    EXPECT_EQ(j["prediction"][key].size(), 3u) << key;
  }
  auto g = Graph::Create(job->model());
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(j["total_params"], (*g)->Summary().total_params);
  EXPECT_GT(j["total_params"].get<int64_t>(), 0);

  auto table = CheckTable(*job);
  ASSERT_TRUE(table.ok());
  EXPECT_THAT(*table, HasSubstr("softmax"));
}

// Reference §3.2: a prediction fov that is even somewhere (here 2 along y, from a 3x2 kernel) is
// not centred; ELEKTRONN2's designate_nodes warns and goes on, so does `elektronn check`.
TEST(JobFileTest, CheckWarnsThatAnEvenPredictionFovIsNotCentred) {
  auto load = [](const std::string& kernel) {
    return LoadJobSource(absl::StrReplaceAll(R"(save_path = '/tmp/elk'
n_steps = 10
max_runtime = 60
history_freq = 5
monitor_batch_size = 2
optimiser = 'SGD'
optimiser_params = {lr = 0.01}
batch_size = 1
data_class = 'MNISTData'
function create_model()
  local inp = nm.Input{{None, 1, 10, 10}, 'b,f,x,y', name = 'raw'}
  local out = nm.Conv{inp, 2, KERNEL, activation_func = 'lin'}
  local probs = nm.Softmax{out}
  local target = nm.Input_like{probs, override_f = 1, name = 'target'}
  local loss = nm.AggregateLoss{nm.MultinoulliNLL{probs, target, target_is_sparse = true}}
  return nm.designate_nodes{input_node = inp, target_node = target, loss_node = loss,
                            prediction_node = probs}
end
)",
                                             {{"KERNEL", kernel}}),
                         "job.lua");
  };
  auto job = load("{3, 2}");
  ASSERT_TRUE(job.ok()) << job.status();
  auto table = CheckTable(*job);
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_THAT(*table, HasSubstr("warning: Not all fields of view are centred (odd): prediction "
                                "node 'softmax' has fov (3, 2)"));
  auto text = CheckJson(*job);
  ASSERT_TRUE(text.ok()) << text.status();
  const nlohmann::json j = nlohmann::json::parse(*text);
  ASSERT_EQ(j["warnings"].size(), 1u);
  EXPECT_THAT(j["warnings"][0].get<std::string>(), HasSubstr("has fov (3, 2), offsets (1, 1)"));
  // Odd everywhere: centred, no warning.
  job = load("{3, 3}");
  ASSERT_TRUE(job.ok()) << job.status();
  table = CheckTable(*job);
  ASSERT_TRUE(table.ok());
  EXPECT_THAT(*table, Not(HasSubstr("warning")));
}

// Found by fuzz/fuzz_job_file: a name that is not UTF-8 made `check --json` throw (uncaught),
// and a JobSpec holding it cannot be parsed by the daemon (proto3 strings are UTF-8).
TEST(JobFileTest, TextThatIsNotUtf8IsRefusedNamingTheField) {
  EXPECT_THAT(ErrorOf(Job("", "out = nm.Conv{out, 4, {1, 1}, name = 'c\\xa5'}")),
              HasSubstr("job.model.nodes[2].name is not valid UTF-8 text"));
  EXPECT_THAT(ErrorOf(Job("save_name = 'caf\\xe9'")),
              HasSubstr("job.training.save_name is not valid UTF-8 text"));
  EXPECT_THAT(ErrorOf(Job("-- Latin-1 comment: \xe9\n")),
              HasSubstr("job.lua:10: the job file is not UTF-8 text"));
  auto job = LoadJobSource(Job("save_name = 'caf\xc3\xa9 \xe2\x82\xac'"), "job.lua");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->training().save_name(), "caf\xc3\xa9 \xe2\x82\xac");
  // A JobSpec from elsewhere still gets a summary, with the bytes replaced.
  job->mutable_model()->mutable_nodes(0)->set_name("raw\xa5");
  job->mutable_model()->mutable_designations()->set_input_node("raw\xa5");
  for (auto& n : *job->mutable_model()->mutable_nodes()) {
    for (auto& in : *n.mutable_inputs()) {
      if (in == "raw") in = "raw\xa5";
    }
  }
  auto json = CheckJson(*job);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_THAT(*json, HasSubstr("\"raw\xef\xbf\xbd\""));
}

}  // namespace
}  // namespace elektronn

namespace elektronn {
namespace {

// `--set KEY=VALUE` parses the whole value and refuses what does not fit the field (a huge or
// fractional integer, NaN, trailing junk) instead of casting it.
TEST(TrainingOverrideTest, ParsesWholeValuesAndRefusesWhatDoesNotFit) {
  v1::TrainingSpec spec;
  ASSERT_TRUE(ApplyTrainingOverride("n_steps=1e6", &spec).ok());
  EXPECT_EQ(spec.n_steps(), 1000000);
  ASSERT_TRUE(ApplyTrainingOverride("n_steps=-3", &spec).ok());  // range checks come later
  EXPECT_EQ(spec.n_steps(), -3);
  ASSERT_TRUE(ApplyTrainingOverride("max_runtime=3600.5", &spec).ok());
  EXPECT_EQ(spec.max_runtime(), 3600.5);
  for (const char* bad :
       {"n_steps=1e30", "n_steps=1.5", "n_steps=12abc", "n_steps=", "n_steps=nan",
        "max_runtime=nan", "max_runtime=inf", "max_runtime=1x", "batch_size=9223372036854775808"}) {
    absl::Status s = ApplyTrainingOverride(bad, &spec);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("is not")) << bad;
  }
  EXPECT_EQ(spec.n_steps(), -3) << "a refused value changes nothing";
}

}  // namespace
}  // namespace elektronn
