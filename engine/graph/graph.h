// Graph: the nodes of a ModelSpec with inferred shapes, and the model summary.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "elektronn/v1/model.pb.h"
#include "engine/nodes/node.h"

namespace elektronn {

struct NodeSummary {
  std::string name, op, details;
  TaggedShape shape;
  int64_t params = 0;
  double gops = 0;  // cost in 10^9 operations
};

struct ModelSummary {
  std::vector<NodeSummary> nodes;
  int64_t total_params = 0;
  double total_gops = 0;
  std::string prediction_node;
  std::string ToString() const;  // a table, one line per node, plus totals
};

class Graph {
 public:
  // Builds every node and infers its shape. A shape error names the node and axis, and for
  // spatial errors the nearest valid sizes of the network input along that axis.
  static absl::StatusOr<std::unique_ptr<Graph>> Create(const v1::ModelSpec& spec);

  const v1::ModelSpec& spec() const { return spec_; }
  const std::vector<std::unique_ptr<Node>>& nodes() const { return nodes_; }
  Node* Find(const std::string& name) const;
  absl::StatusOr<Node*> Get(const std::string& name) const;  // error names the missing node
  ModelSummary Summary() const;

  // Builds without the input-size search (used by that search itself).
  static absl::Status BuildWithoutHints(const v1::ModelSpec& spec, Graph* g);

  // Adds one node after the nodes built so far and infers its shape only (the job-file recorder
  // grows the graph a node at a time: rebuilding it all each time was quadratic). Designations
  // are not checked. On error the graph is unchanged.
  absl::Status Append(const v1::NodeSpec& ns);

  // designate_nodes' repair of an unknown (negative, UpConv) prediction fov, reference §3.2:
  // per axis diff = input size - (stride * (out - 1) + 1); an odd diff is an error ("FOV is not
  // centered"), else the prediction and target nodes' fov become diff (offsets diff / 2).
  // Build applies it; Network::Compile again after re-inferring shapes for the batch size.
  // Without a negative fov, an even fov of the prediction leaves fov_warning() set (ELEKTRONN2
  // warns "Not all field of views are centered" and goes on).
  absl::Status RepairPredictionFov();
  // Empty, or the warning of RepairPredictionFov (shown by `elektronn check` and the trainer).
  const std::string& fov_warning() const { return fov_warning_; }

 private:
  static absl::Status Build(const v1::ModelSpec& spec, Graph* g);
  absl::Status AddNode(const v1::NodeSpec& ns);  // Append without recording `ns` in spec_
  v1::ModelSpec spec_;
  std::vector<std::unique_ptr<Node>> nodes_;
  absl::flat_hash_map<std::string, Node*> by_name_;
  std::string fov_warning_;
};

}  // namespace elektronn
