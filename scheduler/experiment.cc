// Experiment files (see experiment.h): the job files' Lua sandbox, read into an Experiment.
#include "scheduler/experiment.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/prediction_cli.h"
#include "engine/core/status.h"
#include "engine/lua/internal/lua_state.h"

namespace elektronn::sched {
namespace {

namespace fs = std::filesystem;
using lua::Describe;

const std::vector<std::string>& MemberKeys() {
  static const std::vector<std::string> keys = {
      "name", "job", "set", "gpus", "cpu_threads", "memory", "hosts", "priority", "group"};
  return keys;
}

// The shortest decimal that reads back as `v` (3e-4, not 0.00029999999999999997).
std::string ShortestDouble(double v) {
  for (int precision = 1; precision <= 17; ++precision) {
    std::string s = absl::StrFormat("%.*g", precision, v);
    if (std::strtod(s.c_str(), nullptr) == v) return s;
  }
  return absl::StrFormat("%.17g", v);
}

bool ValidMemberName(const std::string& n) {
  if (n.empty() || n.size() > 64) return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '=' ||
           c == '+' || c == '-';
  });
}

// Reads one member table (at the top of the stack) into `m`; `defaults` may be read the same
// way first. Errors are "key 'gpus' must be ...", prefixed by the caller.
class MemberReader {
 public:
  MemberReader(lua_State* L, fs::path dir) : L_(L), dir_(std::move(dir)) {}

  absl::Status Read(int idx, bool is_defaults, v1::ExperimentMember* m) {
    idx = lua_absindex(L_, idx);
    std::vector<std::string> keys;
    lua_pushnil(L_);
    while (lua_next(L_, idx) != 0) {
      if (lua_type(L_, -2) != LUA_TSTRING) {
        lua_pop(L_, 2);
        return absl::InvalidArgumentError("keys must be names (name = ..., gpus = ...), got " +
                                          Describe(L_, -2));
      }
      keys.push_back(lua_tostring(L_, -2));
      lua_pop(L_, 1);
    }
    std::sort(keys.begin(), keys.end());
    // The name first, so that errors in the other keys can name the member.
    std::stable_partition(keys.begin(), keys.end(),
                          [](const std::string& k) { return k == "name"; });
    for (const std::string& key : keys) {
      const auto& known = MemberKeys();
      if (std::find(known.begin(), known.end(), key) == known.end() ||
          (is_defaults && key == "name")) {
        return absl::InvalidArgumentError(absl::StrFormat("unknown key '%s'%s; a member takes %s",
                                                          key, lua::Suggestion(key, known),
                                                          absl::StrJoin(known, ", ")));
      }
      lua_getfield(L_, idx, key.c_str());
      absl::Status s = ReadKey(key, m);
      lua_pop(L_, 1);
      if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat("key '", key, "' ", s.message()));
    }
    return absl::OkStatus();
  }

 private:
  absl::Status ReadKey(const std::string& key, v1::ExperimentMember* m) {
    if (key == "name") {
      ASSIGN_OR_RETURN(std::string name, lua::ReadString(L_, -1));
      if (!ValidMemberName(name)) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "must be 1 to 64 letters, digits or . _ = + -, got '%s'", absl::CEscape(name)));
      }
      m->set_name(name);
    } else if (key == "job") {
      ASSIGN_OR_RETURN(std::string job, lua::ReadString(L_, -1));
      fs::path p = fs::path(job).is_absolute() ? fs::path(job) : dir_ / job;
      std::error_code ec;
      p = fs::weakly_canonical(p, ec);
      if (ec || !fs::is_regular_file(p)) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "names '%s', which is not a file (relative paths start at %s)", job, dir_.string()));
      }
      m->set_job_file(p.string());
    } else if (key == "set") {
      return ReadOverrides(m);
    } else if (key == "gpus" || key == "cpu_threads") {
      ASSIGN_OR_RETURN(int64_t v, lua::ReadInt(L_, -1));
      const int64_t max = key == "gpus" ? 64 : 4096;
      if (v < 0 || v > max) {
        return absl::InvalidArgumentError(absl::StrFormat("must be 0 to %d, got %d", max, v));
      }
      if (key == "gpus") {
        m->mutable_needs()->set_gpus(static_cast<int32_t>(v));
      } else {
        m->mutable_needs()->set_cpu_threads(static_cast<int32_t>(v));
      }
    } else if (key == "memory") {
      if (lua_type(L_, -1) == LUA_TSTRING) {
        ASSIGN_OR_RETURN(int64_t bytes, ParseByteSize("memory", lua_tostring(L_, -1)));
        m->mutable_needs()->set_memory_bytes(bytes);
      } else {
        ASSIGN_OR_RETURN(int64_t bytes, lua::ReadInt(L_, -1));
        if (bytes < 0) return absl::InvalidArgumentError("must not be negative");
        m->mutable_needs()->set_memory_bytes(bytes);
      }
    } else if (key == "hosts") {
      m->clear_hosts();
      if (lua_type(L_, -1) == LUA_TSTRING) {
        m->add_hosts(lua_tostring(L_, -1));
        return absl::OkStatus();
      }
      if (lua_type(L_, -1) != LUA_TTABLE) {
        return absl::InvalidArgumentError("must be a host or a list of hosts, got " +
                                          Describe(L_, -1));
      }
      ASSIGN_OR_RETURN(int n, lua::SequenceLength(L_, -1));
      for (int i = 1; i <= n; ++i) {
        lua_rawgeti(L_, -1, i);
        absl::StatusOr<std::string> h = lua::ReadString(L_, -1);
        lua_pop(L_, 1);
        if (!h.ok()) return absl::InvalidArgumentError(absl::StrCat(i, ": ", h.status().message()));
        m->add_hosts(*h);
      }
    } else if (key == "priority") {
      ASSIGN_OR_RETURN(int64_t v, lua::ReadInt(L_, -1));
      if (v < -1000000 || v > 1000000) {
        return absl::InvalidArgumentError(absl::StrFormat("must be within ±1000000, got %d", v));
      }
      m->set_priority(static_cast<int32_t>(v));
    } else if (key == "group") {
      ASSIGN_OR_RETURN(std::string g, lua::ReadString(L_, -1));
      m->set_group(g);
    }
    return absl::OkStatus();
  }

  // set = {n_steps = 1000, lr = 3e-4, optimiser = 'Adam'}: "key=value" in key order; a member's
  // set extends (and overrides key by key) the defaults' set.
  absl::Status ReadOverrides(v1::ExperimentMember* m) {
    if (lua_type(L_, -1) != LUA_TTABLE) {
      return absl::InvalidArgumentError("must be a table of training keys, got " +
                                        Describe(L_, -1));
    }
    std::map<std::string, std::string> values;
    for (const std::string& kv : m->overrides()) {
      const size_t eq = kv.find('=');
      values[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    lua_pushnil(L_);
    while (lua_next(L_, -2) != 0) {
      if (lua_type(L_, -2) != LUA_TSTRING) {
        lua_pop(L_, 2);
        return absl::InvalidArgumentError("keys must be training key names, got " +
                                          Describe(L_, -2));
      }
      const std::string k = lua_tostring(L_, -2);
      std::string v;
      switch (lua_type(L_, -1)) {
        case LUA_TNUMBER:
          v = lua_isinteger(L_, -1) ? absl::StrCat(lua_tointeger(L_, -1))
                                    : ShortestDouble(lua_tonumber(L_, -1));
          break;
        case LUA_TBOOLEAN:
          v = lua_toboolean(L_, -1) ? "true" : "false";
          break;
        case LUA_TSTRING:
          v = lua_tostring(L_, -1);
          break;
        default: {
          const std::string what = Describe(L_, -1);
          lua_pop(L_, 2);
          return absl::InvalidArgumentError(absl::StrFormat(
              "'%s' must be a number, boolean or string (write a table as the string `elektronn "
              "submit --set` takes, e.g. '{dec = 0.99}'), got %s",
              k, what));
        }
      }
      lua_pop(L_, 1);
      if (v.find('\n') != std::string::npos) {
        lua_pop(L_, 1);
        return absl::InvalidArgumentError(absl::StrFormat("'%s' must be one line", k));
      }
      values[k] = v;
    }
    m->clear_overrides();
    for (const auto& [k, v] : values) m->add_overrides(absl::StrCat(k, "=", v));
    return absl::OkStatus();
  }

  lua_State* L_;
  fs::path dir_;
};

// The global `name` (raw: the sandbox refuses reads of undefined globals), pushed; nil if unset.
void PushGlobal(lua_State* L, const char* name) {
  lua_pushglobaltable(L);
  lua_pushstring(L, name);
  lua_rawget(L, -2);
  lua_remove(L, -2);
}

absl::Status ReadExperiment(lua_State* L, const std::string& path, v1::Experiment* e) {
  const fs::path dir = fs::absolute(fs::path(path)).parent_path();
  MemberReader reader(L, dir);
  PushGlobal(L, "experiment");
  if (!lua_isnil(L, -1)) {
    absl::StatusOr<std::string> name = lua::ReadString(L, -1);
    if (!name.ok() || !ValidExperimentName(*name)) {
      lua_pop(L, 1);
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: experiment must be a name of 1 to 64 letters, digits or . _ = + -", path));
    }
    e->set_name(*name);
  }
  lua_pop(L, 1);

  v1::ExperimentMember defaults;
  PushGlobal(L, "defaults");
  if (!lua_isnil(L, -1)) {
    absl::Status s = lua_type(L, -1) == LUA_TTABLE
                         ? reader.Read(-1, /*is_defaults=*/true, &defaults)
                         : absl::InvalidArgumentError("must be a table, got " + Describe(L, -1));
    if (!s.ok()) {
      lua_pop(L, 1);
      return absl::InvalidArgumentError(absl::StrCat(path, ": defaults: ", s.message()));
    }
  }
  lua_pop(L, 1);

  PushGlobal(L, "members");
  if (lua_type(L, -1) != LUA_TTABLE) {
    const std::string what = Describe(L, -1);
    lua_pop(L, 1);
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: `members` must be a list of member tables, e.g. members = {{name = 'a', job = "
        "'job.lua'}}; got %s",
        path, what));
  }
  absl::StatusOr<int> n = lua::SequenceLength(L, -1);
  if (!n.ok() || *n == 0) {
    lua_pop(L, 1);
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: `members` must be a non-empty list (1, 2, 3, ...)", path));
  }
  std::map<std::string, int> seen;
  for (int i = 1; i <= *n; ++i) {
    lua_rawgeti(L, -1, i);
    v1::ExperimentMember m = defaults;
    absl::Status s = lua_type(L, -1) == LUA_TTABLE
                         ? reader.Read(-1, /*is_defaults=*/false, &m)
                         : absl::InvalidArgumentError("must be a table, got " + Describe(L, -1));
    lua_pop(L, 1);
    const std::string who = m.name().empty() ? absl::StrCat("member ", i)
                                             : absl::StrCat("member ", i, " ('", m.name(), "')");
    if (s.ok() && m.name().empty()) s = absl::InvalidArgumentError("has no name");
    if (s.ok() && m.job_file().empty()) {
      s = absl::InvalidArgumentError("has no job (give job = 'file.lua', here or in defaults)");
    }
    if (s.ok() && seen.contains(m.name())) {
      s = absl::InvalidArgumentError(
          absl::StrFormat("has the name of member %d; names must be unique", seen[m.name()]));
    }
    if (!s.ok()) {
      lua_pop(L, 1);
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", who, ": ", s.message()));
    }
    seen[m.name()] = i;
    *e->add_members() = std::move(m);
  }
  lua_pop(L, 1);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::Experiment> LoadExperimentSource(const std::string& source,
                                                    const std::string& path,
                                                    const ExperimentFileOptions& options) {
  lua::SandboxLimits limits;
  limits.max_instructions = options.max_instructions;
  limits.max_bytes = options.max_bytes;
  ASSIGN_OR_RETURN(std::unique_ptr<lua::SandboxedLua> lua, lua::SandboxedLua::Create(limits));
  lua->set_print([](std::string_view line) {
    std::fwrite(line.data(), 1, line.size(), stderr);  // stdout may be --json
  });
  RETURN_IF_ERROR(lua->Run(source, path));
  v1::Experiment e;
  e.set_file(fs::absolute(fs::path(path)).lexically_normal().string());
  e.set_name(fs::path(path).stem().string());
  RETURN_IF_ERROR(lua->Protected([&] { return ReadExperiment(lua->state(), path, &e); }));
  if (!ValidExperimentName(e.name())) {  // the file's name, when it sets no `experiment`
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: the experiment's name '%s' (the file's name) is not 1 to 64 letters, digits or "
        ". _ = + -; set experiment = '...' in the file",
        path, absl::CEscape(e.name())));
  }
  return e;
}

absl::StatusOr<v1::Experiment> LoadExperimentFile(const std::string& path,
                                                  const ExperimentFileOptions& options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrFormat("cannot read experiment file %s", path));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (text.str().size() > (size_t{1} << 20)) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: larger than 1 MiB", path));
  }
  return LoadExperimentSource(text.str(), path, options);
}

bool ValidExperimentName(const std::string& name) {
  return ValidMemberName(name) && name != "." && name != "..";
}

}  // namespace elektronn::sched
