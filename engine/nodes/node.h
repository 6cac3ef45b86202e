// Node: one operation of the graph. Shape inference works on TaggedShapes alone; Compile binds a
// node to a backend for a concrete batch size, after which Forward/Backward run the step.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "elektronn/v1/model.pb.h"
#include "engine/core/status.h"
#include "engine/core/tagged_shape.h"
#include "kernels/backend.h"

namespace elektronn {

class Node;

// A node-owned parameter. `value`/`grad` hold `size` floats in the kernel's native layout;
// `shape` is the canonical (user-visible) layout, converted by `export_fn`/`import_fn` when the
// two differ (convolution weights in oneDNN's blocked layout).
struct Parameter {
  std::string node;
  std::string name;
  std::vector<int64_t> shape;
  float* value = nullptr;
  float* grad = nullptr;
  int64_t size = 0;
  bool trainable = true;
  bool fixed = false;  // never trainable, whatever loading or the shell asks (BN statistics)
  float reg_multiplier = 1.f;  // weight-decay multiplier; 0 = not regularised
  std::function<void(const float*, float*)> import_fn;  // canonical -> native
  std::function<void(const float*, float*)> export_fn;  // native -> canonical
  int64_t canonical_size() const;
  std::string key() const { return node + "/" + name; }
};

// Owned float buffer of a backend.
class Buffer {
 public:
  Buffer() = default;
  Buffer(kernels::Backend* b, int64_t n) : backend_(b), n_(n), p_(b->Allocate(n)) {}
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    std::swap(backend_, o.backend_);
    std::swap(n_, o.n_);
    std::swap(p_, o.p_);
    return *this;
  }
  ~Buffer() {
    if (p_) backend_->Free(p_);
  }
  float* data() const { return p_; }
  int64_t size() const { return n_; }
  explicit operator bool() const { return p_ != nullptr; }

 private:
  kernels::Backend* backend_ = nullptr;
  int64_t n_ = 0;
  float* p_ = nullptr;
};

// What a node needs while compiling and running.
struct ExecContext {
  kernels::Backend* backend = nullptr;
  bool training = true;
  uint64_t step = 0;  // drives dropout masks
  uint64_t seed = 0;
  // Convolutions, matrix products and pooling are created with this (NetworkOptions::precision).
  kernels::DataType precision = kernels::DataType::kF32;
};

// Where a node writes the gradient of one of its parents.
struct GradTarget {
  float* ptr = nullptr;
  bool accumulate = false;
  explicit operator bool() const { return ptr != nullptr; }
};

class Node {
 public:
  explicit Node(const v1::NodeSpec& spec) : spec_(spec) {}
  virtual ~Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  const std::string& name() const { return spec_.name(); }
  const v1::NodeSpec& spec() const { return spec_; }
  virtual std::string op() const = 0;
  const std::vector<Node*>& parents() const { return parents_; }
  void set_parents(std::vector<Node*> p) { parents_ = std::move(p); }

  // Shape inference (batch may be unknown). Errors name the node, the argument and the value.
  virtual absl::Status InferShape() = 0;
  const TaggedShape& shape() const { return shape_; }
  virtual bool is_source() const { return false; }
  virtual int64_t param_count() const { return 0; }  // trainable parameters
  virtual double cost() const;                       // operations per step (ELEKTRONN2's model)
  // A one-line description of the layer's settings for summaries.
  virtual std::string details() const { return ""; }
  // Whether the node's output can carry a gradient (false for sources, errors, ...).
  virtual bool differentiable() const { return true; }
  // Activation string for nodes that have one (Softmax checks its parent is linear).
  virtual kernels::Eltwise activation() const { return kernels::Eltwise::kLinear; }

  // Compilation for a concrete batch size: `shape_` is made concrete before this is called.
  void set_concrete_shape(TaggedShape s) { shape_ = std::move(s); }
  virtual absl::Status Compile(ExecContext& ctx) = 0;
  virtual absl::Status Forward(ExecContext& ctx) = 0;
  // Reads grad() (d loss / d output) and writes the parents' gradients via ParentGrad().
  virtual absl::Status Backward(ExecContext& ctx) {
    (void)ctx;
    return absl::OkStatus();
  }

  std::deque<Parameter>& params() { return params_; }
  const std::deque<Parameter>& params() const { return params_; }

  // Output value in channels-last physical layout (see kernels/README.md).
  float* value() const { return value_; }
  float* grad() const { return grad_.data(); }
  int64_t numel() const { return numel_; }
  // Rows x channels view of the output: channels = size of 'f' (1 if absent).
  int64_t rows() const { return numel_ / channels(); }
  int64_t channels() const;

  // Graph wiring for backward.
  bool needs_grad() const { return needs_grad_; }
  void set_needs_grad(bool v) { needs_grad_ = v; }
  void AllocateGrad(kernels::Backend* b);
  void ResetGradState() { grad_written_ = false; }
  bool grad_written() const { return grad_written_; }
  void mark_grad_written() { grad_written_ = true; }
  GradTarget ParentGrad(int i);

 protected:
  // Allocates the node's output buffer (for nodes that own their output).
  void AllocateOutput(kernels::Backend* b);
  Parameter& AddParam(kernels::Backend* b, std::string name, std::vector<int64_t> shape,
                      int64_t native_size, float reg_multiplier);
  Buffer& Scratch(kernels::Backend* b, int64_t n);  // a buffer owned by the node

  v1::NodeSpec spec_;
  std::vector<Node*> parents_;
  TaggedShape shape_;
  std::deque<Parameter> params_;  // deque: references stay valid as parameters are added
  float* value_ = nullptr;
  int64_t numel_ = 0;

 private:
  std::vector<std::unique_ptr<Buffer>> buffers_;
  Buffer grad_;
  bool needs_grad_ = false;
  bool grad_written_ = false;
};

// Physical (channels-last) sizes of a logical shape: the 'f' axis moved last.
std::vector<int64_t> PhysicalSizes(const TaggedShape& s);
// Physical position of logical axis `axis`.
int PhysicalAxis(const TaggedShape& s, int axis);

// "Conv 'conv3': " prefix for errors.
std::string NodeRef(const Node& n);
absl::Status NodeError(const Node& n, const std::string& what);
kernels::Eltwise ToEltwise(v1::Activation a);
const char* ActivationName(v1::Activation a);

}  // namespace elektronn
