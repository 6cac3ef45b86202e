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
// Structural, element-wise and probabilistic family (issue 11): engine/nodes/structural.cc.
std::unique_ptr<Node> MakeSlice(const v1::NodeSpec& s);
std::unique_ptr<Node> MakeReshape(const v1::NodeSpec& s);
std::unique_ptr<Node> MakePad(const v1::NodeSpec& s);
std::unique_ptr<Node> MakeMultMerge(const v1::NodeSpec& s);
std::unique_ptr<Node> MakeFaithlessMerge(const v1::NodeSpec& s);
std::unique_ptr<Node> MakeApplyFunc(const v1::NodeSpec& s);
std::unique_ptr<Node> MakeMaxout(const v1::NodeSpec& s);
std::unique_ptr<Node> MakeLrn(const v1::NodeSpec& s);
std::unique_ptr<Node> MakeGaussianRv(const v1::NodeSpec& s);
std::unique_ptr<Node> MakeGaussianAevbPrior(const v1::NodeSpec& s);
// UpConv family.
std::unique_ptr<Node> MakeUpConv(const v1::NodeSpec& s);
// Recurrent family (issue 15): engine/nodes/recurrent.cc (cells), memory.cc (memories).
std::unique_ptr<Node> MakeGru(const v1::NodeSpec& s);
std::unique_ptr<Node> MakeLstm(const v1::NodeSpec& s);
std::unique_ptr<Node> MakeInitialState(const v1::NodeSpec& s);
std::unique_ptr<Node> MakeValueNode(const v1::NodeSpec& s);

// Recurrence (issue 15): engine/nodes/scan.cc.
std::unique_ptr<Node> MakeScan(const v1::NodeSpec& s);

// Classes per group of a Softmax node (0 if `n` is not a Softmax).
int64_t SoftmaxClasses(const Node& n);

// losses family (issue 11): engine/nodes/losses_regression.cc, losses.cc
std::unique_ptr<Node> MakeBinaryNLL(const v1::NodeSpec& s);
std::unique_ptr<Node> MakeGaussianNLL(const v1::NodeSpec& s);
std::unique_ptr<Node> MakeBetaNLL(const v1::NodeSpec& s);
std::unique_ptr<Node> MakeRegressionLoss(const v1::NodeSpec& s);  // SquaredLoss and AbsLoss
std::unique_ptr<Node> MakeEuclideanDistance(const v1::NodeSpec& s);
std::unique_ptr<Node> MakeRampLoss(const v1::NodeSpec& s);
std::unique_ptr<Node> MakeSobel(const v1::NodeSpec& s);
std::unique_ptr<Node> MakeOneHot(const v1::NodeSpec& s);
std::unique_ptr<Node> MakeClassification(const v1::NodeSpec& s);
// The live mixing weights of an AggregateLoss node (ELEKTRONN2's model.mixing); null otherwise.
std::vector<float>* AggregateLossMixingWeights(Node& n);

}  // namespace elektronn
