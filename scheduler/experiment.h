// Experiment files: sandboxed Lua (the job files' sandbox: no io, os, require; instruction and
// memory limits) that describes the members of an experiment. Example:
//
//   experiment = 'lr-sweep'
//   defaults = {job = 'neuro3d_lite.lua', gpus = 1, cpu_threads = 4, memory = '8G'}
//   members = {}
//   for _, lr in ipairs{1e-3, 3e-4, 1e-4} do
//     members[#members + 1] = {name = ('lr%g'):format(lr), set = {lr = lr}, group = 'a'}
//   end
//
// Member keys: name (required), job (a job file; relative paths are resolved against the
// experiment file), set (training keys overridden, as `elektronn submit --set`), gpus,
// cpu_threads, memory (bytes, or '8G'), hosts (the daemons it may use), priority, group (members
// of a group start together). `defaults` gives any key but name for every member.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "elektronn/v1/scheduler.pb.h"

namespace elektronn::sched {

struct ExperimentFileOptions {
  int64_t max_instructions = 50'000'000;  // an experiment file is a few loops at most
  size_t max_bytes = size_t{64} << 20;
};

// Runs the experiment file at `path` and checks every member: each error names the member and
// the key. Job files must exist (they are read when the member is submitted).
absl::StatusOr<v1::Experiment> LoadExperimentFile(const std::string& path,
                                                  const ExperimentFileOptions& options = {});

// The same for source text; `path` names it in messages and anchors relative job paths.
absl::StatusOr<v1::Experiment> LoadExperimentSource(const std::string& source,
                                                    const std::string& path,
                                                    const ExperimentFileOptions& options = {});

// An experiment's name, which names its state files: 1 to 64 letters, digits or . _ = + -, not
// "." or "..".
bool ValidExperimentName(const std::string& name);

}  // namespace elektronn::sched
