// Shared oneDNN plumbing: formats, argument lists built once, the shared scratchpad.
#include "kernels/cpu/onednn_util.h"

#include <cmath>

#include "absl/strings/str_format.h"

namespace elektronn::kernels::cpu {

Tag ChannelsLast(int ndim) {
  switch (ndim) {
    case 1:
      return Tag::nwc;
    case 2:
      return Tag::nhwc;
    default:
      return Tag::ndhwc;
  }
}

Tag PlainWeights(int ndim) {
  switch (ndim) {
    case 1:
      return Tag::oiw;
    case 2:
      return Tag::oihw;
    default:
      return Tag::oidhw;
  }
}

dnnl::algorithm EltwiseAlgorithm(Eltwise e) {
  switch (e) {
    case Eltwise::kRelu:
      return dnnl::algorithm::eltwise_relu;
    case Eltwise::kTanh:
      return dnnl::algorithm::eltwise_tanh;
    case Eltwise::kSigmoid:
      return dnnl::algorithm::eltwise_logistic;
    case Eltwise::kAbs:
      return dnnl::algorithm::eltwise_abs;
    case Eltwise::kSoftplus:
      return dnnl::algorithm::eltwise_soft_relu;
    case Eltwise::kElu:
      return dnnl::algorithm::eltwise_elu;
    case Eltwise::kLinear:
      return dnnl::algorithm::eltwise_linear;
    case Eltwise::kSelu:  // no single algorithm: AppendActivation chains post-ops
    case Eltwise::kConcentration:
    case Eltwise::kRadius:
      return dnnl::algorithm::eltwise_linear;
  }
  return dnnl::algorithm::eltwise_linear;
}

void AppendActivation(dnnl::post_ops& po, Eltwise e) {
  using dnnl::algorithm;
  switch (e) {
    case Eltwise::kSelu:  // scale * elu(x, alpha)
      po.append_eltwise(1.0507009873554805f, algorithm::eltwise_elu, 1.6732632423543772f, 0.f);
      return;
    case Eltwise::kConcentration:  // 7 * softplus(x) + 2
      po.append_eltwise(1.f, algorithm::eltwise_soft_relu, 0.f, 0.f);
      po.append_eltwise(1.f, algorithm::eltwise_linear, 7.f, 2.f);
      return;
    // 3 + 15 exp(0.15 x) = 3 exp(softplus(0.15 x + ln 5)). oneDNN 2.6 gives two post-ops of
    // the same algorithm the first one's parameters, so the chain uses each algorithm once.
    case Eltwise::kRadius:
      po.append_eltwise(1.f, algorithm::eltwise_linear, 0.15f, std::log(5.f));
      po.append_eltwise(1.f, algorithm::eltwise_soft_relu, 0.f, 0.f);
      po.append_eltwise(3.f, algorithm::eltwise_exp, 0.f, 0.f);
      return;
    default:
      po.append_eltwise(1.0f, EltwiseAlgorithm(e), e == Eltwise::kElu ? 1.0f : 0.0f, 0.0f);
  }
}

PrimitiveCall::PrimitiveCall(const dnnl::engine& eng, dnnl::primitive prim,
                             const dnnl::primitive_desc_base& pd, Scratchpad* scratch)
    : eng_(eng), prim_(std::move(prim)), scratch_(scratch) {
  memory::desc sp = pd.scratchpad_desc();
  if (sp.get_size() > 0) {
    scratch_->Reserve(sp.get_size());
    Arg(DNNL_ARG_SCRATCHPAD, sp);
  }
}

void PrimitiveCall::Arg(int arg, const memory::desc& md) {
  ids_.push_back(arg);
  mems_.emplace_back(md, eng_, static_cast<void*>(nullptr));
  c_args_.clear();
  for (size_t i = 0; i < ids_.size(); ++i) c_args_.push_back({ids_[i], mems_[i].get()});
}

void PrimitiveCall::Set(int arg, const void* ptr) {
  for (size_t i = 0; i < ids_.size(); ++i) {
    if (ids_[i] == arg) {
      mems_[i].set_data_handle(const_cast<void*>(ptr));
      return;
    }
  }
}

namespace {
// Per thread: how deep the calling thread is in oneDNN calls. A plain thread-local int in this
// static library costs one TLS increment per call; other threads (OpenMP workers, data loaders)
// are never attributed to a call they are not making.
thread_local int library_depth = 0;
}  // namespace

LibraryCallScope::LibraryCallScope() { ++library_depth; }
LibraryCallScope::~LibraryCallScope() { --library_depth; }

void PrimitiveCall::Execute(dnnl::stream& s) {
  if (scratch_ != nullptr) Set(DNNL_ARG_SCRATCHPAD, scratch_->bytes.data());
  dnnl_status_t st;
  {
    LibraryCallScope in_onednn;
    st = dnnl_primitive_execute(prim_.get(), s.get(), static_cast<int>(c_args_.size()),
                                c_args_.data());
  }
  dnnl::error::wrap_c_api(st, "could not execute a primitive");
}

memory::desc WithType(const memory::desc& md, memory::data_type t) {
  memory::desc out = md;
  out.data.data_type = static_cast<dnnl_data_type_t>(t);
  return out;
}

absl::Status CheckPrecision(DataType t, const char* what) {
  if (t == DataType::kF32) return absl::OkStatus();
  const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  const auto bf16 = static_cast<unsigned>(dnnl::cpu_isa::avx512_core_bf16);
  if (!CpuHasBf16() || (isa & bf16) != bf16) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: precision 'bf16' needs a CPU with AVX512_BF16 (this one %s, oneDNN's ISA 0x%x); "
        "use precision 'fp32'",
        what, CpuHasBf16() ? "has it but oneDNN may not use it" : "lacks it", isa));
  }
  return absl::OkStatus();
}

Bf16Copy::Bf16Copy(DnnlContext* ctx, const memory::desc& f32_md, const memory::desc& bf16_md)
    : ctx_(ctx) {
  dnnl::reorder::primitive_desc rpd(ctx->engine, f32_md, ctx->engine, bf16_md, ctx->Attr());
  reorder_ = PrimitiveCall(ctx->engine, dnnl::reorder(rpd), rpd, &ctx->scratch);
  reorder_.Arg(DNNL_ARG_FROM, f32_md);
  reorder_.Arg(DNNL_ARG_TO, bf16_md);
  buf_.reset(new uint16_t[(bf16_md.get_size() + 1) / 2]);
}

const void* Bf16Copy::Of(const float* src) {
  if (src != last_) {
    reorder_.Set(DNNL_ARG_FROM, src);
    reorder_.Set(DNNL_ARG_TO, buf_.get());
    reorder_.Execute(ctx_->stream);
    last_ = src;
  }
  return buf_.get();
}

void AddInto(float* a, const float* b, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) a[i] += b[i];
}

}  // namespace elektronn::kernels::cpu

namespace elektronn::kernels {
// Per thread (see library_depth): allocation tests count only the calling thread's calls.
bool InLibraryCall() { return cpu::library_depth > 0; }
}  // namespace elektronn::kernels
