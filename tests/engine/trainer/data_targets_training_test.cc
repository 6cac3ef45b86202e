// Data family, end to end through the trainer: affinity targets cut from the demo data's cell
// IDs train a 3-edge network, and lazy-label masks reach the model's mask inputs.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>

#include "absl/strings/str_replace.h"
#include "engine/data/demo_data.h"
#include "engine/data/h5_volume.h"
#include "engine/lua/job_file.h"
#include "engine/trainer/trainer.h"
#include "kernels/backend.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;

// Three independent 2-class softmaxes, one per affinity edge (sparse targets 0/1, -666 =
// ignored as any negative label); a sigmoid + BinaryNLL head would take the same targets.
constexpr const char* kJob = R"(
save_path = 'SAVE'
save_name = 'aff'
data_class = 'BatchCreatorImage'
data_init_kwargs = {d_path = 'data/', l_path = 'data/',
  d_files = {{'raw_0.h5', 'raw'}, {'raw_1.h5', 'raw'}},
  l_files = {{'ids_0.h5', 'lab'}, {'ids_1.h5', 'lab'}}, valid_cubes = {1}}
data_batch_args = {warp = 0.5, affinities = 'affinity', nga_blur_noise_probability = 0.3,
  noisy_random_erasing_probability = 0.3,
  noisy_random_erasing_args = {num_blob_range = {1, 3}, blob_size_range = {2, 5}}EXTRA_ARGS}
n_steps = 40
max_runtime = 3600
history_freq = 20
monitor_batch_size = 2
optimiser = 'Adam'
optimiser_params = {lr = 0.005, mom = 0.9, beta2 = 0.999}
batch_size = 2
function create_model()
  local inp = nm.Input{{None, 1, 5, 25, 25}, 'b,f,z,x,y', name = 'raw'}
  local out = nm.Conv{inp, 8, {1, 5, 5}}
  out = nm.Conv{out, 8, {3, 3, 3}}
  out = nm.Conv{out, 6, {1, 1, 1}, activation_func = 'lin'}
  local probs = nm.Softmax{out, n_indep = 3}
  local target = nm.Input_like{probs, override_f = 3, name = 'target'}
  local loss = nm.AggregateLoss{nm.MultinoulliNLL{probs, target, target_is_sparse = true},
                                name = 'loss'}
  EXTRA_MODEL
  return nm.designate_nodes{input_node = inp, target_node = target, loss_node = loss,
                            prediction_node = probs}
end
)";

class DataTargetsTraining : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("elk_aff_" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "data");
    DemoDataOptions o;
    o.num_cubes = 2;
    o.shape = {12, 64, 64};
    o.preview_shape = {4, 16, 16};
    ASSERT_TRUE(MakeDemoData((dir_ / "data").string(), o).ok());
  }
  void TearDown() override { fs::remove_all(dir_); }

  absl::StatusOr<std::unique_ptr<Trainer>> Make(const std::string& extra_args,
                                                const std::string& extra_model) {
    const std::string src = absl::StrReplaceAll(kJob, {{"SAVE", (dir_ / "runs").string()},
                                                       {"EXTRA_ARGS", extra_args},
                                                       {"EXTRA_MODEL", extra_model}});
    auto job = LoadJobSource(src, "aff.lua");
    if (!job.ok()) return job.status();
    TrainerOptions opt;
    opt.console = false;
    opt.overwrite = true;
    opt.job_dir = dir_.string();
    backend_ = kernels::CreateCpuBackend();
    return Trainer::Create(*job, backend_.get(), opt);
  }

  fs::path dir_;
  std::unique_ptr<kernels::Backend> backend_;
};

TEST_F(DataTargetsTraining, AffinityNetworkTrainsOnDemoIds) {
  auto t = Make("", "");
  ASSERT_TRUE(t.ok()) << t.status();
  auto r = (*t)->Run();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, StopReason::kSteps);
  const auto& h = (*t)->history();
  ASSERT_GE(h.size(), 2u);
  for (const HistoryRecord& rec : h) {
    EXPECT_TRUE(std::isfinite(rec.train_loss));
    EXPECT_TRUE(std::isfinite(rec.valid_loss));
  }
  for (const HistoryRecord& rec : h) {
    std::printf("step %lld: train loss %.4f, valid loss %.4f\n", static_cast<long long>(rec.step),
                rec.train_loss, rec.valid_loss);
  }
  // log(2) per edge at the start; learning the obvious (most edges inside cells are 1) but not
  // everything: a loss of 0 would mean that every target was ignored.
  EXPECT_LT(h.back().train_loss, std::log(2.0));
  EXPECT_GT(h.back().train_loss, 0.01);
  EXPECT_LT(h.back().train_loss, h.front().train_loss);
}

// The batch side of lazy labels: each cube's ll_mask flags arrive in the model's mask inputs
// (the loss that consumes them is MultinoulliNLL's mask_class_labeled / mask_class_not_present).
TEST_F(DataTargetsTraining, LazyLabelMasksReachTheModelInputs) {
  ASSERT_TRUE(
      WriteH5Int16Array((dir_ / "data/ids_0.h5").string(), "ll_mask", {{2, 2}, {1, 0, 0, 1}}).ok());
  ASSERT_TRUE(
      WriteH5Int16Array((dir_ / "data/ids_1.h5").string(), "ll_mask", {{2, 2}, {0, 1, 1, 0}}).ok());
  auto t = Make(", ret_ll_mask = true",
                "nm.Input{{None, 2}, 'b,f', name = 'mask_class_labeled'}\n"
                "  nm.Input{{None, 2}, 'b,f', name = 'mask_class_not_present'}");
  ASSERT_TRUE(t.ok()) << t.status();
  auto r = (*t)->Run();
  ASSERT_TRUE(r.ok()) << r.status();
  auto labeled = (*t)->network().Output("mask_class_labeled");
  auto absent = (*t)->network().Output("mask_class_not_present");
  ASSERT_TRUE(labeled.ok() && absent.ok());
  ASSERT_EQ(labeled->size(), 4u);
  for (int b = 0; b < 2; ++b) {
    const std::vector<float> l(labeled->begin() + 2 * b, labeled->begin() + 2 * b + 2);
    const std::vector<float> n(absent->begin() + 2 * b, absent->begin() + 2 * b + 2);
    // The run ends with the monitoring pass on the validation cube (cube 1).
    EXPECT_EQ(l, (std::vector<float>{0, 1})) << "example " << b;
    EXPECT_EQ(n, (std::vector<float>{1, 0})) << "example " << b;
  }
}

TEST_F(DataTargetsTraining, LazyLabelMasksNeedTheirInputNodes) {
  auto t = Make(", ret_ll_mask = true", "");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("no input node named 'mask_class_labeled'"),
            std::string::npos)
      << t.status();
}

}  // namespace
}  // namespace elektronn
