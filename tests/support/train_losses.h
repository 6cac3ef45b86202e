// Trains a job on the CPU backend in-process and returns the loss of every step, for tests that
// check a loss curve. `overrides` are `key=value` training settings (ApplyTrainingOverride).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/core/status.h"
#include "engine/lua/job_file.h"
#include "engine/trainer/trainer.h"
#include "kernels/backend.h"

namespace elektronn::testing {

inline absl::StatusOr<std::vector<double>> TrainLosses(v1::JobSpec job,
                                                       const std::filesystem::path& dir,
                                                       const std::vector<std::string>& overrides) {
  for (const std::string& kv : overrides) {
    RETURN_IF_ERROR(ApplyTrainingOverride(kv, job.mutable_training()));
  }
  RETURN_IF_ERROR(
      ApplyTrainingOverride("save_path=" + (dir / "train").string(), job.mutable_training()));
  auto backend = kernels::CreateCpuBackend();
  TrainerOptions opt;
  opt.job_dir = dir.string();
  opt.console = false;
  opt.status_interval_s = 0;
  std::vector<double> losses;
  opt.on_event = [&](const TrainerEvent& e) {
    if (e.kind == TrainerEvent::Kind::kStatus && e.step > static_cast<int64_t>(losses.size())) {
      losses.push_back(e.loss);
    }
  };
  ASSIGN_OR_RETURN(auto trainer, Trainer::Create(job, backend.get(), opt));
  RETURN_IF_ERROR(trainer->Run().status());
  return losses;
}

}  // namespace elektronn::testing
