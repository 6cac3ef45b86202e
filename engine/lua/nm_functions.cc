// ELEKTRONN2's node functions for job files: argument parsing with ELEKTRONN2's signatures,
// NodeSpec recording, incremental shape inference and node handles.
#include "engine/lua/internal/nm_functions.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/graph/model_builder.h"
#include "engine/nodes/shape_rules.h"

namespace elektronn::lua {
namespace {

constexpr const char* kNodeMeta = "elektronn.Node";
constexpr const char* kModelMeta = "elektronn.Model";
constexpr const char* kShapeMeta = "elektronn.Shape";

struct NodeHandle {
  int index;  // position in ModelSpec.nodes
};

ModelRecorder* Self(lua_State* L) {
  return static_cast<ModelRecorder*>(lua_touserdata(L, lua_upvalueindex(1)));
}

const std::vector<std::pair<std::string, v1::Activation>>& ActivationNames() {
  static const auto* names = new std::vector<std::pair<std::string, v1::Activation>>{
      {"relu", v1::RELU},      {"tanh", v1::TANH},        {"sigmoid", v1::SIGMOID},
      {"sig", v1::SIGMOID},    {"logistic", v1::SIGMOID}, {"lin", v1::LIN},
      {"linear", v1::LIN},     {"abs", v1::ABS},          {"softplus", v1::SOFTPLUS},
      {"soft+", v1::SOFTPLUS}, {"elu", v1::ELU},          {"prelu", v1::PRELU}};
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
      static const std::set<std::string> missing = {"selu", "maxout", "concentration", "radius"};
      if (missing.contains(s) || s.starts_with("maxout")) {
        Fail(p, absl::StrFormat("'%s' is an ELEKTRONN2 activation this engine does not have; "
                                "use relu, tanh, sigmoid, lin, abs, softplus, elu or prelu",
                                s));
      }
    }
    return Choice(p, ActivationNames(), dflt);
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

}  // namespace

// Functions with access to the recorder's internals.
struct NmAccess {
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

  // The node handle at `idx`, or -1.
  static int HandleIndex(lua_State* L, int idx) {
    auto* h = static_cast<NodeHandle*>(luaL_testudata(L, idx, kNodeMeta));
    return h == nullptr ? -1 : h->index;
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

  // Appends the node, infers every shape again and returns its handle; a shape error becomes a
  // Lua error at the calling line.
  static int Record(lua_State* L, const Args& a, v1::NodeSpec node) {
    ModelRecorder* r = Self(L);
    AppendNode(&r->spec_, std::move(node));
    if (r->failed_where_.empty()) {
      auto g = std::make_unique<Graph>();
      absl::Status s = Graph::BuildWithoutHints(r->spec_, g.get());
      if (s.ok()) {
        r->graph_ = std::move(g);
      } else if (s.GetPayload(kShapeAxisPayload).has_value()) {
        r->failed_where_ = Where(L, 1);
        r->failed_fn_ = a.fn();
      } else {
        r->spec_.mutable_nodes()->RemoveLast();
        a.Fail(std::string(s.message()));
      }
    }
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
    auto* h = static_cast<NodeHandle*>(lua_newuserdatauv(L, sizeof(NodeHandle), 0));
    h->index = index;
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

namespace {

using A = NmAccess;

// Shared tail of every node function: the optional name and ELEKTRONN2's print_repr.
v1::NodeSpec NewNode(const Args& a, const std::string& default_name) {
  A::RequireModelPhase(a.L(), a.fn());
  v1::NodeSpec n;
  n.set_name(a.String("name", default_name));
  if (n.name().empty()) a.Fail("name", "must not be empty");
  (void)a.Bool("print_repr", true);  // ELEKTRONN2 prints each node as it is built; we do not
  return n;
}

const char* const kNoWeights = "initial values cannot be given in a job file";
const char* const kNoBatchNorm = "batch normalisation is not implemented in this engine yet";
const char* const kNoGradnet = "gradnet modes are not implemented in this engine";

int Input(lua_State* L) {
  Args a(L, "nm.Input",
         {"shape", "tags", "strides", "fov", "dtype", "hardcoded_shape", "name", "print_repr"});
  v1::NodeSpec n = NewNode(a, "input");
  a.Require("shape", "a list of sizes, None for unknown");
  a.Require("tags", "a string such as 'b,f,z,x,y'");
  v1::InputOp* in = n.mutable_input();
  a.Push("shape");
  auto shape = ReadIntList(L, -1, kUnknownSize);
  if (!shape.ok()) a.Fail("shape", shape.status().message());
  lua_pop(L, 1);
  for (int64_t s : *shape) {
    if (s == 0 || s < kUnknownSize)
      a.Fail("shape", absl::StrFormat("has the size %d; sizes are positive or None", s));
    in->add_shape(s);
  }
  in->set_tags(a.String("tags", ""));
  if (a.Present("strides")) {
    for (int64_t s : a.Sizes("strides", 0, 1)) in->add_strides(s);
  }
  if (a.Present("fov")) {
    for (int64_t s : a.Sizes("fov", 0, -1)) in->add_fov(s);
  }
  a.DType("dtype");
  (void)a.Bool("hardcoded_shape", false);  // shapes are static once a job is compiled anyway
  return A::Record(L, a, std::move(n));
}

int InputLike(lua_State* L) {
  Args a(L, "nm.Input_like", {"ref", "dtype", "name", "override_f", "hardcoded_shape"});
  v1::NodeSpec n = NewNode(a, "input");
  n.add_inputs(A::NodeName(a, "ref"));
  int64_t f = 0;
  a.Push("override_f");
  const bool given = !(lua_isnil(L, -1) || IsNone(L, -1) ||
                       (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1)));
  lua_pop(L, 1);
  if (given) f = a.Int("override_f", 0, 1);
  n.mutable_input_like()->set_override_f(f);
  a.DType("dtype");
  (void)a.Bool("hardcoded_shape", false);
  return A::Record(L, a, std::move(n));
}

int Conv(lua_State* L) {
  Args a(L, "nm.Conv",
         {"parent", "n_f", "filter_shape", "pool_shape", "conv_mode", "activation_func", "mfp",
          "batch_normalisation", "dropout_rate", "w", "b", "gamma", "mean", "std", "gradnet_mode",
          "invalidate_fov", "name", "print_repr"});
  v1::NodeSpec n = NewNode(a, "conv");
  const std::string parent = A::NodeName(a, "parent");
  n.add_inputs(parent);
  const int ndim = A::Ndim(L, parent);
  v1::ConvOp* c = n.mutable_conv();
  c->set_n_f(a.RequiredInt("n_f", 1));
  a.Require("filter_shape", "a list of kernel sizes, one per spatial axis");
  for (int64_t k : a.Sizes("filter_shape", ndim, 1)) c->add_filter_shape(k);
  if (a.Present("pool_shape")) {
    for (int64_t p : a.Sizes("pool_shape", ndim, 1)) c->add_pool_shape(p);
  }
  c->set_conv_mode(a.Choice<v1::ConvMode>(
      "conv_mode", {{"valid", v1::VALID}, {"same", v1::SAME}, {"full", v1::FULL}}, v1::VALID));
  c->set_activation(a.Activation("activation_func", v1::RELU));
  c->set_mfp(a.Bool("mfp", false));
  a.Unsupported("batch_normalisation", kNoBatchNorm);
  c->set_dropout_rate(a.Rate("dropout_rate"));
  for (const char* p : {"w", "b", "gamma", "mean", "std"}) a.Unsupported(p, kNoWeights);
  a.Unsupported("gradnet_mode", kNoGradnet);
  c->set_invalidate_fov(a.Bool("invalidate_fov", false));
  return A::Record(L, a, std::move(n));
}

int Pool(lua_State* L) {
  Args a(L, "nm.Pool", {"parent", "pool_shape", "stride", "mfp", "mode", "name", "print_repr"});
  v1::NodeSpec n = NewNode(a, "pool");
  const std::string parent = A::NodeName(a, "parent");
  n.add_inputs(parent);
  const int ndim = A::Ndim(L, parent);
  v1::PoolOp* p = n.mutable_pool();
  a.Require("pool_shape", "a list of pool sizes, one per spatial axis");
  for (int64_t s : a.Sizes("pool_shape", ndim, 1)) p->add_pool_shape(s);
  if (a.Present("stride")) {
    for (int64_t s : a.Sizes("stride", ndim, 1)) p->add_stride(s);
  }
  p->set_mfp(a.Bool("mfp", false));
  p->set_mode(a.Choice<v1::PoolMode>(
      "mode", {{"max", v1::MAX}, {"average", v1::AVERAGE}, {"average_inc_pad", v1::AVERAGE}},
      v1::MAX));
  return A::Record(L, a, std::move(n));
}

int Perceptron(lua_State* L, const char* fn) {
  Args a(L, fn,
         {"parent", "n_f", "activation_func", "flatten", "batch_normalisation", "dropout_rate", "w",
          "b", "gamma", "mean", "std", "gradnet_mode", "name", "print_repr"});
  v1::NodeSpec n = NewNode(a, "dot");
  n.add_inputs(A::NodeName(a, "parent"));
  v1::PerceptronOp* p = n.mutable_perceptron();
  p->set_n_f(a.RequiredInt("n_f", 1));
  p->set_activation(a.Activation("activation_func", v1::RELU));
  p->set_flatten(a.Bool("flatten", false));
  a.Unsupported("batch_normalisation", kNoBatchNorm);
  p->set_dropout_rate(a.Rate("dropout_rate"));
  for (const char* q : {"w", "b", "gamma", "mean", "std"}) a.Unsupported(q, kNoWeights);
  a.Unsupported("gradnet_mode", kNoGradnet);
  return A::Record(L, a, std::move(n));
}
int PerceptronFn(lua_State* L) { return Perceptron(L, "nm.Perceptron"); }
int DotFn(lua_State* L) { return Perceptron(L, "nm.Dot"); }

int ActivationFn(lua_State* L) {
  Args a(L, "nm.Activation", {"parent", "activation_func", "name", "print_repr"});
  v1::NodeSpec n = NewNode(a, "activation");
  n.add_inputs(A::NodeName(a, "parent"));
  a.Require("activation_func", "an activation name such as 'relu'");
  n.mutable_activation()->set_activation(a.Activation("activation_func", v1::RELU));
  return A::Record(L, a, std::move(n));
}

// ELEKTRONN2's ApplyFunc takes a backend function; job files name an activation instead.
int ApplyFunc(lua_State* L) {
  Args a(L, "nm.ApplyFunc", {"parent", "functor", "args", "kwargs", "name", "print_repr"});
  v1::NodeSpec n = NewNode(a, "apply");
  n.add_inputs(A::NodeName(a, "parent"));
  a.Require("functor", "an activation name such as 'tanh'");
  n.mutable_activation()->set_activation(a.Activation("functor", v1::RELU));
  for (const char* p : {"args", "kwargs"}) {
    if (!a.Present(p)) continue;
    a.Push(p);
    const bool empty = lua_type(L, -1) == LUA_TTABLE && (lua_pushnil(L), lua_next(L, -2) == 0);
    lua_settop(L, 1);
    if (!empty) a.Fail(p, "is not supported: the functor is an activation without arguments");
  }
  return A::Record(L, a, std::move(n));
}

int Softmax(lua_State* L) {
  Args a(L, "nm.Softmax", {"parent", "n_class", "n_indep", "name", "print_repr"});
  v1::NodeSpec n = NewNode(a, "softmax");
  n.add_inputs(A::NodeName(a, "parent"));
  n.mutable_softmax()->set_n_class(a.IntOrAuto("n_class"));
  n.mutable_softmax()->set_n_indep(a.Int("n_indep", 0, 1));  // 0: the default, 1
  return A::Record(L, a, std::move(n));
}

int Concat(lua_State* L) {
  Args a(L, "nm.Concat", {"parent_nodes", "axis", "name", "print_repr"});
  v1::NodeSpec n = NewNode(a, "concat");
  for (std::string& p : A::NodeNames(a, "parent_nodes")) n.add_inputs(std::move(p));
  n.mutable_concat()->set_axis(a.String("axis", "f"));
  return A::Record(L, a, std::move(n));
}

int Crop(lua_State* L) {
  Args a(L, "nm.Crop", {"parent", "crop", "name", "print_repr"});
  v1::NodeSpec n = NewNode(a, "crop");
  const std::string parent = A::NodeName(a, "parent");
  n.add_inputs(parent);
  a.Require("crop", "voxels to remove from both sides, one entry per spatial axis");
  for (int64_t c : a.Sizes("crop", A::Ndim(L, parent), 0)) n.mutable_crop()->add_crop(c);
  return A::Record(L, a, std::move(n));
}

int Add(lua_State* L) {
  Args a(L, "nm.Add", {"n1", "n2", "name", "print_repr"});
  v1::NodeSpec n = NewNode(a, "add");
  n.add_inputs(A::NodeName(a, "n1"));
  n.add_inputs(A::NodeName(a, "n2"));
  n.mutable_add();
  return A::Record(L, a, std::move(n));
}

int MultinoulliNLL(lua_State* L) {
  Args a(L, "nm.MultinoulliNLL",
         {"pred", "target", "target_is_sparse", "class_weights", "example_weights", "weakness",
          "mask_class_labeled", "mask_class_not_present", "name", "print_repr"});
  v1::NodeSpec n = NewNode(a, "nll");
  n.add_inputs(A::NodeName(a, "pred"));
  n.add_inputs(A::NodeName(a, "target"));
  v1::MultinoulliNLLOp* op = n.mutable_multinoulli_nll();
  op->set_target_is_sparse(a.Bool("target_is_sparse", false));
  for (float w : a.Floats("class_weights")) op->add_class_weights(w);
  a.Unsupported("example_weights", "per-example weights are not implemented in this engine");
  a.Unsupported("weakness", "weak labels are not implemented in this engine");
  a.Unsupported("mask_class_labeled", "lazy-label masks are not implemented in this engine");
  a.Unsupported("mask_class_not_present", "lazy-label masks are not implemented in this engine");
  return A::Record(L, a, std::move(n));
}

int AggregateLoss(lua_State* L) {
  Args a(L, "nm.AggregateLoss", {"parent_nodes", "mixing_weights", "name", "print_repr"});
  v1::NodeSpec n = NewNode(a, "total_loss");
  for (std::string& p : A::NodeNames(a, "parent_nodes")) n.add_inputs(std::move(p));
  v1::AggregateLossOp* op = n.mutable_aggregate_loss();
  const std::vector<float> w = a.Floats("mixing_weights");
  if (!w.empty() && static_cast<int>(w.size()) != n.inputs_size()) {
    a.Fail("mixing_weights",
           absl::StrFormat("has %d entries for %d losses", w.size(), n.inputs_size()));
  }
  for (float x : w) op->add_mixing_weights(x);
  return A::Record(L, a, std::move(n));
}

int Errors(lua_State* L) {
  Args a(L, "nm.Errors",
         {"pred", "target", "target_is_sparse", "n_class", "n_indep", "name", "print_repr"});
  v1::NodeSpec n = NewNode(a, "errors");
  n.add_inputs(A::NodeName(a, "pred"));
  n.add_inputs(A::NodeName(a, "target"));
  v1::ErrorsOp* op = n.mutable_errors();
  op->set_target_is_sparse(a.Bool("target_is_sparse", false));
  op->set_n_class(a.IntOrAuto("n_class"));
  op->set_n_indep(a.IntOrAuto("n_indep"));
  return A::Record(L, a, std::move(n));
}

// Max-fragment-pooling's stitcher (reference §2.6); ELEKTRONN2's default name is "to_dense".
int FragmentsToDense(lua_State* L) {
  Args a(L, "nm.FragmentsToDense", {"parent", "name", "print_repr"});
  v1::NodeSpec n = NewNode(a, "to_dense");
  n.add_inputs(A::NodeName(a, "parent"));
  n.mutable_fragments_to_dense();
  return A::Record(L, a, std::move(n));
}

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

const std::vector<std::pair<const char*, lua_CFunction>>& NmFunctions() {
  static const auto* fns =
      new std::vector<std::pair<const char*, lua_CFunction>>{{"Input", Input},
                                                             {"Input_like", InputLike},
                                                             {"Conv", Conv},
                                                             {"Pool", Pool},
                                                             {"Perceptron", PerceptronFn},
                                                             {"Dot", DotFn},
                                                             {"Activation", ActivationFn},
                                                             {"ApplyFunc", ApplyFunc},
                                                             {"Softmax", Softmax},
                                                             {"Concat", Concat},
                                                             {"Crop", Crop},
                                                             {"Add", Add},
                                                             {"MultinoulliNLL", MultinoulliNLL},
                                                             {"AggregateLoss", AggregateLoss},
                                                             {"Errors", Errors},
                                                             {"FragmentsToDense", FragmentsToDense},
                                                             {"designate_nodes", DesignateNodes}};
  return *fns;
}

// nm.X for an X the table lacks: ELEKTRONN2 names get "not available", typos a suggestion.
int NmIndex(lua_State* L) {
  const std::string key = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : Describe(L, 2);
  static const std::set<std::string> kElektronn2Only = {"UpConv",
                                                        "UpConvMerge",
                                                        "AutoMerge",
                                                        "Reshape",
                                                        "split",
                                                        "Pad",
                                                        "MultMerge",
                                                        "FaithlessMerge",
                                                        "ValueNode",
                                                        "InitialState_like",
                                                        "GenericInput",
                                                        "FromTensor",
                                                        "GRU",
                                                        "LSTM",
                                                        "Scan",
                                                        "LRN",
                                                        "GaussianRV",
                                                        "OneHot",
                                                        "BinaryNLL",
                                                        "GaussianNLL",
                                                        "BetaNLL",
                                                        "SquaredLoss",
                                                        "AbsLoss",
                                                        "EuclideanDistance",
                                                        "RampLoss",
                                                        "SobelizedLoss",
                                                        "Classification",
                                                        "BlockedMultinoulliNLL",
                                                        "MalisNLL",
                                                        "model_manager"};
  std::vector<std::string> names;
  for (const auto& [name, fn] : NmFunctions()) names.push_back(name);
  if (kElektronn2Only.contains(key)) {
    RaiseError(L, absl::StrFormat("nm.%s exists in ELEKTRONN2 but not (yet) in this engine; "
                                  "available: %s",
                                  key, absl::StrJoin(names, ", ")));
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
