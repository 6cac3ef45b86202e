// Node registry: maps each NodeSpec op (the oneof case) to the class that implements it.
//
// Adding an op:
//  1. add its message to proto/elektronn/v1/model.proto and a case to NodeSpec's `op` oneof;
//  2. write engine/nodes/<family>.cc with a Node subclass (InferShape, Compile, Forward, Backward);
//  3. add one line `r.Add(v1::NodeSpec::k<Op>, Make<Class>)` to RegisterBuiltinNodes in
//  registry.cc;
//  4. give it a gradient check in tests/engine/nodes/ and a line in the README's node table.
#pragma once

#include <functional>
#include <memory>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "engine/nodes/node.h"

namespace elektronn {

using NodeFactory = std::function<std::unique_ptr<Node>(const v1::NodeSpec&)>;

class NodeRegistry {
 public:
  // The registry with every built-in node.
  static const NodeRegistry& Builtin();
  void Add(v1::NodeSpec::OpCase op, NodeFactory f) { factories_[op] = std::move(f); }
  absl::StatusOr<std::unique_ptr<Node>> Create(const v1::NodeSpec& spec) const;

 private:
  absl::flat_hash_map<int, NodeFactory> factories_;
};

// One factory per node family (defined in the family's file).
std::unique_ptr<Node> MakeInput(const v1::NodeSpec& s);
std::unique_ptr<Node> MakeInputLike(const v1::NodeSpec& s);
std::unique_ptr<Node> MakeConv(const v1::NodeSpec& s);
std::unique_ptr<Node> MakePool(const v1::NodeSpec& s);
std::unique_ptr<Node> MakePerceptron(const v1::NodeSpec& s);
std::unique_ptr<Node> MakeActivation(const v1::NodeSpec& s);
std::unique_ptr<Node> MakeSoftmax(const v1::NodeSpec& s);
std::unique_ptr<Node> MakeConcat(const v1::NodeSpec& s);
std::unique_ptr<Node> MakeCrop(const v1::NodeSpec& s);
std::unique_ptr<Node> MakeAdd(const v1::NodeSpec& s);
std::unique_ptr<Node> MakeMultinoulliNLL(const v1::NodeSpec& s);
std::unique_ptr<Node> MakeAggregateLoss(const v1::NodeSpec& s);
std::unique_ptr<Node> MakeErrors(const v1::NodeSpec& s);
std::unique_ptr<Node> MakeFragmentsToDense(const v1::NodeSpec& s);
// UpConv family.
std::unique_ptr<Node> MakeUpConv(const v1::NodeSpec& s);

// Classes per group of a Softmax node (0 if `n` is not a Softmax).
int64_t SoftmaxClasses(const Node& n);

}  // namespace elektronn
