// What every backend shares and what needs no backend: names and properties of the element-wise
// functions, and the devices this build offers. Linked by code that only inspects a graph (shape
// inference, the daemon's JobSpec validation) without pulling in oneDNN.
#include <string>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kernels/backend.h"
#ifdef ELK_HAVE_CUDA
#include "kernels/cuda/cuda_devices.h"
#endif

namespace elektronn::kernels {

// selu, concentration and radius increase monotonically, so they commute with max-pooling too.
bool IsMonotone(Eltwise e) { return e != Eltwise::kAbs; }

const char* EltwiseName(Eltwise e) {
  switch (e) {
    case Eltwise::kLinear:
      return "lin";
    case Eltwise::kRelu:
      return "relu";
    case Eltwise::kTanh:
      return "tanh";
    case Eltwise::kSigmoid:
      return "sigmoid";
    case Eltwise::kAbs:
      return "abs";
    case Eltwise::kSoftplus:
      return "softplus";
    case Eltwise::kElu:
      return "elu";
    case Eltwise::kSelu:
      return "selu";
    case Eltwise::kConcentration:
      return "concentration";
    case Eltwise::kRadius:
      return "radius";
  }
  return "?";
}

std::vector<std::string> AvailableDevices() {
  std::vector<std::string> d = {"cpu"};
#ifdef ELK_HAVE_CUDA
  auto n = cuda::CudaDeviceCount();
  for (int i = 0; n.ok() && i < *n; ++i) d.push_back("cuda:" + std::to_string(i));
#endif
  return d;
}

const char* DataTypeName(DataType t) { return t == DataType::kBf16 ? "bf16" : "fp32"; }

absl::StatusOr<DataType> ParseDataType(const std::string& field, const std::string& value) {
  if (value.empty() || value == "fp32") return DataType::kF32;
  if (value == "bf16") return DataType::kBf16;
  return absl::InvalidArgumentError(
      absl::StrCat(field, " is '", value, "'; valid values: 'fp32' (default), 'bf16'"));
}

bool CpuHasBf16() {
#if defined(__x86_64__) || defined(__i386__)
  // AVX512F with OS support (the compiler's check reads XCR0), then AVX512_BF16: cpuid leaf 7,
  // sub-leaf 1, EAX bit 5.
  if (!__builtin_cpu_supports("avx512f")) return false;
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) == 0) return false;
  return (eax & bit_AVX512BF16) != 0;
#else
  return false;
#endif
}

absl::Status ValidateConvDesc(const ConvDesc& d) {
  const size_t nd = d.in_spatial.size();
  if (nd < 1 || nd > 3 || d.kernel.size() != nd || d.pad.size() != nd) {
    return absl::InvalidArgumentError(
        absl::StrFormat("convolution needs 1 to 3 spatial axes with matching kernel and padding, "
                        "got %d, %d and %d",
                        nd, d.kernel.size(), d.pad.size()));
  }
  return absl::OkStatus();
}

absl::Status ValidateDeconvDesc(const DeconvDesc& d) {
  const size_t nd = d.in_spatial.size();
  if (nd < 1 || nd > 3 || d.kernel.size() != nd || d.stride.size() != nd) {
    return absl::InvalidArgumentError(
        absl::StrFormat("transposed convolution needs 1 to 3 spatial axes with matching kernel "
                        "and stride, got %d, %d and %d",
                        nd, d.kernel.size(), d.stride.size()));
  }
  for (size_t i = 0; i < nd; ++i) {
    if (d.in_spatial[i] < 1 || d.kernel[i] < 1 || d.stride[i] < 1) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "transposed convolution axis %d: input %d, kernel %d and stride %d must be >= 1", i,
          d.in_spatial[i], d.kernel[i], d.stride[i]));
    }
  }
  return absl::OkStatus();
}

}  // namespace elektronn::kernels
