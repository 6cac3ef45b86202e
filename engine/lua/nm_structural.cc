// The `nm` functions of the structural, element-wise and probabilistic family (issue 11):
// split, Reshape, Pad, MultMerge, FaithlessMerge, ApplyFunc, LRN, GaussianRV, GaussianAEVBPrior,
// and the Maxout node that 'maxout <k>' activations record.
#include <optional>

#include "engine/lua/internal/nm_args.h"

namespace elektronn::lua {

int RecordWithMaxout(lua_State* L, const Args& a, v1::NodeSpec linear, int64_t k) {
  const bool dropout = (linear.has_conv() && linear.conv().dropout_rate() > 0) ||
                       (linear.has_perceptron() && linear.perceptron().dropout_rate() > 0);
  if (dropout) {
    a.Fail("dropout_rate",
           "cannot be combined with a 'maxout' activation (dropout would act "
           "before the maxout); add the dropout to the next layer");
  }
  v1::NodeSpec m;
  m.set_name(linear.name());
  m.mutable_maxout()->set_k(k);
  linear.set_name(linear.name() + "_lin");
  NmAccess::Record(L, a, std::move(linear));
  m.add_inputs(Self(L)->spec().nodes(Self(L)->spec().nodes_size() - 1).name());
  lua_pop(L, 1);
  return NmAccess::Record(L, a, std::move(m));
}

namespace {

using A = NmAccess;

// ELEKTRONN2's split: cuts `node` along `axis` at the indices in `index` (one integer cuts in
// two) or into `n_out` equal parts; returns the pieces as several values
// (local a, b = nm.split{...}).
int Split(lua_State* L) {
  Args a(L, "nm.split",
         {"node", "axis", "index", "n_out", "strip_singleton_dims", "name", "print_repr"});
  const std::string parent = A::NodeName(a, "node");
  const std::string axis = a.String("axis", "f");
  const bool strip = a.Bool("strip_singleton_dims", false);
  // The axis size, from the recorded graph.
  const Node* node = nullptr;
  for (int i = 0; i < Self(L)->spec().nodes_size(); ++i) {
    if (Self(L)->spec().nodes(i).name() == parent) node = A::NodeAt(Self(L), i);
  }
  if (node == nullptr) A::RaiseDeferred(L);  // an earlier node's shape failed
  const TaggedShape& s = node->shape();
  const int ax = axis.size() == 1 ? s.TagIndex(axis[0]) : -1;
  if (ax < 0) a.Fail("axis", absl::StrFormat("'%s' is not a tag of %s", axis, s.tags_string()));
  const int64_t size = s.size(ax);
  if (size == kUnknownSize) a.Fail("axis", absl::StrFormat("'%s' has an unknown size", axis));
  if (a.Present("index") == a.Present("n_out")) a.Fail("give exactly one of index and n_out");
  std::vector<int64_t> cuts = {0};
  if (a.Present("n_out")) {
    const int64_t n = a.Int("n_out", 1, 1);
    if (size % n != 0) {
      a.Fail("n_out", absl::StrFormat("%d does not divide axis '%s' of size %d", n, axis, size));
    }
    for (int64_t i = 1; i < n; ++i) cuts.push_back(i * size / n);
  } else {
    for (int64_t c : a.Sizes("index", 1, 1)) {
      if (c <= cuts.back() || c >= size) {
        a.Fail("index",
               absl::StrFormat("must be increasing cut points inside (0, %d), got %d", size, c));
      }
      cuts.push_back(c);
    }
  }
  cuts.push_back(size);
  const int pieces = static_cast<int>(cuts.size()) - 1;
  std::vector<std::string> names(pieces, "split");
  a.Push("name");
  if (lua_type(L, -1) == LUA_TTABLE) {
    for (int i = 0; i < pieces; ++i) {
      lua_rawgeti(L, -1, i + 1);
      if (lua_type(L, -1) != LUA_TSTRING) {
        a.Fail("name", absl::StrFormat("must be a name or a list of %d names", pieces));
      }
      names[i] = lua_tostring(L, -1);
      lua_pop(L, 1);
    }
  } else if (lua_type(L, -1) == LUA_TSTRING) {
    names.assign(pieces, lua_tostring(L, -1));  // made unique: split, split1, ...
  }
  lua_pop(L, 1);
  A::RequireModelPhase(L, a.fn());
  for (int i = 0; i < pieces; ++i) {
    v1::NodeSpec n;
    n.set_name(names[i]);
    n.add_inputs(parent);
    v1::SliceOp* op = n.mutable_slice();
    op->set_axis(axis);
    op->set_start(cuts[i]);
    op->set_size(cuts[i + 1] - cuts[i]);
    op->set_strip(strip);
    A::Record(L, a, std::move(n));  // leaves the handle on the stack
  }
  return pieces;
}

int Reshape(lua_State* L) {
  Args a(L, "nm.Reshape", {"parent", "shape", "tags", "strides", "fov", "name", "print_repr"});
  v1::NodeSpec n = NewNode(a, "reshape");
  n.add_inputs(A::NodeName(a, "parent"));
  v1::ReshapeOp* op = n.mutable_reshape();
  a.Require("shape", "a list of sizes, None for the batch or one inferred size");
  a.Push("shape");
  auto shape = ReadIntList(L, -1, kUnknownSize);
  if (!shape.ok()) a.Fail("shape", shape.status().message());
  lua_pop(L, 1);
  for (int64_t v : *shape) op->add_shape(v);
  op->set_tags(a.String("tags", ""));
  if (a.Present("strides")) {
    for (int64_t v : a.Sizes("strides", 0, 1)) op->add_strides(v);
  }
  if (a.Present("fov")) {
    for (int64_t v : a.Sizes("fov", 0, -1)) op->add_fov(v);
  }
  return A::Record(L, a, std::move(n));
}

int Pad(lua_State* L) {
  Args a(L, "nm.Pad", {"parent", "pad", "value", "name", "print_repr"});
  v1::NodeSpec n = NewNode(a, "pad");
  const std::string parent = A::NodeName(a, "parent");
  n.add_inputs(parent);
  a.Require("pad", "voxels to add on both sides, one entry per spatial axis");
  for (int64_t p : a.Sizes("pad", A::Ndim(L, parent), 0)) n.mutable_pad()->add_pad(p);
  n.mutable_pad()->set_value(static_cast<float>(a.Number("value", 0.0)));
  return A::Record(L, a, std::move(n));
}

int MultMerge(lua_State* L) {
  Args a(L, "nm.MultMerge", {"n1", "n2", "name", "print_repr"});
  v1::NodeSpec n = NewNode(a, "multmerge");
  n.add_inputs(A::NodeName(a, "n1"));
  n.add_inputs(A::NodeName(a, "n2"));
  n.mutable_mult_merge();
  return A::Record(L, a, std::move(n));
}

int FaithlessMerge(lua_State* L) {
  Args a(L, "nm.FaithlessMerge",
         {"hard_features", "easy_features", "axis", "failing_prob", "hardeasy_ratio", "name",
          "print_repr"});
  v1::NodeSpec n = NewNode(a, "faithless_merge");
  n.add_inputs(A::NodeName(a, "hard_features"));
  n.add_inputs(A::NodeName(a, "easy_features"));
  v1::FaithlessMergeOp* op = n.mutable_faithless_merge();
  op->set_axis(a.String("axis", "f"));
  for (const char* p : {"failing_prob", "hardeasy_ratio"}) {
    const double v = a.Number(p, std::string(p) == "failing_prob" ? 0.5 : 0.8);
    if (v < 0 || v > 1) a.Fail(p, absl::StrFormat("must be in [0, 1], got %g", v));
    std::string(p) == "failing_prob" ? op->set_failing_prob(v) : op->set_hardeasy_ratio(v);
  }
  return A::Record(L, a, std::move(n));
}

// The functors ApplyFunc knows besides activations: name, function, the names of its arguments
// (given positionally in `args` or by name in `kwargs`, as ELEKTRONN2 calls
// functor(x, *args, **kwargs)) and how they map onto (a, b).
struct Functor {
  const char* name;
  v1::ApplyFunction f;
  std::vector<std::string> params;
  float a, b;  // fixed values where the functor takes fewer arguments
  const char* args;
};

const std::vector<Functor>& Functors() {
  static const auto* f = new std::vector<Functor>{
      {"scale", v1::APPLY_AFFINE, {"factor"}, 1, 0, "{factor}: factor * x"},
      {"mul", v1::APPLY_AFFINE, {"factor"}, 1, 0, "{factor}: factor * x"},
      {"add", v1::APPLY_AFFINE, {"shift"}, 1, 0, "{shift}: x + shift"},
      {"affine", v1::APPLY_AFFINE, {"a", "b"}, 1, 0, "{a, b}: a * x + b"},
      {"neg", v1::APPLY_AFFINE, {}, -1, 0, "no arguments: -x"},
      {"pow", v1::APPLY_POW, {"p"}, 1, 0, "{p}: x ^ p"},
      {"sqr", v1::APPLY_POW, {}, 2, 0, "no arguments: x ^ 2"},
      {"sqrt", v1::APPLY_POW, {}, 0.5f, 0, "no arguments: x ^ 0.5"},
      {"clip", v1::APPLY_CLIP, {"min", "max"}, 0, 0, "{min, max}"},
      {"exp", v1::APPLY_EXP, {}, 0, 0, "no arguments"},
      {"log", v1::APPLY_LOG, {}, 0, 0, "no arguments"},
      {"mean", v1::APPLY_MEAN, {}, 0, 0, "no arguments: the mean of all entries, one value"}};
  return *f;
}

// The functor's arguments from `args` (a number or a list, positional) and `kwargs` (a table of
// name = number); every parameter must be given exactly once.
std::vector<double> FunctorArguments(const Args& a, const Functor& f,
                                     const std::vector<double>& args) {
  lua_State* L = a.L();
  const int n = static_cast<int>(f.params.size());
  if (static_cast<int>(args.size()) > n) {
    a.Fail("args", absl::StrFormat("must hold at most %d number(s) for '%s' (%s), got %d", n,
                                   f.name, f.args, args.size()));
  }
  std::vector<std::optional<double>> given(n);
  for (size_t i = 0; i < args.size(); ++i) given[i] = args[i];
  if (a.Present("kwargs")) {
    a.Push("kwargs");
    if (lua_type(L, -1) != LUA_TTABLE) {
      a.Fail("kwargs", "must be a table of name = value, got " + Describe(L, -1));
    }
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
      if (lua_type(L, -2) != LUA_TSTRING) {
        a.Fail("kwargs",
               absl::StrFormat("must be a table of name = value; '%s' takes %s", f.name, f.args));
      }
      const std::string key = lua_tostring(L, -2);
      auto it = std::find(f.params.begin(), f.params.end(), key);
      if (it == f.params.end()) {
        a.Fail("kwargs", absl::StrFormat("has '%s'%s, which '%s' does not take; it takes %s", key,
                                         Suggestion(key, f.params), f.name, f.args));
      }
      const size_t i = it - f.params.begin();
      if (given[i]) {
        a.Fail("kwargs",
               absl::StrFormat("gives '%s' for '%s' a second time (also in args)", key, f.name));
      }
      auto v = ReadNumber(L, -1);
      if (!v.ok()) {
        a.Fail("kwargs", absl::StrFormat("'%s' must be a number, got %s", key, Describe(L, -1)));
      }
      given[i] = *v;
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  std::vector<double> out;
  for (int i = 0; i < n; ++i) {
    if (!given[i]) {
      a.Fail(absl::StrFormat("'%s' needs its argument '%s' (%s), in args or kwargs", f.name,
                             f.params[i], f.args));
    }
    out.push_back(*given[i]);
  }
  return out;
}

// ELEKTRONN2's ApplyFunc takes a backend function (T.tanh, T.mean, ...); a job file names it:
// an activation ('tanh', 'selu', 'maxout 2', ...) or one of Functors() with its `args`.
int ApplyFunc(lua_State* L) {
  Args a(L, "nm.ApplyFunc", {"parent", "functor", "args", "kwargs", "name", "print_repr"});
  v1::NodeSpec n = NewNode(a, "apply");
  n.add_inputs(A::NodeName(a, "parent"));
  a.Require("functor", "a function name such as 'tanh', 'scale' or 'mean'");
  std::vector<double> args;
  if (a.Present("args")) {
    a.Push("args");
    if (lua_type(L, -1) == LUA_TNUMBER) {
      args.push_back(lua_tonumber(L, -1));
      lua_pop(L, 1);
    } else {
      lua_pop(L, 1);
      args = a.Read<std::vector<double>>("args", ReadNumberList);
    }
  }
  const std::string name = a.Read<std::string>("functor", ReadString);
  for (const Functor& f : Functors()) {
    if (name != f.name) continue;
    args = FunctorArguments(a, f, args);
    const size_t n_args = f.params.size();
    v1::ApplyFuncOp* op = n.mutable_apply_func();
    op->set_function(f.f);
    op->set_a(f.a);
    op->set_b(f.b);
    if (name == "add") {
      op->set_b(static_cast<float>(args[0]));
    } else if (n_args >= 1) {
      op->set_a(static_cast<float>(args[0]));
      if (n_args == 2) op->set_b(static_cast<float>(args[1]));
    }
    if (f.f == v1::APPLY_CLIP && op->a() > op->b()) {
      a.Fail("args", absl::StrFormat("clip bounds {%g, %g} are reversed", op->a(), op->b()));
    }
    return A::Record(L, a, std::move(n));
  }
  if (!args.empty()) {
    a.Fail("args", absl::StrFormat("must be empty for the activation '%s'", name));
  }
  if (a.Present("kwargs")) {
    a.Push("kwargs");
    const bool empty = lua_type(L, -1) == LUA_TTABLE && (lua_pushnil(L), lua_next(L, -2) == 0);
    lua_settop(L, 1);
    if (!empty) {
      a.Fail("kwargs", absl::StrFormat("must be empty for the activation '%s' (it takes no "
                                       "arguments)",
                                       name));
    }
  }
  if (const int64_t k = a.MaxoutK("functor"); k > 0) {
    n.mutable_maxout()->set_k(k);
    return A::Record(L, a, std::move(n));
  }
  bool activation = false;
  std::vector<std::string> names;
  for (const auto& [act, value] : ActivationNames()) {
    activation = activation || act == name;
    names.push_back(act);
  }
  if (!activation) {
    for (const Functor& f : Functors()) names.push_back(f.name);
    names.push_back("maxout <k>");
    a.Fail("functor", absl::StrFormat("'%s' is not a function this engine offers%s; available: %s",
                                      name, Suggestion(name, names), absl::StrJoin(names, ", ")));
  }
  n.mutable_activation()->set_activation(a.Activation("functor", v1::RELU));
  return A::Record(L, a, std::move(n));
}

int Lrn(lua_State* L) {
  Args a(L, "nm.LRN",
         {"parent", "filter_shape", "mode", "alpha", "k", "beta", "name", "print_repr"});
  v1::NodeSpec n = NewNode(a, "lrn");
  const std::string parent = A::NodeName(a, "parent");
  n.add_inputs(parent);
  v1::LrnOp* op = n.mutable_lrn();
  op->set_mode(a.Choice<v1::LrnMode>(
      "mode", {{"spatial", v1::LRN_SPATIAL}, {"channel", v1::LRN_CHANNEL}}, v1::LRN_SPATIAL));
  a.Require("filter_shape", "odd window sizes (spatial: one per axis; channel: one integer)");
  const int ndim = op->mode() == v1::LRN_CHANNEL ? 1 : A::Ndim(L, parent);
  for (int64_t w : a.Sizes("filter_shape", ndim, 1)) op->add_filter_shape(w);
  op->set_alpha(static_cast<float>(a.Number("alpha", 1e-4)));
  op->set_k(static_cast<float>(a.Number("k", 1)));
  op->set_beta(static_cast<float>(a.Number("beta", 0.75)));
  return A::Record(L, a, std::move(n));
}

int GaussianRV(lua_State* L) {
  Args a(L, "nm.GaussianRV", {"mu", "log_sig", "n_samples", "name", "print_repr"});
  v1::NodeSpec n = NewNode(a, "state");
  n.add_inputs(A::NodeName(a, "mu"));
  n.add_inputs(A::NodeName(a, "log_sig"));
  n.mutable_gaussian_rv()->set_n_samples(a.Int("n_samples", 0, 0));
  return A::Record(L, a, std::move(n));
}

// ELEKTRONN2's GaussianRV.make_priorlayer() as a function of the GaussianRV node.
int GaussianAEVBPrior(lua_State* L) {
  Args a(L, "nm.GaussianAEVBPrior", {"rv", "name", "print_repr"});
  v1::NodeSpec n = NewNode(a, "prior");
  const std::string rv = A::NodeName(a, "rv");
  for (const v1::NodeSpec& s : Self(L)->spec().nodes()) {
    if (s.name() != rv) continue;
    if (!s.has_gaussian_rv()) {
      a.Fail("rv", absl::StrFormat("must be a GaussianRV node, got node '%s'", rv));
    }
    for (const std::string& in : s.inputs()) n.add_inputs(in);
  }
  n.mutable_gaussian_aevb_prior();
  return A::Record(L, a, std::move(n));
}

}  // namespace

NmFunctionList StructuralNodeFunctions() {
  return {{"split", Split},
          {"Reshape", Reshape},
          {"Pad", Pad},
          {"MultMerge", MultMerge},
          {"FaithlessMerge", FaithlessMerge},
          {"ApplyFunc", ApplyFunc},
          {"LRN", Lrn},
          {"GaussianRV", GaussianRV},
          {"GaussianAEVBPrior", GaussianAEVBPrior}};
}

}  // namespace elektronn::lua
