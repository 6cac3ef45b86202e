// The table of built-in nodes.
#include "engine/nodes/registry.h"

#include "absl/strings/str_format.h"

namespace elektronn {
namespace {

NodeRegistry MakeBuiltin() {
  NodeRegistry r;
  r.Add(v1::NodeSpec::kInput, MakeInput);
  r.Add(v1::NodeSpec::kInputLike, MakeInputLike);
  r.Add(v1::NodeSpec::kConv, MakeConv);
  r.Add(v1::NodeSpec::kPool, MakePool);
  r.Add(v1::NodeSpec::kPerceptron, MakePerceptron);
  r.Add(v1::NodeSpec::kActivation, MakeActivation);
  r.Add(v1::NodeSpec::kSoftmax, MakeSoftmax);
  r.Add(v1::NodeSpec::kConcat, MakeConcat);
  r.Add(v1::NodeSpec::kCrop, MakeCrop);
  r.Add(v1::NodeSpec::kAdd, MakeAdd);
  r.Add(v1::NodeSpec::kMultinoulliNll, MakeMultinoulliNLL);
  r.Add(v1::NodeSpec::kAggregateLoss, MakeAggregateLoss);
  r.Add(v1::NodeSpec::kErrors, MakeErrors);
  r.Add(v1::NodeSpec::kFragmentsToDense, MakeFragmentsToDense);
  // Structural, element-wise and probabilistic family (issue 11).
  r.Add(v1::NodeSpec::kSlice, MakeSlice);
  r.Add(v1::NodeSpec::kReshape, MakeReshape);
  r.Add(v1::NodeSpec::kPad, MakePad);
  r.Add(v1::NodeSpec::kMultMerge, MakeMultMerge);
  r.Add(v1::NodeSpec::kFaithlessMerge, MakeFaithlessMerge);
  r.Add(v1::NodeSpec::kApplyFunc, MakeApplyFunc);
  r.Add(v1::NodeSpec::kMaxout, MakeMaxout);
  r.Add(v1::NodeSpec::kLrn, MakeLrn);
  r.Add(v1::NodeSpec::kGaussianRv, MakeGaussianRv);
  r.Add(v1::NodeSpec::kGaussianAevbPrior, MakeGaussianAevbPrior);
  // losses family (issue 11)
  r.Add(v1::NodeSpec::kBinaryNll, MakeBinaryNLL);
  r.Add(v1::NodeSpec::kGaussianNll, MakeGaussianNLL);
  r.Add(v1::NodeSpec::kBetaNll, MakeBetaNLL);
  r.Add(v1::NodeSpec::kSquaredLoss, MakeRegressionLoss);
  r.Add(v1::NodeSpec::kAbsLoss, MakeRegressionLoss);
  r.Add(v1::NodeSpec::kEuclideanDistance, MakeEuclideanDistance);
  r.Add(v1::NodeSpec::kRampLoss, MakeRampLoss);
  r.Add(v1::NodeSpec::kSobel, MakeSobel);
  r.Add(v1::NodeSpec::kOneHot, MakeOneHot);
  r.Add(v1::NodeSpec::kClassification, MakeClassification);
  // UpConv family.
  r.Add(v1::NodeSpec::kUpconv, MakeUpConv);
  // Recurrent family (issue 15).
  r.Add(v1::NodeSpec::kGru, MakeGru);
  r.Add(v1::NodeSpec::kLstm, MakeLstm);
  r.Add(v1::NodeSpec::kInitialState, MakeInitialState);
  r.Add(v1::NodeSpec::kValueNode, MakeValueNode);
  // Recurrence (issue 15): Scan.
  r.Add(v1::NodeSpec::kScan, MakeScan);
  return r;
}

}  // namespace

const NodeRegistry& NodeRegistry::Builtin() {
  static const NodeRegistry* r = new NodeRegistry(MakeBuiltin());
  return *r;
}

absl::StatusOr<std::unique_ptr<Node>> NodeRegistry::Create(const v1::NodeSpec& spec) const {
  auto it = factories_.find(spec.op_case());
  if (it == factories_.end()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "node '%s' has no operation set (or one this build does not know)", spec.name()));
  }
  return it->second(spec);
}

}  // namespace elektronn
