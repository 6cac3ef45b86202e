// ParseScheduleText: one Lua expression in a fresh sandbox, read by the job files' reader.
#include "engine/lua/schedule_text.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "engine/config/hyperparams.h"
#include "engine/core/status.h"
#include "engine/lua/internal/lua_state.h"
#include "engine/lua/internal/training_keys.h"

namespace elektronn {

absl::StatusOr<v1::Schedule> ParseScheduleText(const std::string& name, const std::string& text) {
  ASSIGN_OR_RETURN(const HyperparameterDef* d, LookupHyperparameter(name));
  if (!d->schedulable) {
    return absl::InvalidArgumentError(absl::StrCat(
        d->name, " cannot be scheduled; schedulable are ", HyperparameterNameList(true)));
  }
  lua::SandboxLimits limits;
  limits.max_instructions = 1'000'000;
  limits.max_bytes = size_t{16} << 20;
  ASSIGN_OR_RETURN(std::unique_ptr<lua::SandboxedLua> lua, lua::SandboxedLua::Create(limits));
  const std::string path = absl::StrCat("schedules.", d->name);
  RETURN_IF_ERROR(lua->Run(absl::StrCat("schedule = ", text), path));
  v1::Schedule out;
  RETURN_IF_ERROR(lua->Protected([&]() -> absl::Status {
    lua_State* L = lua->state();
    lua_pushglobaltable(L);
    lua_getfield(L, -1, "schedule");
    absl::Status s = lua::ReadScheduleValue(L, path, d->name, &out);
    lua_pop(L, 2);
    return s;
  }));
  return out;
}

}  // namespace elektronn
