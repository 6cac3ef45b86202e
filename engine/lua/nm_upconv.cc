// The `nm` functions of the UpConv family: UpConv (reference §2.8) and UpConvMerge / AutoMerge
// (§2.9), the U-Net merge composed of UpConv, Crop and Concat (or Add).
#include "engine/lua/internal/nm_args.h"

namespace elektronn::lua {
namespace {

using A = NmAccess;

const std::vector<std::string>& UpConvParams() {
  static const auto* p = new std::vector<std::string>{"parent",
                                                      "n_f",
                                                      "pool_shape",
                                                      "activation_func",
                                                      "identity_init",
                                                      "batch_normalisation",
                                                      "dropout_rate",
                                                      "w",
                                                      "b",
                                                      "gamma",
                                                      "mean",
                                                      "std",
                                                      "gradnet_mode",
                                                      "name",
                                                      "print_repr"};
  return *p;
}

// ELEKTRONN2's batch_normalisation values: False (or None), True / 'train', 'fadeout', 'predict'.
v1::BatchNormMode BatchNorm(const Args& a) {
  if (!a.Present("batch_normalisation")) return v1::BN_OFF;
  lua_State* L = a.L();
  a.Push("batch_normalisation");
  const int type = lua_type(L, -1);
  const bool flag = type == LUA_TBOOLEAN && lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (type == LUA_TBOOLEAN) return flag ? v1::BN_TRAIN : v1::BN_OFF;
  return a.Choice<v1::BatchNormMode>(
      "batch_normalisation",
      {{"train", v1::BN_TRAIN}, {"fadeout", v1::BN_FADEOUT}, {"predict", v1::BN_PREDICT}},
      v1::BN_OFF);
}

// nm.UpConv (reference §2.8), batch normalisation as on Conv (§2.4).
int UpConv(lua_State* L) {
  Args a(L, "nm.UpConv", UpConvParams());
  v1::NodeSpec n = NewNode(a, "upconv");
  const std::string parent = A::NodeName(a, "parent");
  n.add_inputs(parent);
  const int ndim = A::Ndim(L, parent);
  v1::UpConvOp* u = n.mutable_upconv();
  u->set_n_f(a.RequiredInt("n_f", 1));
  a.Require("pool_shape", "a list of upsampling factors, one per spatial axis");
  for (int64_t p : a.Sizes("pool_shape", ndim, 1)) u->add_pool_shape(p);
  u->set_activation(a.Activation("activation_func", v1::RELU));
  u->set_identity_init(a.Bool("identity_init", true));
  u->set_batch_normalisation(BatchNorm(a));
  u->set_dropout_rate(a.Rate("dropout_rate"));
  for (const char* p : {"w", "b", "gamma", "mean", "std"}) a.Unsupported(p, kNoWeights);
  a.Unsupported("gradnet_mode", kNoGradnet);
  return A::Record(L, a, std::move(n));
}

// A recorded node's name and shape, copied: every Record rebuilds the recorder's graph, so
// pointers into it do not outlive the next node.
struct Part {
  std::string name;
  TaggedShape shape;
};

// The recorded node behind the handle at stack index `idx`.
Part PartOfHandle(lua_State* L, const Args& a, int idx) {
  ModelRecorder* r = Self(L);
  if (A::Failed(r)) A::RaiseDeferred(L);
  const Node* n = A::NodeAt(r, A::HandleIndex(L, idx));
  if (n == nullptr) a.Fail("internal error: a node just recorded has no shape");
  return {n->name(), n->shape()};
}

// Records `spec` (a node made here, not from the call's own arguments).
Part RecordPart(lua_State* L, const Args& a, v1::NodeSpec spec) {
  A::Record(L, a, std::move(spec));
  Part p = PartOfHandle(L, a, -1);
  lua_pop(L, 1);
  return p;
}

// Position of the node `name` in the recorded ModelSpec.
int IndexOf(lua_State* L, const std::string& name) {
  const v1::ModelSpec& spec = Self(L)->spec();
  for (int i = 0; i < spec.nodes_size(); ++i)
    if (spec.nodes(i).name() == name) return i;
  return -1;
}

std::string Strides(const TaggedShape& s) { return absl::StrJoin(s.strides(), ","); }

// AutoMerge(parent1, parent2, upconv_n_f, merge_mode, disable_upconv, upconv_kwargs), reference
// §2.9: the lower-resolution parent is upsampled by an UpConv with pool = the stride ratio, the
// larger of the two is cropped symmetrically to the other's spatial size, and the two are
// concatenated along f with the upsampled low-resolution channels FIRST (or added).
int Merge(lua_State* L, const char* fn) {
  Args a(L, fn,
         {"parent1", "parent2", "upconv_n_f", "merge_mode", "disable_upconv", "upconv_kwargs",
          "name", "print_repr"});
  NmAccess::RequireModelPhase(L, fn);
  const std::string name = a.String("name", "merge");
  if (name.empty()) a.Fail("name", "must not be empty");
  (void)a.Bool("print_repr", true);
  const std::string merge_mode = a.Choice<std::string>(
      "merge_mode", {{"concat", "concat"}, {"add", "add"}}, std::string("concat"));
  const bool disable_upconv = a.Bool("disable_upconv", false);
  const std::string p1 = A::NodeName(a, "parent1"), p2 = A::NodeName(a, "parent2");
  a.Push("parent1");
  const Part n1 = PartOfHandle(L, a, -1);
  lua_pop(L, 1);
  a.Push("parent2");
  const Part n2 = PartOfHandle(L, a, -1);
  lua_pop(L, 1);
  const TaggedShape& s1 = n1.shape;
  const TaggedShape& s2 = n2.shape;
  if (s1.tags() != s2.tags()) {
    a.Fail(
        absl::StrFormat("'%s' has tags \"%s\" and '%s' has \"%s\"; merged nodes need the same "
                        "axes",
                        p1, s1.tags_string(), p2, s2.tags_string()));
  }
  const int nd = s1.ndim();
  // 1. Roles: parent1 is the low-resolution one if any parent2.strides // parent1.strides < 1.
  bool p1_is_lo = false;
  for (int j = 0; j < nd; ++j) p1_is_lo = p1_is_lo || s2.strides()[j] / s1.strides()[j] < 1;
  Part lo = p1_is_lo ? n1 : n2;
  Part hi = p1_is_lo ? n2 : n1;
  // 2. Upsample the low-resolution node by the stride ratio.
  std::vector<int64_t> unpool(nd);
  bool upsample = false;
  for (int j = 0; j < nd; ++j) {
    unpool[j] = lo.shape.strides()[j] / hi.shape.strides()[j];
    upsample = upsample || unpool[j] > 1;
  }
  if (upsample && !disable_upconv) {
    if (!a.Present("upconv_n_f")) {
      a.Fail(absl::StrFormat(
          "missing argument 'upconv_n_f': '%s' (strides %s) has a lower "
          "resolution than '%s' (strides %s) and is upsampled by an UpConv "
          "with pool (%s), which needs its number of channels",
          lo.name, Strides(lo.shape), hi.name, Strides(hi.shape), absl::StrJoin(unpool, ",")));
    }
    const int64_t n_f = a.Int("upconv_n_f", 0, 1);
    // nm.UpConv{lo, n_f, unpool, <upconv_kwargs>}, called with this function's recorder.
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushcclosure(L, UpConv, 1);
    lua_createtable(L, 0, 4);
    if (a.Present("upconv_kwargs")) {
      a.Push("upconv_kwargs");
      if (lua_type(L, -1) != LUA_TTABLE) {
        a.Fail("upconv_kwargs", "must be a table of nm.UpConv arguments, got " + Describe(L, -1));
      }
      lua_pushnil(L);
      while (lua_next(L, -2) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING) {
          a.Fail("upconv_kwargs", "must have names as keys, got " + Describe(L, -2));
        }
        const std::string key = lua_tostring(L, -2);
        if (key == "parent" || key == "n_f" || key == "pool_shape") {
          a.Fail("upconv_kwargs", absl::StrFormat("must not set '%s'; %s chooses it", key, fn));
        }
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_settable(L, -5);  // the new argument table
      }
      lua_pop(L, 1);
    }
    A::PushHandle(L, IndexOf(L, lo.name));
    lua_setfield(L, -2, "parent");
    lua_pushinteger(L, n_f);
    lua_setfield(L, -2, "n_f");
    A::PushList(L, unpool, false);
    lua_setfield(L, -2, "pool_shape");
    lua_call(L, 1, 1);
    lo = PartOfHandle(L, a, -1);
    lua_pop(L, 1);
  }
  // 3. Crop the larger of the two symmetrically to the other's spatial size.
  std::vector<int64_t> crop_hi(nd, 0), crop_lo(nd, 0);
  for (int j = 0; j < nd; ++j) {
    const int64_t h = hi.shape.spatial_shape()[j], l = lo.shape.spatial_shape()[j];
    const int64_t diff = h - l;
    if (diff % 2 != 0) {
      a.Fail(absl::StrFormat(
          "'%s' (%s=%d) and '%s' (%s=%d) differ by %d voxels along %s, an odd number: they "
          "cannot be aligned by a symmetric crop",
          hi.name, AxisName(hi.shape, j), h, lo.name, AxisName(lo.shape, j), l, diff,
          AxisName(hi.shape, j)));
    }
    (diff > 0 ? crop_hi : crop_lo)[j] = std::abs(diff) / 2;
  }
  for (auto [node, crop] : {std::pair{&hi, &crop_hi}, {&lo, &crop_lo}}) {
    if (std::all_of(crop->begin(), crop->end(), [](int64_t c) { return c == 0; })) continue;
    v1::NodeSpec c;
    c.set_name("crop");
    c.add_inputs(node->name);
    for (int64_t v : *crop) c.mutable_crop()->add_crop(v);
    *node = RecordPart(L, a, std::move(c));
  }
  // 4. Concat (upsampled low-resolution channels first) or Add.
  v1::NodeSpec m;
  m.set_name(name);
  m.add_inputs(lo.name);
  m.add_inputs(hi.name);
  if (merge_mode == "add") {
    m.mutable_add();
  } else {
    m.mutable_concat()->set_axis("f");
  }
  return A::Record(L, a, std::move(m));
}

int UpConvMerge(lua_State* L) { return Merge(L, "nm.UpConvMerge"); }
int AutoMerge(lua_State* L) { return Merge(L, "nm.AutoMerge"); }

}  // namespace

NmFunctionList UpConvNodeFunctions() {
  return {{"UpConv", UpConv}, {"UpConvMerge", UpConvMerge}, {"AutoMerge", AutoMerge}};
}

}  // namespace elektronn::lua
