// bf16 mixed precision (issue 14): neuro3d_lite trained in fp32 and in bf16 for the same steps on
// the same generated data. Needs AVX512_BF16: ctest label `bf16` (ctest -LE bf16 elsewhere).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <vector>

#include "engine/data/demo_data.h"
#include "engine/lua/job_file.h"
#include "engine/trainer/trainer.h"
#include "kernels/backend.h"
#include "tests/support/examples.h"
#include "tests/support/train_losses.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;

using testing::ExamplePath;

// Losses of `steps` steps of neuro3d_lite at a reduced patch, in `precision`.
std::vector<double> TrainNeuro3dLite(const fs::path& dir, const std::string& precision, int steps) {
  auto job = LoadJobFile(ExamplePath("neuro3d_lite.lua"));
  EXPECT_TRUE(job.ok()) << job.status();
  if (!job.ok()) return {};
  job->mutable_resources()->set_precision(precision);
  // Input (11, 59, 59) instead of (11, 155, 155): output (4, 6, 6), a few ms a step.
  v1::InputOp* in = job->mutable_model()->mutable_nodes(0)->mutable_input();
  in->set_shape(3, 59);
  in->set_shape(4, 59);
  const auto t0 = std::chrono::steady_clock::now();
  auto losses = testing::TrainLosses(
      *job, dir,
      {"n_steps=" + std::to_string(steps), "monitor_batch_size=1", "history_freq=100000",
       "background_processes=1", "seed=7", "save_name=lite_" + precision});
  std::printf("%s: %d steps in %.2f s\n", precision.c_str(), steps,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  EXPECT_TRUE(losses.ok()) << losses.status();
  return losses.ok() ? *losses : std::vector<double>{};
}

double Mean(std::vector<double>::const_iterator a, std::vector<double>::const_iterator b) {
  return std::accumulate(a, b, 0.0) / static_cast<double>(b - a);
}

// Criterion: with the same data and initial weights, both losses fall, and with D the fp32 loss
// drop (mean of the first 10 steps minus mean of the last 20): the bf16 mean over the last 20
// steps is within 0.1 D of fp32's, and the per-step difference |bf16_i - fp32_i| averages below
// 0.02 D. Measured: D = 0.46, last-20 means equal to 4 digits, per-step mean difference 0.0002
// (max 0.0012). A bf16 conv that kept its first weights copy passes the first test (the 1x1
// layers and biases still learn) but fails the second (0.11).
TEST(Precision, Neuro3dLiteTrainsInBf16LikeInFp32) {
  ASSERT_TRUE(kernels::CpuHasBf16())
      << "this CPU has no AVX512_BF16; exclude the bf16 label here (ctest -LE bf16)";
  const fs::path dir = fs::path(::testing::TempDir()) / ("elk_bf16_" + std::to_string(getpid()));
  fs::remove_all(dir);
  DemoDataOptions demo;
  demo.shape = {24, 120, 120};
  demo.preview_shape = {16, 100, 100};
  demo.patches_per_cube = 0;
  ASSERT_TRUE(MakeDemoData((dir / "demo-data").string(), demo).ok());
  const int kSteps = 50;
  const std::vector<double> fp32 = TrainNeuro3dLite(dir, "fp32", kSteps);
  const std::vector<double> bf16 = TrainNeuro3dLite(dir, "bf16", kSteps);
  ASSERT_EQ(fp32.size(), static_cast<size_t>(kSteps));
  ASSERT_EQ(bf16.size(), static_cast<size_t>(kSteps));
  const double f_first = Mean(fp32.begin(), fp32.begin() + 10);
  const double f_last = Mean(fp32.end() - 20, fp32.end());
  const double b_first = Mean(bf16.begin(), bf16.begin() + 10);
  const double b_last = Mean(bf16.end() - 20, bf16.end());
  std::printf("fp32: first 10 steps %.4f, last 20 %.4f; bf16: first 10 %.4f, last 20 %.4f\n",
              f_first, f_last, b_first, b_last);
  double mean_abs = 0, max_abs = 0;
  for (int i = 0; i < kSteps; ++i) {
    mean_abs += std::fabs(bf16[i] - fp32[i]) / kSteps;
    max_abs = std::max(max_abs, std::fabs(bf16[i] - fp32[i]));
  }
  std::printf("per step |bf16 - fp32|: mean %.4f, max %.4f\n", mean_abs, max_abs);
  const double drop = f_first - f_last;
  ASSERT_GT(drop, 0) << "fp32 loss does not fall: " << f_first << " -> " << f_last;
  EXPECT_LT(b_last, b_first) << "bf16 loss does not fall";
  EXPECT_LT(std::fabs(b_last - f_last), 0.1 * drop)
      << "bf16 last-20 mean " << b_last << " vs fp32 " << f_last << " (fp32 drop " << drop << ")";
  EXPECT_LT(mean_abs, 0.02 * drop) << "the bf16 loss curve strays from fp32's";
  // Not the same numbers: the bf16 run really rounded (fp32 runs repeat bit for bit).
  EXPECT_NE(fp32, bf16);
  if (!HasFailure()) fs::remove_all(dir);
}

}  // namespace
}  // namespace elektronn
