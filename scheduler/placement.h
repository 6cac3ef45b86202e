// Placement: which member of an experiment goes to which daemon and which of its GPUs, from
// the daemons' reported occupancy. Pure functions (no RPC), so every rule is unit-tested.
//
// Rules: a GPU is free when no process runs on it (ELEKTRONN2's rule: any foreign process makes
// it busy) and nothing of ours holds it; a host never gets more CPU threads, memory or jobs than
// it has free; the members of a group are placed all together or not at all; groups go in
// order of priority (highest first), then of their first member in the file.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "elektronn/v1/jobs.pb.h"
#include "elektronn/v1/scheduler.pb.h"

namespace elektronn::sched {

struct GpuSlot {
  std::string uuid;
  bool free = true;
  std::string busy_why;  // "process 4711 (not elektronnd's)", for `plan`
};

// One daemon as placement sees it: what is free now, and what it has in all (to tell "waits"
// from "can never run there").
struct HostSnapshot {
  std::string address;   // as given to --hosts ("gpu1:7077")
  std::string hostname;  // as the daemon reports it
  std::vector<GpuSlot> gpus;
  int cpu_threads_total = 0;
  int cpu_threads_free = 0;
  int64_t memory_total = 0;
  int64_t memory_free = 0;
  int job_slots_free = 0;  // the daemon's capacity less its running jobs
};

// The snapshot of a daemon's Resources report.
HostSnapshot SnapshotOf(const std::string& address, const v1::Resources& r);

struct Assignment {
  int member = 0;  // index into Experiment.members
  int host = 0;    // index into the snapshots
  std::vector<std::string> gpu_uuids;
};

// The members of each group (a member without a group is a group of its own), groups in
// placement order.
std::vector<std::vector<int>> GroupsInOrder(const v1::Experiment& e);

// Whether member `m` may use host `h` (its `hosts` list names the address or the hostname).
bool HostAllowed(const v1::ExperimentMember& m, const HostSnapshot& h);

// Members that can never run on the given hosts, even if all were idle: an error naming each
// and why (too many GPUs, no allowed host, ...). OK when every member fits somewhere.
absl::Status CheckFeasible(const v1::Experiment& e, const std::vector<HostSnapshot>& hosts);

// Places every member of `group` or none. On success takes what they use from `hosts` and
// returns one assignment per member (in group order); nullopt when the group does not fit now.
// A bounded search (not first-fit), so that a group that fits is found even when a greedy
// choice would block it.
std::optional<std::vector<Assignment>> PlaceGroup(const v1::Experiment& e,
                                                  const std::vector<int>& group,
                                                  std::vector<HostSnapshot>* hosts);

}  // namespace elektronn::sched
