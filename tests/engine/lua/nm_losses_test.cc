// Job files with the losses family's nm functions (ELEKTRONN2's signatures, default names and
// errors), and a sigmoid + BinaryNLL model that the Trainer trains.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <string>

#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "engine/lua/job_file.h"
#include "engine/trainer/trainer.h"
#include "tests/support/nm_job.h"
#include "tests/support/tiny_job.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;

// MODEL is the body of create_model after `inp` (b, f=2, x=8, y=8) and `out` (a linear Conv).
constexpr const char* kCreateModel =
    R"(  local inp = nm.Input{{None, 2, 8, 8}, 'b,f,x,y', name = 'raw'}
  local out = nm.Conv{inp, 2, {3, 3}, activation_func = 'lin'}
  MODEL
)";

absl::StatusOr<v1::JobSpec> Load(const std::string& model) {
  return LoadJobSource(testing::NmTestJob(absl::StrReplaceAll(kCreateModel, {{"MODEL", model}}), 2),
                       "job.lua");
}

// The node called `name`; a test failure (and an empty node) when there is none.
const v1::NodeSpec& N(const v1::JobSpec& job, const std::string& name) {
  return testing::NodeNamed(job, name);
}

std::string ErrorOf(const std::string& model) {
  auto job = Load(model);
  EXPECT_FALSE(job.ok()) << model;
  return job.ok() ? "" : std::string(job.status().message());
}

TEST(NmLosses, EveryFunctionWithDefaultNamesAndArguments) {
  auto job = Load(R"(
  local t = nm.Input_like{out, name = 'target'}
  local sig = nm.Activation{out, 'sigmoid'}
  local bn = nm.BinaryNLL{sig, t, subtract_label_entropy = true}
  local se = nm.SquaredLoss{out, t, margin = 0.2, scale_correction = 2}
  local ab = nm.AbsLoss{out, t, None, 0.5}
  local g = nm.GaussianNLL{out, sig, t, sig_is_log = true}
  local b = nm.BetaNLL{sig, out, t}
  local ed = nm.EuclideanDistance{out, t}
  local rl = nm.RampLoss{out, t, margin = 0.3}
  local sl = nm.SobelizedLoss{out, t, loss_kwargs = {scale_correction = 1.5, name = 'sob'}}
  local sm = nm.Softmax{out}
  local lab = nm.Input_like{out, override_f = 1, name = 'labels'}
  local oh = nm.OneHot{lab, 2}
  local ew = nm.Input{{None, 1, 6, 6}, 'b,f,x,y', name = 'ew'}
  local ml = nm.Input{{None, 2}, 'b,f', name = 'ml'}
  local nll = nm.MultinoulliNLL{sm, lab, target_is_sparse = true, example_weights = ew,
                                weakness = 0.2, mask_class_not_present = ml}
  local bl = nm.BlockedMultinoulliNLL{sm, oh, 0.7}
  local c = nm.Classification{sm}
  local loss = nm.AggregateLoss{{bn, se, ab, g, b, ed, rl, sl, nll, bl}, name = 'loss'}
  return nm.designate_nodes{input_node = inp, target_node = t, loss_node = loss,
                            prediction_node = sig}
)");
  ASSERT_TRUE(job.ok()) << job.status();
  const v1::JobSpec& j = *job;
  EXPECT_TRUE(N(j, "binary_nll").binary_nll().subtract_label_entropy());
  EXPECT_FLOAT_EQ(N(j, "se").squared_loss().margin(), 0.2f);
  EXPECT_FLOAT_EQ(N(j, "se").squared_loss().scale_correction(), 2.f);
  EXPECT_FALSE(N(j, "absloss").abs_loss().has_margin());
  EXPECT_FLOAT_EQ(N(j, "absloss").abs_loss().scale_correction(), 0.5f);
  EXPECT_TRUE(N(j, "g_nll").gaussian_nll().sig_is_log());
  EXPECT_EQ(N(j, "beta_nll").inputs_size(), 3);
  EXPECT_TRUE(N(j, "se1").has_euclidean_distance());  // 'se' again, made unique
  EXPECT_FLOAT_EQ(N(j, "se2").ramp_loss().margin(), 0.3f);
  EXPECT_TRUE(N(j, "pred_sobel").has_sobel());
  EXPECT_TRUE(N(j, "target_sobel").has_sobel());
  EXPECT_EQ(absl::StrJoin(N(j, "sob").inputs(), ","), "pred_sobel,target_sobel");
  EXPECT_FLOAT_EQ(N(j, "sob").abs_loss().scale_correction(), 1.5f);
  EXPECT_EQ(N(j, "onehot").one_hot().n_class(), 2);
  const v1::NodeSpec* nll = &N(j, "nll");
  EXPECT_EQ(nll->inputs_size(), 4);  // pred, target, example_weights, mask_class_not_present
  EXPECT_TRUE(nll->multinoulli_nll().has_example_weights());
  EXPECT_FALSE(nll->multinoulli_nll().has_mask_class_labeled());
  EXPECT_TRUE(nll->multinoulli_nll().has_mask_class_not_present());
  EXPECT_FLOAT_EQ(nll->multinoulli_nll().weakness(), 0.2f);
  const v1::NodeSpec* bl = &N(j, "nll1");
  EXPECT_TRUE(bl->multinoulli_nll().blocked());
  EXPECT_FLOAT_EQ(bl->multinoulli_nll().blocking_factor(), 0.7f);
  EXPECT_TRUE(N(j, "cls").has_classification());
}

// class_weights as a node (ELEKTRONN2 takes a Node or a list): the input right after the
// target, before example_weights; a wrong length is an error naming the argument.
TEST(NmLosses, MultinoulliNllClassWeightsNode) {
  auto job = Load(R"(
  local sm = nm.Softmax{out}
  local lab = nm.Input_like{out, override_f = 1, name = 'labels'}
  local cw = nm.Input{{1, 2}, 'b,f', name = 'cw'}
  local ew = nm.Input{{None, 1, 6, 6}, 'b,f,x,y', name = 'ew'}
  local nll = nm.MultinoulliNLL{sm, lab, target_is_sparse = true, class_weights = cw,
                                example_weights = ew}
  local bl = nm.BlockedMultinoulliNLL{sm, lab, 0.5, true, cw}
  local loss = nm.AggregateLoss{{nll, bl}, name = 'loss'}
  return nm.designate_nodes{input_node = inp, target_node = lab, loss_node = loss,
                            prediction_node = sm}
)");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(absl::StrJoin(N(*job, "nll").inputs(), ","), "softmax,labels,cw,ew");
  EXPECT_TRUE(N(*job, "nll").multinoulli_nll().has_class_weights());
  EXPECT_EQ(N(*job, "nll").multinoulli_nll().class_weights_size(), 0);
  EXPECT_EQ(absl::StrJoin(N(*job, "nll1").inputs(), ","), "softmax,labels,cw");
  EXPECT_TRUE(N(*job, "nll1").multinoulli_nll().has_class_weights());
  const std::string e = ErrorOf(R"(
  local sm = nm.Softmax{out}
  local lab = nm.Input_like{out, override_f = 1, name = 'labels'}
  local cw = nm.Input{{1, 3}, 'b,f', name = 'cw'}
  nm.MultinoulliNLL{sm, lab, target_is_sparse = true, class_weights = cw}
)");
  EXPECT_NE(e.find("class_weights"), std::string::npos) << e;
  EXPECT_NE(e.find("2 values"), std::string::npos) << e;
}

TEST(NmLosses, BadArgumentsNameFunctionArgumentAndValue) {
  const std::string pre = "local t = nm.Input_like{out, name = 'target'}\n";
  std::string e = ErrorOf(pre + "nm.SquaredLoss{out, t, margin = -1}");
  EXPECT_NE(e.find("nm.SquaredLoss argument 'margin'"), std::string::npos) << e;
  EXPECT_NE(e.find("-1"), std::string::npos) << e;
  e = ErrorOf(pre + "nm.SobelizedLoss{out, t, loss_type = 'mnll'}");
  EXPECT_NE(e.find("loss_type"), std::string::npos) << e;
  EXPECT_NE(e.find("mnll"), std::string::npos) << e;
  e = ErrorOf(pre + "nm.SobelizedLoss{out, t, loss_kwargs = {marginn = 1}}");
  EXPECT_NE(e.find("marginn"), std::string::npos) << e;
  e = ErrorOf(pre + "nm.OneHot{t, 3, axis = 'x'}");
  EXPECT_NE(e.find("axis"), std::string::npos) << e;
  e = ErrorOf(pre + "local sm = nm.Softmax{out}\nnm.MultinoulliNLL{sm, t, weakness = 1.5}");
  EXPECT_NE(e.find("weakness"), std::string::npos) << e;
  // Shape errors come from the node, naming it and the mismatching input.
  e = ErrorOf(
      "local t = nm.Input{{None, 2, 5, 5}, 'b,f,x,y', name = 't'}\n"
      "nm.BinaryNLL{out, t}");
  EXPECT_NE(e.find("binary_nll"), std::string::npos) << e;
  EXPECT_NE(e.find("target"), std::string::npos) << e;
}

// A sigmoid output with BinaryNLL (no Softmax anywhere) trains: the loss is finite and falls,
// and the error metric thresholds the sigmoid at 0.5.
TEST(NmLosses, SigmoidBinaryNllModelTrains) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("elk_bnll_" + std::to_string(getpid()));
  fs::remove_all(dir);
  testing::TinyJobOptions o;
  o.save_name = "bnll";
  o.n_steps = 40;
  o.history_freq = 10;
  o.optimiser_params = "lr = 0.05, mom = 0.9";
  auto base = testing::MakeTinyJob(dir, o);
  ASSERT_TRUE(base.ok()) << base.status();
  std::string src = base->job_file_source();
  const size_t cut = src.find("function create_model()");
  ASSERT_NE(cut, std::string::npos);
  src = src.substr(0, cut) + R"(function create_model()
  local inp = nm.Input{{None, 1, 3, 17, 17}, 'b,f,z,x,y', name = 'raw'}
  local out = nm.Conv{inp, 4, {1, 3, 3}}
  local prob = nm.Conv{out, 1, {1, 1, 1}, activation_func = 'sigmoid', name = 'prob'}
  local target = nm.Input_like{prob, name = 'target'}
  local bnll = nm.BinaryNLL{prob, target}
  local loss = nm.AggregateLoss{bnll, name = 'loss'}
  local errors = nm.Errors{prob, target}
  return nm.designate_nodes{input_node = inp, target_node = target, loss_node = loss,
                            prediction_node = prob, prediction_ext = {loss, errors, prob}}
end
)";
  auto job = LoadJobSource(src, "bnll.lua");
  ASSERT_TRUE(job.ok()) << job.status();
  auto backend = kernels::CreateCpuBackend();
  TrainerOptions opt;
  opt.console = false;
  auto trainer = Trainer::Create(*job, backend.get(), opt);
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  absl::StatusOr<StopReason> r = (*trainer)->Run();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, StopReason::kSteps);
  const auto& h = (*trainer)->history();
  ASSERT_GE(h.size(), 2u);
  for (const auto& rec : h) {
    EXPECT_TRUE(std::isfinite(rec.train_loss)) << rec.step;
    EXPECT_GE(rec.train_err, 0.0);  // percent, as ELEKTRONN2 reports it
    EXPECT_LE(rec.train_err, 100.0);
  }
  EXPECT_LT(h.back().train_loss, h.front().train_loss);
  EXPECT_LT(h.back().train_err, h.front().train_err);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace elektronn
