// The Slurm back end's pure parts: the hetjob script of a group (run by bash against a fake
// srun, in a directory whose name needs quoting), the member's JobSpec as Slurm runs it, and the
// reading of scontrol's job states.
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "elektronn/v1/training.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/slurm.h"

namespace elektronn::sched {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

v1::ExperimentMember Member(const std::string& name, int gpus, int threads, int64_t memory) {
  v1::ExperimentMember m;
  m.set_name(name);
  m.mutable_needs()->set_gpus(gpus);
  m.mutable_needs()->set_cpu_threads(threads);
  m.mutable_needs()->set_memory_bytes(memory);
  return m;
}

std::string Read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void Write(const fs::path& p, const std::string& text, mode_t mode = 0644) {
  std::ofstream(p) << text;
  chmod(p.c_str(), mode);
}

std::vector<SlurmComponent> TwoComponents(const std::string& dir) {
  SlurmComponent a, b;
  a.member = Member("a", 1, 4, int64_t{8} << 30);
  b.member = Member("b-2", 0, 0, 0);
  for (SlurmComponent* c : {&a, &b}) {
    c->spec_path = dir + "/" + c->member.name() + ".pb";
    c->training_dir = dir + "/" + c->member.name();
    c->data_dir = dir + "/data";
  }
  return {a, b};
}

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

TEST(SlurmGroupScript, OneComponentPerMemberJoinedByHetjob) {
  SlurmOptions o;
  o.dir = "/shared/exp-slurm";
  o.partition = "gpu";
  o.worker_binary = "/opt/elektronn/bin/elektronn-worker";
  const std::string s = SlurmGroupScript("lr sweep", "pair", TwoComponents(o.dir), o);
  std::vector<std::string> sbatch;
  for (const std::string& l : Lines(s)) {
    if (l.rfind("#SBATCH", 0) == 0) sbatch.push_back(l);
  }
  // The components' options, in member order, each after the `hetjob` separator but the first.
  EXPECT_THAT(
      sbatch,
      ElementsAre("#SBATCH --job-name=lr_sweep.pair", "#SBATCH --output=groups/pair.out",
                  "#SBATCH --ntasks=1 --cpus-per-task=4 --mem=8192M --gpus-per-task=1 "
                  "--partition=gpu",
                  "#SBATCH hetjob", "#SBATCH --ntasks=1 --cpus-per-task=1 --partition=gpu"));
  EXPECT_THAT(s, HasSubstr("srun --het-group=0 --ntasks=1 --cpus-per-task=4 --gpus-per-task=1 "));
  EXPECT_THAT(s, HasSubstr("srun --het-group=1 --ntasks=1 --cpus-per-task=1 --output="));
  EXPECT_THAT(s, HasSubstr("OMP_NUM_THREADS=4 srun"));
  EXPECT_EQ(s.rfind("#!/bin/bash\n", 0), 0u);
}

TEST(SlurmGroupScript, NoPartitionNoMemoryNoGpus) {
  SlurmOptions o;
  o.dir = "/d";
  o.worker_binary = "w";
  std::vector<SlurmComponent> c = {TwoComponents(o.dir)[1]};
  const std::string s = SlurmGroupScript("e", "b-2", c, o);
  EXPECT_THAT(s, Not(HasSubstr("hetjob")));
  EXPECT_THAT(s, Not(HasSubstr("--partition")));
  EXPECT_THAT(s, Not(HasSubstr("--mem")));
  EXPECT_THAT(s, Not(HasSubstr("gpus")));
}

// bash runs the script with a fake srun that records its arguments: every path arrives as one
// word, unchanged, however it is spelled; the members run in the background (both started
// before either ends); a failing member makes the script fail, and its exit status is kept.
class SlurmScriptRun : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/elk_slurm_script.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    dir_ = root_ / "it's a $(touch pwned) `dir`; x";
    fs::create_directories(dir_ / "bin");
    // srun: records its arguments (one per line) as srun.<het group>, waits until both members
    // started, exits with $FAKE_SRUN_EXIT_<het group> (default 0).
    Write(dir_ / "bin" / "srun",
          "#!/bin/bash\n"
          "g=${1#--het-group=}\n"
          "printf '%s\\n' \"$@\" > srun.$g\n"
          "touch started.$g\n"
          "for _ in $(seq 100); do [ -e started.0 ] && [ -e started.1 ] && break; sleep 0.05; "
          "done\n"
          "[ -e started.0 ] && [ -e started.1 ] || exit 99\n"
          "v=FAKE_SRUN_EXIT_$g\n"
          "exit ${!v:-0}\n",
          0755);
    o_.dir = dir_.string();
    o_.worker_binary = (dir_ / "bin" / "elektronn worker").string();
  }
  void TearDown() override { fs::remove_all(root_); }

  int RunScript(const std::string& env = "") {
    Write(dir_ / "job.sbatch", SlurmGroupScript("exp", "pair", TwoComponents(o_.dir), o_));
    const std::string cmd = absl::StrCat(
        "cd ", SlurmQuoted(root_.string()), " && PATH=", SlurmQuoted((dir_ / "bin").string()),
        ":$PATH ", env, " bash ", SlurmQuoted((dir_ / "job.sbatch").string()), " >/dev/null 2>&1");
    const int rc = std::system(cmd.c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  }
  static std::string SlurmQuoted(const std::string& s) { return ShellQuote(s); }

  fs::path root_, dir_;
  SlurmOptions o_;
};

TEST_F(SlurmScriptRun, PathsArriveUnchangedAndMembersRunTogether) {
  ASSERT_EQ(RunScript(), 0);
  EXPECT_FALSE(fs::exists(dir_ / "pwned")) << "a path was run as a command";
  EXPECT_FALSE(fs::exists(root_ / "pwned"));
  const std::vector<std::string> a = Lines(Read(dir_ / "srun.0"));
  EXPECT_THAT(a, ElementsAre("--het-group=0", "--ntasks=1", "--cpus-per-task=4",
                             "--gpus-per-task=1", "--output=a.out", o_.worker_binary, "train",
                             "--job-spec", o_.dir + "/a.pb", "--data-dir", o_.dir + "/data",
                             "--no-shell", "--status-interval", "30", "--overwrite"));
  const std::vector<std::string> b = Lines(Read(dir_ / "srun.1"));
  ASSERT_GE(b.size(), 8u);
  EXPECT_EQ(b[0], "--het-group=1");
  EXPECT_EQ(b[7], o_.dir + "/b-2.pb");
  EXPECT_EQ(Read(dir_ / "a.exit"), "0\n");
  EXPECT_EQ(Read(dir_ / "b-2.exit"), "0\n");
}

TEST_F(SlurmScriptRun, ResumesAMemberWithACheckpoint) {
  fs::create_directories(dir_ / "b-2");
  Write(dir_ / "b-2" / "b-2-LAST.h5", "");
  ASSERT_EQ(RunScript(), 0);
  EXPECT_EQ(Lines(Read(dir_ / "srun.0")).back(), "--overwrite");
  EXPECT_EQ(Lines(Read(dir_ / "srun.1")).back(), "--resume");
}

TEST_F(SlurmScriptRun, AFailingMemberFailsTheJob) {
  EXPECT_EQ(RunScript("FAKE_SRUN_EXIT_1=3"), 1);
  EXPECT_EQ(Read(dir_ / "a.exit"), "0\n");
  EXPECT_EQ(Read(dir_ / "b-2.exit"), "3\n");
}

TEST(ShellQuote, BashReadsItBack) {
  for (const std::string s : {"plain", "it's", "a b", "$(x) `y` \"z\" \\ ;|&", "", "''"}) {
    const std::string cmd = "printf %s " + ShellQuote(s);
    FILE* p = popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string got;
    char buf[256];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0) got.append(buf, n);
    pclose(p);
    EXPECT_EQ(got, s);
  }
}

TEST(SlurmSafeName, KeepsMemberNameCharacters) {
  EXPECT_EQ(SlurmSafeName("lr=1e-3+x.y_z"), "lr=1e-3+x.y_z");
  EXPECT_EQ(SlurmSafeName("a b/c'd"), "a_b_c_d");
  EXPECT_EQ(SlurmSafeName(""), "_");
}

TEST(SlurmMemberSpec, TrainsIntoTheSlurmDirectoryWithItsNeeds) {
  v1::JobSpec in;
  in.mutable_training()->set_save_path("~/elsewhere");
  in.mutable_training()->set_save_name("job");
  in.mutable_training()->set_n_steps(7);
  auto out = SlurmMemberSpec(in.SerializeAsString(), Member("a", 2, 3, 1 << 20), "/s");
  ASSERT_TRUE(out.ok()) << out.status();
  v1::JobSpec spec;
  ASSERT_TRUE(spec.ParseFromString(*out));
  EXPECT_EQ(spec.training().save_path(), "/s");
  EXPECT_EQ(spec.training().save_name(), "a");
  EXPECT_EQ(spec.training().n_steps(), 7);
  EXPECT_EQ(spec.resources().device(), "cuda:0");
  EXPECT_EQ(spec.resources().cpu_threads(), 3);
  EXPECT_EQ(spec.resources().memory_bytes(), 1 << 20);
  auto cpu = SlurmMemberSpec(in.SerializeAsString(), Member("b", 0, 0, 0), "/s");
  ASSERT_TRUE(cpu.ok());
  ASSERT_TRUE(spec.ParseFromString(*cpu));
  EXPECT_EQ(spec.resources().device(), "cpu");
  EXPECT_FALSE(SlurmMemberSpec("\xff\xff garbage", Member("c", 0, 0, 0), "/s").ok());
}

TEST(ParseScontrolJobs, OneStatePerComponent) {
  const std::string text =
      "JobId=11 HetJobId=11 HetJobOffset=0 JobName=e.pair UserId=root(0) JobState=RUNNING "
      "Reason=None Dependency=(null) ExitCode=0:0 Command=/a b/c.sbatch\n"
      "JobId=12 HetJobId=11 HetJobOffset=1 JobName=e.pair JobState=PENDING Reason=Resources "
      "ExitCode=0:0\n";
  const std::vector<SlurmJobState> j = ParseScontrolJobs(text);
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0].job_id, "11");
  EXPECT_EQ(j[0].state, "RUNNING");
  EXPECT_EQ(j[1].state, "PENDING");
  EXPECT_EQ(j[1].reason, "Resources");
  EXPECT_EQ(j[0].reason, "None");
  EXPECT_FALSE(SlurmJobEnded(j));
  EXPECT_FALSE(SlurmJobEnded({}));
  EXPECT_TRUE(SlurmJobEnded({{"1", "COMPLETED", "0:0", ""}, {"2", "FAILED", "1:0", ""}}));
  EXPECT_TRUE(SlurmJobEnded({{"1", "CANCELLED", "0:15", ""}}));
  EXPECT_FALSE(SlurmJobEnded({{"1", "COMPLETED", "0:0", ""}, {"2", "COMPLETING", "0:0", ""}}));
  EXPECT_TRUE(SlurmJobSucceeded({{"1", "COMPLETED", "0:0", ""}, {"2", "COMPLETED", "0:0", ""}}));
  EXPECT_FALSE(SlurmJobSucceeded({{"1", "COMPLETED", "0:0", ""}, {"2", "FAILED", "1:0", ""}}));
  EXPECT_FALSE(SlurmJobSucceeded({{"1", "COMPLETED", "1:0", ""}}));
  EXPECT_FALSE(SlurmJobSucceeded({}));
}

}  // namespace
}  // namespace elektronn::sched
