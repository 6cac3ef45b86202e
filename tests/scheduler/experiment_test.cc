// Experiment files: members, defaults, overrides and every error naming member and key.
#include "scheduler/experiment.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace elektronn::sched {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

class ExperimentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("elk-exp-" + std::to_string(getpid()));
    fs::create_directories(dir_ / "jobs");
    std::ofstream(dir_ / "jobs" / "a.lua") << "-- a job file\n";
    std::ofstream(dir_ / "jobs" / "b.lua") << "-- another\n";
  }
  void TearDown() override { fs::remove_all(dir_); }

  absl::StatusOr<v1::Experiment> Load(const std::string& source) {
    return LoadExperimentSource(source, (dir_ / "exp.lua").string());
  }
  std::string ErrorOf(const std::string& source) {
    auto e = Load(source);
    EXPECT_FALSE(e.ok()) << "accepted:\n" << source;
    return e.ok() ? "" : std::string(e.status().message());
  }

  fs::path dir_;
};

TEST_F(ExperimentTest, ASweepBuiltWithALoop) {
  auto e = Load(R"(
experiment = 'lr-sweep'
defaults = {job = 'jobs/a.lua', gpus = 1, cpu_threads = 4, memory = '8G',
            set = {n_steps = 2000, optimiser = 'Adam'}}
members = {}
for i, lr in ipairs{1e-3, 3e-4, 1e-4} do
  members[#members + 1] = {name = ('lr%g'):format(lr), set = {lr = lr}, group = 'a'}
end
members[#members + 1] = {name = 'big', job = 'jobs/b.lua', gpus = 2, priority = 5,
                         hosts = {'gpu2:7077'}, set = {n_steps = 10, augment = true}}
)");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->name(), "lr-sweep");
  EXPECT_EQ(e->file(), (dir_ / "exp.lua").string());
  ASSERT_EQ(e->members_size(), 4);
  const v1::ExperimentMember& m0 = e->members(0);
  EXPECT_EQ(m0.name(), "lr0.001");
  EXPECT_EQ(m0.job_file(), (dir_ / "jobs" / "a.lua").string());
  EXPECT_EQ(m0.needs().gpus(), 1);
  EXPECT_EQ(m0.needs().cpu_threads(), 4);
  EXPECT_EQ(m0.needs().memory_bytes(), int64_t{8} << 30);
  EXPECT_EQ(m0.group(), "a");
  // The member's set extends the defaults' set; keys in order; the shortest exact decimal.
  EXPECT_THAT(m0.overrides(), ElementsAre("lr=0.001", "n_steps=2000", "optimiser=Adam"));
  EXPECT_THAT(e->members(1).overrides(),
              ElementsAre("lr=0.0003", "n_steps=2000", "optimiser=Adam"));
  const v1::ExperimentMember& big = e->members(3);
  EXPECT_EQ(big.job_file(), (dir_ / "jobs" / "b.lua").string());
  EXPECT_EQ(big.needs().gpus(), 2);
  EXPECT_EQ(big.priority(), 5);
  EXPECT_THAT(big.hosts(), ElementsAre("gpu2:7077"));
  EXPECT_THAT(big.overrides(), ElementsAre("augment=true", "n_steps=10", "optimiser=Adam"));
  EXPECT_EQ(big.group(), "");
}

TEST_F(ExperimentTest, NameDefaultsToTheFileName) {
  auto e = Load("members = {{name = 'x', job = 'jobs/a.lua', gpus = 0}}");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->name(), "exp");
  EXPECT_EQ(e->members(0).needs().gpus(), 0);
}

// The name names the scheduler's state files: no path may come out of it.
TEST_F(ExperimentTest, NamesThatWouldLeaveTheStateDirectoryAreRefused) {
  for (const char* bad : {"..", ".", "../x", "a/b", ""}) {
    EXPECT_THAT(ErrorOf(absl::StrCat("experiment = '", bad, "'\nmembers = {{name = 'x'}}")),
                HasSubstr("experiment must be a name"))
        << bad;
  }
  auto odd = LoadExperimentSource("members = {{name = 'x', job = 'jobs/a.lua'}}",
                                  (dir_ / "my run.lua").string());
  ASSERT_FALSE(odd.ok());
  EXPECT_THAT(std::string(odd.status().message()), HasSubstr("set experiment = '...'"));
  EXPECT_FALSE(ValidExperimentName(".."));
  EXPECT_TRUE(ValidExperimentName("lr-sweep.2"));
}

TEST_F(ExperimentTest, ErrorsNameTheMemberAndTheKey) {
  EXPECT_THAT(ErrorOf("members = {{name = 'x', job = 'jobs/a.lua', gpu = 1}}"),
              HasSubstr("exp.lua: member 1 ('x'): unknown key 'gpu' (did you mean 'gpus'?)"));
  EXPECT_THAT(ErrorOf("members = {{name = 'x', job = 'jobs/a.lua', gpus = 'two'}}"),
              HasSubstr("member 1 ('x'): key 'gpus' must be an integer, got string 'two'"));
  EXPECT_THAT(ErrorOf("members = {{name = 'x', job = 'jobs/a.lua', gpus = -1}}"),
              HasSubstr("key 'gpus' must be 0 to 64, got -1"));
  EXPECT_THAT(ErrorOf("members = {{name = 'x', job = 'nope.lua'}}"),
              HasSubstr("key 'job' names 'nope.lua', which is not a file"));
  EXPECT_THAT(ErrorOf("members = {{job = 'jobs/a.lua'}}"), HasSubstr("member 1: has no name"));
  EXPECT_THAT(ErrorOf("members = {{name = 'x'}}"), HasSubstr("member 1 ('x'): has no job"));
  EXPECT_THAT(ErrorOf("members = {{name = 'a b', job = 'jobs/a.lua'}}"),
              HasSubstr("key 'name' must be 1 to 64 letters"));
  EXPECT_THAT(ErrorOf("members = {{name = 'x', job = 'jobs/a.lua'},"
                      " {name = 'x', job = 'jobs/b.lua'}}"),
              HasSubstr("member 2 ('x'): has the name of member 1"));
  EXPECT_THAT(ErrorOf("members = {{name = 'x', job = 'jobs/a.lua', set = {s = {1}}}}"),
              HasSubstr("key 'set' 's' must be a number, boolean or string"));
  EXPECT_THAT(ErrorOf("members = {{name = 'x', job = 'jobs/a.lua', memory = 'lots'}}"),
              HasSubstr("key 'memory'"));
  EXPECT_THAT(ErrorOf("defaults = {name = 'x'}\nmembers = {{name = 'y', job = 'jobs/a.lua'}}"),
              HasSubstr("defaults: unknown key 'name'"));
  EXPECT_THAT(ErrorOf("members = {}"), HasSubstr("`members` must be a non-empty list"));
  EXPECT_THAT(ErrorOf("x = 1"), HasSubstr("`members` must be a list of member tables"));
}

TEST_F(ExperimentTest, TheSandboxHolds) {
  EXPECT_THAT(ErrorOf("os.execute('touch /tmp/x')"), HasSubstr("os"));
  EXPECT_THAT(ErrorOf("io.open('/etc/passwd')"), HasSubstr("io"));
  EXPECT_THAT(ErrorOf("while true do end"), HasSubstr("Lua instructions"));
}

TEST_F(ExperimentTest, FileErrors) {
  EXPECT_THAT(std::string(LoadExperimentFile((dir_ / "missing.lua").string()).status().message()),
              HasSubstr("cannot read experiment file"));
  std::ofstream(dir_ / "syntax.lua") << "members = {\n";
  EXPECT_THAT(std::string(LoadExperimentFile((dir_ / "syntax.lua").string()).status().message()),
              HasSubstr("syntax.lua:"));
}

}  // namespace
}  // namespace elektronn::sched
