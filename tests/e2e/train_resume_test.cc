// End to end: `elektronn train` is killed mid-run (SIGKILL, no chance to save) and resumed from
// its last checkpoint; the resumed run continues from the saved step with the saved optimiser
// state. Also: Ctrl-C (SIGINT) saves and exits cleanly.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_replace.h"
#include "engine/data/demo_data.h"
#include "engine/io/model_file.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;

const char kJob[] = R"(
save_path = 'SAVE_PATH'
save_name = 'tiny'
data_class = 'BatchCreatorImage'
data_init_kwargs = {d_path = 'data/', l_path = 'data/',
  d_files = {{'raw_0.h5', 'raw'}, {'raw_1.h5', 'raw'}},
  l_files = {{'barrier_0.h5', 'lab'}, {'barrier_1.h5', 'lab'}},
  aniso_factor = 2, valid_cubes = {1}}
data_batch_args = {warp = 0.5, grey_augment_channels = {0}}
preview_data_path = 'data/preview.h5'
preview_kwargs = {export_class = {1}, max_z_pred = 2}
initial_prev_h = 0
prev_save_h = 1
n_steps = N_STEPS
max_runtime = 3600
history_freq = 5
monitor_batch_size = 2
optimiser = 'Adam'
optimiser_params = {lr = LR, mom = 0.9, beta2 = 0.999, wd = 1e-5}
batch_size = 2
function create_model()
  local inp = nm.Input{{None, 1, 5, 27, 27}, 'b,f,z,x,y', name = 'raw'}
  local out = nm.Conv{inp, 6, {1, 4, 4}, {1, 2, 2}}
  out = nm.Conv{out, 6, {3, 3, 3}}
  out = nm.Conv{out, 2, {1, 1, 1}, activation_func = 'lin'}
  local probs = nm.Softmax{out}
  local target = nm.Input_like{probs, override_f = 1, name = 'target'}
  local loss = nm.AggregateLoss{nm.MultinoulliNLL{probs, target, target_is_sparse = true}, name = 'loss'}
  local errors = nm.Errors{probs, target, target_is_sparse = true}
  return nm.designate_nodes{input_node = inp, target_node = target, loss_node = loss,
                            prediction_node = probs, prediction_ext = {loss, errors, probs}}
end
)";

class TrainResume : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("elk_resume_" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "data");
    DemoDataOptions o;
    o.num_cubes = 2;
    o.shape = {16, 64, 64};
    ASSERT_TRUE(MakeDemoData((dir_ / "data").string(), o).ok());
  }
  void TearDown() override { fs::remove_all(dir_); }

  void WriteJob(int n_steps, const std::string& lr = "1e-3") {
    std::ofstream(dir_ / "tiny.lua")
        << absl::StrReplaceAll(kJob, {{"SAVE_PATH", (dir_ / "runs").string()},
                                      {"N_STEPS", std::to_string(n_steps)},
                                      {"LR", lr}});
  }
  pid_t Start(std::vector<std::string> extra) {
    std::vector<std::string> args = {ELK_ELEKTRONN_BIN, "train", (dir_ / "tiny.lua").string(),
                                     "--status-interval", "0"};
    args.insert(args.end(), extra.begin(), extra.end());
    const std::string log = (dir_ / "stdout.txt").string();
    pid_t pid = fork();
    if (pid == 0) {
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      FILE* f = std::freopen(log.c_str(), "a", stderr);
      (void)f;
      setenv("OMP_NUM_THREADS", "1", 1);
      execv(argv[0], argv.data());
      _exit(127);
    }
    return pid;
  }
  bool Exited(pid_t pid) {
    int status = 0;
    return waitpid(pid, &status, WNOHANG) == pid;
  }
  int Wait(pid_t pid) {
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
  }
  std::string Checkpoint() const { return (dir_ / "runs/tiny/tiny-LAST.h5").string(); }
  std::string Output() const {
    std::ifstream in(dir_ / "stdout.txt");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  fs::path dir_;
};

TEST_F(TrainResume, KilledRunResumesFromItsLastCheckpoint) {
  WriteJob(100000);
  pid_t pid = Start({});
  // Wait until a checkpoint beyond step 10 exists, then kill without warning.
  int64_t saved_step = -1;
  for (int i = 0; i < 600 && saved_step < 10; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ASSERT_FALSE(Exited(pid)) << Output();
    if (fs::exists(Checkpoint())) {
      auto f = ReadModelFile(Checkpoint());
      if (f.ok()) saved_step = static_cast<int64_t>(f->step);
    }
  }
  ASSERT_GE(saved_step, 10) << Output();
  kill(pid, SIGKILL);
  Wait(pid);
  auto saved = ReadModelFile(Checkpoint());
  ASSERT_TRUE(saved.ok()) << saved.status();  // the checkpoint survived the kill intact
  const int64_t step = static_cast<int64_t>(saved->step);
  const int64_t t = saved->t;
  EXPECT_EQ(t, step);  // one optimiser update per step

  // Resume for 7 more steps.
  WriteJob(static_cast<int>(step + 7));
  int status = Wait(Start({"--resume"}));
  ASSERT_TRUE(WIFEXITED(status)) << Output();
  ASSERT_EQ(WEXITSTATUS(status), 0) << Output();
  const std::string out = Output();
  EXPECT_NE(out.find("Resumed from " + Checkpoint() + " at step " + std::to_string(step) +
                     " (optimiser step " + std::to_string(t)),
            std::string::npos)
      << out;
  auto final_state = ReadModelFile((dir_ / "runs/tiny/tiny-FINAL.h5").string());
  ASSERT_TRUE(final_state.ok()) << final_state.status();
  EXPECT_EQ(static_cast<int64_t>(final_state->step), step + 7);
  EXPECT_EQ(final_state->t, t + 7);
  // The Adam moments continued from the saved ones rather than from zero: they differ from
  // the saved values but are not a fresh start (a fresh start after 7 steps has far smaller
  // second moments than a run that has seen step+7 gradients... compare against the file).
  bool any_differs = false;
  for (const auto& [k, v] : saved->slots) {
    const auto& w = final_state->slots.at(k);
    ASSERT_EQ(v.size(), w.size());
    for (size_t i = 0; i < v.size() && !any_differs; ++i) any_differs = v[i] != w[i];
  }
  EXPECT_TRUE(any_differs);
  // The preview of the first hour was written at the start (initial_prev_h = 0).
  bool preview = false;
  for (const auto& e : fs::directory_iterator(dir_ / "runs/tiny"))
    preview |= e.path().filename().string().rfind("tiny-pred-0-z", 0) == 0;
  EXPECT_TRUE(preview) << "no tiny-pred-0-z*.png in " << (dir_ / "runs/tiny");
  EXPECT_TRUE(fs::exists(dir_ / "runs/tiny/tiny.history.csv"));
  EXPECT_TRUE(fs::exists(dir_ / "runs/tiny/0-tiny.history.png"));
  EXPECT_TRUE(fs::exists(dir_ / "runs/tiny/0-tiny.log"));
  // A resume without --resume refuses to overwrite the run.
  int again = Wait(Start({}));
  EXPECT_TRUE(WIFEXITED(again) && WEXITSTATUS(again) != 0);
  EXPECT_NE(Output().find("exists; pass --resume"), std::string::npos);
}

TEST_F(TrainResume, InterruptSavesAndExitsCleanly) {
  WriteJob(100000);
  pid_t pid = Start({});
  for (int i = 0; i < 600 && !fs::exists(Checkpoint()); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ASSERT_FALSE(Exited(pid)) << Output();
  }
  ASSERT_TRUE(fs::exists(Checkpoint())) << Output();
  kill(pid, SIGINT);
  int status = Wait(pid);
  ASSERT_TRUE(WIFEXITED(status)) << Output();
  EXPECT_EQ(WEXITSTATUS(status), 130);
  EXPECT_NE(Output().find("continue with: elektronn train"), std::string::npos) << Output();
  EXPECT_TRUE(ReadModelFile(Checkpoint()).ok());
}

TEST_F(TrainResume, NanLossStopsWithTheLastGoodState) {
  WriteJob(1000, "1e30");  // the first update throws every weight to +-1e30
  int status = Wait(Start({}));
  ASSERT_TRUE(WIFEXITED(status)) << Output();
  EXPECT_NE(WEXITSTATUS(status), 0);
  const std::string out = Output();
  EXPECT_NE(out.find("The loss became"), std::string::npos) << out;
  EXPECT_NE(out.find("last good state (step 0)"), std::string::npos) << out;
  auto saved = ReadModelFile(Checkpoint());
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_EQ(saved->step, 0u);
  for (const auto& [k, v] : saved->params)
    for (float x : v) ASSERT_TRUE(std::isfinite(x) && std::fabs(x) < 100) << k;
}

}  // namespace
}  // namespace elektronn
