// Where `elektronn-sched run` keeps its experiments: <state-dir>/<id>.pb (ExperimentRun, replaced
// atomically at every change), <id>.lock (flock'ed by the one process running the experiment;
// it holds that process's pid) and <id>.cancel (`cancel` asks the running process to cancel).
// Default state dir: $ELEKTRONN_SCHED_STATE, else $XDG_STATE_HOME/elektronn-sched, else
// ~/.local/state/elektronn-sched.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "elektronn/v1/scheduler.pb.h"

namespace elektronn::sched {

std::string DefaultStateDir();

class StateDir {
 public:
  explicit StateDir(std::string dir) : dir_(std::move(dir)) {}
  const std::string& dir() const { return dir_; }

  absl::Status Init();  // creates the directory (0700)
  bool Exists(const std::string& id) const;
  absl::StatusOr<v1::ExperimentRun> Load(const std::string& id) const;
  absl::Status Save(v1::ExperimentRun* run) const;  // sets update_time
  absl::Status Forget(const std::string& id) const;
  std::vector<std::string> Ids() const;  // of every stored experiment, sorted

  // Takes <id>.lock for this process (released when it exits); FAILED_PRECONDITION naming the
  // pid that holds it.
  absl::StatusOr<int> Lock(const std::string& id) const;
  // The pid of the process running `id`, if one does.
  std::optional<int> Runner(const std::string& id) const;

  absl::Status RequestCancel(const std::string& id) const;
  bool CancelRequested(const std::string& id) const;

 private:
  std::string Path(const std::string& id, const char* ext) const;
  std::string dir_;
};

}  // namespace elektronn::sched
