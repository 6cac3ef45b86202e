// The top-level keys of a job file (reference §5.2) read into a TrainingSpec, types checked.
#pragma once

#include "absl/status/status.h"
#include "elektronn/v1/training.pb.h"
#include "engine/lua/internal/lua_state.h"

namespace elektronn::lua {

// Reads every global that the job file assigned outside create_model(). Known keys are
// checked and converted; a function is a helper and is skipped; any other name is an error
// with a suggestion ("job.lua:5: unknown key 'n_step' (did you mean 'n_steps'?)"). Missing
// required keys are listed in one error. Must run inside SandboxedLua::Protected.
absl::Status ReadTrainingKeys(SandboxedLua& lua, v1::TrainingSpec* spec);

// Every key a job file may set.
const std::vector<std::string>& TrainingKeyNames();

}  // namespace elektronn::lua
