// GpuAssignment: one job per GPU.
#include "server/gpu_assignment.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace elektronn {

std::optional<int> CudaIndex(const std::string& device) {
  if (device == "cuda") return 0;
  int n = 0;
  if (!absl::StartsWith(device, "cuda:") || !absl::SimpleAtoi(device.substr(5), &n) || n < 0) {
    return std::nullopt;
  }
  return n;
}

bool GpuAssignment::Hold(const std::string& job, const std::string& device) {
  const std::optional<int> i = CudaIndex(device);
  if (!i) return true;
  return holders_.emplace(*i, job).second;
}

std::string GpuAssignment::WhyWait(const std::string& device) const {
  const std::optional<int> i = CudaIndex(device);
  if (!i) return "";
  auto it = holders_.find(*i);
  if (it == holders_.end()) return "";
  return absl::StrCat("cuda:", *i, " is held by ", it->second);
}

}  // namespace elektronn
