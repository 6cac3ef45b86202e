// Data larger than memory, end to end through the trainer (issue 15): a job file whose raw cubes
// are KNOSSOS datasets (d_files key 'knossos', max_ram, n_preload) and whose HDF5 labels are
// streamed (h5stream) trains exactly as the same job does from the HDF5 files in memory.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "engine/data/demo_data.h"
#include "engine/data/h5_volume.h"
#include "engine/io/knossos.h"
#include "engine/lua/job_file.h"
#include "engine/trainer/trainer.h"
#include "kernels/backend.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;

constexpr const char* kJob = R"(
save_path = 'SAVE'
save_name = 'kn'
data_class = 'BatchCreatorImage'
data_init_kwargs = {d_path = 'data/', l_path = 'data/', DATA}
data_batch_args = {warp = 0.5}
n_steps = 60
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
  out = nm.Conv{out, 2, {1, 1, 1}, activation_func = 'lin'}
  local probs = nm.Softmax{out}
  local target = nm.Input_like{probs, override_f = 1, name = 'target'}
  local loss = nm.AggregateLoss{nm.MultinoulliNLL{probs, target, target_is_sparse = true},
                                name = 'loss'}
  return nm.designate_nodes{input_node = inp, target_node = target, loss_node = loss,
                            prediction_node = probs}
end
)";

class KnossosTraining : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("elk_knossos_train_" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "data");
    DemoDataOptions o;
    o.num_cubes = 2;
    o.shape = {12, 160, 160};  // 2 x 2 KNOSSOS cubes in x and y
    o.preview_shape = {4, 16, 16};
    ASSERT_TRUE(MakeDemoData((dir_ / "data").string(), o).ok());
    // The demo's raw cubes again as KNOSSOS datasets (uint8, the same voxels).
    for (int i = 0; i < 2; ++i) {
      auto raw = ReadH5Volume((dir_ / absl::StrCat("data/raw_", i, ".h5")).string(), "raw", false,
                              H5Values::kLabels);
      ASSERT_TRUE(raw.ok()) << raw.status();
      const Volume& v = *raw;
      ASSERT_TRUE(WriteKnossosDataset((dir_ / absl::StrCat("data/em_", i)).string(),
                                      absl::StrCat("em", i), {v.y, v.x, v.z},
                                      [&](int64_t x, int64_t y, int64_t z) {
                                        return static_cast<uint8_t>(v.at(0, z, y, x));
                                      })
                      .ok());
    }
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::vector<HistoryRecord> Train(const std::string& data) {
    const std::string src =
        absl::StrReplaceAll(kJob, {{"SAVE", (dir_ / "runs").string()}, {"DATA", data}});
    auto job = LoadJobSource(src, "kn.lua");
    EXPECT_TRUE(job.ok()) << job.status();
    if (!job.ok()) return {};
    TrainerOptions opt;
    opt.console = false;
    opt.overwrite = true;
    opt.job_dir = dir_.string();
    auto backend = kernels::CreateCpuBackend();
    auto t = Trainer::Create(*job, backend.get(), opt);
    EXPECT_TRUE(t.ok()) << t.status();
    if (!t.ok()) return {};
    auto r = (*t)->Run();
    EXPECT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(*r, StopReason::kSteps);
    return (*t)->history();
  }

  fs::path dir_;
};

TEST_F(KnossosTraining, TrainsFromKnossosRawAndStreamedLabels) {
  const auto h = Train(
      "d_files = {{'em_0', 'knossos'}, {'em_1', 'knossos'}}, "
      "l_files = {{'barrier_0.h5', 'lab'}, {'barrier_1.h5', 'lab'}}, valid_cubes = {1}, "
      "h5stream = true, max_ram = 20, n_preload = 1");
  ASSERT_GE(h.size(), 2u);
  for (const HistoryRecord& rec : h) {
    std::printf("step %lld: train loss %.4f, valid loss %.4f\n", static_cast<long long>(rec.step),
                rec.train_loss, rec.valid_loss);
    EXPECT_TRUE(std::isfinite(rec.train_loss));
    EXPECT_TRUE(std::isfinite(rec.valid_loss));
  }
  EXPECT_LT(h.back().train_loss, h.front().train_loss);
  EXPECT_LT(h.back().train_loss, std::log(2.0));
  // Batches depend on the seed only: the same job from the HDF5 files in memory trains the same
  // way (warped patches differ by float rounding only).
  const auto ref = Train(
      "d_files = {{'raw_0.h5', 'raw'}, {'raw_1.h5', 'raw'}}, "
      "l_files = {{'barrier_0.h5', 'lab'}, {'barrier_1.h5', 'lab'}}, valid_cubes = {1}");
  ASSERT_EQ(ref.size(), h.size());
  for (size_t i = 0; i < h.size(); ++i) {
    EXPECT_NEAR(h[i].train_loss, ref[i].train_loss, 1e-3) << "record " << i;
    EXPECT_NEAR(h[i].valid_loss, ref[i].valid_loss, 1e-3) << "record " << i;
  }
}

TEST_F(KnossosTraining, JobFileKeysAreChecked) {
  const std::string src = absl::StrReplaceAll(
      kJob, {{"SAVE", (dir_ / "runs").string()},
             {"DATA",
              "d_files = {{'em_0', 'knossos'}}, l_files = {{'barrier_0.h5', 'lab'}}, "
              "n_preload = -1"}});
  auto job = LoadJobSource(src, "kn.lua");
  ASSERT_FALSE(job.ok());
  EXPECT_NE(job.status().message().find("n_preload"), std::string::npos) << job.status();
  const std::string big = absl::StrReplaceAll(
      kJob, {{"SAVE", (dir_ / "runs").string()},
             {"DATA",
              "d_files = {{'em_0', 'knossos'}}, l_files = {{'barrier_0.h5', 'lab'}}, "
              "n_preload = 17"}});
  job = LoadJobSource(big, "kn.lua");
  ASSERT_FALSE(job.ok());
  EXPECT_NE(job.status().message().find("is 17; valid: 0 to 16 cubes"), std::string::npos)
      << job.status();
}

}  // namespace
}  // namespace elektronn
