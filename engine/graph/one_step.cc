// The one-step model of a model with a Scan node (ELEKTRONN2's rebuild_rnn).
#include "engine/graph/one_step.h"

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/core/status.h"
#include "engine/graph/graph.h"

namespace elektronn {
namespace {

v1::NodeSpec InputOf(const std::string& name, const TaggedShape& s) {
  v1::NodeSpec n;
  n.set_name(name);
  v1::InputOp* in = n.mutable_input();
  for (int64_t v : s.sizes()) in->add_shape(v);
  in->set_tags(s.tags_string());
  for (int64_t v : s.strides()) in->add_strides(v);
  for (int64_t v : s.fov()) in->add_fov(v);
  return n;
}

}  // namespace

absl::StatusOr<v1::ModelSpec> OneStepModel(const v1::ModelSpec& spec) {
  ASSIGN_OR_RETURN(std::unique_ptr<Graph> g, Graph::Create(spec));
  int scan_at = -1, n_scans = 0;
  for (int i = 0; i < spec.nodes_size(); ++i) {
    if (spec.nodes(i).has_scan()) {
      ++n_scans;
      if (scan_at < 0) scan_at = i;
    }
  }
  if (n_scans != 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("model '%s' has %d Scan nodes; the one-step model is made from exactly one",
                        spec.name(), n_scans));
  }
  const v1::NodeSpec& scan = spec.nodes(scan_at);
  const v1::ScanOp& op = scan.scan();
  ASSIGN_OR_RETURN(Node * scan_node, g->Get(scan.name()));
  // The placeholders as inputs, with the step shapes.
  absl::flat_hash_map<std::string, v1::NodeSpec> placeholders;
  std::vector<std::string> placeholder_order;
  const int k = op.in_iterate_0_size(), m = op.in_memory_size();
  for (int i = 0; i < k + m; ++i) {
    TaggedShape s = scan_node->parents()[i]->shape();
    std::string name;
    if (i < k) {
      name = op.in_iterate_0(i);
      std::vector<int64_t> sizes(s.sizes().begin() + 1, s.sizes().end());
      ASSIGN_OR_RETURN(s, TaggedShape::Create(sizes, s.tags().substr(1), s.strides(), s.fov()));
    } else {
      name = op.in_memory(i - k);
    }
    placeholders[name] = InputOf(name, s);
    placeholder_order.push_back(name);
  }
  std::vector<v1::NodeSpec> nodes;
  absl::flat_hash_set<std::string> emitted;
  auto emit_placeholder = [&](const std::string& name) {
    if (emitted.insert(name).second) nodes.push_back(placeholders[name]);
  };
  for (int i = 0; i < scan_at; ++i) {
    const v1::NodeSpec& n = spec.nodes(i);
    if (placeholders.contains(n.name())) {
      emit_placeholder(n.name());
    } else {
      nodes.push_back(n);
    }
  }
  for (const std::string& name : placeholder_order) emit_placeholder(name);
  for (const v1::NodeSpec& n : op.step_nodes()) nodes.push_back(n);
  const size_t first_after = nodes.size();
  for (int i = scan_at + 1; i < spec.nodes_size(); ++i) {
    v1::NodeSpec n = spec.nodes(i);
    for (std::string& in : *n.mutable_inputs())
      if (in == scan.name()) in = op.step_result();
    nodes.push_back(std::move(n));
  }
  // Keep what the outputs need: the step's result and memories, the placeholders, every node
  // after the Scan, and their ancestors.
  absl::flat_hash_map<std::string, const v1::NodeSpec*> by_name;
  for (const v1::NodeSpec& n : nodes) by_name[n.name()] = &n;
  std::vector<std::string> stack(placeholder_order);
  stack.push_back(op.step_result());
  for (const std::string& o : op.out_memory()) stack.push_back(o);
  for (size_t i = first_after; i < nodes.size(); ++i) stack.push_back(nodes[i].name());
  absl::flat_hash_set<std::string> keep;
  while (!stack.empty()) {
    const std::string name = stack.back();
    stack.pop_back();
    if (!keep.insert(name).second) continue;
    auto it = by_name.find(name);
    if (it == by_name.end()) continue;
    for (const std::string& in : it->second->inputs()) stack.push_back(in);
  }
  v1::ModelSpec out;
  out.set_name(spec.name() + "_one_step");
  out.set_seed(spec.seed());
  for (const v1::NodeSpec& n : nodes)
    if (keep.contains(n.name())) *out.add_nodes() = n;
  v1::Designations* d = out.mutable_designations();
  *d = spec.designations();
  auto fix = [&](std::string* name) {
    if (*name == scan.name()) *name = op.step_result();
    if (!name->empty() && !keep.contains(*name)) name->clear();
  };
  for (std::string* n : {d->mutable_input_node(), d->mutable_target_node(), d->mutable_loss_node(),
                         d->mutable_prediction_node(), d->mutable_error_node()})
    fix(n);
  if (d->input_node().empty() && k > 0) d->set_input_node(op.in_iterate_0(0));
  for (auto* list : {d->mutable_prediction_ext(), d->mutable_debug_outputs()}) {
    google::protobuf::RepeatedPtrField<std::string> kept;
    for (std::string n : *list) {
      fix(&n);
      if (!n.empty()) *kept.Add() = n;
    }
    *list = kept;
  }
  auto check = Graph::Create(out);
  if (!check.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the one-step model of '", spec.name(), "' does not build: ", check.status().message(),
        op.last_only() ? ""
                       : " (the Scan has last_only=false: nodes after it see the "
                         "step result without the 'r' axis)"));
  }
  return out;
}

}  // namespace elektronn
