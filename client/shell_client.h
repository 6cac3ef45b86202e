// `elektronn shell JOB`: an interactive shell into a running job on any daemon, with line
// editing, Tab completion served by the job, and a per-user history file (libedit).
#pragma once

#include <string>

#include "client/connection.h"

namespace elektronn {

struct ShellClientOptions {
  std::string job;           // "jobs/000007"
  bool live = false;         // do not pause training
  std::string history_file;  // empty: ~/.local/state/elektronn/shell_history
};

// Runs the session until `q`, `kill`, Ctrl-D or the job's end; returns an exit code.
int RunShell(const Connection& connection, const ShellClientOptions& options);

}  // namespace elektronn
