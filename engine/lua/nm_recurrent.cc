// The `nm` functions of the recurrent family (issue 15, reference §2.1 and §2.10) with
// ELEKTRONN2's signatures and default names: GRU, LSTM, ValueNode, InitialState_like.
#include "engine/lua/internal/nm_args.h"

namespace elektronn::lua {
namespace {

using A = NmAccess;

constexpr const char* kCellNotImplemented =
    "ELEKTRONN2 raises NotImplementedError for it on recurrent cells too";

// ELEKTRONN2's init_kwargs: a table {mode = 'const' | 'fix-uni', scale = number}.
v1::ValueInit InitKwargs(const Args& a, const std::string& p) {
  v1::ValueInit init;
  if (!a.Present(p)) return init;
  lua_State* L = a.L();
  a.Push(p);
  if (lua_type(L, -1) != LUA_TTABLE) {
    a.Fail(p, "must be a table such as {mode = 'const', scale = 0}, got " + Describe(L, -1));
  }
  const int t = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    const bool mode = lua_type(L, -2) == LUA_TSTRING && std::string(lua_tostring(L, -2)) == "mode";
    const bool scale =
        lua_type(L, -2) == LUA_TSTRING && std::string(lua_tostring(L, -2)) == "scale";
    if (mode) {
      auto s = ReadString(L, -1);
      if (!s.ok() || (*s != "const" && *s != "fix-uni")) {
        a.Fail(p,
               "entry 'mode' must be 'const' or 'fix-uni' (the modes a vector can take), "
               "got " +
                   Describe(L, -1));
      }
      init.set_mode(*s == "const" ? v1::VALUE_INIT_CONST : v1::VALUE_INIT_FIX_UNI);
    } else if (scale) {
      auto v = ReadNumber(L, -1);
      if (!v.ok()) a.Fail(p, "entry 'scale' must be a number, got " + Describe(L, -1));
      init.set_scale(static_cast<float>(*v));
    } else {
      a.Fail(p, "takes the entries 'mode' and 'scale' only, got the key " + Describe(L, -2));
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (init.mode() == v1::VALUE_INIT_FIX_UNI && init.scale() < 0) {
    a.Fail(p, absl::StrFormat("entry 'scale' must be >= 0 for 'fix-uni', got %g", init.scale()));
  }
  return init;
}

// GRU and LSTM: (parent, memory, n_f, activation_func='tanh', flatten, batch_normalisation,
// dropout_rate, name, print_repr, w, b, gamma, mean, std, gradnet_mode).
v1::NodeSpec Cell(const Args& a, const char* default_name, const char* memory, int64_t* n_f,
                  v1::Activation* act) {
  v1::NodeSpec n = NewNode(a, default_name);
  n.add_inputs(A::NodeName(a, "parent"));
  n.add_inputs(A::NodeName(a, memory));
  *n_f = a.RequiredInt("n_f", 1);
  if (a.MaxoutK("activation_func") > 0) {
    a.Fail("activation_func", "'maxout' is not supported by recurrent cells");
  }
  *act = a.Activation("activation_func", v1::TANH);
  if (*act == v1::PRELU) a.Fail("activation_func", "'prelu' is not supported by recurrent cells");
  for (const char* p : {"flatten", "batch_normalisation", "dropout_rate", "gradnet_mode"}) {
    a.Unsupported(p, kCellNotImplemented);
  }
  for (const char* p : {"w", "b", "gamma", "mean", "std"}) a.Unsupported(p, kNoWeights);
  return n;
}

const std::vector<std::string> kCellParams = {"parent",
                                              "MEMORY",
                                              "n_f",
                                              "activation_func",
                                              "flatten",
                                              "batch_normalisation",
                                              "dropout_rate",
                                              "name",
                                              "print_repr",
                                              "w",
                                              "b",
                                              "gamma",
                                              "mean",
                                              "std",
                                              "gradnet_mode"};

std::vector<std::string> CellParams(const char* memory) {
  std::vector<std::string> p = kCellParams;
  p[1] = memory;
  return p;
}

int Gru(lua_State* L) {
  Args a(L, "nm.GRU", CellParams("memory_state"));
  int64_t n_f = 0;
  v1::Activation act = v1::TANH;
  v1::NodeSpec n = Cell(a, "gru", "memory_state", &n_f, &act);
  n.mutable_gru()->set_n_f(n_f);
  n.mutable_gru()->set_activation(act);
  return A::Record(L, a, std::move(n));
}

int Lstm(lua_State* L) {
  Args a(L, "nm.LSTM", CellParams("memory_states"));
  int64_t n_f = 0;
  v1::Activation act = v1::TANH;
  v1::NodeSpec n = Cell(a, "lstm", "memory_states", &n_f, &act);
  n.mutable_lstm()->set_n_f(n_f);
  n.mutable_lstm()->set_activation(act);
  return A::Record(L, a, std::move(n));
}

int ValueNode(lua_State* L) {
  Args a(L, "nm.ValueNode",
         {"shape", "tags", "strides", "fov", "dtype", "apply_train", "value", "init_kwargs", "name",
          "print_repr"});
  v1::NodeSpec n = NewNode(a, "value_state");
  v1::ValueOp* v = n.mutable_value_node();
  a.Require("shape", "a list of sizes, all known");
  for (int64_t s : a.Sizes("shape", 1, 1)) v->add_shape(s);
  a.Require("tags", "a string such as 'f' or 'b,f'");
  v->set_tags(a.String("tags", ""));
  if (a.Present("strides")) {
    for (int64_t s : a.Sizes("strides", 0, 1)) v->add_strides(s);
  }
  if (a.Present("fov")) {
    for (int64_t s : a.Sizes("fov", 0, -1)) v->add_fov(s);
  }
  a.DType("dtype");
  v->set_apply_train(a.Bool("apply_train", false));
  if (a.Present("value")) {
    a.Push("value");
    const bool number = lua_type(L, -1) == LUA_TNUMBER;
    lua_pop(L, 1);
    int64_t count = 1;
    for (int64_t s : v->shape()) count *= s;
    std::vector<float> values =
        number ? std::vector<float>(count, static_cast<float>(a.Number("value", 0)))
               : a.Floats("value");
    if (static_cast<int64_t>(values.size()) != count) {
      a.Fail("value", absl::StrFormat("has %d entries; shape {%s} needs %d (a flat list in "
                                      "tag order, or one number)",
                                      values.size(), absl::StrJoin(v->shape(), ", "), count));
    }
    for (float x : values) v->add_value(x);
  }
  if (a.Present("init_kwargs")) {
    if (!v->apply_train()) {
      a.Fail("init_kwargs",
             "needs apply_train = true (ELEKTRONN2 raises NotImplementedError "
             "for a fixed value with init_kwargs)");
    }
    if (v->value_size() > 0) a.Fail("init_kwargs", "cannot be given together with 'value'");
    *v->mutable_init() = InitKwargs(a, "init_kwargs");
  }
  return A::Record(L, a, std::move(n));
}

int InitialStateLike(lua_State* L) {
  Args a(L, "nm.InitialState_like",
         {"parent", "override_f", "dtype", "name", "print_repr", "init_kwargs"});
  v1::NodeSpec n = NewNode(a, "initial_state");
  n.add_inputs(A::NodeName(a, "parent"));
  v1::InitialStateOp* op = n.mutable_initial_state();
  op->set_override_f(a.RequiredInt("override_f", 1));
  a.DType("dtype");
  if (a.Present("init_kwargs")) *op->mutable_init() = InitKwargs(a, "init_kwargs");
  return A::Record(L, a, std::move(n));
}

}  // namespace

NmFunctionList RecurrentNodeFunctions() {
  return {{"GRU", Gru},
          {"LSTM", Lstm},
          {"ValueNode", ValueNode},
          {"InitialState_like", InitialStateLike}};
}

}  // namespace elektronn::lua
