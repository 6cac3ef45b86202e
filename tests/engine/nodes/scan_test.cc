// Scan (issue 15): gradients through time by finite differences, values against the same cell
// written out step by step, the one-step model, and the errors of a misbuilt ScanOp.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/graph/model_builder.h"
#include "engine/graph/network.h"
#include "engine/graph/one_step.h"
#include "engine/io/model_file.h"
#include "engine/io/one_step_file.h"
#include "tests/engine/gradient_checker.h"

namespace elektronn {
namespace {

using testing::CheckGradients;
using testing::GradientCheckOptions;
using testing::GradientCheckReport;

constexpr int64_t kBatch = 2, kIn = 3, kMem = 4, kOut = 3, kConst = 2;

struct ScanCase {
  int64_t n = 3;
  bool last_only = false;
  bool separate_result = true;  // step result = Perceptron(cell), memory = cell
  bool constant = true;         // the step also reads an outer node 'c'
  float dropout = 0;
};

std::string Describe(const ScanCase& c) {
  return absl::StrFormat("n=%d last_only=%d separate_result=%d constant=%d dropout=%g", c.n,
                         c.last_only, c.separate_result, c.constant, c.dropout);
}

void PrintTo(const ScanCase& c, std::ostream* os) { *os << Describe(c); }

// An Elman cell: cell = tanh(W [x_t, mem, c] + b); out = sigmoid(V cell + d).
v1::ModelSpec ElmanScan(const ScanCase& c) {
  ModelBuilder step;
  step.Input({kBatch, kIn}, "b,f", "x0");
  step.Input({kBatch, kMem}, "b,f", "mem0");
  std::vector<std::string> cat = {"x0", "mem0"};
  if (c.constant) {
    step.Input({kBatch, kConst}, "b,f", "c");
    cat.push_back("c");
  }
  step.Concat(cat, "f", "cat");
  step.Perceptron("cat", kMem, v1::TANH, false, c.dropout, "cell");
  if (c.separate_result) step.Perceptron("cell", kOut, v1::SIGMOID, false, 0, "out");

  ModelBuilder outer("scan_model", 3);
  outer.Input({c.n, kBatch, kIn}, "r,b,f", "x");
  outer.Input({kBatch, kMem}, "b,f", "mem0");
  if (c.constant) outer.Input({kBatch, kConst}, "b,f", "c");
  v1::ModelSpec spec = outer.spec();
  v1::NodeSpec scan;
  scan.set_name("scan");
  scan.add_inputs("x");
  scan.add_inputs("mem0");
  if (c.constant) scan.add_inputs("c");
  v1::ScanOp* op = scan.mutable_scan();
  for (const v1::NodeSpec& n : step.spec().nodes())
    if (!n.has_input()) *op->add_step_nodes() = n;
  op->add_in_iterate_0("x0");
  op->add_in_memory("mem0");
  op->add_out_memory("cell");
  if (c.constant) op->add_constants("c");
  op->set_step_result(c.separate_result ? "out" : "cell");
  op->set_n_steps(c.n);
  op->set_last_only(c.last_only);
  AppendNode(&spec, scan);
  return spec;
}

class ScanGradientTest : public ::testing::TestWithParam<ScanCase> {};

TEST_P(ScanGradientTest, MatchesFiniteDifferences) {
  const ScanCase c = GetParam();
  GradientCheckOptions opt;
  opt.output = "scan";
  opt.wrt_inputs = {"x", "mem0"};
  if (c.constant) opt.wrt_inputs.push_back("c");
  GradientCheckReport report;
  absl::Status s = CheckGradients(ElmanScan(c), opt, &report);
  std::string lines;
  for (const auto& l : report.lines) lines += "  " + l + "\n";
  EXPECT_TRUE(s.ok()) << Describe(c) << ": " << s << "\n" << lines;
  // Every parameter of the step graph was checked: w and b of cell (and of out).
  EXPECT_EQ(report.lines.size(), opt.wrt_inputs.size() + (c.separate_result ? 4 : 2)) << lines;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ScanGradientTest,
    ::testing::Values(ScanCase{.n = 1}, ScanCase{.n = 1, .last_only = true}, ScanCase{.n = 3},
                      ScanCase{.n = 4, .last_only = true},
                      ScanCase{.n = 3, .separate_result = false, .constant = false},
                      ScanCase{.n = 3, .last_only = true, .separate_result = false},
                      // The recomputed forward of backpropagation must draw the same masks.
                      ScanCase{.n = 3, .dropout = 0.5f}));

std::unique_ptr<kernels::Backend>& Cpu() {
  static std::unique_ptr<kernels::Backend> b = kernels::CreateCpuBackend();
  return b;
}

std::vector<float> Random(int64_t n, uint64_t seed) {
  std::vector<float> v(n);
  uint64_t x = seed * 2654435761u + 1;
  for (float& f : v) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    f = static_cast<float>((x >> 33) % 2001) / 1000.f - 1.f;
  }
  return v;
}

// Copies every parameter of `from` into the parameters of `to` whose keys `rename` maps to it.
void CopyParams(Network& from, Network& to,
                const std::function<std::string(const std::string&)>& rename) {
  for (Parameter* p : to.params()) {
    auto src = from.FindParam(rename(p->node), p->name);
    ASSERT_TRUE(src.ok()) << p->key() << ": " << src.status();
    ASSERT_TRUE(to.SetParamValue(*p, from.ParamValue(**src)).ok());
  }
}

TEST(ScanTest, EqualsTheCellWrittenOutStepByStep) {
  ScanCase c{.n = 4};
  ModelBuilder m("unrolled", 5);
  m.Input({c.n, kBatch, kIn}, "r,b,f", "x");
  m.Input({kBatch, kMem}, "b,f", "mem0");
  m.Input({kBatch, kConst}, "b,f", "c");
  v1::ModelSpec unrolled = m.spec();
  std::string prev = "mem0";
  for (int t = 0; t < c.n; ++t) {
    v1::NodeSpec slice;
    slice.set_name(absl::StrCat("x", t));
    slice.add_inputs("x");
    slice.mutable_slice()->set_axis("r");
    slice.mutable_slice()->set_start(t);
    slice.mutable_slice()->set_size(1);
    slice.mutable_slice()->set_strip(true);
    AppendNode(&unrolled, slice);
    v1::NodeSpec cat;
    cat.set_name(absl::StrCat("cat", t));
    for (const std::string& in : {absl::StrCat("x", t), prev, std::string("c")}) cat.add_inputs(in);
    cat.mutable_concat()->set_axis("f");
    AppendNode(&unrolled, cat);
    for (const auto& [name, parent, n_f, act] :
         {std::tuple{absl::StrCat("cell", t), absl::StrCat("cat", t), kMem, v1::TANH},
          std::tuple{absl::StrCat("out", t), absl::StrCat("cell", t), kOut, v1::SIGMOID}}) {
      v1::NodeSpec p;
      p.set_name(name);
      p.add_inputs(parent);
      p.mutable_perceptron()->set_n_f(n_f);
      p.mutable_perceptron()->set_activation(act);
      AppendNode(&unrolled, p);
    }
    prev = absl::StrCat("cell", t);
  }
  auto scan = Network::Create(ElmanScan(c), Cpu().get());
  ASSERT_TRUE(scan.ok()) << scan.status();
  auto hand = Network::Create(unrolled, Cpu().get());
  ASSERT_TRUE(hand.ok()) << hand.status();
  CopyParams(**scan, **hand, [](const std::string& node) {
    return node.substr(0, node.find_first_of("0123456789"));  // cell2 -> cell
  });
  for (const char* in : {"x", "mem0", "c"}) {
    const int64_t n = (*scan)->graph().Find(in)->numel();
    ASSERT_TRUE((*scan)->SetInput(in, Random(n, n)).ok());
    ASSERT_TRUE((*hand)->SetInput(in, Random(n, n)).ok());
  }
  ASSERT_TRUE((*scan)->Forward().ok());
  ASSERT_TRUE((*hand)->Forward().ok());
  std::vector<float> got = *(*scan)->Output("scan");
  ASSERT_EQ(got.size(), static_cast<size_t>(c.n * kBatch * kOut));
  for (int t = 0; t < c.n; ++t) {
    std::vector<float> want = *(*hand)->Output(absl::StrCat("out", t));
    for (size_t i = 0; i < want.size(); ++i)
      EXPECT_NEAR(got[t * want.size() + i], want[i], 1e-5) << "step " << t << " entry " << i;
  }
  // The summary counts the step parameters once and the step cost n times.
  auto g = Graph::Create(ElmanScan(c));
  const ModelSummary sum = (*g)->Summary();
  EXPECT_EQ(sum.total_params, (kIn + kMem + kConst + 1) * kMem + (kMem + 1) * kOut);
  const double step_ops =
      static_cast<double>(kBatch * (kIn + kMem + kConst) * kMem + kBatch * kMem * kOut);
  EXPECT_NEAR(sum.total_gops * 1e9, c.n * step_ops, 1e-3);
}

TEST(ScanTest, OneStepModelFedItsMemoryReproducesTheScan) {
  ScanCase c{.n = 5};
  v1::ModelSpec spec = ElmanScan(c);
  auto one = OneStepModel(spec);
  ASSERT_TRUE(one.ok()) << one.status();
  std::vector<std::string> names;
  for (const auto& n : one->nodes()) names.push_back(n.name());
  // The sequence input is gone; the placeholders are inputs.
  EXPECT_THAT(names, ::testing::ElementsAre("mem0", "c", "x0", "cat", "cell", "out"));
  EXPECT_EQ(one->designations().input_node(), "x0");
  auto scan = Network::Create(spec, Cpu().get());
  ASSERT_TRUE(scan.ok()) << scan.status();
  auto step = Network::Create(*one, Cpu().get());
  ASSERT_TRUE(step.ok()) << step.status();
  CopyParams(**scan, **step, [](const std::string& node) { return node; });
  const std::vector<float> x = Random(c.n * kBatch * kIn, 1), mem = Random(kBatch * kMem, 2),
                           cst = Random(kBatch * kConst, 3);
  ASSERT_TRUE((*scan)->SetInput("x", x).ok());
  ASSERT_TRUE((*scan)->SetInput("mem0", mem).ok());
  ASSERT_TRUE((*scan)->SetInput("c", cst).ok());
  ASSERT_TRUE((*scan)->Forward().ok());
  const std::vector<float> want = *(*scan)->Output("scan");
  std::vector<float> memory = mem;
  ASSERT_TRUE((*step)->SetInput("c", cst).ok());
  for (int t = 0; t < c.n; ++t) {
    const int64_t sz = kBatch * kIn;
    ASSERT_TRUE(
        (*step)
            ->SetInput("x0", std::vector<float>(x.begin() + t * sz, x.begin() + (t + 1) * sz))
            .ok());
    ASSERT_TRUE((*step)->SetInput("mem0", memory).ok());
    ASSERT_TRUE((*step)->Forward().ok());
    const std::vector<float> out = *(*step)->Output("out");
    for (size_t i = 0; i < out.size(); ++i)
      EXPECT_NEAR(out[i], want[t * out.size() + i], 1e-6) << "step " << t;
    memory = *(*step)->Output("cell");
  }
}

// Model files: the Scan's parameters are saved under the step nodes' keys and load back; the
// one-step model file carries the same values.
TEST(ScanTest, ModelFilesKeepTheStepParameters) {
  const std::string dir = ::testing::TempDir();
  const std::string path = dir + "/scan_model.h5", one_path = dir + "/scan_one_step.h5";
  ScanCase c{.n = 3};
  auto net = Network::Create(ElmanScan(c), Cpu().get(), {.seed = 11});
  ASSERT_TRUE(net.ok()) << net.status();
  for (const char* in : {"x", "mem0", "c"}) {
    const int64_t n = (*net)->graph().Find(in)->numel();
    ASSERT_TRUE((*net)->SetInput(in, Random(n, n + 1)).ok());
  }
  ASSERT_TRUE((*net)->Forward().ok());
  const std::vector<float> want = *(*net)->Output("scan");
  ASSERT_TRUE(SaveModel(path, **net, nullptr).ok());
  auto f = ReadModelFile(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE(f->params.contains("cell/w"));
  EXPECT_TRUE(f->params.contains("out/b"));
  auto back = Network::Create(f->spec, Cpu().get());  // other seed: other initial values
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_TRUE(LoadInto(*f, **back, nullptr).ok());
  for (const char* in : {"x", "mem0", "c"}) {
    const int64_t n = (*back)->graph().Find(in)->numel();
    ASSERT_TRUE((*back)->SetInput(in, Random(n, n + 1)).ok());
  }
  ASSERT_TRUE((*back)->Forward().ok());
  EXPECT_EQ(*(*back)->Output("scan"), want);

  auto report = WriteOneStepModelFile(path, one_path, Cpu().get());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(report->inputs, ::testing::ElementsAre("mem0", "c", "x0"));
  EXPECT_TRUE(report->dropped_params.empty());
  auto one = ReadModelFile(one_path);
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->params.at("cell/w"), f->params.at("cell/w"));
  EXPECT_EQ(one->spec.nodes_size(), 6);
}

TEST(ScanTest, OneStepModelNeedsExactlyOneScan) {
  ModelBuilder m;
  m.Input({2, 3}, "b,f");
  auto one = OneStepModel(m.spec());
  ASSERT_FALSE(one.ok());
  EXPECT_THAT(one.status().message(), ::testing::HasSubstr("has 0 Scan nodes"));
}

std::string BuildError(const v1::ModelSpec& spec) {
  auto g = Graph::Create(spec);
  return g.ok() ? "built" : std::string(g.status().message());
}

TEST(ScanTest, MisbuiltScansAreClearErrors) {
  using ::testing::HasSubstr;
  ScanCase c;
  {
    v1::ModelSpec s = ElmanScan(c);
    s.mutable_nodes(0)->mutable_input()->set_tags("b,r,f");
    EXPECT_THAT(BuildError(s), HasSubstr("iterated input 'x' has tags \"b,r,f\"; it needs a "
                                         "leading recurrence axis 'r'"));
  }
  {
    v1::ModelSpec s = ElmanScan(c);
    s.mutable_nodes(3)->mutable_scan()->set_n_steps(7);
    EXPECT_THAT(BuildError(s), HasSubstr("n_steps=7 but iterated input 'x' has r=3"));
  }
  {
    v1::ModelSpec s = ElmanScan(c);
    s.mutable_nodes(1)->mutable_input()->set_shape(1, kMem + 1);
    EXPECT_THAT(BuildError(s), HasSubstr("out_memory 'cell' has shape"));
    EXPECT_THAT(BuildError(s), HasSubstr("but in_memory 'mem0' has"));
  }
  {
    v1::ModelSpec s = ElmanScan(c);
    s.mutable_nodes(3)->mutable_scan()->set_step_result("nope");
    EXPECT_THAT(BuildError(s), HasSubstr("step_result 'nope' is not a node of the step graph"));
  }
  {
    v1::ModelSpec s = ElmanScan(c);
    s.mutable_nodes(3)
        ->mutable_scan()
        ->mutable_step_nodes(1)
        ->mutable_perceptron()
        ->set_batch_normalisation(v1::BN_TRAIN);
    EXPECT_THAT(BuildError(s), HasSubstr("step node 'cell' uses batch normalisation"));
  }
  {
    v1::ModelSpec s = ElmanScan(c);
    s.mutable_nodes(3)->mutable_scan()->clear_out_memory();
    EXPECT_THAT(BuildError(s), HasSubstr("has 1 in_memory but 0 out_memory nodes"));
  }
  {
    v1::ModelSpec s = ElmanScan(c);
    s.mutable_nodes(3)->mutable_scan()->mutable_step_nodes(0)->set_inputs(0, "x");
    EXPECT_THAT(BuildError(s), HasSubstr("Scan 'scan': step graph: node 'cat' names input 'x'"));
  }
}

}  // namespace
}  // namespace elektronn
