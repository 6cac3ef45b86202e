// CudaDeviceCount: cudaGetDeviceCount with the driver's version in its error. The CUDA runtime is
// loaded with dlopen, not linked: elk_backend_api (and so the thin client and the daemon's
// validation) must start on hosts without the CUDA libraries. In the worker, which links the
// runtime for the backend, dlopen returns that same already-loaded library.
#include "kernels/cuda/cuda_devices.h"

#include <cuda_runtime_api.h>  // types and CUDART_VERSION only; nothing is linked
#include <dlfcn.h>

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"

namespace elektronn::kernels::cuda {
namespace {

using GetDeviceCount = cudaError_t (*)(int*);
using DriverGetVersion = cudaError_t (*)(int*);
using GetErrorString = const char* (*)(cudaError_t);
using GetLastError = cudaError_t (*)();

// The runtime of the toolkit we were built with (libcudart.so.<major>).
const std::string& RuntimeName() {
  static const std::string name = absl::StrCat("libcudart.so.", CUDART_VERSION / 1000);
  return name;
}

}  // namespace

absl::StatusOr<int> CudaDeviceCount() {
  void* rt = dlopen(RuntimeName().c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (rt == nullptr) {
    const char* why = dlerror();
    return absl::UnavailableError(absl::StrCat("no CUDA device: the CUDA runtime ", RuntimeName(),
                                               " cannot be loaded (", why ? why : "?", ")"));
  }
  auto count = reinterpret_cast<GetDeviceCount>(dlsym(rt, "cudaGetDeviceCount"));
  auto driver_version = reinterpret_cast<DriverGetVersion>(dlsym(rt, "cudaDriverGetVersion"));
  auto error_string = reinterpret_cast<GetErrorString>(dlsym(rt, "cudaGetErrorString"));
  auto last_error = reinterpret_cast<GetLastError>(dlsym(rt, "cudaGetLastError"));
  if (!count || !driver_version || !error_string || !last_error) {
    return absl::UnavailableError(
        absl::StrCat("no CUDA device: ", RuntimeName(), " lacks cudaGetDeviceCount"));
  }
  int driver = 0;
  const std::string driver_text =
      driver_version(&driver) == cudaSuccess && driver > 0
          ? absl::StrCat("driver: CUDA ", driver / 1000, ".", (driver % 1000) / 10)
          : "driver: none found (libcuda.so.1 missing?)";
  const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
  const std::string visible_text =
      visible ? absl::StrCat(", CUDA_VISIBLE_DEVICES='", visible, "'") : "";
  int n = 0;
  const cudaError_t e = count(&n);
  if (e != cudaSuccess) {
    last_error();  // not sticky: clear it for later calls
    return absl::UnavailableError(
        absl::StrCat("no CUDA device: cudaGetDeviceCount: ", error_string(e), " (", driver_text,
                     visible_text, ")"));
  }
  if (n == 0) {
    return absl::UnavailableError(absl::StrCat("no CUDA device: cudaGetDeviceCount says 0 (",
                                               driver_text, visible_text, ")"));
  }
  return n;
}

}  // namespace elektronn::kernels::cuda
