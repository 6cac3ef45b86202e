// `elektronn one-step IN.h5 OUT.h5` (run by elektronn-worker): ELEKTRONN2's rebuild_rnn on a saved
// model of examples/rnn_sequence.lua; the result has no Scan, takes the memory as an input and
// keeps the step's parameters. Bad input names what is wrong.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/graph/network.h"
#include "engine/io/model_file.h"
#include "engine/lua/job_file.h"
#include "kernels/backend.h"
#include "tests/support/cli_test.h"
#include "tests/support/examples.h"

namespace elektronn {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

class OneStepCli : public testing::CliTest {
 protected:
  void SetUp() override { MakeDir("elk_one_step_cli_"); }
  int OneStep(const std::string& args) {
    return Run(absl::StrCat("OMP_NUM_THREADS=1 ", ELK_ELEKTRONN_BIN, " one-step ", args));
  }
  // The example's model with freshly initialised parameters, saved as a model file.
  std::string SaveExampleModel() {
    auto job = LoadJobFile(testing::ExamplePath("rnn_sequence.lua"));
    EXPECT_TRUE(job.ok()) << job.status();
    if (!job.ok()) return "";
    auto backend = kernels::CreateCpuBackend();
    auto net = Network::Create(job->model(), backend.get(), {.seed = 5});
    EXPECT_TRUE(net.ok()) << net.status();
    if (!net.ok()) return "";
    const std::string path = (dir_ / "rnn.h5").string();
    EXPECT_TRUE(SaveModel(path, **net, nullptr).ok());
    return path;
  }
};

TEST_F(OneStepCli, WritesTheStepModelWithTheSameParameters) {
  const std::string in = SaveExampleModel();
  ASSERT_FALSE(in.empty());
  const std::string out = (dir_ / "rnn_one_step.h5").string();
  ASSERT_EQ(OneStep(in + " " + out), 0) << err_;
  EXPECT_THAT(out_, HasSubstr(out + ": one-step model, inputs "));
  auto before = ReadModelFile(in);
  auto after = ReadModelFile(out);
  ASSERT_TRUE(before.ok()) << before.status();
  ASSERT_TRUE(after.ok()) << after.status();
  int scans = 0;
  for (const auto& n : before->spec.nodes()) scans += n.has_scan();
  EXPECT_EQ(scans, 1);
  for (const auto& n : after->spec.nodes()) EXPECT_FALSE(n.has_scan()) << n.name();
  ASSERT_FALSE(after->params.empty());
  for (const auto& [key, value] : after->params) {
    ASSERT_TRUE(before->params.contains(key)) << key;
    EXPECT_EQ(value, before->params.at(key)) << key;
  }
  // The one-step model has no Scan left to unroll.
  ASSERT_NE(OneStep(out + " " + (dir_ / "again.h5").string()), 0);
  EXPECT_THAT(err_, HasSubstr("has 0 Scan nodes"));
  EXPECT_FALSE(fs::exists(dir_ / "again.h5"));
}

TEST_F(OneStepCli, MissingOrBrokenInputIsNamed) {
  ASSERT_NE(OneStep((dir_ / "nope.h5").string() + " " + (dir_ / "out.h5").string()), 0);
  EXPECT_THAT(err_, HasSubstr("nope.h5"));
  std::ofstream(dir_ / "junk.h5") << "not hdf5";
  ASSERT_NE(OneStep((dir_ / "junk.h5").string() + " " + (dir_ / "out.h5").string()), 0);
  EXPECT_THAT(err_, HasSubstr("junk.h5"));
  EXPECT_FALSE(fs::exists(dir_ / "out.h5"));
}

}  // namespace
}  // namespace elektronn
