// CudaOps' error keeping and device scratch (host code; the ops themselves are in the .cu files).
#include "kernels/cuda/cuda_ops.h"

#include <string>

#include "absl/strings/str_format.h"

namespace elektronn::kernels::cuda {

CudaOps::CudaOps(int device, cudaStream_t stream) : device_(device), stream_(stream) {}

CudaOps::~CudaOps() {
  // Pending work may still read the scratch: cudaFree waits for the device.
  if (scratch_) cudaFree(scratch_);
  if (workspace_) cudaFree(workspace_);
}

absl::Status CudaOps::ConsumeError() { return std::exchange(first_error_, absl::OkStatus()); }

bool CudaOps::Check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return true;
  if (first_error_.ok()) {
    const std::string m = absl::StrFormat("CUDA device %d: %s failed: %s (%s)", device_, what,
                                          cudaGetErrorName(e), cudaGetErrorString(e));
    // Out of device memory is the job's size, not our bug: RESOURCE_EXHAUSTED, as on the CPU.
    first_error_ =
        e == cudaErrorMemoryAllocation ? absl::ResourceExhaustedError(m) : absl::InternalError(m);
  }
  return false;
}

bool CudaOps::CheckLaunch(const char* what) { return Check(cudaGetLastError(), what); }

void CudaOps::Fail(const std::string& message) {
  if (first_error_.ok()) {
    first_error_ =
        absl::InvalidArgumentError(absl::StrFormat("CUDA device %d: %s", device_, message));
  }
}

void* CudaOps::Grow(void** p, size_t* capacity, size_t bytes, const char* what) {
  if (bytes <= *capacity) return *p;
  // cudaFree waits for the kernels that may still use the old buffer.
  if (*p && !Check(cudaFree(*p), what)) return nullptr;
  *p = nullptr;
  *capacity = 0;
  const size_t rounded = (bytes + 4095) / 4096 * 4096;
  if (!Check(cudaMalloc(p, rounded), what)) {
    *p = nullptr;
    return nullptr;
  }
  *capacity = rounded;
  return *p;
}

void* CudaOps::Scratch(size_t bytes) {
  return Grow(&scratch_, &scratch_bytes_, bytes, "cudaMalloc of reduction scratch");
}

void* CudaOps::Workspace(size_t bytes) {
  return Grow(&workspace_, &workspace_bytes_, bytes, "cudaMalloc of op workspace");
}

}  // namespace elektronn::kernels::cuda
