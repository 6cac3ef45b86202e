// Slow: examples/unet3d_litelite.lua's network trains on generated demo data
// (engine/data/demo_data.h): the label patch the batch creator cuts with the target's repaired
// offsets (reference §3.2) matches the U-Net's output, and the loss falls within a few dozen
// steps.
#include <gtest/gtest.h>
#include <unistd.h>

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

TEST(UNetTraining, LiteliteLossFallsOnDemoData) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("elk_unet_" + std::to_string(getpid()));
  fs::remove_all(dir);
  DemoDataOptions demo;
  demo.shape = {30, 180, 180};
  demo.preview_shape = {24, 150, 150};
  ASSERT_TRUE(MakeDemoData((dir / "demo-data").string(), demo).ok());

  auto job = LoadJobFile(ExamplePath("unet3d_litelite.lua"));
  ASSERT_TRUE(job.ok()) << job.status();
  // The example's network at a (16,124,124) patch instead of (22,140,140), output (4,20,20):
  // about half the work per step on the test machines' 2 cores.
  v1::InputOp* in = job->mutable_model()->mutable_nodes(0)->mutable_input();
  ASSERT_EQ(in->shape_size(), 5);
  in->set_shape(2, 16);
  in->set_shape(3, 124);
  in->set_shape(4, 124);
  const int kSteps = 40;
  auto trained = testing::TrainLosses(
      *job, dir,
      {"n_steps=" + std::to_string(kSteps), "monitor_batch_size=1", "history_freq=100000"});
  ASSERT_TRUE(trained.ok()) << trained.status();
  const std::vector<double>& losses = *trained;
  ASSERT_GE(losses.size(), 20u);
  const double first = std::accumulate(losses.begin(), losses.begin() + 5, 0.0) / 5;
  const double last = std::accumulate(losses.end() - 5, losses.end(), 0.0) / 5;
  EXPECT_LT(last, 0.9 * first) << "loss of the first 5 steps " << first << ", of the last 5 "
                               << last;
  if (!HasFailure()) fs::remove_all(dir);
}

}  // namespace
}  // namespace elektronn
