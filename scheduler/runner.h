// `elektronn-sched run`: places an experiment's members on the daemons' free GPUs and starts
// each group all together or not at all, then watches the jobs until every member has ended.
//
// A gang start, per group that fits now (placement.h):
//  1. reserve, with a short lease, every member's GPUs, threads and memory on its host, in one
//     global order (by host address, then GPU UUID), each Reserve a non-blocking try;
//  2. when all are held, create the jobs against the reservations, paused, with a common start
//     time (JobSpec.start_at, a few seconds ahead) and a resume_by deadline;
//  3. resume them all: each worker sets up, then waits for the common start (its first step).
// Any failure (a GPU taken meanwhile, a host that does not answer, an expired lease) undoes the
// group: its jobs are cancelled and its reservations released (an unreachable host's lapse by
// their lease; its paused jobs by resume_by), and the group retries after a randomised,
// exponentially growing backoff.
//
// Competing schedulers: a Reserve never waits, so nobody holds half a group while waiting for
// the other half (no deadlock); with one global order, of two groups wanting the same GPU the
// one that reserves that GPU first gets all it needs, the other fails at that GPU holding only
// what the first does not want, releases at once and backs off (no livelock between two).
//
// Every step is saved (run_state.h) before the calls it leads to, and request ids make the
// calls safe to repeat: a restarted scheduler releases what a group in step 1 had reserved,
// re-issues step 2 and 3 for a group that was in them (the daemons return the jobs already
// made), and never creates a member's job twice.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "client/connection.h"
#include "elektronn/v1/jobs.grpc.pb.h"
#include "elektronn/v1/scheduler.pb.h"
#include "scheduler/placement.h"
#include "scheduler/run_state.h"

namespace elektronn::sched {

struct RunnerOptions {
  ConnectionOptions connection;
  double poll_s = 2;                // between occupancy polls and job refreshes
  double lease_s = 20;              // a reservation's lease while its group gathers
  double start_margin_s = 5;        // from creating a group's jobs to their common start
  double backoff_min_s = 2;         // after a failed gang start; doubles per failure,
  double backoff_max_s = 120;       // randomised by a factor in [0.5, 1.5)
  bool quiet = false;               // no progress lines
  bool progress_to_stderr = false;  // progress lines on stderr (stdout carries JSON)
  std::string test_hook;            // TEST ONLY: run after each reservation, job made, job resumed
};

class Runner {
 public:
  Runner(v1::ExperimentRun run, const StateDir& dir, RunnerOptions options);
  ~Runner();

  // Runs until every member has ended or the experiment is cancelled; the exit code (0: every
  // member succeeded, 1: some failed, 4: cancelled, 6: no daemon can be dialled).
  int Run();
  // Cancels every member that has not ended (jobs, reservations) and saves; used by `cancel`
  // when no process runs the experiment. Returns how many jobs could not be cancelled now
  // (their daemons did not answer); those members stay as they were, for another try.
  int CancelAll(const std::string& why);

  const v1::ExperimentRun& run() const { return run_; }

 private:
  struct Host;
  Host* HostOf(const std::string& address);
  std::unique_ptr<grpc::ClientContext> Context(Host* h, double timeout_s = 0);
  double PollTimeout() const;
  void Save();
  void Say(const std::string& line) const;
  void Hook(const std::string& event, const v1::MemberRun& m) const;
  std::string RequestId(const v1::MemberRun& m) const;
  std::string GroupName(const std::vector<int>& group) const;

  void Recover();
  void ReleaseStrayReservations();
  bool Refresh();  // true when something changed
  void StartWaitingGroups();
  bool GangStart(const std::vector<int>& group, const std::vector<Assignment>& fit,
                 const std::vector<HostSnapshot>& hosts);
  // Creates the group's jobs (paused) and resumes them. `recovering`: a stopped scheduler began
  // this; jobs it had resumed already count as started.
  bool Commit(const std::vector<int>& group, bool recovering);
  void RetryUndo();
  void Abort(const std::vector<int>& group, const std::string& why);
  // Cancels m's job (which releases its reservation) or releases its reservation; "" when done
  // or nothing to do, else why not. timeout_s 0: the connection's.
  std::string Undo(const v1::MemberRun& m, double timeout_s);
  std::vector<int> GlobalOrder(const std::vector<int>& group) const;
  void RenewHeld(const std::vector<int>& group);

  v1::ExperimentRun run_;
  const StateDir& dir_;
  RunnerOptions options_;
  std::vector<std::vector<int>> groups_;
  std::map<std::string, std::unique_ptr<Host>> hosts_;
  std::map<std::string, int> failures_;            // by group: failed gang starts in a row
  std::map<std::string, absl::Time> retry_after_;  // by group
  std::map<std::string, std::string> said_waiting_;
};

}  // namespace elektronn::sched
