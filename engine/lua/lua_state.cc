// The sandboxed Lua state: allocator and instruction limits, strict globals, value readers.
#include "engine/lua/internal/lua_state.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace elektronn::lua {
namespace {

// Registry keys: the addresses of these variables.
const char kBuiltinsKey = 0;
const char kNoneKey = 0;
constexpr const char* kNoneMeta = "elektronn.None";

// Names that reach files, processes or the interpreter's internals in standard Lua.
const std::set<std::string>& ForbiddenNames() {
  static const auto* names =
      new std::set<std::string>{"io",       "os",   "package",    "require", "dofile",
                                "loadfile", "load", "loadstring", "debug",   "module"};
  return *names;
}

int OpenLibraries(lua_State* L) {
  luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
  luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1);
  luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 1);
  luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 1);
  luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 1);
  lua_settop(L, 0);
  return 0;
}

int NoneToString(lua_State* L) {
  lua_pushliteral(L, "None");
  return 1;
}

// Passes string errors through; gives other error objects a readable text.
int MessageHandler(lua_State* L) {
  if (lua_type(L, 1) == LUA_TSTRING) return 1;
  if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
  lua_pushfstring(L, "%s(error object is %s)", Where(L, 1).c_str(), luaL_typename(L, 1));
  return 1;
}

// Edit distance with adjacent transpositions ("rleu" is one edit from "relu").
int EditDistance(std::string_view a, std::string_view b) {
  const size_t n = a.size(), m = b.size();
  std::vector<std::vector<int>> d(n + 1, std::vector<int>(m + 1));
  for (size_t i = 0; i <= n; ++i) d[i][0] = static_cast<int>(i);
  for (size_t j = 0; j <= m; ++j) d[0][j] = static_cast<int>(j);
  for (size_t i = 1; i <= n; ++i) {
    for (size_t j = 1; j <= m; ++j) {
      d[i][j] = std::min(
          {d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1] ? 1 : 0)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[n][m];
}

// Lua's pattern matcher runs in C, where the instruction hook cannot stop it, and it
// backtracks: ('a?'):rep(32)..('a'):rep(32) takes 2^32 steps on 32 characters. So the sandbox's
// string.find/match/gmatch/gsub first bound the matcher's worst-case work and refuse a call
// whose bound exceeds kMaxPatternSteps (about a second of matching).
//
// The bound follows the matcher: a pattern item followed by the rest R of the pattern costs
//   single character (class, set, '.'):   1 + C(R)
//   x?                                    1 + 2 C(R)      (with and without x)
//   x*, x+, x-                            (n+1) (1 + C(R)), or n + C(R) when R cannot fail
//   %bxy, back-reference %1..%9           n + C(R)        (a scan, no choice)
//   %f[set], '(', ')', '()', final '$'    1 + C(R)
// with C(empty) = 1, times the start positions tried (1 when anchored by '^', else n+1; gsub
// and a whole gmatch loop try each start once). A pattern we cannot parse is bounded as if
// every '*', '+', '-' and '?' were a free repetition, which over-estimates any parse.
constexpr double kMaxPatternSteps = 2e8;

// Index just past the single-character class starting at p[i], or npos when malformed.
size_t SkipClass(std::string_view p, size_t i) {
  if (i >= p.size()) return std::string_view::npos;
  if (p[i] == '%') return i + 2 <= p.size() ? i + 2 : std::string_view::npos;
  if (p[i] != '[') return i + 1;
  ++i;
  if (i < p.size() && p[i] == '^') ++i;
  do {  // the first ']' of a set is a literal
    if (i >= p.size()) return std::string_view::npos;
    if (p[i] == '%') ++i;
    ++i;
  } while (i >= p.size() || p[i] != ']');
  return i + 1;
}

double PatternSteps(std::string_view p, double n) {
  const bool anchored = !p.empty() && p[0] == '^';
  if (anchored) p.remove_prefix(1);
  // Items as (kind, quantifier): C is computed from the end.
  struct Item {
    char kind;   // 'c' character class, 's' scan (%b, back-reference), 'z' zero-width test,
                 // 'p' capture parenthesis (zero width, cannot fail)
    char quant;  // 0, '?', '*', '+', '-'
  };
  std::vector<Item> items;
  bool parsed = true;
  for (size_t i = 0; i < p.size() && parsed;) {
    const char c = p[i];
    if (c == '(' || c == ')') {
      items.push_back({'p', 0});
      ++i;
    } else if (c == '$' && i + 1 == p.size()) {
      items.push_back({'z', 0});
      ++i;
    } else if (c == '%' && i + 1 < p.size() && p[i + 1] == 'b') {
      if (i + 4 > p.size()) parsed = false;
      items.push_back({'s', 0});
      i += 4;
    } else if (c == '%' && i + 1 < p.size() && p[i + 1] == 'f') {
      const size_t end =
          (i + 2 < p.size() && p[i + 2] == '[') ? SkipClass(p, i + 2) : std::string_view::npos;
      if (end == std::string_view::npos) parsed = false;
      items.push_back({'z', 0});
      i = end;
    } else if (c == '%' && i + 1 < p.size() && p[i + 1] >= '0' && p[i + 1] <= '9') {
      items.push_back({'s', 0});
      i += 2;
    } else {
      const size_t end = SkipClass(p, i);
      if (end == std::string_view::npos) {
        parsed = false;
        break;
      }
      char quant = 0;
      if (end < p.size() && std::strchr("?*+-", p[end]) != nullptr) quant = p[end];
      items.push_back({'c', quant});
      i = end + (quant != 0 ? 1 : 0);
    }
  }
  const double starts = anchored ? 1 : n + 1;
  if (!parsed) {
    int free = 0;
    for (char c : p) free += std::strchr("?*+-", c) != nullptr ? 1 : 0;
    return starts * std::pow(n + 1, free) * (static_cast<double>(p.size()) + 1);
  }
  double cost = 1;  // C(empty)
  bool rest_empty = true;
  for (auto it = items.rbegin(); it != items.rend(); ++it) {
    if (it->kind == 'p') {
      cost = 1 + cost;
      continue;  // cannot fail: a repetition before it still ends at its first try
    }
    if (it->kind == 's') {
      cost = n + cost;
    } else if (it->quant == '?') {
      cost = 1 + 2 * cost;
    } else if (it->quant != 0) {
      cost = rest_empty ? n + cost : (n + 1) * (1 + cost);
    } else {
      cost = 1 + cost;
    }
    rest_empty = false;
  }
  return starts * cost;
}

int GuardedPatternFunction(lua_State* L) {
  const char* fn = lua_tostring(L, lua_upvalueindex(2));
  size_t n = 0, plen = 0;
  luaL_checklstring(L, 1, &n);
  const char* pattern = luaL_checklstring(L, 2, &plen);
  const bool plain = std::string_view(fn) == "find" && lua_toboolean(L, 4);
  if (!plain) {
    const double steps = PatternSteps(std::string_view(pattern, plen), static_cast<double>(n));
    if (steps > kMaxPatternSteps) {
      RaiseError(L,
                 absl::StrFormat(
                     "string.%s: the pattern '%s' could take up to %.3g matching "
                     "steps on a string of %d characters (it backtracks over "
                     "'?', '*', '+' or '-' items); the sandbox refuses more than "
                     "%.0g. Use fewer repetitions, anchor it with '^', or split "
                     "the string first",
                     fn, plen > 60 ? std::string(pattern, 57) + "..." : std::string(pattern, plen),
                     steps, n, kMaxPatternSteps));
    }
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

}  // namespace

absl::StatusOr<std::unique_ptr<SandboxedLua>> SandboxedLua::Create(SandboxLimits limits) {
  std::unique_ptr<SandboxedLua> s(new SandboxedLua());
  s->limits_ = limits;
  s->L_ = lua_newstate(&SandboxedLua::Allocate, s.get());
  if (s->L_ == nullptr) return absl::ResourceExhaustedError("cannot create a Lua state");
  lua_State* L = s->L_;
  *static_cast<SandboxedLua**>(lua_getextraspace(L)) = s.get();
  lua_sethook(L, &SandboxedLua::Hook, LUA_MASKCOUNT, 1000);

  lua_pushcfunction(L, OpenLibraries);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) return s->ErrorStatus(LUA_ERRRUN);

  absl::Status setup = s->Protected([&]() -> absl::Status {
    // Move every library global into the built-ins table, leaving the global table empty.
    lua_newtable(L);  // builtins
    const int builtins = lua_gettop(L);
    lua_pushglobaltable(L);
    const int globals = lua_gettop(L);
    std::vector<std::string> names;
    lua_pushnil(L);
    while (lua_next(L, globals) != 0) {
      if (lua_type(L, -2) == LUA_TSTRING) {
        std::string name = lua_tostring(L, -2);
        names.push_back(name);
        if (!ForbiddenNames().contains(name) && name != "print") {
          lua_pushvalue(L, -2);
          lua_insert(L, -2);
          lua_rawset(L, builtins);
          continue;
        }
      }
      lua_pop(L, 1);
    }
    for (const std::string& n : names) {
      lua_pushnil(L);
      lua_setfield(L, globals, n.c_str());
    }
    lua_getfield(L, builtins, LUA_STRLIBNAME);
    for (const char* fn : {"find", "match", "gmatch", "gsub"}) {
      lua_getfield(L, -1, fn);
      lua_pushstring(L, fn);
      lua_pushcclosure(L, GuardedPatternFunction, 2);
      lua_setfield(L, -2, fn);
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, &SandboxedLua::Print);
    lua_setfield(L, builtins, "print");
    lua_pushcfunction(L, &SandboxedLua::PCall);
    lua_setfield(L, builtins, "pcall");
    lua_pushcfunction(L, &SandboxedLua::XPCall);
    lua_setfield(L, builtins, "xpcall");
    lua_pushvalue(L, globals);
    lua_setfield(L, builtins, LUA_GNAME);

    // None: a unique, immutable userdata.
    lua_newuserdatauv(L, 0, 0);
    luaL_newmetatable(L, kNoneMeta);
    lua_pushcfunction(L, NoneToString);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "None");
    lua_setfield(L, -2, "__name");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &kNoneKey);
    lua_setfield(L, builtins, "None");

    lua_pushvalue(L, builtins);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &kBuiltinsKey);

    lua_newtable(L);  // the global table's metatable
    lua_pushcfunction(L, &SandboxedLua::GlobalIndex);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, &SandboxedLua::GlobalNewIndex);
    lua_setfield(L, -2, "__newindex");
    lua_pushliteral(L, "the global table of a job file is protected");
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, globals);
    lua_settop(L, 0);
    return absl::OkStatus();
  });
  if (!setup.ok()) return setup;
  return s;
}

SandboxedLua::~SandboxedLua() {
  if (L_ != nullptr) lua_close(L_);
}

SandboxedLua* SandboxedLua::From(lua_State* L) {
  return *static_cast<SandboxedLua**>(lua_getextraspace(L));
}

void* SandboxedLua::Allocate(void* ud, void* ptr, size_t osize, size_t nsize) {
  auto* s = static_cast<SandboxedLua*>(ud);
  const size_t old = ptr != nullptr ? osize : 0;
  if (nsize == 0) {
    std::free(ptr);
    s->bytes_used_ -= old;
    return nullptr;
  }
  if (nsize > old && s->bytes_used_ - old + nsize > s->limits_.max_bytes) {
    s->memory_exceeded_ = true;
    return nullptr;
  }
  void* p = std::realloc(ptr, nsize);
  if (p == nullptr) return nullptr;
  if (nsize > old) s->memory_exceeded_ = false;  // Lua retries after a full collection
  s->bytes_used_ = s->bytes_used_ - old + nsize;
  return p;
}

void SandboxedLua::Hook(lua_State* L, lua_Debug* ar) {
  SandboxedLua* s = From(L);
  s->instructions_ += 1000;
  if (s->instructions_ <= s->limits_.max_instructions) return;
  if (s->limit_message_.empty()) {
    std::string where;
    if (lua_getinfo(L, "Sl", ar) != 0 && ar->currentline > 0) {
      where = absl::StrCat(ar->short_src, ":", ar->currentline, ": ");
    }
    s->limit_message_ = absl::StrFormat(
        "%sthe job file ran for more than %d Lua instructions (an endless loop?); the sandbox "
        "stopped it",
        where, s->limits_.max_instructions);
    // From now on stop at the very next instruction of whatever runs (finalizers included).
    lua_sethook(L, &SandboxedLua::Hook, LUA_MASKCOUNT, 1);
  }
  lua_pushstring(L, s->limit_message_.c_str());
  lua_error(L);
}

int SandboxedLua::GlobalIndex(lua_State* L) {
  if (lua_type(L, 2) != LUA_TSTRING) return 0;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &kBuiltinsKey);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, -2) != LUA_TNIL) return 1;
  const std::string name = lua_tostring(L, 2);
  if (ForbiddenNames().contains(name)) {
    RaiseError(L, absl::StrFormat(
                      "job files cannot use %s: the sandbox has no file or process access", name));
  }
  if (name == "True" || name == "False") {
    RaiseError(L, absl::StrFormat("name '%s' is not defined; Lua writes booleans as %s", name,
                                  absl::AsciiStrToLower(name)));
  }
  // Candidates: globals, built-ins and the calling function's locals.
  std::vector<std::string> candidates;
  for (int t : {1, 3}) {
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
      if (lua_type(L, -2) == LUA_TSTRING) candidates.push_back(lua_tostring(L, -2));
      lua_pop(L, 1);
    }
  }
  lua_Debug ar;
  if (lua_getstack(L, 1, &ar) != 0) {
    for (int i = 1;; ++i) {
      const char* local = lua_getlocal(L, &ar, i);
      if (local == nullptr) break;
      lua_pop(L, 1);
      if (local[0] != '(') candidates.push_back(local);
    }
  }
  RaiseError(L, absl::StrFormat("name '%s' is not defined%s", name, Suggestion(name, candidates)));
}

int SandboxedLua::GlobalNewIndex(lua_State* L) {
  SandboxedLua* s = From(L);
  if (lua_type(L, 2) == LUA_TSTRING) {
    const std::string name = lua_tostring(L, 2);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &kBuiltinsKey);
    lua_pushvalue(L, 2);
    if (lua_rawget(L, -2) != LUA_TNIL) {
      RaiseError(
          L, absl::StrFormat("'%s' is a built-in name of job files and cannot be redefined; use "
                             "another name (or a local)",
                             name));
    }
    lua_pop(L, 2);
    if (!s->definitions_.contains(name)) {
      s->definitions_[name] =
          GlobalDefinition{Where(L, 1), s->phase_, static_cast<int>(s->definitions_.size())};
    }
  }
  lua_settop(L, 3);
  lua_rawset(L, 1);
  return 0;
}

int SandboxedLua::PCall(lua_State* L) {
  luaL_checkany(L, 1);
  const int status = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
  if (status == LUA_ERRMEM || (status != LUA_OK && From(L)->instructions_spent())) {
    return lua_error(L);
  }
  lua_pushboolean(L, status == LUA_OK);
  lua_insert(L, 1);
  return lua_gettop(L);
}

int SandboxedLua::XPCall(lua_State* L) {
  const int n = lua_gettop(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushvalue(L, 1);
  lua_rotate(L, 3, 1);  // f, handler, f, args...
  const int status = lua_pcall(L, n - 2, LUA_MULTRET, 2);
  if (status == LUA_ERRMEM || (status != LUA_OK && From(L)->instructions_spent())) {
    return lua_error(L);
  }
  lua_pushboolean(L, status == LUA_OK);
  lua_replace(L, 2);  // true/false replaces the handler
  return lua_gettop(L) - 1;
}

int SandboxedLua::Print(lua_State* L) {
  SandboxedLua* s = From(L);
  const int n = lua_gettop(L);
  std::string line;
  for (int i = 1; i <= n; ++i) {
    size_t len = 0;
    const char* text = luaL_tolstring(L, i, &len);
    if (i > 1) line += '\t';
    line.append(text, len);
    lua_pop(L, 1);
  }
  line += '\n';
  if (s->print_) {
    s->print_(line);
  } else {
    std::fwrite(line.data(), 1, line.size(), stdout);
  }
  return 0;
}

void SandboxedLua::AddBuiltin(const std::string& name) {
  lua_rawgetp(L_, LUA_REGISTRYINDEX, &kBuiltinsKey);
  lua_insert(L_, -2);
  lua_setfield(L_, -2, name.c_str());
  lua_pop(L_, 1);
}

absl::Status SandboxedLua::ErrorStatus(int code) {
  std::string message = lua_type(L_, -1) == LUA_TSTRING ? lua_tostring(L_, -1) : "unknown error";
  lua_pop(L_, 1);
  if (code == LUA_ERRMEM || (memory_exceeded_ && message == "not enough memory")) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("%s: the job file used more than %d MiB of memory; the sandbox stopped it",
                        chunk_name_, limits_.max_bytes >> 20));
  }
  if (instructions_ > limits_.max_instructions) {
    return absl::ResourceExhaustedError(limit_message_.empty() ? message : limit_message_);
  }
  return absl::InvalidArgumentError(message);
}

absl::Status SandboxedLua::Run(std::string_view source, const std::string& chunk_name) {
  chunk_name_ = chunk_name;
  const std::string lua_name = absl::StrCat("@", chunk_name);
  const int code = luaL_loadbufferx(L_, source.data(), source.size(), lua_name.c_str(), "t");
  if (code != LUA_OK) return ErrorStatus(code);
  return Call(0, 0);
}

absl::Status SandboxedLua::Call(int nargs, int nresults) {
  const int base = lua_gettop(L_) - nargs;
  lua_pushcfunction(L_, MessageHandler);
  lua_insert(L_, base);
  const int code = lua_pcall(L_, nargs, nresults, base);
  lua_remove(L_, base);
  if (code != LUA_OK) return ErrorStatus(code);
  return absl::OkStatus();
}

absl::Status SandboxedLua::Protected(const std::function<absl::Status()>& body) {
  absl::Status result;
  struct Ctx {
    const std::function<absl::Status()>* body;
    absl::Status* result;
  } ctx{&body, &result};
  lua_pushcfunction(L_, [](lua_State* L) -> int {
    auto* c = static_cast<Ctx*>(lua_touserdata(L, 1));
    lua_remove(L, 1);
    *c->result = (*c->body)();
    return 0;
  });
  lua_pushlightuserdata(L_, &ctx);
  const int code = lua_pcall(L_, 1, 0, 0);
  if (code != LUA_OK) return ErrorStatus(code);
  return result;
}

std::string Where(lua_State* L, int level) {
  lua_Debug ar;
  for (int l = level; lua_getstack(L, l, &ar) != 0; ++l) {
    if (lua_getinfo(L, "Sl", &ar) != 0 && ar.currentline > 0) {
      return absl::StrCat(ar.short_src, ":", ar.currentline, ":");
    }
  }
  return "";
}

void RaiseError(lua_State* L, const std::string& message) {
  const std::string where = Where(L, 1);
  if (where.empty()) {
    lua_pushlstring(L, message.data(), message.size());
  } else {
    const std::string full = absl::StrCat(where, " ", message);
    lua_pushlstring(L, full.data(), full.size());
  }
  lua_error(L);
  std::abort();  // lua_error does not return
}

std::string Suggestion(const std::string& name, const std::vector<std::string>& candidates) {
  const std::string lower = absl::AsciiStrToLower(name);
  const std::string* best = nullptr;
  int best_d = 1 << 30;
  for (const std::string& c : candidates) {
    if (c == name) continue;
    const int d = EditDistance(lower, absl::AsciiStrToLower(c));
    if (d < best_d) {
      best_d = d;
      best = &c;
    }
  }
  const int limit = std::max<int>(1, static_cast<int>(name.size()) / 3);
  if (best == nullptr || best_d > limit) return "";
  return absl::StrFormat(" (did you mean '%s'?)", *best);
}

void PushNone(lua_State* L) { lua_rawgetp(L, LUA_REGISTRYINDEX, &kNoneKey); }

bool IsNone(lua_State* L, int idx) { return luaL_testudata(L, idx, kNoneMeta) != nullptr; }

std::string Describe(lua_State* L, int idx) {
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
    case LUA_TNIL:
    case LUA_TNONE:
      return "nil";
    case LUA_TBOOLEAN:
      return lua_toboolean(L, idx) ? "boolean true" : "boolean false";
    case LUA_TNUMBER: {
      lua_pushvalue(L, idx);
      std::string text = lua_tostring(L, -1);
      lua_pop(L, 1);
      return "number " + text;
    }
    case LUA_TSTRING: {
      std::string text = lua_tostring(L, idx);
      if (text.size() > 40) text = text.substr(0, 37) + "...";
      return absl::StrCat("string '", text, "'");
    }
    case LUA_TUSERDATA:
      if (IsNone(L, idx)) return "None";
      if (luaL_getmetafield(L, idx, "__name") == LUA_TSTRING) {
        std::string n = lua_tostring(L, -1);
        lua_pop(L, 1);
        return "a " + n;
      }
      return "a userdata";
    default:
      return absl::StrCat("a ", luaL_typename(L, idx));
  }
}

absl::StatusOr<int64_t> ReadInt(lua_State* L, int idx) {
  if (lua_isinteger(L, idx)) return static_cast<int64_t>(lua_tointeger(L, idx));
  if (lua_type(L, idx) == LUA_TNUMBER) {
    const double v = lua_tonumber(L, idx);
    if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 9.0e18) {
      return static_cast<int64_t>(v);
    }
  }
  return absl::InvalidArgumentError("must be an integer, got " + Describe(L, idx));
}

absl::StatusOr<double> ReadNumber(lua_State* L, int idx) {
  if (lua_type(L, idx) == LUA_TNUMBER) return static_cast<double>(lua_tonumber(L, idx));
  return absl::InvalidArgumentError("must be a number, got " + Describe(L, idx));
}

absl::StatusOr<bool> ReadBool(lua_State* L, int idx) {
  if (lua_type(L, idx) == LUA_TBOOLEAN) return lua_toboolean(L, idx) != 0;
  return absl::InvalidArgumentError("must be true or false, got " + Describe(L, idx));
}

absl::StatusOr<std::string> ReadString(lua_State* L, int idx) {
  if (lua_type(L, idx) == LUA_TSTRING) {
    size_t len = 0;
    const char* s = lua_tolstring(L, idx, &len);
    return std::string(s, len);
  }
  return absl::InvalidArgumentError("must be a string, got " + Describe(L, idx));
}

namespace {

// The number of entries of a plain sequence; otherwise an error saying what was found instead.
absl::StatusOr<int> SequenceLengthOrFound(lua_State* L, int idx) {
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) != LUA_TTABLE) return absl::InvalidArgumentError(Describe(L, idx));
  int64_t count = 0, max_key = 0;
  std::string bad_key;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    lua_pop(L, 1);
    ++count;
    if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1) {
      max_key = std::max<int64_t>(max_key, lua_tointeger(L, -1));
    } else if (bad_key.empty()) {
      bad_key = Describe(L, -1);
    }
  }
  if (!bad_key.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("a table with the key ", bad_key));
  }
  if (max_key != count) {
    return absl::InvalidArgumentError(
        "a list with holes (nil entries; write None for an unknown size)");
  }
  return static_cast<int>(count);
}

}  // namespace

absl::StatusOr<int> SequenceLength(lua_State* L, int idx) {
  auto n = SequenceLengthOrFound(L, idx);
  if (!n.ok())
    return absl::InvalidArgumentError(
        absl::StrCat("must be a list {...}, got ", n.status().message()));
  return n;
}

absl::StatusOr<std::vector<int64_t>> ReadIntList(lua_State* L, int idx,
                                                 std::optional<int64_t> none_as) {
  idx = lua_absindex(L, idx);
  const char* what = none_as ? "a list of integers (or None)" : "a list of integers";
  auto n = SequenceLengthOrFound(L, idx);
  if (!n.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("must be ", what, ", got ", n.status().message()));
  }
  std::vector<int64_t> out;
  for (int i = 1; i <= *n; ++i) {
    lua_rawgeti(L, idx, i);
    if (none_as && IsNone(L, -1)) {
      out.push_back(*none_as);
    } else {
      auto v = ReadInt(L, -1);
      if (!v.ok()) {
        std::string d = Describe(L, -1);
        lua_pop(L, 1);
        return absl::InvalidArgumentError(
            absl::StrFormat("must be %s, but entry %d is %s", what, i, d));
      }
      out.push_back(*v);
    }
    lua_pop(L, 1);
  }
  return out;
}

absl::StatusOr<std::vector<double>> ReadNumberList(lua_State* L, int idx) {
  idx = lua_absindex(L, idx);
  auto n = SequenceLengthOrFound(L, idx);
  if (!n.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("must be a list of numbers, got ", n.status().message()));
  }
  std::vector<double> out;
  for (int i = 1; i <= *n; ++i) {
    lua_rawgeti(L, idx, i);
    if (lua_type(L, -1) != LUA_TNUMBER) {
      std::string d = Describe(L, -1);
      lua_pop(L, 1);
      return absl::InvalidArgumentError(
          absl::StrFormat("must be a list of numbers, but entry %d is %s", i, d));
    }
    out.push_back(lua_tonumber(L, -1));
    lua_pop(L, 1);
  }
  return out;
}

}  // namespace elektronn::lua
