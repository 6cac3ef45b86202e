// The `nm` functions of the first node families: sources, Conv, Pool, Perceptron, element-wise
// and structural nodes, Softmax, MultinoulliNLL, AggregateLoss, Errors, FragmentsToDense.
#include "engine/lua/internal/nm_args.h"

namespace elektronn::lua {
namespace {

using A = NmAccess;

// batch_norm: batch_normalisation = 'train' | 'fadeout' | 'predict' | true | false (reference
// §2.4); true means 'train'. 'fadeout' starts with gradnet_rate 1 (the hyper-parameter
// gradnet_rates changes it).
v1::BatchNormMode BatchNormArg(const Args& a) {
  const std::string p = "batch_normalisation";
  if (!a.Present(p)) return v1::BN_OFF;
  a.Push(p);
  const int type = lua_type(a.L(), -1);
  const bool flag = type == LUA_TBOOLEAN && lua_toboolean(a.L(), -1);
  lua_pop(a.L(), 1);
  if (type == LUA_TBOOLEAN) return flag ? v1::BN_TRAIN : v1::BN_OFF;
  if (type != LUA_TSTRING) a.Fail(p, "must be 'train', 'fadeout', 'predict', true or false");
  return a.Choice<v1::BatchNormMode>(
      p, {{"train", v1::BN_TRAIN}, {"fadeout", v1::BN_FADEOUT}, {"predict", v1::BN_PREDICT}},
      v1::BN_OFF);
}

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
  const int64_t maxout = a.MaxoutK("activation_func");  // structural family: 'maxout <k>'
  c->set_activation(maxout > 0 ? v1::LIN : a.Activation("activation_func", v1::RELU));
  c->set_mfp(a.Bool("mfp", false));
  c->set_batch_normalisation(BatchNormArg(a));
  c->set_dropout_rate(a.Rate("dropout_rate"));
  for (const char* p : {"w", "b", "gamma", "mean", "std"}) a.Unsupported(p, kNoWeights);
  a.Unsupported("gradnet_mode", kNoGradnet);
  c->set_invalidate_fov(a.Bool("invalidate_fov", false));
  if (maxout > 0) return RecordWithMaxout(L, a, std::move(n), maxout);
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
  const int64_t maxout = a.MaxoutK("activation_func");  // structural family: 'maxout <k>'
  p->set_activation(maxout > 0 ? v1::LIN : a.Activation("activation_func", v1::RELU));
  p->set_flatten(a.Bool("flatten", false));
  p->set_batch_normalisation(BatchNormArg(a));
  p->set_dropout_rate(a.Rate("dropout_rate"));
  for (const char* q : {"w", "b", "gamma", "mean", "std"}) a.Unsupported(q, kNoWeights);
  a.Unsupported("gradnet_mode", kNoGradnet);
  if (maxout > 0) return RecordWithMaxout(L, a, std::move(n), maxout);
  return A::Record(L, a, std::move(n));
}
int PerceptronFn(lua_State* L) { return Perceptron(L, "nm.Perceptron"); }
int DotFn(lua_State* L) { return Perceptron(L, "nm.Dot"); }

int ActivationFn(lua_State* L) {
  Args a(L, "nm.Activation", {"parent", "activation_func", "name", "print_repr"});
  v1::NodeSpec n = NewNode(a, "activation");
  n.add_inputs(A::NodeName(a, "parent"));
  a.Require("activation_func", "an activation name such as 'relu'");
  if (const int64_t k = a.MaxoutK("activation_func"); k > 0) {  // structural family
    n.mutable_maxout()->set_k(k);
    return A::Record(L, a, std::move(n));
  }
  n.mutable_activation()->set_activation(a.Activation("activation_func", v1::RELU));
  return A::Record(L, a, std::move(n));
}

int Softmax(lua_State* L) {
  Args a(L, "nm.Softmax", {"parent", "n_class", "n_indep", "name", "print_repr"});
  v1::NodeSpec n = NewNode(a, "softmax");
  n.add_inputs(A::NodeName(a, "parent"));
  n.mutable_softmax()->set_n_class(a.IntOrAuto("n_class"));
  n.mutable_softmax()->set_n_indep(a.Int("n_indep", 0, 1));  // any n_indep >= 1; absent: 1
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
  // class_weights: a list of numbers, or a node (ELEKTRONN2 takes both); the node is the input
  // right after the target.
  if (A::IsNode(a, "class_weights")) {
    op->set_has_class_weights(true);
    n.add_inputs(A::NodeName(a, "class_weights"));
  } else {
    for (float w : a.Floats("class_weights")) op->add_class_weights(w);
  }
  // example_weights (b, spatial...) and the lazy-label masks (b, f) are node inputs, appended in
  // this order after (pred, target); see engine/nodes/losses.cc.
  const double weakness = a.Number("weakness", 0);
  if (!(weakness >= 0 && weakness < 1)) {
    a.Fail("weakness", absl::StrFormat("must be in [0, 1), got %g", weakness));
  }
  op->set_weakness(static_cast<float>(weakness));
  if (a.Present("example_weights")) {
    op->set_has_example_weights(true);
    n.add_inputs(A::NodeName(a, "example_weights"));
  }
  if (a.Present("mask_class_labeled")) {
    op->set_has_mask_class_labeled(true);
    n.add_inputs(A::NodeName(a, "mask_class_labeled"));
  }
  if (a.Present("mask_class_not_present")) {
    op->set_has_mask_class_not_present(true);
    n.add_inputs(A::NodeName(a, "mask_class_not_present"));
  }
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

}  // namespace

NmFunctionList CoreNodeFunctions() {
  return {{"Input", Input},
          {"Input_like", InputLike},
          {"Conv", Conv},
          {"Pool", Pool},
          {"Perceptron", PerceptronFn},
          {"Dot", DotFn},
          {"Activation", ActivationFn},
          {"Softmax", Softmax},
          {"Concat", Concat},
          {"Crop", Crop},
          {"Add", Add},
          {"MultinoulliNLL", MultinoulliNLL},
          {"AggregateLoss", AggregateLoss},
          {"Errors", Errors},
          {"FragmentsToDense", FragmentsToDense}};
}

}  // namespace elektronn::lua
