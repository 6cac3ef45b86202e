// End to end: `elektronn train` is killed mid-run (SIGKILL, no chance to save) and resumed from
// its last checkpoint: the resumed run starts from exactly the saved parameters, optimiser state
// and step, and trains bit for bit as a run that was never interrupted. Ctrl-C (SIGINT) saves the
// step it reached and exits; a NaN loss saves the last good state.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "engine/data/demo_data.h"
#include "engine/io/model_file.h"
#include "tests/support/wait.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;

const char kJob[] = R"(
save_path = 'SAVE_PATH'
save_name = 'SAVE_NAME'
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
history_freq = HISTORY_FREQ
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
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(dir_);
  }

  struct Job {
    int64_t n_steps = 100000;
    std::string lr = "1e-3";
    int64_t history_freq = 5;
    std::string name = "tiny";  // save_name, and the job file <name>.lua
  };
  void WriteJob(const Job& j) {
    std::ofstream(dir_ / (j.name + ".lua"))
        << absl::StrReplaceAll(kJob, {{"SAVE_PATH", (dir_ / "runs").string()},
                                      {"SAVE_NAME", j.name},
                                      {"N_STEPS", std::to_string(j.n_steps)},
                                      {"HISTORY_FREQ", std::to_string(j.history_freq)},
                                      {"LR", j.lr}});
  }
  // Starts `elektronn train <name>.lua`, its stderr appended to Output(); stdin is not a
  // terminal, so Ctrl-C saves and exits rather than opening the shell.
  pid_t Start(const std::string& name, std::vector<std::string> extra) {
    std::vector<std::string> args = {ELK_ELEKTRONN_BIN, "train", (dir_ / (name + ".lua")).string(),
                                     "--status-interval", "0"};
    args.insert(args.end(), extra.begin(), extra.end());
    const std::string log = (dir_ / "stderr.txt").string();
    pid_t pid = fork();
    if (pid == 0) {
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      FILE* f = std::freopen(log.c_str(), "a", stderr);
      (void)f;
      const int null = open("/dev/null", O_RDONLY);
      if (null >= 0) dup2(null, 0);
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
  // The exit code of a run, or -1 when it did not end normally within two minutes.
  int Finish(pid_t pid) {
    const std::optional<int> status = testing::WaitPidFor(pid, std::chrono::seconds(120));
    if (!status.has_value()) {
      ADD_FAILURE() << "elektronn train did not end within 120 s (killed)\n" << Output();
      return -1;
    }
    return WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
  }
  int Run(const std::string& name, std::vector<std::string> extra) {
    return Finish(Start(name, std::move(extra)));
  }
  std::string RunDir(const std::string& name = "tiny") const {
    return (dir_ / "runs" / name).string();
  }
  std::string Checkpoint(const std::string& name = "tiny", const std::string& which = "LAST") {
    return RunDir(name) + "/" + name + "-" + which + ".h5";
  }
  std::string Output() const { return ReadText(dir_ / "stderr.txt"); }
  static std::string ReadText(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  // The highest step of the progress lines ("step      7  loss 0.6931 ...") printed so far.
  int64_t ReportedStep() const {
    int64_t best = -1;
    for (absl::string_view line : absl::StrSplit(Output(), '\n')) {
      long long step = 0;
      if (std::sscanf(std::string(line).c_str(), "step %lld loss", &step) == 1)
        best = std::max<int64_t>(best, step);
    }
    return best;
  }
  // One column of a CSV file written by the trainer, as text (exactly as written), from row
  // `first` (0 = the first data row) on.
  static std::vector<std::string> Column(const fs::path& csv, const std::string& column,
                                         size_t first = 0) {
    std::vector<std::string> lines = absl::StrSplit(ReadText(csv), '\n', absl::SkipEmpty());
    std::vector<std::string> out;
    if (lines.empty()) return out;
    std::vector<std::string> header = absl::StrSplit(lines[0], ',');
    const size_t c = std::find(header.begin(), header.end(), column) - header.begin();
    for (size_t i = 1 + first; i < lines.size(); ++i) {
      std::vector<std::string> cells = absl::StrSplit(lines[i], ',');
      out.push_back(c < cells.size() ? cells[c] : "?");
    }
    return out;
  }

  fs::path dir_;
};

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Parameters, optimiser slots, step, optimiser step and hyper-parameters are equal bit for bit.
void ExpectSameTrainingState(const ModelFileContents& want, const ModelFileContents& got) {
  EXPECT_EQ(got.step, want.step);
  EXPECT_EQ(got.t, want.t);
  EXPECT_EQ(got.optimiser, want.optimiser);
  EXPECT_EQ(got.hyper.lr, want.hyper.lr);
  EXPECT_EQ(got.hyper.mom, want.hyper.mom);
  EXPECT_EQ(got.hyper.wd, want.hyper.wd);
  EXPECT_EQ(got.hyper.beta2, want.hyper.beta2);
  ASSERT_EQ(got.params.size(), want.params.size());
  for (const auto& [k, v] : want.params) {
    ASSERT_TRUE(got.params.count(k)) << k;
    EXPECT_TRUE(SameBits(got.params.at(k), v))
        << "parameter " << k << " of " << got.path << " differs from " << want.path;
  }
  ASSERT_EQ(got.slots.size(), want.slots.size());
  for (const auto& [k, v] : want.slots) {
    ASSERT_TRUE(got.slots.count(k)) << k;
    EXPECT_TRUE(SameBits(got.slots.at(k), v))
        << "optimiser slot " << k << " of " << got.path << " differs from " << want.path;
  }
}

TEST_F(TrainResume, KilledRunResumesBitForBitAsAnUninterruptedRun) {
  WriteJob({});
  pid_t pid = Start("tiny", {});
  // Wait until a checkpoint beyond step 10 exists, then kill without warning.
  int64_t saved_step = -1;
  const bool reached = testing::PollUntil(
      [&] {
        if (Exited(pid)) return true;
        auto f = ReadModelFile(Checkpoint());
        if (f.ok()) saved_step = static_cast<int64_t>(f->step);
        return saved_step >= 10;
      },
      std::chrono::seconds(120), std::chrono::milliseconds(100));
  kill(pid, SIGKILL);
  Finish(pid);
  ASSERT_TRUE(reached) << "no checkpoint beyond step 10 within 120 s\n" << Output();
  ASSERT_GE(saved_step, 10) << "the run ended early\n" << Output();
  auto saved = ReadModelFile(Checkpoint());
  ASSERT_TRUE(saved.ok()) << saved.status();  // the checkpoint survived the kill intact
  ASSERT_TRUE(saved->has_optimiser);
  ASSERT_FALSE(saved->slots.empty());
  const int64_t step = static_cast<int64_t>(saved->step);
  const int64_t t = saved->t;
  EXPECT_EQ(t, step);      // one optimiser update per step
  EXPECT_EQ(step % 5, 0);  // a history_freq checkpoint

  // What the resumed run starts from: a resume with nothing left to train saves what it loaded.
  WriteJob({.n_steps = step});
  ASSERT_EQ(Run("tiny", {"--resume"}), 0) << Output();
  EXPECT_NE(Output().find("Resumed from " + Checkpoint() + " at step " + std::to_string(step) +
                          " (optimiser step " + std::to_string(t)),
            std::string::npos)
      << Output();
  auto loaded = ReadModelFile(Checkpoint("tiny", "FINAL"));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ExpectSameTrainingState(*saved, *loaded);
  fs::remove(Checkpoint("tiny", "FINAL"));

  // Resume for 7 more steps, and train a control run from scratch, never interrupted, to the
  // same step: the same batches (a function of seed and step), the same state, the same bits.
  WriteJob({.n_steps = step + 7});
  ASSERT_EQ(Run("tiny", {"--resume"}), 0) << Output();
  auto resumed = ReadModelFile(Checkpoint("tiny", "FINAL"));
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(static_cast<int64_t>(resumed->step), step + 7);
  EXPECT_EQ(resumed->t, t + 7);
  WriteJob({.n_steps = step + 7, .name = "control"});
  ASSERT_EQ(Run("control", {}), 0) << Output();
  auto control = ReadModelFile(Checkpoint("control", "FINAL"));
  ASSERT_TRUE(control.ok()) << control.status();
  ExpectSameTrainingState(*control, *resumed);
  // The per-step losses after the resume (the resumed run's timeline holds only its own steps).
  const std::vector<std::string> resumed_losses = Column(RunDir() + "/tiny.timeline.csv", "loss");
  const std::vector<std::string> control_losses =
      Column(RunDir("control") + "/control.timeline.csv", "loss", static_cast<size_t>(step));
  EXPECT_EQ(resumed_losses.size(), 7u);
  EXPECT_EQ(resumed_losses, control_losses);
  // The monitoring record after the resume (step+5) is the control's, time aside.
  auto record = [&](const std::string& name) {
    const fs::path csv = RunDir(name) + "/" + name + ".history.csv";
    const std::vector<std::string> steps = Column(csv, "step");
    const size_t row =
        std::find(steps.begin(), steps.end(), std::to_string(step + 5)) - steps.begin();
    std::vector<std::string> out;
    for (const char* c :
         {"step", "train_loss", "valid_loss", "loss_gain", "train_err", "valid_err", "lr", "mom"}) {
      const std::vector<std::string> column = Column(csv, c);
      out.push_back(std::string(c) + "=" + (row < column.size() ? column[row] : "missing"));
    }
    return out;
  };
  EXPECT_EQ(record("tiny"), record("control"));
  EXPECT_EQ(record("tiny")[0], "step=" + std::to_string(step + 5));

  // The preview of the first hour was written at the start (initial_prev_h = 0).
  bool preview = false;
  for (const auto& e : fs::directory_iterator(RunDir()))
    preview |= e.path().filename().string().rfind("tiny-pred-0-z", 0) == 0;
  EXPECT_TRUE(preview) << "no tiny-pred-0-z*.png in " << RunDir();
  EXPECT_TRUE(fs::exists(RunDir() + "/tiny.history.csv"));
  EXPECT_TRUE(fs::exists(RunDir() + "/0-tiny.history.png"));
  EXPECT_TRUE(fs::exists(RunDir() + "/0-tiny.log"));
  // A resume without --resume refuses to overwrite the run.
  EXPECT_GT(Run("tiny", {}), 0);
  EXPECT_NE(Output().find("exists; pass --resume"), std::string::npos);
}

TEST_F(TrainResume, InterruptSavesTheStepItReached) {
  // The only periodic checkpoint is the one of step 1 (history_freq 100000).
  WriteJob({.history_freq = 100000});
  pid_t pid = Start("tiny", {});
  int64_t reported = -1;
  const bool reached = testing::PollUntil(
      [&] {
        reported = ReportedStep();
        return reported >= 8 || Exited(pid);
      },
      std::chrono::seconds(120), std::chrono::milliseconds(100));
  if (!reached) kill(pid, SIGKILL);
  ASSERT_TRUE(reached) << "no progress line of step 8 within 120 s\n" << Output();
  ASSERT_GE(reported, 8) << "the run ended early\n" << Output();
  auto periodic = ReadModelFile(Checkpoint());
  ASSERT_TRUE(periodic.ok()) << periodic.status();
  EXPECT_EQ(periodic->step, 1u);
  kill(pid, SIGINT);
  ASSERT_EQ(Finish(pid), 130) << Output();
  const std::string out = Output();
  EXPECT_NE(out.find("continue with: elektronn train"), std::string::npos) << out;
  const size_t at = out.find("stopped at step ");
  ASSERT_NE(at, std::string::npos) << out;
  const int64_t stopped = std::stoll(out.substr(at + 16));
  EXPECT_GE(stopped, reported);
  auto saved = ReadModelFile(Checkpoint());
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_EQ(static_cast<int64_t>(saved->step), stopped) << "the checkpoint is not the step reached";
  EXPECT_EQ(saved->t, stopped);
  EXPECT_GT(saved->step, periodic->step);
}

TEST_F(TrainResume, NanLossStopsWithTheLastGoodState) {
  WriteJob({.n_steps = 1000, .lr = "1e30"});  // the first update throws every weight to +-1e30
  EXPECT_GT(Run("tiny", {}), 0);
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
