// The trainer's live-control seam: commands run on the training thread at step boundaries,
// hyper-parameter changes are applied and logged; tensor statistics.
#include "engine/trainer/trainer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_replace.h"
#include "engine/data/demo_data.h"
#include "engine/graph/statistics.h"
#include "engine/lua/job_file.h"
#include "tests/support/tiny_job.h"
#include "tests/support/wait.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;

TEST(Statistics, SummariseSkipsNonFiniteValues) {
  TensorStatistics s = Summarise("t", {4}, {1.f, -2.f, 3.f, NAN});
  EXPECT_EQ(s.non_finite, 1);
  EXPECT_DOUBLE_EQ(s.mean, 2.0 / 3.0);
  EXPECT_NEAR(s.std, std::sqrt((1 + 4 + 9) / 3.0 - 4.0 / 9.0), 1e-12);
  EXPECT_EQ(s.median_abs, 2.0);
  EXPECT_NE(FormatStatistics({s}).find("non-finite=1"), std::string::npos);
}

TEST(Trainer, CommandsRunAtStepBoundariesOnTheTrainingThread) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("elk_control_" + std::to_string(getpid()));
  fs::remove_all(dir);
  auto job = testing::MakeTinyJob(dir, {"control", "SGD", /*dropout=*/true, /*history_freq=*/1000});
  ASSERT_TRUE(job.ok()) << job.status();
  auto backend = kernels::CreateCpuBackend();
  TrainerOptions opt;
  opt.console = false;
  auto trainer = Trainer::Create(*job, backend.get(), opt);
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  Trainer& t = **trainer;

  // Not running yet: the command runs at once.
  ASSERT_TRUE(
      t.AtStepBoundary([](Trainer& tr) { return tr.SetHyperparameter("mom", 0.5, "test"); }).ok());
  // Commands wait for the loop: if it hangs, fail here rather than at ctest's timeout.
  testing::Watchdog dog(std::chrono::seconds(120), "Trainer test: the training loop hangs");
  std::atomic<bool> finished{false};
  absl::StatusOr<StopReason> result = StopReason::kSteps;
  std::thread loop([&] {
    result = t.Run();
    finished = true;
  });
  absl::Cleanup join = [&] {
    t.RequestStop();
    loop.join();
  };
  const std::thread::id loop_id = loop.get_id();
  int64_t first = -1, second = -1;
  std::thread::id ran_on;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (first < 3) {
    // A loop that ended (training failed) runs commands at once, at step 0, forever.
    ASSERT_FALSE(finished.load()) << "training ended before step 3: " << result.status();
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "training reached step " << first;
    ASSERT_TRUE(t.AtStepBoundary([&](Trainer& tr) {
                   first = tr.step();
                   ran_on = std::this_thread::get_id();
                   return absl::OkStatus();
                 }).ok());
  }
  EXPECT_EQ(ran_on, loop_id);
  ASSERT_TRUE(t.AtStepBoundary([&](Trainer& tr) {
                 second = tr.step();
                 RETURN_IF_ERROR(tr.SetHyperparameter("lr", 1e-5, "test"));
                 return tr.SetHyperparameter("dropout_rates", 0.0, "test");
               }).ok());
  EXPECT_GE(second, first);
  // A bad name is an error that does not disturb training.
  absl::Status bad =
      t.AtStepBoundary([](Trainer& tr) { return tr.SetHyperparameter("lernrate", 1, "x"); });
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  double lr = 0, mom = 0;
  ASSERT_TRUE(t.AtStepBoundary([&](Trainer& tr) {
                 lr = *tr.GetHyperparameter("lr");
                 mom = *tr.GetHyperparameter("mom");
                 return absl::OkStatus();
               }).ok());
  EXPECT_FLOAT_EQ(lr, 1e-5);
  EXPECT_FLOAT_EQ(mom, 0.5);
  std::move(join).Invoke();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(*result, StopReason::kRequested);
  std::ifstream log(dir / "runs/control/0-control.log");
  std::stringstream ss;
  ss << log.rdbuf();
  EXPECT_NE(ss.str().find("lr changed from 0.001 to 1e-05 at step"), std::string::npos) << ss.str();
  // Parameter statistics come from the live network.
  auto stats = ComputeStatistics(t.network(), StatisticsOf::kParameters);
  ASSERT_EQ(stats.size(), 4u);
  EXPECT_EQ(stats[0].name, "conv/w");
  EXPECT_GT(stats[0].std, 0);
  fs::remove_all(dir);
}

double UnixNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// elektronn-sched's start barrier: the first step waits for start_at; commands are served and a
// stop is honoured while waiting.
TEST(Trainer, TheFirstStepWaitsForTheGroupStart) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("elk_start_" + std::to_string(getpid()));
  fs::remove_all(dir);
  auto job = testing::MakeTinyJob(dir, {"start"});
  ASSERT_TRUE(job.ok()) << job.status();
  auto backend = kernels::CreateCpuBackend();
  testing::Watchdog dog(std::chrono::seconds(120), "Trainer start test hangs");
  TrainerOptions opt;
  opt.console = false;
  opt.start_at_unix_s = UnixNow() + 1.5;
  auto trainer = Trainer::Create(*job, backend.get(), opt);
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  Trainer& t = **trainer;
  absl::StatusOr<StopReason> result = StopReason::kSteps;
  std::thread loop([&] { result = t.Run(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  // A command while waiting runs at once (at step 0), not at the start.
  int64_t step_then = -1;
  ASSERT_TRUE(t.AtStepBoundary([&](Trainer& tr) {
                 step_then = tr.step();
                 return absl::OkStatus();
               }).ok());
  EXPECT_EQ(step_then, 0);
  EXPECT_LT(UnixNow(), opt.start_at_unix_s - 0.5);
  // The first step is seen only after the start.
  double first_seen = 0;
  while (first_seen == 0) {
    ASSERT_TRUE(t.AtStepBoundary([&](Trainer& tr) {
                   if (tr.step() >= 1) first_seen = UnixNow();
                   return absl::OkStatus();
                 }).ok());
  }
  EXPECT_GE(first_seen, opt.start_at_unix_s);
  t.RequestStop();
  loop.join();
  ASSERT_TRUE(result.ok()) << result.status();
  trainer->reset();

  // A stop while waiting ends Run at once, before any step.
  fs::remove_all(dir);
  job = testing::MakeTinyJob(dir, {"start"});
  ASSERT_TRUE(job.ok()) << job.status();
  opt.start_at_unix_s = UnixNow() + 600;
  auto waiting = Trainer::Create(*job, backend.get(), opt);
  ASSERT_TRUE(waiting.ok()) << waiting.status();
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    (*waiting)->RequestStop();
  });
  const double t0 = UnixNow();
  auto stopped = (*waiting)->Run();
  stopper.join();
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_EQ(*stopped, StopReason::kRequested);
  EXPECT_EQ((*waiting)->step(), 0);
  EXPECT_LT(UnixNow() - t0, 30);
  waiting->reset();
  fs::remove_all(dir);
}

// Reference §5.3: the picture of the model is in the training directory from the start.
TEST(Trainer, WritesTheModelGraphPicturesAtStart) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("elk_graph_" + std::to_string(getpid()));
  fs::remove_all(dir);
  auto job = testing::MakeTinyJob(dir, {"pictured"});
  ASSERT_TRUE(job.ok()) << job.status();
  auto backend = kernels::CreateCpuBackend();
  TrainerOptions opt;
  opt.console = false;
  auto trainer = Trainer::Create(*job, backend.get(), opt);
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  auto read = [](const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  const std::string svg = read(dir / "runs/pictured/1-model-graph.svg");
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  EXPECT_NE(svg.find("Input &#45; raw"), std::string::npos);  // Graphviz writes '-' as &#45;
  EXPECT_NE(svg.find("AggregateLoss &#45; loss"), std::string::npos);
  const std::string png = read(dir / "runs/pictured/1-model-graph.png");
  ASSERT_GT(png.size(), 1000u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(read(dir / "runs/pictured/0-pictured.log").find("no model graph picture"),
            std::string::npos);
  trainer->reset();
  fs::remove_all(dir);
}

// The training directory's debug batch (written before the first step) and evaluation marker
// (written when training finished, not when it was stopped on request) (reference §5.3).
TEST(Trainer, WritesTheDebugBatchAtStartAndTheEvaluationMarkerAtTheEnd) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("elk_marker_" + std::to_string(getpid()));
  fs::remove_all(dir);
  testing::TinyJobOptions o;
  o.save_name = "marked";
  o.n_steps = 3;
  auto job = testing::MakeTinyJob(dir, o);
  ASSERT_TRUE(job.ok()) << job.status();
  auto backend = kernels::CreateCpuBackend();
  TrainerOptions opt;
  opt.console = false;
  auto trainer = Trainer::Create(*job, backend.get(), opt);
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  const fs::path run = dir / "runs/marked";
  EXPECT_FALSE(fs::exists(run / "Batch_test_image.png"));
  EXPECT_FALSE(fs::exists(run / "0-EVAL-needed"));
  (*trainer)->RequestStop();
  auto stopped = (*trainer)->Run();
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_EQ(*stopped, StopReason::kRequested);
  EXPECT_TRUE(fs::exists(run / "Batch_test_image.png"));
  EXPECT_FALSE(fs::exists(run / "0-EVAL-needed"));
  trainer->reset();

  opt.resume = true;
  auto again = Trainer::Create(*job, backend.get(), opt);
  ASSERT_TRUE(again.ok()) << again.status();
  auto done = (*again)->Run();
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(*done, StopReason::kSteps);
  EXPECT_TRUE(fs::exists(run / "0-EVAL-needed"));
  again->reset();
  fs::remove_all(dir);
}

// A picture Graphviz cannot draw (no plugins: GVBINDIR names an empty place) is a warning in the
// log; the job starts all the same. In a fresh process (threadsafe death-test style re-runs the
// binary), as Graphviz caches its plugin directory.
TEST(Trainer, AModelGraphThatCannotBeDrawnIsOnlyAWarning) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const fs::path dir = fs::path(::testing::TempDir()) / ("elk_nograph_" + std::to_string(getpid()));
  EXPECT_EXIT(
      {
        setenv("GVBINDIR", (dir / "none").c_str(), 1);
        auto job = testing::MakeTinyJob(dir, {"unpictured"});
        if (!job.ok()) _exit(2);
        auto backend = kernels::CreateCpuBackend();
        TrainerOptions opt;
        opt.console = false;
        auto trainer = Trainer::Create(*job, backend.get(), opt);
        if (!trainer.ok()) _exit(3);
        if (fs::exists(dir / "runs/unpictured/1-model-graph.svg")) _exit(4);
        std::ifstream log(dir / "runs/unpictured/0-unpictured.log");
        std::stringstream ss;
        ss << log.rdbuf();
        _exit(ss.str().find("no model graph picture: model graph: Graphviz could not lay out") ==
                      std::string::npos
                  ? 5
                  : 0);
      },
      ::testing::ExitedWithCode(0), "");
  fs::remove_all(dir);
}

}  // namespace
}  // namespace elektronn
