// A member's JobSpec, built by the client: `elektronn spec JOB.lua --set k=v ... -o FILE` runs
// the job file in the client's sandbox. The scheduler links no engine code (not even the job
// file reader), so it asks the client binary, once per member when an experiment starts; the
// spec is then kept in the scheduler's state, so a restart or a retry submits the very same job.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "elektronn/v1/scheduler.pb.h"

namespace elektronn::sched {

// The `elektronn` client: $ELEKTRONN_CLIENT, else next to this binary (installed: same bin
// directory; build tree: ../client/elektronn), else "elektronn" from PATH.
std::string FindClientBinary();

// The serialised JobSpec of `m`; an error quotes what the client printed (the job file's error).
absl::StatusOr<std::string> BuildMemberSpec(const v1::ExperimentMember& m,
                                            const std::string& client_binary);

}  // namespace elektronn::sched
