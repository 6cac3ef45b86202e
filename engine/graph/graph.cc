// Graph construction, shape inference with input-size suggestions, and the model summary.
#include "engine/graph/graph.h"

#include <algorithm>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/core/status.h"
#include "engine/nodes/registry.h"
#include "engine/nodes/shape_rules.h"

namespace elektronn {
namespace {

std::string Sizes(const TaggedShape& s) {
  std::vector<std::string> parts;
  for (int64_t v : s.sizes()) parts.push_back(v == kUnknownSize ? "None" : absl::StrCat(v));
  return absl::StrCat("(", absl::StrJoin(parts, ","), ")");
}

}  // namespace

// Tries input sizes around the current one along `tag` until the whole graph infers, and
// reports the nearest valid size below and above.
static std::string SuggestInputSizes(const v1::ModelSpec& spec, char tag) {
  for (int i = 0; i < spec.nodes_size(); ++i) {
    const v1::NodeSpec& n = spec.nodes(i);
    if (!n.has_input()) continue;
    auto shape = TaggedShape::Create(
        std::vector<int64_t>(n.input().shape().begin(), n.input().shape().end()), n.input().tags());
    if (!shape.ok() || shape->TagIndex(tag) < 0) continue;
    const int axis = shape->TagIndex(tag);
    const int64_t cur = n.input().shape(axis);
    auto valid = [&](int64_t cand) {
      v1::ModelSpec trial = spec;
      trial.mutable_nodes(i)->mutable_input()->set_shape(axis, cand);
      Graph g;
      return Graph::BuildWithoutHints(trial, &g).ok();
    };
    int64_t lo = -1, hi = -1;
    // Each trial builds the whole graph: a bound on the work keeps huge graphs (a job file's
    // runaway loop) from turning one error message into minutes of search.
    const int64_t max_d = std::clamp<int64_t>(1'000'000 / (2 * spec.nodes_size() + 1), 8, 512);
    for (int64_t d = 1; d <= max_d && (lo < 0 || hi < 0); ++d) {
      if (lo < 0 && cur - d >= 1 && valid(cur - d)) lo = cur - d;
      if (hi < 0 && valid(cur + d)) hi = cur + d;
    }
    if (lo < 0 && hi < 0) return "";
    std::string sizes =
        lo > 0 && hi > 0 ? absl::StrFormat("%d or %d", lo, hi) : absl::StrCat(lo > 0 ? lo : hi);
    return absl::StrFormat("; nearest valid sizes of input '%s' along %c: %s", n.name(), tag,
                           sizes);
  }
  return "";
}

absl::Status Graph::BuildWithoutHints(const v1::ModelSpec& spec, Graph* g) {
  return Build(spec, g);
}

absl::Status Graph::AddNode(const v1::NodeSpec& ns) {
  if (ns.name().empty()) return absl::InvalidArgumentError("a node has an empty name");
  if (by_name_.contains(ns.name())) {
    return absl::InvalidArgumentError(absl::StrFormat("node name '%s' is used twice", ns.name()));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Node> node, NodeRegistry::Builtin().Create(ns));
  std::vector<Node*> parents;
  for (const std::string& in : ns.inputs()) {
    Node* p = Find(in);
    if (p == nullptr) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "node '%s' names input '%s', which is not defined before it", ns.name(), in));
    }
    parents.push_back(p);
  }
  node->set_parents(std::move(parents));
  RETURN_IF_ERROR(node->InferShape());
  by_name_[ns.name()] = node.get();
  nodes_.push_back(std::move(node));
  return absl::OkStatus();
}

absl::Status Graph::Append(const v1::NodeSpec& ns) {
  RETURN_IF_ERROR(AddNode(ns));
  *spec_.add_nodes() = ns;
  return absl::OkStatus();
}

absl::Status Graph::Build(const v1::ModelSpec& spec, Graph* g) {
  g->spec_ = spec;
  for (const v1::NodeSpec& ns : spec.nodes()) RETURN_IF_ERROR(g->AddNode(ns));
  const v1::Designations& d = spec.designations();
  for (const std::string* n :
       {&d.input_node(), &d.target_node(), &d.loss_node(), &d.prediction_node(), &d.error_node()}) {
    if (!n->empty() && g->Find(*n) == nullptr) {
      return absl::InvalidArgumentError(absl::StrFormat("designated node '%s' does not exist", *n));
    }
  }
  for (const auto& list : {d.prediction_ext(), d.debug_outputs()})
    for (const std::string& n : list)
      if (g->Find(n) == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrFormat("designated node '%s' does not exist", n));
      }
  RETURN_IF_ERROR(g->RepairPredictionFov());  // UpConv family
  return absl::OkStatus();
}

// ELEKTRONN2 overwrites the fov with diff itself, an even number, not the extent diff + 1 of a
// centred receptive field (QUIRK 12). We keep its value, which is what its summaries print and
// what its offsets (diff / 2, the label crop of the batch creator) follow; the dense predictor,
// which needs the extent, adds the 1 back (engine/predict/predictor.cc).
absl::Status Graph::RepairPredictionFov() {
  fov_warning_.clear();
  const v1::Designations& d = spec_.designations();
  Node* pred = Find(d.prediction_node());
  Node* in = Find(d.input_node().empty() ? std::string("input") : d.input_node());
  if (pred == nullptr || in == nullptr) return absl::OkStatus();
  const TaggedShape& ps = pred->shape();
  if (std::none_of(ps.fov().begin(), ps.fov().end(), [](int64_t f) { return f < 0; })) {
    // ELEKTRONN2 (fov_all_centered: every fov odd) only warns: the offsets fov / 2 round down,
    // so the prediction sits half a voxel off the label patch's centre.
    if (std::any_of(ps.fov().begin(), ps.fov().end(), [](int64_t f) { return f % 2 == 0; })) {
      fov_warning_ = absl::StrFormat(
          "Not all fields of view are centred (odd): prediction node '%s' has fov (%s), offsets "
          "(%s); an even fov puts the output half a voxel off the centre of its input window, "
          "which might cause problems for many setups",
          pred->name(), absl::StrJoin(ps.fov(), ", "), absl::StrJoin(ps.offsets(), ", "));
    }
    return absl::OkStatus();
  }
  const TaggedShape& is = in->shape();
  if (is.ndim() != ps.ndim()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "prediction node '%s' has an unknown field of view (after an UpConv) that cannot be "
        "repaired: it has %d spatial axes, the input '%s' has %d",
        pred->name(), ps.ndim(), in->name(), is.ndim()));
  }
  std::vector<int64_t> fov(ps.ndim());
  for (int j = 0; j < ps.ndim(); ++j) {
    const int64_t out_extent = ps.strides()[j] * (ps.spatial_shape()[j] - 1) + 1;
    const int64_t diff = is.spatial_shape()[j] - out_extent;
    if (diff % 2 != 0 || diff < 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "FOV is not centered: prediction node '%s' covers %d input voxels along %s (stride %d, "
          "%d outputs) of the %d of input '%s', leaving %d, %s",
          pred->name(), out_extent, AxisName(ps, j), ps.strides()[j], ps.spatial_shape()[j],
          is.spatial_shape()[j], in->name(), diff,
          diff < 0 ? "a negative number" : "an odd number that cannot be split evenly"));
    }
    fov[j] = diff;
  }
  std::vector<Node*> fixed = {pred};
  if (Node* t = Find(d.target_node()); t != nullptr && t != pred) fixed.push_back(t);
  for (Node* n : fixed) {
    TaggedShape s = n->shape();
    if (s.ndim() != ps.ndim()) continue;
    for (int j = 0; j < s.ndim(); ++j) s.set_fov(j, fov[j]);
    n->set_concrete_shape(std::move(s));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Graph>> Graph::Create(const v1::ModelSpec& spec) {
  auto g = std::make_unique<Graph>();
  absl::Status s = Build(spec, g.get());
  if (!s.ok()) {
    auto tag = s.GetPayload(kShapeAxisPayload);
    if (tag.has_value()) {
      std::string hint = SuggestInputSizes(spec, std::string(*tag)[0]);
      return absl::InvalidArgumentError(absl::StrCat(s.message(), hint));
    }
    return s;
  }
  return g;
}

Node* Graph::Find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

absl::StatusOr<Node*> Graph::Get(const std::string& name) const {
  Node* n = Find(name);
  if (n == nullptr) return absl::NotFoundError(absl::StrFormat("no node named '%s'", name));
  return n;
}

ModelSummary Graph::Summary() const {
  ModelSummary m;
  for (const auto& n : nodes_) {
    NodeSummary s{n->name(), n->op(), n->details(), n->shape(), n->param_count(), n->cost() / 1e9};
    m.total_params += s.params;
    m.total_gops += s.gops;
    m.nodes.push_back(std::move(s));
  }
  m.prediction_node = spec_.designations().prediction_node();
  return m;
}

// Columns sized to their widest cell, so long node names or 3-D fovs do not shift the rest;
// the last column is the layer's settings (Node::details). A node without axes shows "-".
std::string ModelSummary::ToString() const {
  std::vector<std::vector<std::string>> rows = {
      {"node", "op", "shape", "tags", "fov", "offsets", "strides", "params", "GOps", "settings"}};
  auto list = [](const std::vector<int64_t>& v) {
    return v.empty() ? std::string("-") : absl::StrCat("[", absl::StrJoin(v, ","), "]");
  };
  for (const NodeSummary& n : nodes) {
    const bool shaped = n.shape.rank() > 0;
    rows.push_back({n.name, n.op, shaped ? Sizes(n.shape) : "-",
                    shaped ? n.shape.tags_string() : "-", list(n.shape.fov()),
                    list(n.shape.offsets()), list(n.shape.strides()), absl::StrCat(n.params),
                    absl::StrFormat("%.3f", n.gops), n.details});
  }
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& r : rows)
    for (size_t c = 0; c < r.size(); ++c) width[c] = std::max(width[c], r[c].size());
  std::string out;
  for (const auto& r : rows) {
    std::string line;
    for (size_t c = 0; c < r.size(); ++c) {
      const bool numeric = c == 7 || c == 8;  // params and GOps right-aligned
      const std::string pad(width[c] - r[c].size(), ' ');
      absl::StrAppend(&line, c == 0 ? "" : "  ", numeric ? pad + r[c] : r[c] + pad);
    }
    line.erase(line.find_last_not_of(' ') + 1);
    absl::StrAppend(&out, line, "\n");
  }
  absl::StrAppendFormat(&out, "total: %d trainable parameters, %.3f GOps per step\n", total_params,
                        total_gops);
  for (const NodeSummary& n : nodes) {
    if (n.name == prediction_node) {
      absl::StrAppendFormat(&out, "prediction '%s': %s\n", n.name, n.shape.ExtRepr());
    }
  }
  return out;
}

}  // namespace elektronn
