// img-scalar end to end: examples/demo_patches.lua (BatchCreatorImage with a target node without
// spatial axes, per-slice labels of a 2-D patch stack) trains a few dozen steps on generated demo
// patches through the trainer, and its loss falls.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
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

std::string ReadExample(const std::string& rel) {
  for (fs::path p = fs::read_symlink("/proc/self/exe"); !p.empty() && p != p.root_path();
       p = p.parent_path()) {
    if (fs::exists(p / rel)) {
      std::ifstream f(p / rel);
      std::stringstream s;
      s << f.rdbuf();
      return s.str();
    }
  }
  return "";
}

TEST(ImgScalarTraining, DemoPatchesExampleTrains) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("elk_scalar_" + std::to_string(getpid()));
  fs::remove_all(dir);
  DemoDataOptions o;
  o.num_cubes = 3;
  o.shape = {8, 64, 64};
  o.preview_shape = {4, 16, 16};
  o.patches_per_cube = 200;
  ASSERT_TRUE(MakeDemoData((dir / "demo-data").string(), o).ok());
  // The stacks and labels as the example reads them: (n, 23, 23) raw, (n, 1) labels, half 1.
  auto lab = ReadH5Array((dir / "demo-data/patches_0.h5").string(), "lab");
  ASSERT_TRUE(lab.ok()) << lab.status();
  ASSERT_EQ(lab->shape, (std::vector<int64_t>{200, 1}));
  double ones = 0;
  for (double v : lab->data) ones += v;
  EXPECT_NEAR(ones, 100, 10);

  const std::string example = ReadExample("examples/demo_patches.lua");
  ASSERT_FALSE(example.empty()) << "examples/demo_patches.lua not found above the test binary";
  const std::string src = absl::StrReplaceAll(
      example,
      {{"save_path = '~/elektronn_training/'", "save_path = '" + (dir / "runs").string() + "'"},
       {"n_steps = 3000", "n_steps = 80"},
       {"history_freq = 250", "history_freq = 40"},
       {"monitor_batch_size = 100", "monitor_batch_size = 40"}});
  auto job = LoadJobSource(src, "demo_patches.lua");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->training().batch_creator_image().border_mode(), "crop");
  TrainerOptions opt;
  opt.console = false;
  opt.overwrite = true;
  opt.job_dir = dir.string();
  auto backend = kernels::CreateCpuBackend();
  auto t = Trainer::Create(*job, backend.get(), opt);
  ASSERT_TRUE(t.ok()) << t.status();
  auto r = (*t)->Run();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, StopReason::kSteps);
  const auto& h = (*t)->history();
  ASSERT_GE(h.size(), 2u);
  for (const HistoryRecord& rec : h) {
    std::printf("step %lld: train loss %.4f, valid loss %.4f\n", static_cast<long long>(rec.step),
                rec.train_loss, rec.valid_loss);
    EXPECT_TRUE(std::isfinite(rec.train_loss));
    EXPECT_TRUE(std::isfinite(rec.valid_loss));
  }
  // Two balanced classes: log(2) for guessing; the centre pixel's darkness tells a lot.
  EXPECT_LT(h.back().train_loss, 0.9 * std::log(2.0));
  EXPECT_LT(h.back().valid_loss, 0.9 * std::log(2.0));
  // Labels that ignore the patch (e.g. one constant class) would be learnt to a loss near 0.
  EXPECT_GT(h.back().train_loss, 0.05);
  EXPECT_GT(h.back().valid_loss, 0.05);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace elektronn
