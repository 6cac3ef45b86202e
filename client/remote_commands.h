// The daemon commands of `elektronn` (submit, ls, status, watch, logs, pause, resume, cancel,
// hosts, ...): registration on the CLI, running the selected one, and the formatting they share.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/time/time.h"
#include "client/connection.h"
#include "client/job_format.h"
#include "client/prediction_cli.h"
#include "client/table.h"
#include "elektronn/v1/control.pb.h"
#include "elektronn/v1/jobs.pb.h"

namespace elektronn {

// What the remote subcommands parsed; filled by AddRemoteCommands' CLI options.
struct RemoteCommands {
  ConnectionOptions connection;
  bool json = false;
  std::string job;                        // JOB argument: "jobs/7" or "7"
  std::string job_file;                   // submit, spec
  std::string request_id;                 // submit
  std::vector<std::string> overrides;     // submit --set, spec --set
  std::string precision;                  // submit/spec --precision (overrides the job file's)
  std::string device;                     // submit/spec --device: cpu or cuda:N
  bool tf32 = false;                      // submit/spec --tf32
  bool deterministic = false;             // submit/spec --deterministic
  bool follow = false;                    // submit --follow, logs -f
  std::vector<std::string> hosts;         // hosts HOST...
  std::vector<std::string> key_values;    // set KEY=VALUE...
  int64_t page_size = 100;                // ls
  std::string stats_kind = "parameters";  // stats --of
  std::string output;                     // export -o, spec -o
  bool live = false;                      // shell --live
  PredictionFlags prediction;             // predict (with --host: a prediction job)

  // The registered subcommands, by name (parsed state is read from them).
  std::vector<std::pair<std::string, CLI::App*>> commands;
};

// Registers submit, spec (the JobSpec submit would send, no daemon), predict, ls, status, watch,
// logs, pause, resume, cancel, set, params, stats, export and hosts on `app`; their options write
// into `*state`, which must outlive parsing.
void AddRemoteCommands(CLI::App& app, RemoteCommands* state);
// Runs the remote subcommand that was selected and returns its exit code; nullopt if none was.
// `predict` without --host is not run here: PredictRunsLocally says so, and the caller execs
// elektronn-worker predict.
std::optional<int> RunRemoteCommands(const RemoteCommands& state);
// True when `predict` was selected without --host: it runs here, in elektronn-worker. An error
// when options that only a daemon's job takes (--follow, --json, --token, ...) came with it.
absl::StatusOr<bool> PredictRunsLocally(const RemoteCommands& state);
// The JobSpec `predict --host` submits: MODEL "7" or "jobs/7" becomes "jobs/000007" (that
// training job's model); paths are sent as given (the daemon resolves them in its --data-dir).
absl::StatusOr<v1::JobSpec> RemotePredictionSpec(const PredictionFlags& flags);

}  // namespace elektronn
