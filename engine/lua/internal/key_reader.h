// KeyReader: reads one job-file value from the top of the Lua stack, checked, with errors that
// name the file, line and key path ("job.lua:30: data_batch_args.warp_args.lock_z must be true
// or false, got number 1"). Shared by the readers of training_keys.cc and data_keys.cc.
#pragma once

#include <algorithm>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/core/status.h"
#include "engine/lua/internal/lua_state.h"

namespace elektronn::lua {

// Reads the value on top of the stack; `path` names it in messages.
class KeyReader {
 public:
  KeyReader(lua_State* L, std::string where, std::string path)
      : L_(L), where_(std::move(where)), path_(std::move(path)) {}

  lua_State* L() const { return L_; }
  const std::string& path() const { return path_; }
  KeyReader Field(const std::string& name) const { return {L_, where_, path_ + "." + name}; }
  KeyReader Entry(int i) const { return {L_, where_, absl::StrCat(path_, "[", i, "]")}; }

  absl::Status Error(absl::string_view msg) const {
    return absl::InvalidArgumentError(absl::StrCat(where_, " ", path_, " ", msg));
  }
  absl::Status Wrap(const absl::Status& s) const { return s.ok() ? s : Error(s.message()); }

  absl::StatusOr<int64_t> Int(int64_t min) const {
    auto v = ReadInt(L_, -1);
    if (!v.ok()) return Error(v.status().message());
    if (*v < min) return Error(absl::StrFormat("must be at least %d, got %d", min, *v));
    return *v;
  }
  absl::StatusOr<double> Number(double min, double max = 1e300) const {
    auto v = ReadNumber(L_, -1);
    if (!v.ok()) return Error(v.status().message());
    if (*v < min || *v > max) {
      return Error(max < 1e300 ? absl::StrFormat("must be in [%g, %g], got %g", min, max, *v)
                               : absl::StrFormat("must be at least %g, got %g", min, *v));
    }
    return *v;
  }
  absl::StatusOr<bool> Bool() const {
    auto v = ReadBool(L_, -1);
    if (!v.ok()) return Error(v.status().message());
    return *v;
  }
  absl::StatusOr<std::string> String(bool allow_empty = false) const {
    auto v = ReadString(L_, -1);
    if (!v.ok()) return Error(v.status().message());
    if (!allow_empty && v->empty()) return Error("must not be empty");
    return *v;
  }
  absl::StatusOr<std::string> Choice(const std::vector<std::string>& options) const {
    ASSIGN_OR_RETURN(std::string s, String(true));
    if (std::find(options.begin(), options.end(), s) != options.end()) return s;
    return Error(absl::StrFormat("must be one of '%s', got '%s'%s", absl::StrJoin(options, "', '"),
                                 s, Suggestion(s, options)));
  }
  absl::StatusOr<std::vector<int64_t>> Ints(int64_t min) const {
    auto v = ReadIntList(L_, -1);
    if (!v.ok()) return Error(v.status().message());
    for (int64_t x : *v) {
      if (x < min) return Error(absl::StrFormat("entries must be at least %d, got %d", min, x));
    }
    return *v;
  }
  absl::StatusOr<std::vector<double>> Numbers() const {
    auto v = ReadNumberList(L_, -1);
    if (!v.ok()) return Error(v.status().message());
    return *v;
  }
  absl::StatusOr<int> Length() const {
    auto n = SequenceLength(L_, -1);
    if (!n.ok()) return Error(n.status().message());
    return *n;
  }
  bool IsNeutral() const {  // false, 0, None or an empty table
    if (lua_type(L_, -1) == LUA_TBOOLEAN) return !lua_toboolean(L_, -1);
    if (lua_type(L_, -1) == LUA_TNUMBER) return lua_tonumber(L_, -1) == 0;
    if (lua_type(L_, -1) == LUA_TTABLE) {
      lua_pushnil(L_);
      if (lua_next(L_, -2) == 0) return true;
      lua_pop(L_, 2);
      return false;
    }
    return IsNone(L_, -1);
  }

  // Calls `fn(name, reader)` with each field of the table on top of the stack pushed. Keys in
  // `unsupported` are accepted only at a neutral value (false, 0, None, {}); the message says why.
  absl::Status Fields(
      const std::vector<std::string>& allowed,
      const std::map<std::string, std::string>& unsupported,
      const std::function<absl::Status(const std::string&, const KeyReader&)>& fn) const {
    if (lua_type(L_, -1) != LUA_TTABLE) {
      return Error("must be a table of named settings {key = value, ...}, got " + Describe(L_, -1));
    }
    std::vector<std::string> keys;
    lua_pushnil(L_);
    while (lua_next(L_, -2) != 0) {
      lua_pop(L_, 1);
      if (lua_type(L_, -1) != LUA_TSTRING) {
        std::string d = Describe(L_, -1);
        lua_pop(L_, 1);
        return Error(
            absl::StrFormat("must be a table of named settings {key = value, ...}, "
                            "but has the key %s",
                            d));
      }
      keys.push_back(lua_tostring(L_, -1));
    }
    std::sort(keys.begin(), keys.end());
    for (const std::string& key : keys) {
      lua_getfield(L_, -1, key.c_str());
      absl::Status s;
      if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) {
        s = fn(key, Field(key));
      } else if (auto it = unsupported.find(key); it != unsupported.end()) {
        if (!Field(key).IsNeutral()) s = Field(key).Error("is not supported: " + it->second);
      } else {
        s = Error(absl::StrFormat("has an unknown key '%s'%s; known keys: %s", key,
                                  Suggestion(key, allowed), absl::StrJoin(allowed, ", ")));
      }
      lua_pop(L_, 1);
      RETURN_IF_ERROR(s);
    }
    return absl::OkStatus();
  }

 private:
  lua_State* L_;
  std::string where_;
  std::string path_;
};

}  // namespace elektronn::lua
