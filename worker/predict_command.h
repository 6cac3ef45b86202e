// `elektronn-worker predict`: dense prediction of one volume, run locally (`elektronn predict`
// execs it) or as a daemon's prediction job (--job-spec, --data-dir, --event-fd).
#pragma once

#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "client/prediction_cli.h"
#include "elektronn/v1/jobs.pb.h"
#include "elektronn/v1/training.pb.h"
#include "engine/predict/predictor.h"

namespace elektronn {

struct PredictCommand {
  PredictionFlags flags;
  std::string spec_path;   // --job-spec: a JobSpec with `prediction` (elektronnd's workers)
  std::string data_dir;    // --data-dir: every path of the spec is confined to it
  std::string model_file;  // --model-file: the daemon's own copy of a "jobs/N" model
  int event_fd = -1;
  double status_interval_s = 1.0;
  CLI::App* app = nullptr;
};

// Registers the `predict` subcommand on `app`; its options write into `*command`.
CLI::App* AddPredictCommand(CLI::App& app, PredictCommand* command);

// Runs it; `args` are the command-line words after "predict" (to print the command that
// continues a stopped run). Returns the exit code: 0 done, 130 stopped (resumable), 2 bad
// arguments, 1 other errors.
int RunPredictCommand(const PredictCommand& command, const std::vector<std::string>& args);

// ---- Exposed for tests ----

// The engine's options for a PredictionSpec and the job's resources (threads). Errors name the
// field ("job.prediction.roi has 4 values; ...").
absl::StatusOr<PredictOptions> ToPredictOptions(const v1::PredictionSpec& spec,
                                                const v1::JobResources& resources);
// The typed event for the daemon (and the line FormatPredictionProgress draws).
v1::PredictionProgress ToProgressMessage(const PredictProgress& p);

}  // namespace elektronn
