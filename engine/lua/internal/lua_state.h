// SandboxedLua: a Lua 5.4 state for untrusted job files, with no file or process access and
// bounded instructions and memory; plus value readers and error helpers for the bindings.
#pragma once

#include <cstdint>
#include <functional>
#include <lua.hpp>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace elektronn::lua {

struct SandboxLimits {
  int64_t max_instructions = 200'000'000;  // an endless loop fails after about a second
  size_t max_bytes = size_t{256} << 20;    // memory of the whole Lua state
};

// Where and when a global of the job file was first assigned.
struct GlobalDefinition {
  std::string where;  // "job.lua:12:" (empty when unknown, e.g. set with rawset)
  int phase = 0;      // SandboxedLua::phase() at the assignment
  int order = 0;      // 0 for the first global the script assigned, 1 for the next, ...
};

// A fresh Lua state with the base (without dofile, loadfile, load), string, table, math and utf8
// libraries. Globals are strict: reading an undefined name is an error naming it (with a
// suggestion), and the names of everything that could touch files or processes (io, os,
// package, require, debug, ...) raise "job files cannot use io: ...". The built-ins live behind
// the global table's metatable, so the global table holds exactly what the script defined.
class SandboxedLua {
 public:
  static absl::StatusOr<std::unique_ptr<SandboxedLua>> Create(SandboxLimits limits = {});
  ~SandboxedLua();
  SandboxedLua(const SandboxedLua&) = delete;
  SandboxedLua& operator=(const SandboxedLua&) = delete;

  lua_State* state() const { return L_; }
  static SandboxedLua* From(lua_State* L);

  // Pops the value on top of the stack and makes it the read-only built-in `name`.
  void AddBuiltin(const std::string& name);
  // Replaces print's output (default: stdout).
  void set_print(std::function<void(std::string_view)> sink) { print_ = std::move(sink); }

  // Compiles (text only, never bytecode) and runs a chunk. `chunk_name` is a file name as
  // messages should show it ("examples/neuro3d.lua").
  absl::Status Run(std::string_view source, const std::string& chunk_name);
  // Calls the function below `nargs` arguments on the stack, leaving `nresults` results.
  absl::Status Call(int nargs, int nresults);
  // Runs `body` inside a protected call so that Lua errors raised while it reads values
  // (out of memory, metamethods) come back as a Status instead of aborting.
  absl::Status Protected(const std::function<absl::Status()>& body);

  // A tag the bindings set (e.g. top level vs. inside create_model); recorded per global.
  int phase() const { return phase_; }
  void set_phase(int p) { phase_ = p; }
  const std::map<std::string, GlobalDefinition>& definitions() const { return definitions_; }
  std::string chunk_name() const { return chunk_name_; }

 private:
  SandboxedLua() = default;
  static void* Allocate(void* ud, void* ptr, size_t osize, size_t nsize);
  static void Hook(lua_State* L, lua_Debug* ar);
  static int GlobalIndex(lua_State* L);
  static int GlobalNewIndex(lua_State* L);
  static int Print(lua_State* L);
  static int PCall(lua_State* L);
  static int XPCall(lua_State* L);
  // After the instruction or memory budget is spent, pcall/xpcall re-raise every error, so a
  // script cannot catch the sandbox's stop and go on.
  bool instructions_spent() const { return instructions_ > limits_.max_instructions; }
  absl::Status ErrorStatus(int code);

  lua_State* L_ = nullptr;
  SandboxLimits limits_;
  size_t bytes_used_ = 0;
  bool memory_exceeded_ = false;  // the last growing allocation was refused
  int64_t instructions_ = 0;
  std::string limit_message_;  // the instruction-limit error
  int phase_ = 0;
  std::string chunk_name_;
  std::map<std::string, GlobalDefinition> definitions_;
  std::function<void(std::string_view)> print_;
};

// "examples/job.lua:12:" for the Lua function `level` frames up (1 = the caller of the running
// C function); empty when there is no Lua frame there.
std::string Where(lua_State* L, int level = 1);
// Raises a Lua error "<file>:<line>: <message>" located at the calling Lua line.
[[noreturn]] void RaiseError(lua_State* L, const std::string& message);

// " (did you mean 'n_steps'?)" when a candidate is close to `name`, else "".
std::string Suggestion(const std::string& name, const std::vector<std::string>& candidates);

// The `None` sentinel (ELEKTRONN2's unknown size).
void PushNone(lua_State* L);
bool IsNone(lua_State* L, int idx);

// A short description of a value for messages: "string 'abc'", "number 2.5", "a table", "nil".
std::string Describe(lua_State* L, int idx);

// Readers for the value at `idx`. Errors read "must be an integer, got string 'x'"; callers
// prefix what was read ("nm.Conv argument 'n_f' ").
absl::StatusOr<int64_t> ReadInt(lua_State* L, int idx);  // integral floats accepted
absl::StatusOr<double> ReadNumber(lua_State* L, int idx);
absl::StatusOr<bool> ReadBool(lua_State* L, int idx);
absl::StatusOr<std::string> ReadString(lua_State* L, int idx);
// A sequence {1, 2, 3}; with `none_as` set, None entries become that value.
absl::StatusOr<std::vector<int64_t>> ReadIntList(lua_State* L, int idx,
                                                 std::optional<int64_t> none_as = std::nullopt);
absl::StatusOr<std::vector<double>> ReadNumberList(lua_State* L, int idx);
// Number of entries of a table that is a plain sequence 1..n; an error otherwise.
absl::StatusOr<int> SequenceLength(lua_State* L, int idx);

}  // namespace elektronn::lua
