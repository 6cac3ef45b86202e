// Internal helpers shared by the oneDNN kernels: formats, a reusable primitive call, scratchpad.
#pragma once

#include <dnnl.hpp>
#include <memory>
#include <utility>
#include <vector>

#include "kernels/backend.h"

namespace elektronn::kernels::cpu {

using dnnl::memory;
using Tag = dnnl::memory::format_tag;

// Channels-last activation tag for 1, 2 or 3 spatial axes.
Tag ChannelsLast(int ndim);
// Plain canonical weight tag (out, in, k...).
Tag PlainWeights(int ndim);
dnnl::algorithm EltwiseAlgorithm(Eltwise e);
// Appends `e` as post-op(s): one for oneDNN's own functions, a chain for selu, concentration and
// radius (no single oneDNN algorithm computes them).
void AppendActivation(dnnl::post_ops& po, Eltwise e);

// One scratchpad shared by every primitive of a backend (user-managed mode), grown at creation.
struct Scratchpad {
  std::vector<uint8_t, std::allocator<uint8_t>> bytes;
  void Reserve(size_t n) {
    if (n > bytes.size()) bytes.resize(n);
  }
};

// Marks the calling thread as inside a oneDNN call for its lifetime (kernels::InLibraryCall()),
// so tests can tell oneDNN's own bookkeeping allocations from ours, thread by thread.
class LibraryCallScope {
 public:
  LibraryCallScope();
  ~LibraryCallScope();
  LibraryCallScope(const LibraryCallScope&) = delete;
  LibraryCallScope& operator=(const LibraryCallScope&) = delete;
};

// A primitive with its argument list built once; per call only data handles change,
// so no argument maps are built in the steady state.
class PrimitiveCall {
 public:
  PrimitiveCall() = default;
  PrimitiveCall(const dnnl::engine& eng, dnnl::primitive prim, const dnnl::primitive_desc_base& pd,
                Scratchpad* scratch);
  // Declares argument `arg` with memory descriptor `md` (handle set per call).
  void Arg(int arg, const memory::desc& md);
  void Set(int arg, const void* ptr);
  void Execute(dnnl::stream& s);
  bool valid() const { return static_cast<bool>(prim_); }

 private:
  dnnl::engine eng_;
  dnnl::primitive prim_;
  Scratchpad* scratch_ = nullptr;
  std::vector<int> ids_;
  std::vector<memory> mems_;
  std::vector<dnnl_exec_arg_t> c_args_;
};

// Context every oneDNN kernel receives from the backend.
struct DnnlContext {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  Scratchpad scratch;
  dnnl::primitive_attr Attr() const {
    dnnl::primitive_attr a;
    a.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    return a;
  }
};

// --- Mixed precision (DataType::kBf16) ---
// `md` with its data type replaced (same dims, same layout: blocked strides count elements).
memory::desc WithType(const memory::desc& md, memory::data_type t);
// OK for kF32; for kBf16 an error naming `what` unless this CPU has AVX512_BF16 and oneDNN may
// use it (DNNL_MAX_CPU_ISA can forbid it).
absl::Status CheckPrecision(DataType t, const char* what);

// A bf16 rounding of float tensors of one layout into a buffer allocated at creation. `Of`
// reorders unless the pointer is the one rounded last; `Forget` makes the next `Of` reorder.
class Bf16Copy {
 public:
  Bf16Copy() = default;
  Bf16Copy(DnnlContext* ctx, const memory::desc& f32_md, const memory::desc& bf16_md);
  const void* Of(const float* src);
  void Forget() { last_ = nullptr; }
  bool valid() const { return reorder_.valid(); }

 private:
  DnnlContext* ctx_ = nullptr;
  PrimitiveCall reorder_;
  // Not zero-filled: pages are touched only when a rounding is written (a prediction never
  // writes the diff_dst copy, so it costs address space only).
  std::unique_ptr<uint16_t[]> buf_;
  const float* last_ = nullptr;
};

// A kernel's operands as its primitives read them: in fp32 the float pointers themselves, in
// mixed precision bf16 roundings of src, the weights and diff_dst (Bf16Copy each). Forward starts
// a new step (`NewStep`: the weights changed, diff_dst will); the backward calls reuse Forward's
// rounding of src and share one of diff_dst when they get the same pointers.
class Bf16Operands {
 public:
  Bf16Operands() = default;  // fp32
  Bf16Operands(Bf16Copy src, Bf16Copy weights, Bf16Copy diff_dst)
      : on_(true), src_(std::move(src)), w_(std::move(weights)), dd_(std::move(diff_dst)) {}
  void NewStep() {
    src_.Forget();
    w_.Forget();
    dd_.Forget();
  }
  const void* Src(const float* p) { return on_ ? src_.Of(p) : p; }
  const void* Weights(const float* p) { return on_ ? w_.Of(p) : p; }
  const void* DiffDst(const float* p) { return on_ ? dd_.Of(p) : p; }

 private:
  bool on_ = false;
  Bf16Copy src_, w_, dd_;
};

// In-place a += b over n floats (used when a kernel must accumulate).
void AddInto(float* a, const float* b, int64_t n);
// out[c] = sum_r x[r, c] over a row-major (rows, cols) matrix.
void ColumnSum(const float* x, int64_t rows, int64_t cols, float* out);

absl::StatusOr<std::unique_ptr<ConvKernel>> CreateDnnlConv(DnnlContext* ctx, const ConvDesc& d);
absl::StatusOr<std::unique_ptr<PoolKernel>> CreateDnnlPool(DnnlContext* ctx, const PoolDesc& d);
absl::StatusOr<std::unique_ptr<MatmulKernel>> CreateDnnlMatmul(DnnlContext* ctx,
                                                               const MatmulDesc& d);

}  // namespace elektronn::kernels::cpu
