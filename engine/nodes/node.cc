// Node base: buffers, parameters and gradient routing shared by every op.
#include "engine/nodes/node.h"

#include <numeric>

#include "absl/strings/str_cat.h"

namespace elektronn {

int64_t Parameter::canonical_size() const {
  return std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<>());
}

double Node::cost() const {
  if (parents_.empty()) return 0;
  return static_cast<double>(parents_[0]->shape().stripnone_prod());
}

int64_t Node::channels() const {
  int64_t f = shape_.SizeOf('f');
  return f > 0 ? f : 1;
}

void Node::AllocateOutput(kernels::Backend* b) {
  numel_ = shape_.stripnone_prod();
  buffers_.push_back(std::make_unique<Buffer>(b, numel_));
  value_ = buffers_.back()->data();
}

void Node::AllocateGrad(kernels::Backend* b) {
  if (!grad_) grad_ = Buffer(b, numel_);
}

Buffer& Node::Scratch(kernels::Backend* b, int64_t n) {
  buffers_.push_back(std::make_unique<Buffer>(b, n));
  return *buffers_.back();
}

Parameter& Node::AddParam(kernels::Backend* b, std::string pname, std::vector<int64_t> pshape,
                          int64_t native_size, float reg_multiplier) {
  Parameter p;
  p.node = name();
  p.name = std::move(pname);
  p.shape = std::move(pshape);
  p.size = native_size;
  p.value = Scratch(b, native_size).data();
  p.grad = Scratch(b, native_size).data();
  b->Fill(p.value, 0.f, native_size);
  b->Fill(p.grad, 0.f, native_size);
  p.reg_multiplier = reg_multiplier;
  params_.push_back(std::move(p));
  return params_.back();
}

GradTarget Node::ParentGrad(int i) {
  Node* p = parents_[i];
  if (!p->needs_grad_) return {};
  GradTarget t{p->grad(), p->grad_written_};
  p->grad_written_ = true;
  return t;
}

std::vector<int64_t> PhysicalSizes(const TaggedShape& s) {
  std::vector<int64_t> out;
  for (int i = 0; i < s.rank(); ++i)
    if (s.tags()[i] != 'f') out.push_back(s.size(i));
  if (s.HasTag('f')) out.push_back(s.SizeOf('f'));
  return out;
}

int PhysicalAxis(const TaggedShape& s, int axis) {
  const int f = s.TagIndex('f');
  if (axis == f) return s.rank() - 1;
  return (f >= 0 && axis > f) ? axis - 1 : axis;
}

std::string NodeRef(const Node& n) { return absl::StrCat(n.op(), " '", n.name(), "'"); }

absl::Status NodeError(const Node& n, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(NodeRef(n), ": ", what));
}

kernels::Eltwise ToEltwise(v1::Activation a) {
  using kernels::Eltwise;
  switch (a) {
    case v1::RELU:
    case v1::ACTIVATION_UNSPECIFIED:
      return Eltwise::kRelu;
    case v1::TANH:
      return Eltwise::kTanh;
    case v1::SIGMOID:
      return Eltwise::kSigmoid;
    case v1::LIN:
      return Eltwise::kLinear;
    case v1::ABS:
      return Eltwise::kAbs;
    case v1::SOFTPLUS:
      return Eltwise::kSoftplus;
    case v1::ELU:
      return Eltwise::kElu;
    case v1::PRELU:
      return Eltwise::kLinear;  // handled by the node (learned slope)
    case v1::SELU:
      return Eltwise::kSelu;
    case v1::CONCENTRATION:
      return Eltwise::kConcentration;
    case v1::RADIUS:
      return Eltwise::kRadius;
    default:
      return Eltwise::kRelu;
  }
}

const char* ActivationName(v1::Activation a) {
  switch (a) {
    case v1::ACTIVATION_UNSPECIFIED:
    case v1::RELU:
      return "relu";
    case v1::TANH:
      return "tanh";
    case v1::SIGMOID:
      return "sigmoid";
    case v1::LIN:
      return "lin";
    case v1::ABS:
      return "abs";
    case v1::SOFTPLUS:
      return "softplus";
    case v1::ELU:
      return "elu";
    case v1::PRELU:
      return "prelu";
    case v1::SELU:
      return "selu";
    case v1::CONCENTRATION:
      return "concentration";
    case v1::RADIUS:
      return "radius";
    default:
      return "?";
  }
}

}  // namespace elektronn
