// Lua job files: ELEKTRONN2's Python configs as sandboxed Lua, recorded into a JobSpec, and the
// model summary of `elektronn check` (a table or JSON).
//
// A job file sets ELEKTRONN2's top-level keys (n_steps = 150000, optimiser = 'Adam', ...) and
// defines create_model(), which builds the network with the functions of the `nm` table, taking
// one table of positional and named arguments, e.g. nm.Conv{out, 20, {1, 6, 6}, {1, 2, 2}},
// and ends with `return nm.designate_nodes{input_node = inp, ...}`. `None` is ELEKTRONN2's None.
//
// Rules of the sandbox: no io, os, package, require, dofile, loadfile, load or debug (using
// them is an error saying so); reading an undefined global is an error; at most
// `max_instructions` Lua instructions and `max_bytes` of memory.
// Rules for keys: every global assigned outside create_model() that is not a function must be a
// trainer setting (unknown ones are errors with a suggestion; helper values are `local`);
// globals assigned inside create_model() are ignored.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "elektronn/v1/training.pb.h"

namespace elektronn {

struct JobFileOptions {
  int64_t max_instructions = 200'000'000;
  size_t max_bytes = size_t{256} << 20;
  std::function<void(std::string_view)> print;  // where print() goes; default stdout
};

// Runs the job file at `path` (shown as given in messages: "examples/neuro3d.lua:12: ...").
absl::StatusOr<v1::JobSpec> LoadJobFile(const std::string& path,
                                        const JobFileOptions& options = {});
// Runs job-file source text; `chunk_name` is the file name messages show.
absl::StatusOr<v1::JobSpec> LoadJobSource(const std::string& source, const std::string& chunk_name,
                                          const JobFileOptions& options = {});

// The model summary as one JSON object:
// {"nodes": [{"name", "op", "shape" (null = unknown size), "tags", "fov", "strides", "offsets",
//   "params"}, ...], "prediction": {"name", "fov", "offsets", "strides"}, "total_params",
//   "warnings": [text, ...]} (warnings: e.g. a prediction fov that is not centred, reference §3.2).
// The table ends with one "warning: ..." line per warning.
absl::StatusOr<std::string> CheckJson(const v1::JobSpec& job);
// The same as a human-readable table (one line per node, then totals).
absl::StatusOr<std::string> CheckTable(const v1::JobSpec& job);

// Applies a "key=value" override (elektronn train/submit --set) to a TrainingSpec: any scalar
// top-level key (n_steps, max_runtime, history_freq, save_path, ...) or lr/mom/wd/beta2 of
// optimiser_params. Errors name the key or value.
absl::Status ApplyTrainingOverride(const std::string& key_value, v1::TrainingSpec* spec);

}  // namespace elektronn
