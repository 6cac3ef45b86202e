// The model as a picture: DOT content (styles, labels, edges) and its rendering to SVG and PNG.
#include "engine/report/model_graph.h"

#include <expat.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "engine/graph/graph.h"
#include "engine/lua/job_file.h"

namespace elektronn {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

// Two branches concatenated, a 1x1x1 classifier, softmax, loss and errors. Hand-computed shapes:
// raw (None,1,5,19,19); each 1x3x3 conv (None,4,5,17,17) with fov [1,3,3]; cat 8 channels;
// the 1x1x1 conv keeps fov [1,3,3]; the softmax is the prediction.
constexpr char kJob[] = R"(save_path = '/tmp/elk'
n_steps = 10
max_runtime = 60
history_freq = 5
monitor_batch_size = 2
optimiser = 'SGD'
optimiser_params = {lr = 0.01, mom = 0.9}
batch_size = 1
data_class = 'MNISTData'
function create_model()
  local inp = nm.Input{{None, 1, 5, 19, 19}, 'b,f,z,x,y', name = 'raw'}
  local a = nm.Conv{inp, 4, {1, 3, 3}, name = 'conv_a'}
  local b = nm.Conv{inp, 4, {1, 3, 3}, name = 'NAME_B'}
  local cat = nm.Concat{{a, b}, name = 'cat'}
  local out = nm.Conv{cat, 2, {1, 1, 1}, activation_func = 'lin', name = 'logits'}
  local probs = nm.Softmax{out, name = 'probs'}
  local target = nm.Input_like{probs, override_f = 1, name = 'target'}
  local nll = nm.MultinoulliNLL{probs, target, target_is_sparse = true, name = 'nll'}
  local loss = nm.AggregateLoss{nll, name = 'loss'}
  local errors = nm.Errors{probs, target, target_is_sparse = true, name = 'errors'}
  return nm.designate_nodes{input_node = inp, target_node = target, loss_node = loss,
                            prediction_node = probs, prediction_ext = {loss, errors, probs}}
end
)";
constexpr int kNodes = 10;
constexpr int kEdges = 12;  // see EdgesFollowInputsAndNumberSeveralInputs

v1::ModelSpec Model(const std::string& name_b = "conv_b") {
  auto job = LoadJobSource(absl::StrReplaceAll(kJob, {{"NAME_B", name_b}}), "job.lua", {});
  EXPECT_TRUE(job.ok()) << job.status();
  return job.ok() ? job->model() : v1::ModelSpec();
}

// The statement of node `name` in the DOT text (one line per node).
std::string NodeLine(const std::string& dot, const std::string& name) {
  for (absl::string_view line : absl::StrSplit(dot, '\n')) {
    if (absl::StartsWith(absl::StripLeadingAsciiWhitespace(line),
                         absl::StrCat("\"", name, "\" ["))) {
      return std::string(line);
    }
  }
  ADD_FAILURE() << "no node statement for '" << name << "' in\n" << dot;
  return "";
}

int Count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

TEST(ModelGraphStyle, FollowsElektronn2sD3vizByOpName) {
  auto is = [](std::string_view op, bool source, bool sink, const std::string& shape,
               const std::string& fill) {
    const ModelGraphStyle s = StyleOfNode(op, source, sink);
    EXPECT_EQ(s.shape, shape) << op;
    EXPECT_EQ(s.fillcolor, fill) << op;
  };
  is("Input", true, false, "box", "yellow");
  is("Input_like", true, true, "box", "yellow");  // a source that is also a sink
  is("Errors", false, true, "box", "lightblue");
  is("Softmax", false, true, "box", "lightblue");
  is("Conv", false, false, "invtrapezium", "lightgreen");
  is("UpConv", false, false, "trapezium", "lightgreen");
  is("Perceptron", false, false, "octagon", "lightgreen");
  is("Concat", false, false, "house", "lightgreen");
  is("GRU", false, false, "doubleoctagon", "lightgreen");
  is("LSTM", false, false, "doubleoctagon", "lightgreen");
  is("ValueNode", false, false, "box", "lightgreen");
  // Losses by name, including those of other node families, sinks or not.
  for (const char* op : {"MultinoulliNLL", "AggregateLoss", "BinaryNLL", "SquaredLoss", "AbsLoss",
                         "GaussianNLL", "EuclideanDistance", "MalisNLL"}) {
    is(op, false, true, "diamond", "orange");
    is(op, false, false, "diamond", "orange");
  }
  // Unknown ops fall back to the default.
  is("SomeFutureOp", false, false, "ellipse", "lightgreen");
  is("Softmax", false, false, "ellipse", "lightgreen");
  EXPECT_EQ(StyleOfNode("Scan", false, false).color, "red");
  EXPECT_EQ(StyleOfNode("Scan", false, false).shape, "doublecircle");
}

TEST(ModelGraphDot, NodesHaveStylesLabelsShapesAndFov) {
  auto dot = ModelGraphDot(Model());
  ASSERT_TRUE(dot.ok()) << dot.status();
  const std::string raw = NodeLine(*dot, "raw");
  EXPECT_THAT(raw, HasSubstr("label=\"Input - raw (input)\\n[(None,b), (1,f), (5,z), (19,x), "
                             "(19,y)]\\nfov [1,1,1]  strides [1,1,1]\""));
  EXPECT_THAT(raw, HasSubstr("shape=box, fillcolor=\"yellow\""));
  const std::string conv = NodeLine(*dot, "conv_a");
  EXPECT_THAT(conv, HasSubstr("label=\"Conv - conv_a\\n[(None,b), (4,f), (5,z), (17,x), "
                              "(17,y)]\\nfov [1,3,3]  strides [1,1,1]\\n"));
  EXPECT_THAT(conv, HasSubstr("kernel=(1,3,3)"));
  EXPECT_THAT(conv, HasSubstr("\\n40 params\""));  // 4 * 1 * 1*3*3 weights + 4 biases
  EXPECT_THAT(conv, HasSubstr("shape=invtrapezium, fillcolor=\"lightgreen\""));
  EXPECT_THAT(NodeLine(*dot, "cat"), HasSubstr("(8,f)"));
  EXPECT_THAT(NodeLine(*dot, "cat"), HasSubstr("shape=house"));
  EXPECT_THAT(NodeLine(*dot, "logits"), HasSubstr("fov [1,3,3]"));
  const std::string probs = NodeLine(*dot, "probs");
  EXPECT_THAT(probs, HasSubstr("label=\"Softmax - probs (prediction)\\n"));
  EXPECT_THAT(probs, HasSubstr("shape=ellipse, fillcolor=\"lightgreen\""));
  EXPECT_THAT(probs, HasSubstr("penwidth=2.5"));  // the prediction node stands out
  EXPECT_THAT(NodeLine(*dot, "target"), HasSubstr("shape=box, fillcolor=\"yellow\""));
  EXPECT_THAT(NodeLine(*dot, "nll"), HasSubstr("shape=diamond, fillcolor=\"orange\""));
  const std::string loss = NodeLine(*dot, "loss");
  EXPECT_THAT(loss, HasSubstr("label=\"AggregateLoss - loss (loss)\\n"));
  EXPECT_THAT(loss, HasSubstr("shape=diamond, fillcolor=\"orange\""));
  EXPECT_THAT(NodeLine(*dot, "errors"), HasSubstr("shape=box, fillcolor=\"lightblue\""));
  EXPECT_THAT(*dot, HasSubstr("prediction 'probs': fov [1,3,3], offsets [0,1,1], "
                              "strides [1,1,1]"));
  EXPECT_THAT(*dot, HasSubstr(" trainable parameters, "));
}

TEST(ModelGraphDot, EdgesFollowInputsAndNumberSeveralInputs) {
  auto dot = ModelGraphDot(Model());
  ASSERT_TRUE(dot.ok()) << dot.status();
  EXPECT_THAT(*dot, HasSubstr("\"raw\" -> \"conv_a\";"));
  EXPECT_THAT(*dot, HasSubstr("\"raw\" -> \"conv_b\";"));
  EXPECT_THAT(*dot, HasSubstr("\"conv_a\" -> \"cat\" [label=\"0\"];"));
  EXPECT_THAT(*dot, HasSubstr("\"conv_b\" -> \"cat\" [label=\"1\"];"));
  EXPECT_THAT(*dot, HasSubstr("\"probs\" -> \"nll\" [label=\"0\"];"));
  EXPECT_THAT(*dot, HasSubstr("\"target\" -> \"nll\" [label=\"1\"];"));
  EXPECT_THAT(*dot, HasSubstr("\"nll\" -> \"loss\";"));
  // Input_like's reference lends only its shape.
  EXPECT_THAT(*dot, HasSubstr("\"probs\" -> \"target\" [style=dashed, label=\"shape\"];"));
  // raw->a, raw->b, a->cat, b->cat, cat->logits, logits->probs, probs->target, probs->nll,
  // target->nll, nll->loss, probs->errors, target->errors.
  EXPECT_EQ(Count(*dot, " -> "), kEdges);
}

TEST(ModelGraphDot, QuotesAndBackslashesInNamesAreEscaped) {
  auto dot = ModelGraphDot(Model("b\\\\\"x"));  // Lua 'b\\"x' is the name b\"x
  ASSERT_TRUE(dot.ok()) << dot.status();
  EXPECT_THAT(*dot, HasSubstr("\"raw\" -> \"b\\\\\\\"x\";"));
  auto svg = RenderDot(*dot, ModelGraphFormat::kSvg);
  ASSERT_TRUE(svg.ok()) << svg.status();
  // Graphviz's SVG writes '-' as &#45;.
  EXPECT_NE(svg->find("Conv &#45; b\\&quot;x"), std::string::npos);
}

// Expat: well-formedness and the node groups Graphviz writes (<g id="node3" class="node">).
struct SvgCounts {
  int nodes = 0, edges = 0;
  bool svg_root = false;
};
void StartElement(void* data, const XML_Char* name, const XML_Char** attrs) {
  auto* c = static_cast<SvgCounts*>(data);
  if (std::strcmp(name, "svg") == 0) c->svg_root = true;
  if (std::strcmp(name, "g") != 0) return;
  for (int i = 0; attrs[i] != nullptr; i += 2) {
    if (std::strcmp(attrs[i], "class") != 0) continue;
    if (std::strcmp(attrs[i + 1], "node") == 0) ++c->nodes;
    if (std::strcmp(attrs[i + 1], "edge") == 0) ++c->edges;
  }
}
void EndElement(void*, const XML_Char*) {}

TEST(ModelGraphRender, SvgIsXmlWithOneNodeGroupPerNode) {
  auto dot = ModelGraphDot(Model());
  ASSERT_TRUE(dot.ok()) << dot.status();
  auto svg = RenderDot(*dot, ModelGraphFormat::kSvg);
  ASSERT_TRUE(svg.ok()) << svg.status();
  XML_Parser p = XML_ParserCreate(nullptr);
  SvgCounts counts;
  XML_SetUserData(p, &counts);
  XML_SetElementHandler(p, StartElement, EndElement);
  const bool ok = XML_Parse(p, svg->data(), static_cast<int>(svg->size()), 1) == XML_STATUS_OK;
  EXPECT_TRUE(ok) << XML_ErrorString(XML_GetErrorCode(p)) << " at line "
                  << XML_GetCurrentLineNumber(p);
  XML_ParserFree(p);
  EXPECT_TRUE(counts.svg_root);
  EXPECT_EQ(counts.nodes, kNodes);
  EXPECT_EQ(counts.edges, kEdges);
  EXPECT_NE(svg->find("Conv &#45; conv_a"), std::string::npos);  // '-' as &#45;
}

// Width and height from the IHDR chunk (big-endian, bytes 16..23).
uint32_t Be32(const std::string& s, size_t at) {
  return (uint32_t{static_cast<uint8_t>(s[at])} << 24) |
         (uint32_t{static_cast<uint8_t>(s[at + 1])} << 16) |
         (uint32_t{static_cast<uint8_t>(s[at + 2])} << 8) |
         uint32_t{static_cast<uint8_t>(s[at + 3])};
}

TEST(ModelGraphRender, PngHasTheSignatureAndAPlausibleSize) {
  auto dot = ModelGraphDot(Model());
  ASSERT_TRUE(dot.ok()) << dot.status();
  auto png = RenderDot(*dot, ModelGraphFormat::kPng);
  ASSERT_TRUE(png.ok()) << png.status();
  ASSERT_GT(png->size(), 1000u);
  EXPECT_EQ(png->substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(png->substr(12, 4), "IHDR");
  const uint32_t width = Be32(*png, 16), height = Be32(*png, 20);
  // Ten labelled nodes in about seven ranks: a few hundred pixels each way, at most a few
  // thousand.
  EXPECT_GT(width, 200u);
  EXPECT_LT(width, 5000u);
  EXPECT_GT(height, 400u);
  EXPECT_LT(height, 8000u);
  EXPECT_GT(height, width / 2);  // drawn top to bottom
}

TEST(ModelGraphRender, GraphvizErrorsComeBackInTheStatus) {
  auto bad = RenderDot("digraph model { a -> ; }", ModelGraphFormat::kSvg);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("could not parse the DOT text: "));
  EXPECT_THAT(bad.status().message(), HasSubstr("syntax error"));
  // And Graphviz still works afterwards.
  EXPECT_TRUE(RenderDot("digraph { a -> b; }", ModelGraphFormat::kSvg).ok());
}

TEST(ModelGraphFormat, ByExtension) {
  EXPECT_EQ(*ModelGraphFormatOf("out.svg"), ModelGraphFormat::kSvg);
  EXPECT_EQ(*ModelGraphFormatOf("dir.d/OUT.PNG"), ModelGraphFormat::kPng);
  for (const char* path : {"out.jpg", "out", "pics.svg/out", "out.svgz"}) {
    auto f = ModelGraphFormatOf(path);
    ASSERT_FALSE(f.ok()) << path;
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(f.status().message(), HasSubstr(absl::StrCat("'", path, "'")));
    EXPECT_THAT(f.status().message(), HasSubstr("use .svg or .png"));
  }
}

TEST(ModelGraphWrite, WritesTheFileOrNamesWhatFailed) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("elk_graph_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  ASSERT_TRUE(WriteModelGraph(Model(), (dir / "m.svg").string()).ok());
  std::ifstream in(dir / "m.svg");
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_THAT(ss.str(), HasSubstr("<svg"));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);  // no temp
  absl::Status missing = WriteModelGraph(Model(), (dir / "no/such/dir/m.png").string());
  EXPECT_FALSE(missing.ok());
  EXPECT_THAT(missing.message(), HasSubstr("no/such/dir/m.png"));
  // A model that does not build: the Graph's error as it is.
  v1::ModelSpec broken = Model();
  broken.mutable_nodes(1)->set_inputs(0, "nowhere");
  absl::Status s = WriteModelGraph(broken, (dir / "b.svg").string());
  EXPECT_THAT(s.message(), HasSubstr("'nowhere'"));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace elektronn
