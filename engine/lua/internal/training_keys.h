// The top-level keys of a job file (reference §5.2) read into a TrainingSpec, types checked.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "elektronn/v1/training.pb.h"
#include "engine/lua/internal/lua_state.h"

namespace elektronn::lua {

// Reads every global that the job file assigned outside create_model(). Known keys are
// checked and converted; a function is a helper and is skipped; any other name is an error
// with a suggestion ("job.lua:5: unknown key 'n_step' (did you mean 'n_steps'?)"). Missing
// required keys are listed in one error. Must run inside SandboxedLua::Protected.
// `precision` goes to `resources` (ignored when null).
absl::Status ReadTrainingKeys(SandboxedLua& lua, v1::TrainingSpec* spec,
                              v1::JobResources* resources = nullptr);

// Reads the schedule on top of the stack ({dec = 0.99}, ...) as a job file's schedules.<name>;
// `path` names it in messages ("schedules.lr must have only one of ..."). Must run inside
// SandboxedLua::Protected.
absl::Status ReadScheduleValue(lua_State* L, const std::string& path, const std::string& name,
                               v1::Schedule* out);

// Every key a job file may set.
const std::vector<std::string>& TrainingKeyNames();

}  // namespace elektronn::lua
