// The `nm` functions of the losses family (reference §2.13), with ELEKTRONN2's signatures and
// default names: BinaryNLL, GaussianNLL, BetaNLL, SquaredLoss, AbsLoss, EuclideanDistance,
// RampLoss, SobelizedLoss, BlockedMultinoulliNLL, OneHot, Classification. (MultinoulliNLL itself
// is in nm_core_nodes.cc.)
#include "engine/lua/internal/nm_args.h"

namespace elektronn::lua {
namespace {

using A = NmAccess;

int BinaryNLL(lua_State* L) {
  Args a(L, "nm.BinaryNLL", {"pred", "target", "subtract_label_entropy", "name", "print_repr"});
  v1::NodeSpec n = NewNode(a, "binary_nll");
  n.add_inputs(A::NodeName(a, "pred"));
  n.add_inputs(A::NodeName(a, "target"));
  n.mutable_binary_nll()->set_subtract_label_entropy(a.Bool("subtract_label_entropy", false));
  return A::Record(L, a, std::move(n));
}

int GaussianNLL(lua_State* L) {
  Args a(L, "nm.GaussianNLL", {"mu", "sig", "target", "sig_is_log", "name", "print_repr"});
  v1::NodeSpec n = NewNode(a, "g_nll");
  n.add_inputs(A::NodeName(a, "mu"));
  n.add_inputs(A::NodeName(a, "sig"));
  n.add_inputs(A::NodeName(a, "target"));
  n.mutable_gaussian_nll()->set_sig_is_log(a.Bool("sig_is_log", false));
  return A::Record(L, a, std::move(n));
}

int BetaNLL(lua_State* L) {
  Args a(L, "nm.BetaNLL", {"mode", "concentration", "target", "name", "print_repr"});
  v1::NodeSpec n = NewNode(a, "beta_nll");
  n.add_inputs(A::NodeName(a, "mode"));
  n.add_inputs(A::NodeName(a, "concentration"));
  n.add_inputs(A::NodeName(a, "target"));
  n.mutable_beta_nll();
  return A::Record(L, a, std::move(n));
}

// margin / scale_correction: None or 0 mean "off" (ELEKTRONN2 tests `if margin:`).
void ReadRegression(const Args& a, v1::RegressionLossOp* op) {
  for (const char* p : {"margin", "scale_correction"}) {
    const double v = a.Number(p, 0);
    if (v < 0) a.Fail(p, absl::StrFormat("must be >= 0 (or None), got %g", v));
  }
  if (const double m = a.Number("margin", 0); m != 0) op->set_margin(static_cast<float>(m));
  if (const double c = a.Number("scale_correction", 0); c != 0) {
    op->set_scale_correction(static_cast<float>(c));
  }
}

int SquaredLoss(lua_State* L) {
  Args a(L, "nm.SquaredLoss",
         {"pred", "target", "margin", "scale_correction", "name", "print_repr"});
  v1::NodeSpec n = NewNode(a, "se");
  n.add_inputs(A::NodeName(a, "pred"));
  n.add_inputs(A::NodeName(a, "target"));
  ReadRegression(a, n.mutable_squared_loss());
  return A::Record(L, a, std::move(n));
}

int AbsLoss(lua_State* L) {
  Args a(L, "nm.AbsLoss", {"pred", "target", "margin", "scale_correction", "name", "print_repr"});
  v1::NodeSpec n = NewNode(a, "absloss");
  n.add_inputs(A::NodeName(a, "pred"));
  n.add_inputs(A::NodeName(a, "target"));
  ReadRegression(a, n.mutable_abs_loss());
  return A::Record(L, a, std::move(n));
}

int EuclideanDistance(lua_State* L) {
  Args a(L, "nm.EuclideanDistance", {"pred", "target", "name", "print_repr"});
  v1::NodeSpec n = NewNode(a, "se");
  n.add_inputs(A::NodeName(a, "pred"));
  n.add_inputs(A::NodeName(a, "target"));
  n.mutable_euclidean_distance();
  return A::Record(L, a, std::move(n));
}

// ELEKTRONN2's positional order: (d_low, d_big, name, print_repr, margin).
int RampLoss(lua_State* L) {
  Args a(L, "nm.RampLoss", {"d_low", "d_big", "name", "print_repr", "margin"});
  v1::NodeSpec n = NewNode(a, "se");
  n.add_inputs(A::NodeName(a, "d_low"));
  n.add_inputs(A::NodeName(a, "d_big"));
  n.mutable_ramp_loss()->set_margin(static_cast<float>(a.Number("margin", 0)));
  return A::Record(L, a, std::move(n));
}

// A function in ELEKTRONN2 (no name of its own): Sobel nodes 'pred_sobel' and 'target_sobel',
// then AbsLoss(pred_sobel, target_sobel, **loss_kwargs). Only loss_type 'abs' exists there.
int SobelizedLoss(lua_State* L) {
  Args a(L, "nm.SobelizedLoss", {"pred", "target", "loss_type", "loss_kwargs"});
  NmAccess::RequireModelPhase(L, a.fn());
  const std::string pred = A::NodeName(a, "pred");
  const std::string target = A::NodeName(a, "target");
  const std::string type = a.String("loss_type", "abs");
  if (type != "abs") {
    a.Fail("loss_type",
           absl::StrFormat("must be 'abs' (the only one ELEKTRONN2 has), got '%s'", type));
  }
  v1::NodeSpec loss;
  loss.set_name("absloss");
  loss.mutable_abs_loss();
  if (a.Present("loss_kwargs")) {
    a.Push("loss_kwargs");
    if (!lua_istable(L, -1)) {
      a.Fail("loss_kwargs", "must be a table of AbsLoss arguments, got " + Describe(L, -1));
    }
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
      const std::string key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
      if (key == "margin" || key == "scale_correction") {
        auto v = ReadNumber(L, -1);
        if (!v.ok() || *v < 0) {
          a.Fail("loss_kwargs",
                 absl::StrFormat("'%s' must be a number >= 0, got %s", key, Describe(L, -1)));
        }
        if (key == "margin" && *v != 0) loss.mutable_abs_loss()->set_margin(*v);
        if (key == "scale_correction" && *v != 0) {
          loss.mutable_abs_loss()->set_scale_correction(*v);
        }
      } else if (key == "name") {
        auto v = ReadString(L, -1);
        if (!v.ok() || v->empty()) a.Fail("loss_kwargs", "'name' must be a non-empty string");
        loss.set_name(*v);
      } else if (key != "print_repr") {
        a.Fail("loss_kwargs", absl::StrFormat("has '%s'; AbsLoss takes margin, "
                                              "scale_correction, name",
                                              key.empty() ? Describe(L, -2) : key));
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  for (const auto& [input, name] : {std::pair{pred, "pred_sobel"}, {target, "target_sobel"}}) {
    v1::NodeSpec s;
    s.set_name(name);
    s.add_inputs(input);
    s.mutable_sobel();
    A::Record(L, a, std::move(s));
    loss.add_inputs(Self(L)->spec().nodes(Self(L)->spec().nodes_size() - 1).name());
    lua_pop(L, 1);
  }
  return A::Record(L, a, std::move(loss));
}

int BlockedMultinoulliNLL(lua_State* L) {
  Args a(L, "nm.BlockedMultinoulliNLL",
         {"pred", "target", "blocking_factor", "target_is_sparse", "class_weights",
          "example_weights", "mask_class_labeled", "mask_class_not_present", "name", "print_repr"});
  v1::NodeSpec n = NewNode(a, "nll");
  n.add_inputs(A::NodeName(a, "pred"));
  n.add_inputs(A::NodeName(a, "target"));
  v1::MultinoulliNLLOp* op = n.mutable_multinoulli_nll();
  op->set_blocked(true);
  op->set_blocking_factor(static_cast<float>(a.Number("blocking_factor", 0.5)));
  op->set_target_is_sparse(a.Bool("target_is_sparse", false));
  // class_weights: a list of numbers, or a node (ELEKTRONN2 takes both); the node is the input
  // right after the target.
  if (A::IsNode(a, "class_weights")) {
    op->set_has_class_weights(true);
    n.add_inputs(A::NodeName(a, "class_weights"));
  } else {
    for (float w : a.Floats("class_weights")) op->add_class_weights(w);
  }
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

int OneHot(lua_State* L) {
  Args a(L, "nm.OneHot", {"target", "n_class", "axis", "name", "print_repr"});
  v1::NodeSpec n = NewNode(a, "onehot");
  n.add_inputs(A::NodeName(a, "target"));
  n.mutable_one_hot()->set_n_class(a.RequiredInt("n_class", 1));
  // ELEKTRONN2 accepts `axis` but always uses 'f'; anything else would silently differ.
  if (const std::string axis = a.String("axis", "f"); axis != "f") {
    a.Fail("axis", absl::StrFormat("must be 'f' (ELEKTRONN2 always one-hot encodes along 'f'), "
                                   "got '%s'",
                                   axis));
  }
  return A::Record(L, a, std::move(n));
}

int Classification(lua_State* L) {
  Args a(L, "nm.Classification", {"pred", "n_class", "n_indep", "name", "print_repr"});
  v1::NodeSpec n = NewNode(a, "cls");
  n.add_inputs(A::NodeName(a, "pred"));
  n.mutable_classification()->set_n_class(a.IntOrAuto("n_class"));
  n.mutable_classification()->set_n_indep(a.IntOrAuto("n_indep"));
  return A::Record(L, a, std::move(n));
}

}  // namespace

NmFunctionList LossesNodeFunctions() {
  return {{"BinaryNLL", BinaryNLL},
          {"GaussianNLL", GaussianNLL},
          {"BetaNLL", BetaNLL},
          {"SquaredLoss", SquaredLoss},
          {"AbsLoss", AbsLoss},
          {"EuclideanDistance", EuclideanDistance},
          {"RampLoss", RampLoss},
          {"SobelizedLoss", SobelizedLoss},
          {"BlockedMultinoulliNLL", BlockedMultinoulliNLL},
          {"OneHot", OneHot},
          {"Classification", Classification}};
}

}  // namespace elektronn::lua
