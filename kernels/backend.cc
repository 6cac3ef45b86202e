// CreateBackend: picks the backend of a device name ("cpu"; "cuda:N" with the CUDA backend).
#include "kernels/backend.h"

#include <omp.h>

#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#ifdef ELK_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

namespace elektronn::kernels {

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const BackendOptions& options) {
  const std::string& d = options.device;
  if (options.threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("backend threads must be >= 0 (0: default); got ", options.threads));
  }
  if (d.empty() || d == "cpu") {
    if (options.threads > 0) omp_set_num_threads(options.threads);
    return CreateCpuBackend();
  }
  int index = 0;
  if (d.rfind("cuda:", 0) == 0 && absl::SimpleAtoi(d.substr(5), &index) && index >= 0) {
#ifdef ELK_HAVE_CUDA
    auto b = cuda::CreateCudaBackend(index, {.allow_tf32 = options.allow_tf32,
                                             .deterministic = options.deterministic,
                                             .timed_search = options.timed_algorithm_search});
    if (!b.ok()) {
      return absl::Status(b.status().code(),
                          absl::StrCat("device '", d, "': ", b.status().message(),
                                       "; available: ", absl::StrJoin(AvailableDevices(), ", ")));
    }
    return b;
#else
    return absl::UnavailableError(absl::StrCat(
        "device '", d, "': this build has no CUDA backend (configured without CUDA); available: ",
        absl::StrJoin(AvailableDevices(), ", ")));
#endif
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown device '", d, "'; valid: cpu, cuda:N"));
}

}  // namespace elektronn::kernels
