// Slurm back end of elektronn-sched: each start group of an experiment becomes one Slurm
// heterogeneous job (`#SBATCH hetjob` between components), so Slurm starts all its members
// together or none; each component runs elektronn-worker on its member's JobSpec.
//
// Layout of the Slurm directory (on a filesystem the compute nodes share):
//   <dir>/<group>.sbatch   the group's batch script        <dir>/<group>.out  its output
//   <dir>/<member>.pb      the member's JobSpec            <dir>/<member>.out its worker's output
//   <dir>/<member>/        its training directory          <dir>/<member>.exit its exit status
//
// Slurm 22.05 (Debian 12) plans each hetjob component on nodes of its own: the components of a
// group never share a node, so a group of N members needs N nodes free at once.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "elektronn/v1/scheduler.pb.h"

namespace elektronn::sched {

struct SlurmOptions {
  std::string dir;        // the Slurm directory, absolute (made if missing)
  std::string partition;  // "" : the cluster's default
  // The members' data directory (the worker's --data-dir: data paths resolve inside it);
  // "": each member's job file's directory.
  std::string data_dir;
  std::string worker_binary;  // elektronn-worker as the compute nodes see it
  bool wait = false;          // poll until every group's job has ended
  double poll_s = 2.0;
  int max_failed_queries = 30;  // polls in a row that learn nothing of a job: then an error
};

// One hetjob component: a member and what its script line needs.
struct SlurmComponent {
  v1::ExperimentMember member;
  std::string spec_path;     // its JobSpec, absolute
  std::string data_dir;      // absolute
  std::string training_dir;  // absolute: <dir>/<member>; its checkpoints' prefix is <member>
};

// The batch script of one group (pure: no files, no Slurm). `label` names the group's files.
std::string SlurmGroupScript(const std::string& experiment, const std::string& label,
                             const std::vector<SlurmComponent>& components,
                             const SlurmOptions& options);

// A word as a POSIX shell reads it back unchanged ('it'\''s').
std::string ShellQuote(const std::string& word);

// A name for files and Slurm: characters outside [A-Za-z0-9._=+-] become '_'.
std::string SlurmSafeName(const std::string& name);

// The member's JobSpec as its component runs it: trains into <dir>/<member>, with its needs as
// resources (device cuda:0 when it has GPUs: Slurm makes its GPUs the only visible ones).
absl::StatusOr<std::string> SlurmMemberSpec(const std::string& spec_bytes,
                                            const v1::ExperimentMember& member,
                                            const std::string& dir);

// One component's state, from `scontrol show job -o` (one line per component).
struct SlurmJobState {
  std::string job_id;     // the component's own id
  std::string state;      // PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, ...
  std::string exit_code;  // "0:0"
  std::string reason;     // why it is pending ("Resources", "Priority"); "None" otherwise
};
std::vector<SlurmJobState> ParseScontrolJobs(const std::string& text);

// Whether every component has ended (no PENDING, RUNNING, COMPLETING, ...); false if empty.
bool SlurmJobEnded(const std::vector<SlurmJobState>& components);
// Whether it ended well: every component COMPLETED with exit code 0:0.
bool SlurmJobSucceeded(const std::vector<SlurmJobState>& components);

// Runs `args` (no shell), returns its exit status and fills `out` with its standard output;
// standard error goes into `err`.
absl::StatusOr<int> RunProgram(const std::vector<std::string>& args, std::string* out,
                               std::string* err);

// `sbatch --parsable --chdir DIR SCRIPT`: the Slurm job id.
absl::StatusOr<std::string> SubmitSlurmScript(const std::string& script_path,
                                              const std::string& dir);

// Builds a member's serialised JobSpec (scheduler/member_spec.h's BuildMemberSpec).
using MemberSpecBuilder =
    std::function<absl::StatusOr<std::string>(const v1::ExperimentMember& member)>;

// elektronn-worker for the compute nodes: $ELEKTRONN_WORKER, else next to this binary
// (installed), else the build tree's worker/elektronn-worker, else "elektronn-worker" ($PATH).
std::string FindWorkerBinary();

// `elektronn-sched slurm` (to become `run --slurm`): for each start group, writes the members'
// specs and the group's script into options.dir, submits it and prints "group G: slurm job N
// (members a, b)"; with options.wait polls Slurm until every job ended and prints each group's
// outcome. An error when a submission failed or (waiting) a group's job did not succeed.
absl::Status RunSlurm(const v1::Experiment& e, const SlurmOptions& options,
                      const MemberSpecBuilder& build_spec);

}  // namespace elektronn::sched
