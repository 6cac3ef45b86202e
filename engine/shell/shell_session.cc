// ShellSession: shortcuts and sandboxed Lua bound to a live training job (reference §6).
#include "engine/shell/shell_session.h"

#include <algorithm>
#include <lua.hpp>
#include <map>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "engine/config/hyperparams.h"
#include "engine/core/status.h"
#include "engine/graph/network.h"
#include "engine/graph/statistics.h"
#include "engine/io/model_file.h"
#include "engine/lua/internal/lua_state.h"
#include "engine/trainer/trainer.h"

namespace elektronn {
namespace {

struct Shortcut {
  std::string name;
  std::string args;
  std::string help;
  const HyperparameterDef* sets = nullptr;  // the hyper-parameter a set-shortcut sets
};

// ELEKTRONN2's shortcuts (reference §6); the set-shortcuts (setlr, setmom, setwd, sethist) come
// from the hyper-parameter table.
const std::vector<Shortcut>& Shortcuts() {
  static const auto* shortcuts = [] {
    auto* v = new std::vector<Shortcut>{
        {"help", "", "show this list"},
        {"q", "", "leave the shell and continue training"},
        {"kill", "", "leave the shell and stop training (the last state is saved)"},
    };
    for (const HyperparameterDef& d : Hyperparameters()) {
      if (d.shortcut.empty()) continue;
      v->push_back({d.shortcut, d.type == HyperparameterType::kInt ? "<int>" : "<float>",
                    absl::StrFormat("set %s: %s, %s", d.name, d.help, RangeText(d)), &d});
    }
    v->insert(v->end(), {{"save", "[file]",
                          "save the model to the training directory (<name>-shell-<step>.h5)"},
                         {"paramstats", "", "statistics of the parameters"},
                         {"gradstats", "", "statistics of the gradients of the last batch"},
                         {"actstats", "", "statistics of the activations of the last batch"},
                         {"nodes", "", "list the model's nodes with op, shape and field of view"}});
    // batch_norm family: freezing (reference §3.4's lock_trainable_params, live).
    v->push_back({"freeze", "<node>", "stop training the node's parameters (kept as they are)"});
    v->push_back({"unfreeze", "<node>", "train the node's parameters again"});
    // Pictures and parameters (reference §6); files stay in the training directory.
    v->insert(
        v->end(),
        {{"sf", "[node]", "save the node's filters as filters_<node>.png (none: filters.png)"},
         {"load", "<file>", "load parameters from a model file in the training directory"},
         {"preview", "", "write the preview predictions now"},
         {"debugbatch", "", "write a fresh training batch as Batch_test_image.png"}});
    return v;
  }();
  return *shortcuts;
}

// `trainer.` fields: the hyper-parameters' names, then the read-only ones.
const std::vector<std::string>& TrainerFields() {
  static const auto* fields = [] {
    auto* v = new std::vector<std::string>;
    for (const HyperparameterDef& d : Hyperparameters()) v->push_back(d.name);
    v->insert(v->end(), {"step", "name", "dir"});
    return v;
  }();
  return *fields;
}
constexpr const char* kNodeFields[] = {"name",    "op",      "shape", "fov",
                                       "strides", "offsets", "params"};
constexpr const char* kGlobals[] = {"model",    "trainer", "history", "print",  "math",
                                    "string",   "table",   "pairs",   "ipairs", "tostring",
                                    "tonumber", "type",    "select"};

constexpr char kModelMeta[] = "elektronn.shell.model";
constexpr char kNodeMeta[] = "elektronn.shell.node";
constexpr char kTensorMeta[] = "elektronn.shell.tensor";
constexpr char kTrainerMeta[] = "elektronn.shell.trainer";

// The userdata behind model, nodes, tensors and trainer.
struct Ref {
  ShellSession* session;
  int node;   // index into graph().nodes()
  int param;  // index into network().params()
};

Ref* CheckRef(lua_State* L, int idx, const char* meta) {
  return static_cast<Ref*>(luaL_checkudata(L, idx, meta));
}

void PushRef(lua_State* L, ShellSession* s, const char* meta, int node = -1, int param = -1) {
  auto* r = static_cast<Ref*>(lua_newuserdatauv(L, sizeof(Ref), 0));
  *r = Ref{s, node, param};
  luaL_setmetatable(L, meta);
}

void PushIntList(lua_State* L, const std::vector<int64_t>& v) {
  lua_createtable(L, static_cast<int>(v.size()), 0);
  for (size_t i = 0; i < v.size(); ++i) {
    lua_pushinteger(L, v[i]);
    lua_rawseti(L, -2, static_cast<lua_Integer>(i + 1));
  }
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("(", absl::StrJoin(shape, ","), ")");
}

Network& Net(Ref* r) { return r->session->trainer().network(); }
Parameter& Param(Ref* r) { return *Net(r).params()[r->param]; }

std::vector<std::string> NodeNames(Network& net) {
  std::vector<std::string> names;
  for (const auto& n : net.graph().nodes()) names.push_back(n->name());
  return names;
}

std::vector<int> ParamsOf(Network& net, const std::string& node) {
  std::vector<int> out;
  for (size_t i = 0; i < net.params().size(); ++i) {
    if (net.params()[i]->node == node) out.push_back(static_cast<int>(i));
  }
  return out;
}

void PushTensor(lua_State* L, ShellSession* s, int param) { PushRef(L, s, kTensorMeta, -1, param); }

// model.params: "node/param" -> tensor.
void PushParamTable(lua_State* L, ShellSession* s, const std::vector<int>& params, bool by_key) {
  Network& net = s->trainer().network();
  lua_newtable(L);
  for (int i : params) {
    PushTensor(L, s, i);
    const Parameter& p = *net.params()[i];
    lua_setfield(L, -2, (by_key ? p.key() : p.name).c_str());
  }
}

int ModelIndex(lua_State* L) {
  Ref* r = CheckRef(L, 1, kModelMeta);
  const std::string key = luaL_checkstring(L, 2);
  Network& net = Net(r);
  if (key == "params") {
    std::vector<int> all(net.params().size());
    for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int>(i);
    PushParamTable(L, r->session, all, /*by_key=*/true);
    return 1;
  }
  const auto& nodes = net.graph().nodes();
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (nodes[i]->name() == key) {
      PushRef(L, r->session, kNodeMeta, static_cast<int>(i));
      return 1;
    }
  }
  lua::RaiseError(
      L, absl::StrCat("the model has no node '", key, "'", lua::Suggestion(key, NodeNames(net))));
}

int ModelNewIndex(lua_State* L) {
  lua::RaiseError(L, "model nodes cannot be replaced; assign to parameters (model.conv.w[1] = 0)");
}

int ModelToString(lua_State* L) {
  Ref* r = CheckRef(L, 1, kModelMeta);
  lua_pushstring(L,
                 absl::StrCat("model with nodes ", absl::StrJoin(NodeNames(Net(r)), ", ")).c_str());
  return 1;
}

int NodeIndex(lua_State* L) {
  Ref* r = CheckRef(L, 1, kNodeMeta);
  const std::string key = luaL_checkstring(L, 2);
  Network& net = Net(r);
  const Node& node = *net.graph().nodes()[r->node];
  if (key == "name") {
    lua_pushstring(L, node.name().c_str());
  } else if (key == "op") {
    lua_pushstring(L, node.op().c_str());
  } else if (key == "shape") {
    lua_pushstring(L, node.shape().ToString().c_str());
  } else if (key == "fov") {
    PushIntList(L, node.shape().fov());
  } else if (key == "strides") {
    PushIntList(L, node.shape().strides());
  } else if (key == "offsets") {
    PushIntList(L, node.shape().offsets());
  } else if (key == "params") {
    PushParamTable(L, r->session, ParamsOf(net, node.name()), /*by_key=*/false);
  } else {
    std::vector<std::string> candidates(std::begin(kNodeFields), std::end(kNodeFields));
    for (int i : ParamsOf(net, node.name())) {
      if (net.params()[i]->name == key) {
        PushTensor(L, r->session, i);
        return 1;
      }
      candidates.push_back(net.params()[i]->name);
    }
    lua::RaiseError(L, absl::StrCat("node '", node.name(), "' has no field or parameter '", key,
                                    "'", lua::Suggestion(key, candidates)));
  }
  return 1;
}

int NodeToString(lua_State* L) {
  Ref* r = CheckRef(L, 1, kNodeMeta);
  const Node& node = *Net(r).graph().nodes()[r->node];
  lua_pushstring(
      L,
      absl::StrFormat("node %s (%s) %s", node.name(), node.op(), node.shape().ToString()).c_str());
  return 1;
}

int64_t CheckIndex(lua_State* L, const Parameter& p, int idx) {
  if (!lua_isinteger(L, idx)) {
    lua::RaiseError(L,
                    absl::StrCat("tensor index must be an integer, got ", lua::Describe(L, idx)));
  }
  const int64_t i = lua_tointeger(L, idx);
  const int64_t n = p.canonical_size();
  if (i < 1 || i > n) {
    lua::RaiseError(L, absl::StrFormat("index %d out of range for %s (1..%d)", i, p.key(), n));
  }
  return i - 1;
}

void SetValues(lua_State* L, Ref* r, const std::vector<float>& values) {
  absl::Status s = Net(r).SetParamValue(Param(r), values);
  if (!s.ok()) lua::RaiseError(L, std::string(s.message()));
}

int TensorMean(lua_State* L) {
  Ref* r = CheckRef(L, 1, kTensorMeta);
  const Parameter& p = Param(r);
  lua_pushnumber(L, Summarise(p.key(), p.shape, Net(r).ParamValue(p)).mean);
  return 1;
}

int TensorStd(lua_State* L) {
  Ref* r = CheckRef(L, 1, kTensorMeta);
  const Parameter& p = Param(r);
  lua_pushnumber(L, Summarise(p.key(), p.shape, Net(r).ParamValue(p)).std);
  return 1;
}

int TensorValues(lua_State* L) {
  Ref* r = CheckRef(L, 1, kTensorMeta);
  const std::vector<float> v = Net(r).ParamValue(Param(r));
  lua_createtable(L, static_cast<int>(v.size()), 0);
  for (size_t i = 0; i < v.size(); ++i) {
    lua_pushnumber(L, v[i]);
    lua_rawseti(L, -2, static_cast<lua_Integer>(i + 1));
  }
  return 1;
}

// t:set{...} (all values, canonical order) or t:set(x) (every entry).
int TensorSet(lua_State* L) {
  Ref* r = CheckRef(L, 1, kTensorMeta);
  const Parameter& p = Param(r);
  std::vector<float> values;
  if (lua_type(L, 2) == LUA_TNUMBER) {
    values.assign(p.canonical_size(), static_cast<float>(lua_tonumber(L, 2)));
  } else {
    auto list = lua::ReadNumberList(L, 2);
    if (!list.ok()) lua::RaiseError(L, absl::StrCat("set: ", list.status().message()));
    if (static_cast<int64_t>(list->size()) != p.canonical_size()) {
      lua::RaiseError(L, absl::StrFormat("set: %s has %d values, got %d", p.key(),
                                         p.canonical_size(), list->size()));
    }
    values.assign(list->begin(), list->end());
  }
  SetValues(L, r, values);
  return 0;
}

int TensorIndex(lua_State* L) {
  Ref* r = CheckRef(L, 1, kTensorMeta);
  const Parameter& p = Param(r);
  if (lua_type(L, 2) == LUA_TNUMBER) {
    const int64_t i = CheckIndex(L, p, 2);
    lua_pushnumber(L, Net(r).ParamValue(p)[i]);
    return 1;
  }
  const std::string key = luaL_checkstring(L, 2);
  static const std::map<std::string, lua_CFunction> kMethods = {
      {"mean", TensorMean}, {"std", TensorStd}, {"set", TensorSet}, {"values", TensorValues}};
  if (auto it = kMethods.find(key); it != kMethods.end()) {
    lua_pushcfunction(L, it->second);
  } else if (key == "shape") {
    PushIntList(L, p.shape);
  } else if (key == "size") {
    lua_pushinteger(L, p.canonical_size());
  } else if (key == "name") {
    lua_pushstring(L, p.key().c_str());
  } else {
    lua::RaiseError(L,
                    absl::StrCat("a tensor has no field '", key,
                                 "' (fields: shape, size, name, mean(), std(), set(), values())"));
  }
  return 1;
}

int TensorNewIndex(lua_State* L) {
  Ref* r = CheckRef(L, 1, kTensorMeta);
  const Parameter& p = Param(r);
  const int64_t i = CheckIndex(L, p, 2);
  if (lua_type(L, 3) != LUA_TNUMBER) {
    lua::RaiseError(L, absl::StrCat("tensor values must be numbers, got ", lua::Describe(L, 3)));
  }
  std::vector<float> v = Net(r).ParamValue(p);
  v[i] = static_cast<float>(lua_tonumber(L, 3));
  SetValues(L, r, v);
  return 0;
}

int TensorLen(lua_State* L) {
  lua_pushinteger(L, Param(CheckRef(L, 1, kTensorMeta)).canonical_size());
  return 1;
}

int TensorToString(lua_State* L) {
  Ref* r = CheckRef(L, 1, kTensorMeta);
  const Parameter& p = Param(r);
  const TensorStatistics s = Summarise(p.key(), p.shape, Net(r).ParamValue(p));
  lua_pushstring(L, absl::StrFormat("tensor %s %s mean=%.4g std=%.4g", p.key(),
                                    ShapeString(p.shape), s.mean, s.std)
                        .c_str());
  return 1;
}

int TrainerIndex(lua_State* L) {
  Trainer& t = CheckRef(L, 1, kTrainerMeta)->session->trainer();
  const std::string key = luaL_checkstring(L, 2);
  if (key == "step") {
    lua_pushinteger(L, t.step());
  } else if (key == "name") {
    lua_pushstring(L, t.name().c_str());
  } else if (key == "dir") {
    lua_pushstring(L, t.dir().c_str());
  } else if (const HyperparameterDef* d = FindHyperparameter(key)) {
    absl::StatusOr<double> v = d->get(t);
    if (!v.ok()) lua::RaiseError(L, std::string(v.status().message()));
    if (d->type == HyperparameterType::kInt) {
      lua_pushinteger(L, static_cast<lua_Integer>(*v));
    } else {
      lua_pushnumber(L, *v);
    }
  } else {
    lua::RaiseError(
        L, absl::StrCat("trainer has no field '", key, "'", lua::Suggestion(key, TrainerFields())));
  }
  return 1;
}

int TrainerNewIndex(lua_State* L) {
  Trainer& t = CheckRef(L, 1, kTrainerMeta)->session->trainer();
  const std::string key = luaL_checkstring(L, 2);
  if (FindHyperparameter(key) == nullptr) {
    lua::RaiseError(L, absl::StrCat("trainer.", key,
                                    " is read-only (settable: ", HyperparameterNameList(), ")"));
  }
  absl::StatusOr<double> v = lua::ReadNumber(L, 3);
  if (!v.ok()) lua::RaiseError(L, absl::StrCat("trainer.", key, " ", v.status().message()));
  absl::Status s = t.SetHyperparameter(key, *v, "shell");
  if (!s.ok()) lua::RaiseError(L, std::string(s.message()));
  return 0;
}

int TrainerToString(lua_State* L) {
  Trainer& t = CheckRef(L, 1, kTrainerMeta)->session->trainer();
  std::string text = absl::StrFormat("trainer %s step=%d", t.name(), t.step());
  for (const HyperparameterDef& d : Hyperparameters()) {
    if (absl::StatusOr<double> v = d.get(t); v.ok()) {
      absl::StrAppend(&text, " ", d.name, "=", FormatHyperparameterValue(d, *v));
    }
  }
  lua_pushstring(L, text.c_str());
  return 1;
}

void RegisterMeta(lua_State* L, const char* name, lua_CFunction index, lua_CFunction newindex,
                  lua_CFunction tostring, lua_CFunction len = nullptr) {
  luaL_newmetatable(L, name);
  lua_pushcfunction(L, index);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, newindex);
  lua_setfield(L, -2, "__newindex");
  lua_pushcfunction(L, tostring);
  lua_setfield(L, -2, "__tostring");
  if (len != nullptr) {
    lua_pushcfunction(L, len);
    lua_setfield(L, -2, "__len");
  }
  lua_pushliteral(L, "protected");
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);
}

std::string FormatValue(lua_State* L, int idx, int depth);

std::string FormatScalar(lua_State* L, int idx, bool quote) {
  switch (lua_type(L, idx)) {
    case LUA_TNIL:
      return "nil";
    case LUA_TBOOLEAN:
      return lua_toboolean(L, idx) ? "true" : "false";
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) return absl::StrCat(lua_tointeger(L, idx));
      return absl::StrFormat("%.6g", lua_tonumber(L, idx));
    case LUA_TSTRING: {
      std::string s = lua_tostring(L, idx);
      return quote ? absl::StrCat("'", s, "'") : s;
    }
    default: {
      size_t len = 0;
      const char* text = luaL_tolstring(L, idx, &len);
      std::string s(text, len);
      lua_pop(L, 1);
      return s;
    }
  }
}

// Tables as "{1, 2, key=value}" (sequence first, other keys sorted), one level deep.
std::string FormatValue(lua_State* L, int idx, int depth) {
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) != LUA_TTABLE) return FormatScalar(L, idx, depth > 0);
  if (depth > 1) return "{...}";
  std::vector<std::string> seq;
  const lua_Integer n = static_cast<lua_Integer>(lua_rawlen(L, idx));
  for (lua_Integer i = 1; i <= n; ++i) {
    lua_rawgeti(L, idx, i);
    seq.push_back(FormatValue(L, -1, depth + 1));
    lua_pop(L, 1);
  }
  std::vector<std::pair<std::string, std::string>> named;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    const bool in_seq =
        lua_isinteger(L, -2) && lua_tointeger(L, -2) >= 1 && lua_tointeger(L, -2) <= n;
    if (!in_seq) {
      std::string key = lua_type(L, -2) == LUA_TSTRING
                            ? std::string(lua_tostring(L, -2))
                            : absl::StrCat("[", FormatScalar(L, -2, true), "]");
      named.emplace_back(std::move(key), FormatValue(L, -1, depth + 1));
    }
    lua_pop(L, 1);
  }
  std::sort(named.begin(), named.end());
  for (auto& [k, v] : named) seq.push_back(absl::StrCat(k, "=", v));
  return absl::StrCat("{", absl::StrJoin(seq, ", "), "}");
}

// Calls the chunk (argument 1) and returns its results formatted as one string.
int EvaluateAndFormat(lua_State* L) {
  lua_call(L, 0, LUA_MULTRET);
  const int n = lua_gettop(L);
  std::vector<std::string> parts;
  for (int i = 1; i <= n; ++i) parts.push_back(FormatValue(L, i, 0));
  const std::string text = n == 0 ? "" : absl::StrCat("= ", absl::StrJoin(parts, ", "));
  lua_pushlstring(L, text.data(), text.size());
  return 1;
}

std::string CleanMessage(absl::string_view message) {
  return absl::StrReplaceAll(message, {{"job files cannot use", "the shell cannot use"},
                                       {"a built-in name of job files", "a built-in name"}});
}

}  // namespace

absl::StatusOr<std::unique_ptr<ShellSession>> ShellSession::Create(Trainer* trainer,
                                                                   std::string user) {
  std::unique_ptr<ShellSession> s(new ShellSession());
  s->trainer_ = trainer;
  s->user_ = std::move(user);
  RETURN_IF_ERROR(s->ResetLua());
  return s;
}

ShellSession::~ShellSession() = default;

absl::Status ShellSession::ResetLua() {
  lua::SandboxLimits limits;
  limits.max_instructions = 50'000'000;  // per state; a spent state is replaced (RunLua)
  limits.max_bytes = size_t{64} << 20;
  ASSIGN_OR_RETURN(lua_, lua::SandboxedLua::Create(limits));
  lua_->set_print([this](std::string_view text) { printed_.append(text); });
  return lua_->Protected([this]() -> absl::Status {
    lua_State* L = lua_->state();
    RegisterMeta(L, kModelMeta, ModelIndex, ModelNewIndex, ModelToString);
    RegisterMeta(L, kNodeMeta, NodeIndex, ModelNewIndex, NodeToString);
    RegisterMeta(L, kTensorMeta, TensorIndex, TensorNewIndex, TensorToString, TensorLen);
    RegisterMeta(L, kTrainerMeta, TrainerIndex, TrainerNewIndex, TrainerToString);
    PushRef(L, this, kModelMeta);
    lua_->AddBuiltin("model");
    PushRef(L, this, kTrainerMeta);
    lua_->AddBuiltin("trainer");
    PushHistory();
    return absl::OkStatus();
  });
}

// Rebinds `history` to the last 100 monitoring records (oldest first).
void ShellSession::PushHistory() {
  lua_State* L = lua_->state();
  const auto& h = trainer_->history();
  const size_t first = h.size() > 100 ? h.size() - 100 : 0;
  lua_createtable(L, static_cast<int>(h.size() - first), 0);
  for (size_t i = first; i < h.size(); ++i) {
    const HistoryRecord& r = h[i];
    lua_createtable(L, 0, 7);
    lua_pushinteger(L, r.step);
    lua_setfield(L, -2, "step");
    const std::pair<const char*, double> fields[] = {{"time_s", r.time_s},
                                                     {"train_loss", r.train_loss},
                                                     {"valid_loss", r.valid_loss},
                                                     {"train_err", r.train_err},
                                                     {"valid_err", r.valid_err},
                                                     {"lr", r.lr},
                                                     {"mom", r.mom}};
    for (const auto& [name, v] : fields) {
      lua_pushnumber(L, v);
      lua_setfield(L, -2, name);
    }
    lua_rawseti(L, -2, static_cast<lua_Integer>(i - first + 1));
  }
  lua_->AddBuiltin("history");
}

std::string ShellSession::Banner() const {
  std::string text =
      absl::StrFormat("=== ELEKTRONN2 SHELL ===\n>> %s <<\nShortcuts:\n", trainer_->name());
  for (const Shortcut& s : Shortcuts()) {
    absl::StrAppendFormat(&text, "  %-18s %s\n", absl::StrCat(s.name, " ", s.args), s.help);
  }
  text +=
      "Anything else is Lua with model, trainer and history (e.g. model.conv.w:mean(), "
      "trainer.lr = 1e-4).\n";
  return text;
}

ShellOutput ShellSession::RunLua(const std::string& line) {
  printed_.clear();
  ShellOutput out;
  lua_State* L = lua_->state();
  const int top = lua_gettop(L);
  absl::Status status = lua_->Protected([this]() {
    PushHistory();
    return absl::OkStatus();
  });
  std::string result;
  if (status.ok()) {
    lua_pushcfunction(L, EvaluateAndFormat);
    const std::string as_return = absl::StrCat("return ", line);
    int code = luaL_loadbufferx(L, as_return.data(), as_return.size(), "=shell", "t");
    if (code != LUA_OK) {
      lua_pop(L, 1);
      code = luaL_loadbufferx(L, line.data(), line.size(), "=shell", "t");
    }
    if (code != LUA_OK) {
      const char* msg = lua_tostring(L, -1);
      status = absl::InvalidArgumentError(
          absl::StrCat("syntax error: ", msg != nullptr ? msg : "unknown"));
    } else {
      status = lua_->Call(1, 1);
      if (status.ok()) {
        const char* text = lua_tostring(L, -1);
        if (text != nullptr) result = text;
      }
    }
  }
  lua_settop(L, top);
  out.text = printed_;
  if (!status.ok()) {
    out.error = true;
    out.text += CleanMessage(status.message());
    if (status.code() == absl::StatusCode::kResourceExhausted) {
      out.text += "\n(the shell's Lua state was reset; its variables are gone)";
      absl::Status reset = ResetLua();
      if (!reset.ok()) absl::StrAppend(&out.text, "\nreset failed: ", reset.message());
    }
  } else {
    out.text += result;
  }
  printed_.clear();
  return out;
}

ShellOutput ShellSession::Execute(const std::string& raw_line) {
  const std::string line(absl::StripAsciiWhitespace(raw_line));
  ShellOutput out;
  if (line.empty()) return out;
  const std::vector<std::string> words = absl::StrSplit(line, ' ', absl::SkipWhitespace());
  const std::string& cmd = words[0];
  const auto shortcut = std::find_if(Shortcuts().begin(), Shortcuts().end(),
                                     [&](const Shortcut& s) { return cmd == s.name; });
  const bool is_shortcut = shortcut != Shortcuts().end() &&
                           (words.size() == 1 || (words[1][0] != '=' && words[1][0] != '('));
  if (!is_shortcut) return RunLua(line);
  auto hint = [&](const std::string& text) {
    out.error = true;
    out.text = text;
    return out;
  };
  const size_t nargs = words.size() - 1;
  if (const HyperparameterDef* d = shortcut->sets) {
    const bool integer = d->type == HyperparameterType::kInt;
    const std::string usage = absl::StrCat("usage: ", cmd, " ", shortcut->args, " (e.g. ", cmd,
                                           integer ? " 200)" : " 1e-4)");
    if (nargs != 1) return hint(usage);
    const absl::StatusOr<double> v = ParseHyperparameterValue(*d, words[1]);
    if (!v.ok()) return hint(absl::StrCat(v.status().message(), "; ", usage));
    const absl::StatusOr<double> old = d->get(*trainer_);
    absl::Status s = trainer_->SetHyperparameter(d->name, *v, "shell");
    if (!s.ok()) return hint(std::string(s.message()));
    out.text = absl::StrCat(d->name, " = ", FormatHyperparameterValue(*d, *v));
    if (old.ok()) absl::StrAppend(&out.text, " (was ", FormatHyperparameterValue(*d, *old), ")");
    return out;
  }
  if (cmd == "save") {
    if (nargs > 1) return hint("usage: save [file name inside the training directory]");
    std::string path;
    if (nargs == 0) {
      path = trainer_->CheckpointPath(absl::StrCat("shell-", trainer_->step()));
    } else {
      const std::string& name = words[1];
      if (absl::StrContains(name, '/') || absl::StrContains(name, '\\') ||
          absl::StrContains(name, "..")) {
        return hint(
            "save takes a plain file name (no '/' or '..'); it is written to the "
            "training directory");
      }
      path = absl::StrCat(trainer_->dir(), "/", name);
    }
    absl::Status s = SaveModel(path, trainer_->network(), &trainer_->optimiser());
    if (!s.ok()) return hint(absl::StrCat("save failed: ", s.message()));
    trainer_->Log(absl::StrCat("shell (", user_, "): saved ", path));
    out.text = absl::StrCat("saved ", path);
    return out;
  }
  if (cmd == "sf" || cmd == "load") {
    if (nargs > 1 || (cmd == "load" && nargs != 1)) {
      return hint(cmd == "sf" ? "usage: sf [node] (e.g. sf conv1)"
                              : "usage: load <model file in the training directory> (e.g. load "
                                "Backup/" +
                                    trainer_->name() + "-1k.h5)");
    }
    const std::string arg = nargs == 1 ? words[1] : "";
    if (cmd == "load") {
      absl::Status s = trainer_->LoadParameters(arg);
      if (!s.ok()) return hint(absl::StrCat("load failed: ", s.message()));
      out.text = absl::StrCat("parameters loaded from ", arg);
    } else {
      absl::StatusOr<std::string> written = trainer_->SaveFilters(arg);
      if (!written.ok()) return hint(absl::StrCat("sf: ", written.status().message()));
      out.text = absl::StrCat("filters written to ", *written);
    }
    trainer_->Log(absl::StrCat("shell (", user_, "): ", cmd, " ", arg));
    return out;
  }
  if (cmd == "freeze" || cmd == "unfreeze") {  // batch_norm family
    const std::string usage = absl::StrCat("usage: ", cmd, " <node> (e.g. ", cmd, " conv1)");
    if (nargs != 1) return hint(usage);
    Network& net = trainer_->network();
    std::vector<std::string> with_params;
    for (const auto& n : net.graph().nodes()) {
      if (!ParamsOf(net, n->name()).empty()) with_params.push_back(n->name());
    }
    const std::string& name = words[1];
    const std::vector<int> params = ParamsOf(net, name);
    if (params.empty()) {
      return hint(absl::StrFormat("%s: %s; nodes with parameters: %s", cmd,
                                  net.graph().Find(name) == nullptr
                                      ? absl::StrCat("the model has no node '", name, "'")
                                      : absl::StrCat("node '", name, "' has no parameters"),
                                  absl::StrJoin(with_params, ", ")));
    }
    const bool train = cmd == "unfreeze";
    std::vector<std::string> changed, fixed;
    for (int i : params) {
      Parameter* p = net.params()[i];
      if (p->fixed) {  // BN statistics are never trained
        fixed.push_back(p->name);
        continue;
      }
      p->trainable = train;
      changed.push_back(p->name);
    }
    out.text = absl::StrFormat("%s: %s %s", name, absl::StrJoin(changed, ", "),
                               train ? "trainable" : "frozen (not updated by the optimiser)");
    if (!fixed.empty()) {
      absl::StrAppend(&out.text, "; ", absl::StrJoin(fixed, ", "), " never trained");
    }
    trainer_->Log(absl::StrCat("shell (", user_, "): ", cmd, " ", name));
    return out;
  }
  if (nargs != 0) return hint(absl::StrCat(cmd, " takes no arguments"));
  if (cmd == "preview") {
    absl::Status s = trainer_->PreviewNow();
    if (!s.ok()) return hint(absl::StrCat("preview: ", s.message()));
    out.text = absl::StrCat("previews written to ", trainer_->dir());
  } else if (cmd == "debugbatch") {
    absl::StatusOr<std::string> written = trainer_->WriteDebugBatch();
    if (!written.ok()) return hint(absl::StrCat("debugbatch: ", written.status().message()));
    out.text = absl::StrCat("batch written to ", *written);
  } else if (cmd == "help") {
    out.text = Banner();
  } else if (cmd == "q") {
    out.leave = true;
  } else if (cmd == "kill") {
    trainer_->Log(absl::StrCat("shell (", user_, "): kill (saving last params)"));
    trainer_->RequestStop();
    out.leave = out.kill = true;
    out.text = "kill (saving last params)";
  } else if (cmd == "paramstats" || cmd == "gradstats" || cmd == "actstats") {
    const StatisticsOf what = cmd == "paramstats"  ? StatisticsOf::kParameters
                              : cmd == "gradstats" ? StatisticsOf::kGradients
                                                   : StatisticsOf::kActivations;
    const std::vector<TensorStatistics> stats = ComputeStatistics(trainer_->network(), what);
    out.text =
        stats.empty() ? "no statistics yet (no batch since the start)" : FormatStatistics(stats);
  } else if (cmd == "nodes") {
    Network& net = trainer_->network();
    for (const auto& n : net.graph().nodes()) {
      std::vector<std::string> params;
      for (int i : ParamsOf(net, n->name())) {
        params.push_back(absl::StrCat(net.params()[i]->name, ShapeString(net.params()[i]->shape),
                                      net.params()[i]->trainable ? ""
                                      : net.params()[i]->fixed   ? " (not trained)"
                                                                 : " (frozen)"));
      }
      absl::StrAppendFormat(&out.text, "%-16s %-16s %-32s fov=%s strides=%s %s\n", n->name(),
                            n->op(), n->shape().ToString(), ShapeString(n->shape().fov()),
                            ShapeString(n->shape().strides()), absl::StrJoin(params, " "));
    }
  }
  return out;
}

std::vector<std::string> ShellSession::Complete(const std::string& line) {
  std::vector<std::string> out;
  // Shortcut words: only while the whole line is a prefix of one; nothing after their arguments.
  if (line.find(' ') == std::string::npos) {
    for (const Shortcut& s : Shortcuts()) {
      if (absl::StartsWith(s.name, line) && !line.empty()) out.push_back(s.name);
    }
  } else {
    const std::string first = line.substr(0, line.find(' '));
    for (const Shortcut& s : Shortcuts()) {
      if (first == s.name) return {};
    }
  }
  // The identifier chain being typed ("model.conv.w" in "x = model.conv.w").
  size_t start = line.size();
  while (start > 0) {
    const char c = line[start - 1];
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.')) break;
    --start;
  }
  const std::string head = line.substr(0, start);
  const std::string token = line.substr(start);
  if (token.empty() && !out.empty()) return out;
  const std::vector<std::string> parts = absl::StrSplit(token, '.');
  std::vector<std::string> candidates;
  Network& net = trainer_->network();
  if (parts.size() == 1) {
    candidates.assign(std::begin(kGlobals), std::end(kGlobals));
  } else if (parts[0] == "model" && parts.size() == 2) {
    candidates = NodeNames(net);
    candidates.push_back("params");
  } else if (parts[0] == "model" && parts.size() == 3) {
    if (net.graph().Find(parts[1]) != nullptr) {
      candidates.assign(std::begin(kNodeFields), std::end(kNodeFields));
      for (int i : ParamsOf(net, parts[1])) candidates.push_back(net.params()[i]->name);
    }
  } else if (parts[0] == "model" && parts.size() == 4 && net.graph().Find(parts[1]) != nullptr) {
    for (int i : ParamsOf(net, parts[1])) {
      if (net.params()[i]->name == parts[2]) candidates = {"shape", "size", "name"};
    }
  } else if (parts[0] == "trainer" && parts.size() == 2) {
    candidates = TrainerFields();
  }
  std::sort(candidates.begin(), candidates.end());
  const std::string stem = token.substr(0, token.size() - parts.back().size());
  for (const std::string& c : candidates) {
    if (absl::StartsWith(c, parts.back())) {
      std::string full = absl::StrCat(head, stem, c);
      if (std::find(out.begin(), out.end(), full) == out.end()) out.push_back(std::move(full));
    }
  }
  return out;
}

}  // namespace elektronn
