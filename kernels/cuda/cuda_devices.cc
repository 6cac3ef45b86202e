// CudaDeviceCount: cudaGetDeviceCount with the driver's version in its error.
#include "kernels/cuda/cuda_devices.h"

#include <cuda_runtime.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace elektronn::kernels::cuda {

absl::StatusOr<int> CudaDeviceCount() {
  int driver = 0;
  const std::string driver_text =
      cudaDriverGetVersion(&driver) == cudaSuccess && driver > 0
          ? absl::StrCat("driver: CUDA ", driver / 1000, ".", (driver % 1000) / 10)
          : "driver: none found (libcuda.so.1 missing?)";
  const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
  const std::string visible_text =
      visible ? absl::StrCat(", CUDA_VISIBLE_DEVICES='", visible, "'") : "";
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();  // not sticky: clear it for later calls
    return absl::UnavailableError(
        absl::StrCat("no CUDA device: cudaGetDeviceCount: ", cudaGetErrorString(e), " (",
                     driver_text, visible_text, ")"));
  }
  if (n == 0) {
    return absl::UnavailableError(absl::StrCat("no CUDA device: cudaGetDeviceCount says 0 (",
                                               driver_text, visible_text, ")"));
  }
  return n;
}

}  // namespace elektronn::kernels::cuda
