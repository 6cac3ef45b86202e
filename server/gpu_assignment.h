// Which job may start on which GPU: the daemon's rule that one GPU never serves two jobs at once.
// Pure logic over job names and device strings, so it is tested without a GPU.
#pragma once

#include <map>
#include <optional>
#include <string>

namespace elektronn {

// The CUDA ordinal of a job's device: "cuda:N" -> N, "cuda" -> 0; nullopt for "", "cpu" and
// anything unparsable (validation rejects those before a job is queued).
std::optional<int> CudaIndex(const std::string& device);

// The GPUs (by CUDA ordinal) held by running jobs, each with the job holding it.
class GpuAssignment {
 public:
  // Records that `job` runs on `device`; a CPU device holds nothing. Returns false (and keeps
  // the first holder) if the GPU was already held: that would be two jobs on one GPU.
  bool Hold(const std::string& job, const std::string& device);
  // Empty when `device` is free for a new job (or not a GPU); else why it must wait, e.g.
  // "cuda:0 is held by jobs/000003".
  std::string WhyWait(const std::string& device) const;
  const std::map<int, std::string>& holders() const { return holders_; }

 private:
  std::map<int, std::string> holders_;
};

}  // namespace elektronn
