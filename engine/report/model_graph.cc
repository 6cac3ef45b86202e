// The model as Graphviz DOT and its rendering with libgvc (reference §3.5).
#include "engine/report/model_graph.h"

#include <graphviz/cgraph.h>
#include <graphviz/gvc.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "engine/core/status.h"
#include "engine/graph/graph.h"

namespace elektronn {
namespace {

// A DOT quoted string's body: `"` and `\` escaped, newlines as the label line break `\n`.
std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string List(const std::vector<int64_t>& v) {
  return absl::StrCat("[", absl::StrJoin(v, ","), "]");
}

// 1234567 -> "1,234,567".
std::string Thousands(int64_t v) {
  std::string digits = absl::StrCat(v < 0 ? -v : v), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return v < 0 ? "-" + out : out;
}

bool IsLoss(std::string_view op) {
  return op.ends_with("NLL") || op.ends_with("Loss") || op == "EuclideanDistance";
}

// Designations of a node, as the words shown after its name ("prediction, loss").
std::string Roles(const v1::Designations& d, const std::string& name) {
  std::vector<std::string> roles;
  if (d.input_node() == name) roles.push_back("input");
  if (d.target_node() == name) roles.push_back("target");
  if (d.prediction_node() == name) roles.push_back("prediction");
  if (d.loss_node() == name) roles.push_back("loss");
  if (d.error_node() == name) roles.push_back("errors");
  return absl::StrJoin(roles, ", ");
}

// Only one thread may drive Graphviz at a time: its error handler, plugin tables and the
// cgraph/layout code keep process-wide state.
std::mutex& GraphvizMutex() {
  static std::mutex m;
  return m;
}

// Graphviz reports errors through a process-wide callback; collected under GraphvizMutex().
std::string* graphviz_errors = nullptr;
int CollectGraphvizError(char* msg) {
  if (graphviz_errors != nullptr && msg != nullptr) absl::StrAppend(graphviz_errors, msg);
  return 0;
}

}  // namespace

ModelGraphStyle StyleOfNode(std::string_view op, bool is_source, bool is_sink) {
  if (is_source) return {"box", "yellow"};
  if (IsLoss(op)) return {"diamond", "orange"};
  if (is_sink) return {"box", "lightblue"};
  static const auto* const kShapes = new absl::flat_hash_map<std::string_view, std::string_view>{
      {"Conv", "invtrapezium"}, {"UpConv", "trapezium"},   {"Perceptron", "octagon"},
      {"GRU", "doubleoctagon"}, {"LSTM", "doubleoctagon"}, {"Concat", "house"},
      {"ValueNode", "box"}};
  if (op == "Scan") return {"doublecircle", "lightgreen", "red"};
  auto it = kShapes->find(op);
  return {it == kShapes->end() ? "ellipse" : std::string(it->second), "lightgreen"};
}

std::string ModelGraphDot(const Graph& graph) {
  const v1::ModelSpec& spec = graph.spec();
  const v1::Designations& d = spec.designations();
  // A source's parent (Input_like's reference node) only lends its shape: ELEKTRONN2 draws no
  // edge for it, so it makes no child; we draw it dashed, as "shape".
  absl::flat_hash_set<const Node*> has_children;
  for (const auto& n : graph.nodes())
    if (!n->is_source())
      for (const Node* p : n->parents()) has_children.insert(p);

  std::string dot =
      "digraph model {\n"
      "  graph [rankdir=TB, fontname=\"DejaVu Sans\", fontsize=12, labelloc=b];\n"
      "  node [style=filled, fontname=\"DejaVu Sans\", fontsize=11];\n"
      "  edge [fontname=\"DejaVu Sans\", fontsize=9];\n";
  for (const auto& n : graph.nodes()) {
    const bool source = n->is_source() || n->parents().empty();
    const ModelGraphStyle style = StyleOfNode(n->op(), source, !has_children.contains(n.get()));
    const TaggedShape& s = n->shape();
    std::vector<std::string> lines;
    const std::string roles = Roles(d, n->name());
    lines.push_back(
        absl::StrCat(n->op(), " - ", n->name(), roles.empty() ? "" : " (" + roles + ")"));
    if (s.rank() == 0) {
      lines.push_back("no shape");
    } else {
      lines.push_back(s.ToString());
      // What a connectomics user reads off the picture: how much context each node sees and
      // how coarse its output grid is.
      if (s.ndim() > 0) {
        lines.push_back(absl::StrCat("fov ", List(s.fov()), "  strides ", List(s.strides())));
      }
    }
    if (!n->details().empty()) lines.push_back(n->details());
    if (n->param_count() > 0) lines.push_back(absl::StrCat(Thousands(n->param_count()), " params"));
    absl::StrAppend(&dot, "  ", Quote(n->name()), " [label=", Quote(absl::StrJoin(lines, "\n")),
                    ", shape=", style.shape, ", fillcolor=", Quote(style.fillcolor),
                    ", color=", Quote(style.color),
                    d.prediction_node() == n->name() ? ", penwidth=2.5" : "",
                    ", tooltip=", Quote(s.ndim() == 0 ? s.ToString() : s.ExtRepr()), "];\n");
  }
  for (const auto& n : graph.nodes()) {
    const auto& parents = n->parents();
    for (size_t i = 0; i < parents.size(); ++i) {
      absl::StrAppend(&dot, "  ", Quote(parents[i]->name()), " -> ", Quote(n->name()));
      if (n->is_source()) {
        dot += " [style=dashed, label=\"shape\"]";
      } else if (parents.size() > 1) {
        absl::StrAppend(&dot, " [label=", Quote(absl::StrCat(i)), "]");
      }
      dot += ";\n";
    }
  }
  const ModelSummary summary = graph.Summary();
  std::string caption = absl::StrFormat("%s trainable parameters, %.3f GOps per step",
                                        Thousands(summary.total_params), summary.total_gops);
  if (const Node* p = graph.Find(d.prediction_node()); p != nullptr && p->shape().ndim() > 0) {
    absl::StrAppend(&caption, "\nprediction '", p->name(), "': fov ", List(p->shape().fov()),
                    ", offsets ", List(p->shape().offsets()), ", strides ",
                    List(p->shape().strides()));
  }
  absl::StrAppend(&dot, "  label=", Quote(caption), ";\n}\n");
  return dot;
}

absl::StatusOr<std::string> ModelGraphDot(const v1::ModelSpec& spec) {
  ASSIGN_OR_RETURN(std::unique_ptr<Graph> graph, Graph::Create(spec));
  return ModelGraphDot(*graph);
}

absl::StatusOr<ModelGraphFormat> ModelGraphFormatOf(std::string_view path) {
  const size_t dot = path.rfind('.');
  const size_t slash = path.rfind('/');
  const std::string ext =
      dot == std::string_view::npos || (slash != std::string_view::npos && dot < slash)
          ? ""
          : absl::AsciiStrToLower(std::string(path.substr(dot + 1)));
  if (ext == "svg") return ModelGraphFormat::kSvg;
  if (ext == "png") return ModelGraphFormat::kPng;
  return absl::InvalidArgumentError(
      absl::StrFormat("model graph '%s': unknown image type '%s' (by extension); use .svg or .png",
                      std::string(path), ext.empty() ? "(none)" : "." + ext));
}

absl::StatusOr<std::string> RenderDot(std::string_view dot, ModelGraphFormat format) {
  const char* fmt = format == ModelGraphFormat::kSvg ? "svg" : "png";
  std::lock_guard<std::mutex> lock(GraphvizMutex());
  std::string errors;
  graphviz_errors = &errors;
  agusererrf previous_handler = agseterrf(CollectGraphvizError);
  agerrlevel_t previous_level = agseterr(AGERR);  // warnings (e.g. font fallbacks) are not errors
  auto restore = [&] {
    agseterrf(previous_handler);
    agseterr(previous_level);
    graphviz_errors = nullptr;
  };
  auto failed = [&](std::string_view what) {
    restore();
    absl::StripTrailingAsciiWhitespace(&errors);
    return absl::InternalError(absl::StrFormat("model graph: Graphviz could not %s: %s", what,
                                               errors.empty() ? "no message" : errors));
  };
  GVC_t* gvc = gvContext();
  if (gvc == nullptr) return failed("start (gvContext)");
  const std::string text(dot);
  Agraph_t* g = agmemread(text.c_str());
  if (g == nullptr) {
    gvFreeContext(gvc);
    return failed("parse the DOT text");
  }
  std::string out;
  absl::Status status = absl::OkStatus();
  if (gvLayout(gvc, g, "dot") != 0) {
    status = failed("lay out the graph (dot layout plugin)");
  } else {
    char* data = nullptr;
    unsigned int length = 0;
    if (gvRenderData(gvc, g, fmt, &data, &length) != 0 || data == nullptr) {
      status = failed(absl::StrCat("render ", fmt, " (is Graphviz's ", fmt, " plugin installed?)"));
    } else {
      out.assign(data, length);
    }
    if (data != nullptr) gvFreeRenderData(data);
    gvFreeLayout(gvc, g);
  }
  agclose(g);
  gvFreeContext(gvc);
  if (!status.ok()) return status;
  restore();
  return out;
}

absl::Status WriteModelGraph(const Graph& graph, const std::string& path) {
  ASSIGN_OR_RETURN(ModelGraphFormat format, ModelGraphFormatOf(path));
  ASSIGN_OR_RETURN(std::string image, RenderDot(ModelGraphDot(graph), format));
  const std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) {
    return absl::ErrnoToStatus(errno, absl::StrFormat("model graph: cannot create '%s'", tmp));
  }
  const bool written = std::fwrite(image.data(), 1, image.size(), f) == image.size();
  const int saved_errno = errno;
  if (std::fclose(f) != 0 || !written) {
    std::remove(tmp.c_str());
    return absl::ErrnoToStatus(written ? errno : saved_errno,
                               absl::StrFormat("model graph: cannot write '%s'", tmp));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    std::remove(tmp.c_str());
    return absl::ErrnoToStatus(
        e, absl::StrFormat("model graph: cannot rename '%s' to '%s'", tmp, path));
  }
  return absl::OkStatus();
}

absl::Status WriteModelGraph(const v1::ModelSpec& spec, const std::string& path) {
  RETURN_IF_ERROR(ModelGraphFormatOf(path).status());  // before building the graph
  ASSIGN_OR_RETURN(std::unique_ptr<Graph> graph, Graph::Create(spec));
  return WriteModelGraph(*graph, path);
}

}  // namespace elektronn
