// Which CUDA devices this process sees. The CUDA runtime is loaded at run time (dlopen), so
// binaries linking this start on machines without CUDA libraries, driver or GPU and get a clear
// UNAVAILABLE instead.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace elektronn::kernels::cuda {

// The number of CUDA devices the runtime sees, or UNAVAILABLE "no CUDA device: ..." saying why
// (no driver, no device, CUDA_VISIBLE_DEVICES hiding them all).
absl::StatusOr<int> CudaDeviceCount();

}  // namespace elektronn::kernels::cuda
