// A schedule written as in a job file ("{dec = 0.99}") read into a v1::Schedule, for `elektronn
// set JOB 'schedule.lr={dec=0.99}'`: the same sandbox and the same reader as job files.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "elektronn/v1/training.pb.h"

namespace elektronn {

// `text` is a Lua table constructor as a job file's `schedules.<name>` takes: {dec = f},
// {lindec = {n_steps, value}}, {updates = {{step, value}, ...}}, each with an optional
// granularity = steps. `name` is the hyper-parameter it drives (name, proto field or alias);
// errors read "schedules.lr.dec must be at least 0, got -1".
absl::StatusOr<v1::Schedule> ParseScheduleText(const std::string& name, const std::string& text);

}  // namespace elektronn
