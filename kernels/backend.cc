// CreateBackend: picks the backend of a device name ("cpu"; "cuda:N" with the CUDA backend).
#include "kernels/backend.h"

#include <omp.h>

#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

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
    return absl::UnavailableError(absl::StrCat("device '", d,
                                               "': this build has no CUDA backend yet; available: ",
                                               absl::StrJoin(AvailableDevices(), ", ")));
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown device '", d, "'; valid: cpu, cuda:N"));
}

}  // namespace elektronn::kernels
