// ELEKTRONN2's node functions for job files: argument parsing with ELEKTRONN2's signatures,
// NodeSpec recording, incremental shape inference and node handles.
#include "engine/lua/internal/nm_functions.h"

#include <algorithm>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/graph/model_builder.h"
#include "engine/lua/internal/nm_args.h"
#include "engine/nodes/shape_rules.h"

namespace elektronn::lua {
namespace {

using A = NmAccess;

int DesignateNodes(lua_State* L);

// --- node handles -------------------------------------------------------------------------

int NodeIndex(lua_State* L) {
  ModelRecorder* r = Self(L);
  const int i = A::HandleIndex(L, 1);
  const std::string key = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : Describe(L, 2);
  const v1::NodeSpec& spec = r->spec().nodes(i);
  const Node* node = A::NodeAt(r, i);
  if (key == "name") {
    lua_pushstring(L, spec.name().c_str());
  } else if (key == "op" && node != nullptr) {
    lua_pushstring(L, node->op().c_str());
  } else if (key == "shape" && node != nullptr) {
    A::PushShape(L, node->shape());
  } else if (key == "params" && node != nullptr) {
    lua_pushinteger(L, node->param_count());
  } else if (node == nullptr && (key == "op" || key == "shape" || key == "params")) {
    A::RaiseDeferred(L);  // the node comes after one whose shape failed
  } else {
    RaiseError(
        L, absl::StrFormat("node '%s' has no field '%s'%s (fields: name, op, shape, params)",
                           spec.name(), key, Suggestion(key, {"name", "op", "shape", "params"})));
  }
  return 1;
}

int NodeToString(lua_State* L) {
  ModelRecorder* r = Self(L);
  const int i = A::HandleIndex(L, 1);
  const Node* node = A::NodeAt(r, i);
  std::string s = node == nullptr ? absl::StrFormat("node '%s'", r->spec().nodes(i).name())
                                  : absl::StrFormat("%s '%s' %s", node->op(), node->name(),
                                                    node->shape().ToString());
  lua_pushstring(L, s.c_str());
  return 1;
}

int ReadOnly(lua_State* L) { RaiseError(L, absl::StrFormat("%s is read-only", Describe(L, 1))); }

int ShapeIndex(lua_State* L) {
  if (lua_type(L, 2) != LUA_TSTRING) return 0;
  const std::string key = lua_tostring(L, 2);
  lua_getfield(L, 1, "tags");
  const std::string tags = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
  lua_pop(L, 1);
  std::vector<std::string> axes = absl::StrSplit(tags, ',');
  for (size_t i = 0; i < axes.size(); ++i) {
    if (axes[i] == key) {
      lua_rawgeti(L, 1, static_cast<lua_Integer>(i + 1));
      return 1;
    }
  }
  std::vector<std::string> fields = {"tags", "fov", "strides", "offsets", "spatial_shape", "ndim"};
  RaiseError(L, absl::StrFormat("shape (%s) has no axis or field '%s'%s; fields: %s", tags, key,
                                Suggestion(key, fields), absl::StrJoin(fields, ", ")));
}

int ShapeToString(lua_State* L) {
  lua_getfield(L, 1, "repr");
  return 1;
}

int ModelToString(lua_State* L) {
  ModelRecorder* r = Self(L);
  std::vector<std::string> names;
  for (const auto& n : r->spec().nodes()) names.push_back(n.name());
  lua_pushstring(L, absl::StrCat("Model [", absl::StrJoin(names, ", "), "]").c_str());
  return 1;
}

// The whole `nm` table: every family's node functions, then designate_nodes.
const NmFunctionList& NmFunctions() {
  static const auto* fns = [] {
    std::vector<NmFunctionList> families;  // one line per family (nm_args.h)
    families.push_back(CoreNodeFunctions());
    families.push_back(StructuralNodeFunctions());  // structural family (issue 11)
    families.push_back(LossesNodeFunctions());
    families.push_back(UpConvNodeFunctions());  // UpConv family
    // recurrent family (issue 15)
    families.push_back(RecurrentNodeFunctions());
    families.push_back(ScanNodeFunctions());  // recurrence (issue 15)
    auto* all = new NmFunctionList;
    for (const NmFunctionList& family : families) {
      all->insert(all->end(), family.begin(), family.end());
    }
    all->push_back({"designate_nodes", DesignateNodes});
    return all;
  }();
  return *fns;
}

// nm.X for an X the table lacks: ELEKTRONN2 names get "not available", typos a suggestion.
int NmIndex(lua_State* L) {
  const std::string key = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : Describe(L, 2);
  // ELEKTRONN2's names that are deliberately absent, each with the reason (README, "ELEKTRONN2's
  // features, one by one"); every other ELEKTRONN2 node is in the table and never reaches here.
  static const auto* kNotPorted = [] {
    const std::string skel =
        "it belongs to ELEKTRONN2's skeleton-tracing agent (reference §8.7), unpublished research "
        "code tied to KNOSSOS annotation files and Python objects flowing through the graph, "
        "which no public data or example exercises; it is not ported";
    auto* m = new std::map<std::string, std::string>;
    for (const char* n : {"GenericInput", "SkelLoss", "SkelLossRec", "SkelPrior", "SkelGetBatch",
                          "SkelGridUpdate", "StereographicMap"}) {
      (*m)[n] = skel;
    }
    (*m)["MalisNLL"] =
        "MALIS affinity training is not implemented (ELEKTRONN2's own build disabled its MALIS "
        "extension by default); train affinities with affinities = 'affinity' and nm.BinaryNLL";
    return m;
  }();
  std::vector<std::string> names;
  for (const auto& [name, fn] : NmFunctions()) names.push_back(name);
  if (auto it = kNotPorted->find(key); it != kNotPorted->end()) {
    RaiseError(L, absl::StrFormat("nm.%s exists in ELEKTRONN2 but not (yet) in this engine: %s; "
                                  "available: %s",
                                  key, it->second, absl::StrJoin(names, ", ")));
  }
  RaiseError(L, absl::StrFormat("nm has no function '%s'%s; available: %s", key,
                                Suggestion(key, names), absl::StrJoin(names, ", ")));
}

int NmNewIndex(lua_State* L) { RaiseError(L, "nm is read-only"); }

int DesignateNodes(lua_State* L) {
  ModelRecorder* r = Self(L);
  Args a(L, "nm.designate_nodes",
         {"input_node", "target_node", "loss_node", "prediction_node", "prediction_ext",
          "error_node", "debug_outputs"});
  if (SandboxedLua::From(L)->phase() != kCreateModel) {
    a.Fail("can only be called inside create_model()");
  }
  if (r->designated()) a.Fail("was already called; a job has one model");
  if (A::Failed(r)) A::RaiseDeferred(L);
  v1::Designations d;
  d.set_input_node(a.Present("input_node") ? A::NodeOrName(a, "input_node") : "input");
  if (a.Present("target_node")) d.set_target_node(A::NodeOrName(a, "target_node"));
  if (a.Present("loss_node")) d.set_loss_node(A::NodeOrName(a, "loss_node"));
  if (a.Present("prediction_node")) d.set_prediction_node(A::NodeOrName(a, "prediction_node"));
  if (a.Present("error_node")) d.set_error_node(A::NodeOrName(a, "error_node"));
  for (const char* list : {"prediction_ext", "debug_outputs"}) {
    if (!a.Present(list)) continue;
    for (std::string& name : A::NodeNames(a, list)) {
      (std::string(list) == "prediction_ext" ? d.add_prediction_ext() : d.add_debug_outputs())
          ->assign(std::move(name));
    }
  }
  // The trainer's error metric: the Errors node among prediction_ext when not named.
  if (d.error_node().empty()) {
    for (const std::string& name : d.prediction_ext()) {
      for (const auto& n : r->spec().nodes()) {
        if (n.name() == name && n.has_errors()) d.set_error_node(name);
      }
    }
  }
  v1::ModelSpec spec = r->spec();
  *spec.mutable_designations() = d;
  auto g = Graph::Create(spec);
  if (!g.ok()) a.Fail(std::string(g.status().message()));
  *r->mutable_spec()->mutable_designations() = d;
  NmAccess::MarkDesignated(r);
  lua_newuserdatauv(L, 0, 0);
  luaL_setmetatable(L, kModelMeta);
  return 1;
}

}  // namespace

ModelRecorder::ModelRecorder(std::string model_name) { spec_.set_name(std::move(model_name)); }

absl::Status ModelRecorder::deferred_error() const {
  if (failed_where_.empty()) return absl::OkStatus();
  if (failed_message_.empty()) {  // the hint search builds the graph many times: do it once
    absl::Status s = Graph::Create(spec_).status();
    failed_message_ =
        absl::StrFormat("%s %s: %s", failed_where_, failed_fn_,
                        s.ok() ? "the shape inference failed here" : std::string(s.message()));
  }
  return absl::InvalidArgumentError(failed_message_);
}

bool ModelRecorder::IsModel(lua_State* L, int idx) {
  return luaL_testudata(L, idx, kModelMeta) != nullptr;
}

void ModelRecorder::Install(SandboxedLua& lua) {
  lua_State* L = lua.state();
  auto set_closure = [&](const char* name, lua_CFunction f) {
    lua_pushlightuserdata(L, this);
    lua_pushcclosure(L, f, 1);
    lua_setfield(L, -2, name);
  };
  luaL_newmetatable(L, kNodeMeta);
  set_closure("__index", NodeIndex);
  set_closure("__tostring", NodeToString);
  set_closure("__newindex", ReadOnly);
  lua_pushliteral(L, "node");
  lua_setfield(L, -2, "__name");
  lua_pop(L, 1);

  luaL_newmetatable(L, kShapeMeta);
  set_closure("__index", ShapeIndex);
  set_closure("__tostring", ShapeToString);
  lua_pushliteral(L, "shape");
  lua_setfield(L, -2, "__name");
  lua_pop(L, 1);

  luaL_newmetatable(L, kModelMeta);
  set_closure("__tostring", ModelToString);
  set_closure("__newindex", ReadOnly);
  lua_pushliteral(L, "model");
  lua_setfield(L, -2, "__name");
  lua_pop(L, 1);

  lua_newtable(L);  // nm
  for (const auto& [name, fn] : NmFunctions()) set_closure(name, fn);
  lua_newtable(L);  // its metatable
  set_closure("__index", NmIndex);
  set_closure("__newindex", NmNewIndex);
  lua_pushliteral(L, "nm is protected");
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
  lua.AddBuiltin("nm");
}

}  // namespace elektronn::lua
