// Internals shared by the files that define `nm` functions (nm_functions.cc for the table, the
// handles and designate_nodes; nm_<family>.cc for the node functions of one family): the
// argument reader with ELEKTRONN2's signatures, the recorder's access point and NewNode.
//
// Adding a family of node functions: write engine/lua/nm_<family>.cc defining
// `NmFunctionList <Family>NodeFunctions()`, declare it at the end of this file and append it in
// NmFunctions() (nm_functions.cc).
#pragma once

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/graph/model_builder.h"
#include "engine/lua/internal/nm_functions.h"
#include "engine/nodes/shape_rules.h"

namespace elektronn::lua {

inline constexpr const char* kNodeMeta = "elektronn.Node";
inline constexpr const char* kModelMeta = "elektronn.Model";
inline constexpr const char* kShapeMeta = "elektronn.Shape";

struct NodeHandle {
  int slot;  // in ModelRecorder::handles_
};

inline ModelRecorder* Self(lua_State* L) {
  return static_cast<ModelRecorder*>(lua_touserdata(L, lua_upvalueindex(1)));
}

inline const std::vector<std::pair<std::string, v1::Activation>>& ActivationNames() {
  static const auto* names = new std::vector<std::pair<std::string, v1::Activation>>{
      {"relu", v1::RELU},
      {"tanh", v1::TANH},
      {"sigmoid", v1::SIGMOID},
      {"sig", v1::SIGMOID},
      {"logistic", v1::SIGMOID},
      {"lin", v1::LIN},
      {"linear", v1::LIN},
      {"abs", v1::ABS},
      {"softplus", v1::SOFTPLUS},
      {"soft+", v1::SOFTPLUS},
      {"elu", v1::ELU},
      {"prelu", v1::PRELU},
      // Structural family (issue 11); "maxout <k>" is read by Args::MaxoutK.
      {"selu", v1::SELU},
      {"concentration", v1::CONCENTRATION},
      {"radius", v1::RADIUS}};
  return *names;
}

// One call's arguments: a single table mixing positional entries (in the order of ELEKTRONN2's
// signature) and named ones. Every error raised here names the function and the argument.
class Args {
 public:
  Args(lua_State* L, std::string fn, std::vector<std::string> params)
      : L_(L), fn_(std::move(fn)), params_(std::move(params)) {
    if (lua_gettop(L) != 1 || lua_type(L, 1) != LUA_TTABLE) {
      Fail(absl::StrFormat(
          "call it with braces and one table of arguments, e.g. %s{%s, ...}; got %d "
          "argument(s), the first %s",
          fn_, params_[0], lua_gettop(L), Describe(L, 1)));
    }
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
      lua_pop(L, 1);
      if (lua_isinteger(L, -1)) {
        const lua_Integer k = lua_tointeger(L, -1);
        if (k < 1 || k > static_cast<lua_Integer>(params_.size())) {
          Fail(absl::StrFormat("takes at most %d positional arguments (%s), got one at position %d",
                               params_.size(), absl::StrJoin(params_, ", "), k));
        }
        Place(params_[k - 1], static_cast<int>(k));
      } else if (lua_type(L, -1) == LUA_TSTRING) {
        const std::string key = lua_tostring(L, -1);
        if (std::find(params_.begin(), params_.end(), key) == params_.end()) {
          Fail(absl::StrFormat("unknown argument '%s'%s; %s takes %s", key,
                               Suggestion(key, params_), fn_, absl::StrJoin(params_, ", ")));
        }
        Place(key, 0);
      } else {
        Fail("argument keys must be names or positions, got " + Describe(L, -1));
      }
    }
  }

  [[noreturn]] void Fail(const std::string& msg) const { RaiseError(L_, fn_ + ": " + msg); }
  [[noreturn]] void Fail(const std::string& p, absl::string_view msg) const {
    RaiseError(L_, absl::StrFormat("%s argument '%s' %s", fn_, p, msg));
  }
  const std::string& fn() const { return fn_; }
  lua_State* L() const { return L_; }

  // Pushes the argument (nil when absent).
  void Push(const std::string& p) const {
    auto it = where_.find(p);
    if (it == where_.end()) {
      lua_pushnil(L_);
    } else if (it->second > 0) {
      lua_rawgeti(L_, 1, it->second);
    } else {
      lua_pushstring(L_, p.c_str());
      lua_rawget(L_, 1);
    }
  }
  // Given and neither nil nor None (ELEKTRONN2's None means "the default").
  bool Present(const std::string& p) const {
    Push(p);
    const bool present = !lua_isnil(L_, -1) && !IsNone(L_, -1);
    lua_pop(L_, 1);
    return present;
  }
  void Require(const std::string& p, const char* what) const {
    if (!Present(p)) Fail(absl::StrFormat("missing argument '%s' (%s)", p, what));
  }

  template <typename T>
  T Read(const std::string& p, absl::StatusOr<T> (*reader)(lua_State*, int)) const {
    Push(p);
    absl::StatusOr<T> v = reader(L_, -1);
    if (!v.ok()) Fail(p, v.status().message());
    lua_pop(L_, 1);
    return *std::move(v);
  }
  int64_t Int(const std::string& p, int64_t dflt, int64_t min) const {
    if (!Present(p)) return dflt;
    const int64_t v = Read<int64_t>(p, ReadInt);
    if (v < min) Fail(p, absl::StrFormat("must be at least %d, got %d", min, v));
    return v;
  }
  int64_t RequiredInt(const std::string& p, int64_t min) const {
    Require(p, "an integer");
    return Int(p, 0, min);
  }
  double Number(const std::string& p, double dflt) const {
    return Present(p) ? Read<double>(p, ReadNumber) : dflt;
  }
  bool Bool(const std::string& p, bool dflt) const {
    return Present(p) ? Read<bool>(p, ReadBool) : dflt;
  }
  std::string String(const std::string& p, const std::string& dflt) const {
    return Present(p) ? Read<std::string>(p, ReadString) : dflt;
  }
  float Rate(const std::string& p) const {
    const double r = Number(p, 0);
    if (r < 0 || r >= 1) Fail(p, absl::StrFormat("must be in [0, 1), got %g", r));
    return static_cast<float>(r);
  }
  // An integer, or 'auto' / None for 0 (= inferred).
  int64_t IntOrAuto(const std::string& p) const {
    Push(p);
    const bool is_auto =
        lua_type(L_, -1) == LUA_TSTRING && std::string(lua_tostring(L_, -1)) == "auto";
    lua_pop(L_, 1);
    if (is_auto || !Present(p)) return 0;
    Push(p);
    auto v = ReadInt(L_, -1);
    if (!v.ok() || *v < 1) Fail(p, "must be 'auto' or a positive integer, got " + Describe(L_, -1));
    lua_pop(L_, 1);
    return *v;
  }
  // A per-axis size list, or one integer for every one of `ndim` spatial axes.
  std::vector<int64_t> Sizes(const std::string& p, int ndim, int64_t min) const {
    Push(p);
    std::vector<int64_t> out;
    if (lua_type(L_, -1) == LUA_TNUMBER) {
      out.assign(std::max(ndim, 1), Read<int64_t>(p, ReadInt));
    } else {
      auto v = ReadIntList(L_, -1);
      if (!v.ok()) Fail(p, v.status().message());
      out = *std::move(v);
    }
    lua_pop(L_, 1);
    for (int64_t s : out) {
      if (s < min) {
        Fail(p, absl::StrFormat("must have entries of at least %d, got {%s}", min,
                                absl::StrJoin(out, ", ")));
      }
    }
    return out;
  }
  std::vector<float> Floats(const std::string& p) const {
    if (!Present(p)) return {};
    std::vector<double> v = Read<std::vector<double>>(p, ReadNumberList);
    return std::vector<float>(v.begin(), v.end());
  }
  template <typename E>
  E Choice(const std::string& p, const std::vector<std::pair<std::string, E>>& options,
           E dflt) const {
    if (!Present(p)) return dflt;
    const std::string s = Read<std::string>(p, ReadString);
    std::vector<std::string> names;
    for (const auto& [name, value] : options) {
      if (name == s) return value;
      names.push_back(name);
    }
    Fail(p, absl::StrFormat("must be one of '%s', got '%s'%s", absl::StrJoin(names, "', '"), s,
                            Suggestion(s, names)));
  }
  v1::Activation Activation(const std::string& p, v1::Activation dflt) const {
    if (Present(p)) {
      const std::string s = Read<std::string>(p, ReadString);
      if (s.starts_with("maxout")) {
        Fail(p, absl::StrFormat("'%s' changes the channel count, so %s does not take it; "
                                "nm.Conv, nm.Perceptron, nm.Activation and nm.ApplyFunc do",
                                s, fn_));
      }
    }
    return Choice(p, ActivationNames(), dflt);
  }
  // Structural family (issue 11): k of an activation "maxout <k>" (also "maxout<k>"), 0 when the
  // argument is anything else.
  int64_t MaxoutK(const std::string& p) const {
    Push(p);
    const bool is_string = lua_type(L_, -1) == LUA_TSTRING;
    const std::string s = is_string ? lua_tostring(L_, -1) : "";
    lua_pop(L_, 1);
    if (!s.starts_with("maxout")) return 0;
    std::string k = s.substr(6);
    k.erase(0, k.find_first_not_of(' '));
    int64_t v = 0;
    if (k.empty() || k.find_first_not_of("0123456789") != std::string::npos ||
        (v = std::stoll(k)) < 1) {
      Fail(p, absl::StrFormat("'%s' needs a positive group size, e.g. 'maxout 2'", s));
    }
    return v;
  }
  // An ELEKTRONN2 argument this engine does not implement: accepted only at its neutral value.
  void Unsupported(const std::string& p, const std::string& why) const {
    if (!Present(p)) return;
    Push(p);
    const bool neutral = (lua_type(L_, -1) == LUA_TBOOLEAN && !lua_toboolean(L_, -1)) ||
                         (lua_type(L_, -1) == LUA_TNUMBER && lua_tonumber(L_, -1) == 0);
    lua_pop(L_, 1);
    if (!neutral) Fail(p, "is not supported: " + why);
  }
  // dtype: the engine computes in float32 and stores labels as floats, so any numeric dtype
  // name of numpy is accepted and has no further effect.
  void DType(const std::string& p) const {
    static const std::vector<std::pair<std::string, int>> kTypes = {
        {"float32", 0}, {"floatX", 0}, {"float64", 0}, {"float16", 0}, {"int8", 0},   {"int16", 0},
        {"int32", 0},   {"int64", 0},  {"uint8", 0},   {"uint16", 0},  {"uint32", 0}, {"bool", 0}};
    (void)Choice<int>(p, kTypes, 0);
  }

 private:
  void Place(const std::string& p, int position) {
    if (where_.contains(p)) {
      Fail(absl::StrFormat("argument '%s' is given twice (by position and by name)", p));
    }
    where_[p] = position;
  }

  lua_State* L_;
  std::string fn_;
  std::vector<std::string> params_;
  std::map<std::string, int> where_;  // > 0: position, 0: by name
};

// Functions with access to the recorder's internals.
struct NmAccess {
  // nm.Scan (nm_scan.cc): moves the step sub-graph out of the recorded model.
  static void MoveIntoScan(lua_State* L, const Args& a, v1::NodeSpec scan);

  static void MarkDesignated(ModelRecorder* r) { r->designated_ = true; }
  static bool Failed(const ModelRecorder* r) { return !r->failed_where_.empty(); }

  static void RequireModelPhase(lua_State* L, const std::string& fn) {
    if (SandboxedLua::From(L)->phase() != kCreateModel) {
      RaiseError(L, absl::StrFormat("%s: nodes can only be created inside create_model(), which "
                                    "runs after the whole file (do not call it yourself)",
                                    fn));
    }
    if (Self(L)->designated_) {
      RaiseError(L, absl::StrFormat("%s: the model was already designated with "
                                    "nm.designate_nodes; create every node before that",
                                    fn));
    }
  }

  static const Node* NodeAt(ModelRecorder* r, int index) {
    return r->graph_ ? r->graph_->Find(r->spec_.nodes(index).name()) : nullptr;
  }

  // The position in the ModelSpec of the node handle at `idx`, or -1 when it is no handle. A
  // handle of a node that nm.Scan moved into its step graph raises an error.
  static int HandleIndex(lua_State* L, int idx) {
    auto* h = static_cast<NodeHandle*>(luaL_testudata(L, idx, kNodeMeta));
    if (h == nullptr) return -1;
    const ModelRecorder::HandleSlot& slot = Self(L)->handles_.at(h->slot);
    if (slot.index < 0) {
      RaiseError(L, absl::StrFormat("node '%s' is part of the step graph of Scan '%s' and exists "
                                    "only inside it; outside, use the Scan node (the step "
                                    "result of every step)",
                                    slot.name, slot.moved_into));
    }
    return slot.index;
  }

  // Whether argument `p` is a node (for arguments that take a node or values).
  static bool IsNode(const Args& a, const std::string& p) {
    a.Push(p);
    const bool node = HandleIndex(a.L(), -1) >= 0;
    lua_pop(a.L(), 1);
    return node;
  }

  static std::string NodeName(const Args& a, const std::string& p) {
    a.Require(p, "a node");
    lua_State* L = a.L();
    a.Push(p);
    const int i = HandleIndex(L, -1);
    if (i < 0) a.Fail(p, "must be a node (the result of an nm function), got " + Describe(L, -1));
    lua_pop(L, 1);
    return Self(L)->spec_.nodes(i).name();
  }

  // A list of nodes, or a single node.
  static std::vector<std::string> NodeNames(const Args& a, const std::string& p) {
    a.Require(p, "a list of nodes");
    lua_State* L = a.L();
    ModelRecorder* r = Self(L);
    a.Push(p);
    std::vector<std::string> out;
    if (const int i = HandleIndex(L, -1); i >= 0) {
      out.push_back(r->spec_.nodes(i).name());
    } else {
      auto n = SequenceLength(L, -1);
      if (!n.ok() || *n == 0) {
        a.Fail(p, "must be a node or a non-empty list of nodes, got " + Describe(L, -1));
      }
      for (int k = 1; k <= *n; ++k) {
        lua_rawgeti(L, -1, k);
        const int i = HandleIndex(L, -1);
        if (i < 0) {
          a.Fail(p, absl::StrFormat("must be a list of nodes, but entry %d is %s", k,
                                    Describe(L, -1)));
        }
        out.push_back(r->spec_.nodes(i).name());
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
    return out;
  }

  // A node or a node name (designate_nodes takes both, as ELEKTRONN2 does).
  static std::string NodeOrName(const Args& a, const std::string& p) {
    lua_State* L = a.L();
    a.Push(p);
    std::string out;
    if (const int i = HandleIndex(L, -1); i >= 0) {
      out = Self(L)->spec_.nodes(i).name();
    } else if (lua_type(L, -1) == LUA_TSTRING) {
      out = lua_tostring(L, -1);
    } else {
      a.Fail(p, "must be a node or a node name, got " + Describe(L, -1));
    }
    lua_pop(L, 1);
    return out;
  }

  static int Ndim(lua_State* L, const std::string& name) {
    const ModelRecorder* r = Self(L);
    const Node* n = r->graph_ ? r->graph_->Find(name) : nullptr;
    return n == nullptr ? 0 : n->shape().ndim();
  }

  // Appends the node (renamed "conv1", "conv2", ... when its name is taken), infers its shape
  // and returns its handle; a shape error becomes a Lua error at the calling line.
  static int Record(lua_State* L, const Args& a, v1::NodeSpec node) {
    ModelRecorder* r = Self(L);
    // A runaway loop or recursion in create_model would otherwise grow the model until memory
    // runs out (the Lua instruction budget counts the calls, not the nodes they make).
    // ELEKTRONN2's largest examples have under 100 nodes.
    constexpr int kMaxNodes = 4096;
    if (r->spec_.nodes_size() >= kMaxNodes) {
      a.Fail(absl::StrFormat("a model may have at most %d nodes; is create_model looping?",
                             kMaxNodes));
    }
    std::string name = node.name();
    if (r->names_.contains(name)) {  // names are never removed: suffixes below `next` are taken
      int& next = r->next_suffix_[node.name()];
      do name = absl::StrCat(node.name(), ++next);
      while (r->names_.contains(name));
    }
    node.set_name(name);
    if (r->failed_where_.empty()) {
      if (r->graph_ == nullptr) r->graph_ = std::make_unique<Graph>();
      absl::Status s = r->graph_->Append(node);
      if (s.GetPayload(kShapeAxisPayload).has_value()) {
        r->failed_where_ = Where(L, 1);
        r->failed_fn_ = a.fn();
      } else if (!s.ok()) {
        a.Fail(std::string(s.message()));
      }
    }
    r->names_.insert(name);
    *r->spec_.add_nodes() = std::move(node);
    PushHandle(L, r->spec_.nodes_size() - 1);
    return 1;
  }

  // Raises the deferred shape error, located at the node that failed.
  [[noreturn]] static void RaiseDeferred(lua_State* L) {
    const std::string msg(Self(L)->deferred_error().message());
    lua_pushlstring(L, msg.data(), msg.size());
    lua_error(L);
    std::abort();
  }

  static void PushHandle(lua_State* L, int index) {
    ModelRecorder* r = Self(L);
    auto* h = static_cast<NodeHandle*>(lua_newuserdatauv(L, sizeof(NodeHandle), 0));
    h->slot = static_cast<int>(r->handles_.size());
    r->handles_.push_back({index, "", ""});
    luaL_setmetatable(L, kNodeMeta);
  }

  static void PushList(lua_State* L, const std::vector<int64_t>& v, bool unknown_as_none) {
    lua_createtable(L, static_cast<int>(v.size()), 0);
    for (size_t i = 0; i < v.size(); ++i) {
      if (unknown_as_none && v[i] == kUnknownSize) {
        PushNone(L);
      } else {
        lua_pushinteger(L, v[i]);
      }
      lua_rawseti(L, -2, static_cast<lua_Integer>(i + 1));
    }
  }

  // node.shape: {None, 1, 23, 185, 185} plus tags, fov, strides, offsets, spatial_shape, ndim;
  // shape.f (or shape['f']) is the size of axis f.
  static void PushShape(lua_State* L, const TaggedShape& s) {
    PushList(L, s.sizes(), true);
    lua_pushstring(L, s.tags_string().c_str());
    lua_setfield(L, -2, "tags");
    PushList(L, s.fov(), false);
    lua_setfield(L, -2, "fov");
    PushList(L, s.strides(), false);
    lua_setfield(L, -2, "strides");
    PushList(L, s.offsets(), false);
    lua_setfield(L, -2, "offsets");
    PushList(L, s.spatial_shape(), true);
    lua_setfield(L, -2, "spatial_shape");
    lua_pushinteger(L, s.ndim());
    lua_setfield(L, -2, "ndim");
    lua_pushstring(L, s.ToString().c_str());
    lua_setfield(L, -2, "repr");
    luaL_setmetatable(L, kShapeMeta);
  }
};

// Shared tail of every node function: the optional name and ELEKTRONN2's print_repr.
inline v1::NodeSpec NewNode(const Args& a, const std::string& default_name) {
  NmAccess::RequireModelPhase(a.L(), a.fn());
  v1::NodeSpec n;
  n.set_name(a.String("name", default_name));
  if (n.name().empty()) a.Fail("name", "must not be empty");
  (void)a.Bool("print_repr", true);  // ELEKTRONN2 prints each node as it is built; we do not
  return n;
}

inline constexpr const char* kNoWeights = "initial values cannot be given in a job file";
inline constexpr const char* kNoBatchNorm =
    "batch normalisation is not implemented in this engine yet";
inline constexpr const char* kNoGradnet =
    "gradnet modes are not implemented in this engine (ELEKTRONN2 stored but never used them); "
    "batch_normalisation = 'fadeout' with the gradnet_rates hyper-parameter is";

using NmFunctionList = std::vector<std::pair<const char*, lua_CFunction>>;

// The node functions of each family, appended to `nm` by NmFunctions().
NmFunctionList CoreNodeFunctions();  // nm_core_nodes.cc
// Structural, element-wise and probabilistic family (issue 11): nm_structural.cc.
NmFunctionList StructuralNodeFunctions();
// Records `linear` (a Conv or Perceptron made linear) as "<name>_lin" followed by a Maxout node
// named `name` over groups of k channels, and returns the Maxout's handle.
int RecordWithMaxout(lua_State* L, const Args& a, v1::NodeSpec linear, int64_t k);
NmFunctionList LossesNodeFunctions();  // nm_losses.cc (losses family, issue 11)
NmFunctionList UpConvNodeFunctions();  // nm_upconv.cc (UpConv family)
// nm_recurrent.cc (recurrent family, issue 15)
NmFunctionList RecurrentNodeFunctions();
NmFunctionList ScanNodeFunctions();  // nm_scan.cc (recurrence, issue 15)

}  // namespace elektronn::lua
