// The model as a picture (reference §3.5): Graphviz DOT from a built Graph, rendered to SVG or
// PNG in-process with Graphviz's libgvc. The client's `check --graph` links this (and elk_graph)
// but includes no Graph header: it passes a ModelSpec.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "elektronn/v1/model.pb.h"

namespace elektronn {

class Graph;

// How one node is drawn: a Graphviz shape and fill colour.
struct ModelGraphStyle {
  std::string shape;
  std::string fillcolor;
  std::string color = "black";  // outline
};

// ELEKTRONN2's d3viz styling (§3.5), chosen by op name so that ops this file does not know
// fall back to the default: sources yellow boxes; losses (ops named *NLL, *Loss,
// EuclideanDistance) orange diamonds; other sinks (no children) blue boxes; Conv inverted
// trapezium, UpConv trapezium, Perceptron octagon, GRU/LSTM double octagon, Concat house, Scan red
// double circle, ValueNode box; anything else a green ellipse. A source or loss keeps its style
// when it is also a sink (ELEKTRONN2's losses are always sinks, yet are drawn as diamonds).
ModelGraphStyle StyleOfNode(std::string_view op, bool is_source, bool is_sink);

// The DOT text of the graph: one node per graph node, labelled `<Op> - <name>` (plus the
// designation, e.g. "(prediction)"), its output shape, fov and strides, its settings and
// parameter count; one edge per input, numbered when a node has several inputs (their order
// matters: Concat, losses); totals and the prediction node's geometry as the graph's caption.
std::string ModelGraphDot(const Graph& graph);
// Builds the Graph of `spec` first (its errors are returned as they are).
absl::StatusOr<std::string> ModelGraphDot(const v1::ModelSpec& spec);

enum class ModelGraphFormat { kSvg, kPng };
// The format of an image path by its extension (.svg or .png, any case); an InvalidArgument
// error naming the path and the valid extensions otherwise.
absl::StatusOr<ModelGraphFormat> ModelGraphFormatOf(std::string_view path);

// Lays out `dot` with Graphviz's dot layout and renders it. Graphviz's own errors (syntax, a
// missing plugin) come back in the status. Serialised internally (Graphviz keeps global state).
absl::StatusOr<std::string> RenderDot(std::string_view dot, ModelGraphFormat format);

// Renders the picture of `graph` (or of `spec`) to `path` in the format of its extension,
// written to a temporary file beside it and renamed over it.
absl::Status WriteModelGraph(const Graph& graph, const std::string& path);
absl::Status WriteModelGraph(const v1::ModelSpec& spec, const std::string& path);

}  // namespace elektronn
