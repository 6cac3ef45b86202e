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
  // UpConv family.
  r.Add(v1::NodeSpec::kUpconv, MakeUpConv);
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
