// `elektronn predict` end to end: the client execs elektronn-worker predict on a small volume;
// Ctrl-C stops it resumably (with the command to continue), SIGKILL mid-run loses nothing that
// was done, and re-running the same command completes an output bit-identical to an
// uninterrupted run. Also its help, its option errors and what a local run refuses.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "elektronn/v1/training.pb.h"
#include "tests/e2e/predict_fixture.h"
#include "tests/support/wait.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Result {
  int code = -1;
  std::string out;  // stdout and stderr
};

class PredictCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           absl::StrCat("predict_cli_", getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (!HasFailure() && std::getenv("ELK_KEEP_TEST_DIR") == nullptr) fs::remove_all(dir_);
  }

  // Starts `elektronn ARGS...` (stdout and stderr to `log`) in dir_, with the worker the build
  // made and one compute thread.
  pid_t Start(const std::vector<std::string>& args, const std::string& log,
              const std::string& binary = ELK_ELEKTRONN_BIN) {
    const pid_t pid = fork();
    if (pid == 0) {
      if (chdir(dir_.c_str()) != 0) _exit(126);
      setenv("ELEKTRONN_WORKER", ELK_WORKER_BIN, 1);
      setenv("OMP_NUM_THREADS", "1", 1);
      FILE* f = std::freopen(log.c_str(), "w", stdout);
      (void)f;
      dup2(fileno(stdout), 2);
      std::vector<std::string> all = {binary};
      all.insert(all.end(), args.begin(), args.end());
      std::vector<char*> argv;
      for (auto& a : all) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    return pid;
  }

  Result Run(const std::vector<std::string>& args, const std::string& binary = ELK_ELEKTRONN_BIN) {
    const std::string log = (dir_ / "run.log").string();
    pid_ = Start(args, log, binary);
    auto status = testing::WaitPidFor(pid_, std::chrono::seconds(120));
    pid_ = 0;
    Result r;
    EXPECT_TRUE(status.has_value()) << "elektronn predict did not end within 120 s";
    if (status) r.code = WIFEXITED(*status) ? WEXITSTATUS(*status) : 128 + WTERMSIG(*status);
    r.out = Read(log);
    return r;
  }

  static std::string Read(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  // Waits until the Zarr output holds at least `n` chunks; false after `seconds`.
  bool WaitForChunks(const fs::path& zarr, int n, int seconds = 60) {
    const auto deadline = Clock::now() + std::chrono::seconds(seconds);
    while (Clock::now() < deadline) {
      if (testing::CountZarrChunks(zarr) >= n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }

  // The prediction every run of a test makes: a fixed patch and small chunks, so there are
  // many.
  std::vector<std::string> PredictArgs(const std::string& output) {
    return {"predict", "model.h5", "raw_0.h5:/raw", output, "--patch",   "5,25,25",
            "--chunk", "3,36,36",  "--mfp",         "off",  "--threads", "1"};
  }

  void MakeData() {
    ASSERT_TRUE(testing::SavePredictModel((dir_ / "model.h5").string(), kWidth).ok());
    ASSERT_TRUE(testing::MakeInputVolume(dir_.string(), kShape).ok());
  }

  static constexpr int kWidth = 48;
  static constexpr std::array<int64_t, 3> kShape = {24, 128, 128};
  // Tiles of (3,18,18) output voxels (patch (5,25,25), strides (1,2,2), fov (3,9,9)), chunks of
  // 1 x 2 x 2 tiles.
  static constexpr int kChunks = 8 * 4 * 4;

  fs::path dir_;
  pid_t pid_ = 0;
};

void ExpectBitIdentical(const std::string& a, const std::string& b) {
  auto va = testing::ReadWholeVolume(a);
  auto vb = testing::ReadWholeVolume(b);
  ASSERT_TRUE(va.ok()) << va.status();
  ASSERT_TRUE(vb.ok()) << vb.status();
  ASSERT_EQ(va->shape, vb->shape);
  ASSERT_EQ(va->values.size(), vb->values.size());
  size_t differ = 0;
  for (size_t i = 0; i < va->values.size(); ++i) {
    differ += std::memcmp(&va->values[i], &vb->values[i], sizeof(float)) != 0;
  }
  EXPECT_EQ(differ, 0u) << differ << " of " << va->values.size() << " values differ";
}

TEST_F(PredictCliTest, StoppedAndKilledRunsResumeToTheSameOutput) {
  MakeData();
  // The reference: one uninterrupted run.
  Result ref = Run(PredictArgs("ref.zarr"));
  ASSERT_EQ(ref.code, 0) << ref.out;
  EXPECT_NE(ref.out.find("Predicted (c,z,x,y)=(2,24,128,128) float32"), std::string::npos)
      << ref.out;
  EXPECT_NE(ref.out.find("chunks " + std::to_string(kChunks) + "/" + std::to_string(kChunks)),
            std::string::npos)
      << "the last progress line shows every chunk\n"
      << ref.out;
  EXPECT_EQ(testing::CountZarrChunks(dir_ / "ref.zarr"), kChunks);
  {
    auto v = testing::ReadWholeVolume((dir_ / "ref.zarr").string());
    ASSERT_TRUE(v.ok()) << v.status();
    double sum = 0;
    for (float x : v->values) sum += x;
    EXPECT_NEAR(sum, static_cast<double>(v->shape.voxels()), 1e-2 * v->shape.voxels())
        << "two softmax channels sum to one per voxel";
  }

  // Ctrl-C after the first chunk: exit 130, the command that continues it.
  const fs::path out = dir_ / "out.zarr";
  const std::string log = (dir_ / "stopped.log").string();
  pid_ = Start(PredictArgs("out.zarr"), log);
  ASSERT_TRUE(WaitForChunks(out, 1)) << Read(log);
  kill(pid_, SIGINT);
  auto status = testing::WaitPidFor(pid_, std::chrono::seconds(60));
  pid_ = 0;
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 130) << *status << Read(log);
  const int after_stop = testing::CountZarrChunks(out);
  EXPECT_LT(after_stop, kChunks) << "stopped mid-run";
  const std::string stopped = Read(log);
  EXPECT_NE(stopped.find("the output is resumable"), std::string::npos) << stopped;
  EXPECT_NE(stopped.find("continue with: elektronn predict model.h5 raw_0.h5:/raw out.zarr "
                         "--patch 5,25,25 --chunk 3,36,36 --mfp off --threads 1"),
            std::string::npos)
      << stopped;

  // SIGKILL after more chunks: nothing done is lost.
  const std::string log2 = (dir_ / "killed.log").string();
  pid_ = Start(PredictArgs("out.zarr"), log2);
  ASSERT_TRUE(WaitForChunks(out, after_stop + 2)) << Read(log2);
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = 0;
  const int after_kill = testing::CountZarrChunks(out);
  EXPECT_LT(after_kill, kChunks) << "killed mid-run";
  EXPECT_NE(Read(log2).find(absl::StrCat("Resuming: ", after_stop, " of ", kChunks,
                                         " chunks done by an earlier run")),
            std::string::npos)
      << Read(log2);

  // The same command again completes it.
  Result done = Run(PredictArgs("out.zarr"));
  ASSERT_EQ(done.code, 0) << done.out;
  EXPECT_NE(done.out.find(absl::StrCat(kChunks - after_kill, " chunks computed, ", after_kill,
                                       " done by an earlier run")),
            std::string::npos)
      << done.out;
  EXPECT_EQ(testing::CountZarrChunks(out), kChunks);
  ExpectBitIdentical((dir_ / "ref.zarr").string(), out.string());

  // --no-resume refuses the existing output.
  std::vector<std::string> args = PredictArgs("out.zarr");
  args.push_back("--no-resume");
  Result refused = Run(args);
  EXPECT_NE(refused.code, 0) << refused.out;
  EXPECT_NE(refused.out.find("out.zarr"), std::string::npos) << refused.out;
}

TEST_F(PredictCliTest, HelpAndBadArguments) {
  Result help = Run({"predict", "--help"});
  EXPECT_EQ(help.code, 0) << help.out;
  for (const char* want :
       {"Examples:", "--memory-limit", "4G", "--patch", "--roi", "--mfp", "--pad", "--compression",
        "--no-resume", "--device", "--host", "--follow", "resumable"}) {
    EXPECT_NE(help.out.find(want), std::string::npos) << want << "\n" << help.out;
  }
  MakeData();
  struct Case {
    std::vector<std::string> extra;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {{"--roi", "0,0,0,4,4"}, "--roi is '0,0,0,4,4'; expected 6 comma-separated"},
           {{"--patch", "5,x,25"}, "--patch is '5,x,25'"},
           {{"--memory-limit", "lots"}, "--memory-limit is 'lots'"},
           {{"--follow"}, "--follow is for a prediction job on a daemon: add --host"},
       }) {
    std::vector<std::string> args = {"predict", "model.h5", "raw_0.h5:/raw", "bad.zarr"};
    args.insert(args.end(), c.extra.begin(), c.extra.end());
    Result r = Run(args);
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_NE(r.out.find(c.message), std::string::npos) << c.message << "\n" << r.out;
  }
  Result missing = Run({"predict", "model.h5", "raw_0.h5:/nope", "bad.zarr"});
  EXPECT_NE(missing.code, 0) << missing.out;
  EXPECT_NE(missing.out.find("nope"), std::string::npos) << missing.out;
  Result job = Run({"predict", "jobs/7", "raw_0.h5:/raw", "bad.zarr"});
  EXPECT_EQ(job.code, 2) << job.out;
  EXPECT_NE(job.out.find("add --host HOST"), std::string::npos) << job.out;

  // The worker as a daemon's: --model-file stands only for a "jobs/N" model, and a "jobs/N"
  // model needs it; the spec's paths are confined to --data-dir.
  auto write_spec = [&](const std::string& model, const std::string& output) {
    v1::JobSpec spec;
    spec.mutable_prediction()->set_model(model);
    spec.mutable_prediction()->set_input("raw_0.h5:/raw");
    spec.mutable_prediction()->set_output(output);
    std::ofstream out(dir_ / "spec.pb", std::ios::binary);
    spec.SerializeToOstream(&out);
    return (dir_ / "spec.pb").string();
  };
  Result r = Run({"predict", "--job-spec", write_spec("model.h5", "x.zarr"), "--data-dir",
                  dir_.string(), "--model-file", "/etc/passwd"},
                 ELK_WORKER_BIN);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("--model-file is set by elektronnd for a job whose model is 'jobs/N'"),
            std::string::npos)
      << r.out;
  r = Run({"predict", "--job-spec", write_spec("jobs/7", "x.zarr"), "--data-dir", dir_.string()},
          ELK_WORKER_BIN);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("job.prediction.model is 'jobs/7'"), std::string::npos) << r.out;
  r = Run(
      {"predict", "--job-spec", write_spec("model.h5", "../x.zarr"), "--data-dir", dir_.string()},
      ELK_WORKER_BIN);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("job.prediction.output is '../x.zarr'"), std::string::npos) << r.out;
  r = Run({"predict", "--model-file", "model.h5", "model.h5", "raw_0.h5:/raw", "x.zarr"},
          ELK_WORKER_BIN);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("--model-file requires --job-spec"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace elektronn
