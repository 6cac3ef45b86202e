// `elektronn profile job.lua` (run by elektronn-worker): every node of the model listed with its
// forward and backward times, shares and a total, as a table and as JSON.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/graph/network.h"
#include "engine/io/model_file.h"
#include "kernels/backend.h"
#include "tests/support/cli_test.h"
#include "tests/support/tiny_job.h"

namespace elektronn {
namespace {

using ::testing::HasSubstr;

class ProfileCli : public testing::CliTest {
 protected:
  void SetUp() override {
    MakeDir("elk_profile_cli_");
    options_.errors = true;
    options_.hidden =
        "out = nm.Conv{out, 4, {1, 3, 3}, {1, 2, 2}}\n  out = nm.Conv{out, 4, {1, 3, 3}}";
    options_.input_zxy = {3, 20, 20};
    options_.batch_size = 2;
    std::ofstream(dir_ / "job.lua") << testing::TinyJobSource(options_);
  }
  int Profile(const std::string& args) {
    return Run(absl::StrCat("OMP_NUM_THREADS=1 ", ELK_ELEKTRONN_BIN, " profile ", args));
  }
  testing::TinyJobOptions options_;
};

TEST_F(ProfileCli, JsonListsEveryNodeWithItsTimes) {
  ASSERT_EQ(Profile((dir_ / "job.lua").string() + " --steps 3 --json --threads 1"), 0) << err_;
  auto job = testing::TinyJob(options_);
  ASSERT_TRUE(job.ok()) << job.status();
  auto j = nlohmann::json::parse(out_);
  EXPECT_EQ(j["steps"], 3);
  EXPECT_EQ(j["batch_size"], 2);  // the job's
  EXPECT_EQ(j["backend"], "cpu");
  EXPECT_EQ(j["input"], "raw");
  EXPECT_THAT(j["input_shape"].get<std::string>(), HasSubstr("(20,y)"));
  const auto& nodes = j["nodes"];
  ASSERT_EQ(nodes.size(), static_cast<size_t>(job->model().nodes_size()));
  double forward = 0, backward = 0, share = 0;
  int convs = 0;
  for (int i = 0; i < job->model().nodes_size(); ++i) {
    const auto& n = nodes[i];
    SCOPED_TRACE(n.dump());
    EXPECT_EQ(n["name"], job->model().nodes(i).name());  // every node, in model order
    EXPECT_GT(n["forward_ms"].get<double>(), 0);
    if (n["op"] == "Conv") {
      ++convs;
      EXPECT_GT(n["backward_ms"].get<double>(), 0);
    }
    forward += n["forward_ms"].get<double>();
    backward += n["backward_ms"].get<double>();
    share += n["share"].get<double>();
  }
  EXPECT_EQ(convs, 3);
  EXPECT_GT(j["backward_ms"].get<double>(), 0);
  EXPECT_NEAR(j["forward_ms"].get<double>(), forward, 1e-9);
  EXPECT_NEAR(j["backward_ms"].get<double>(), backward, 1e-9);
  EXPECT_NEAR(j["total_ms"].get<double>(), forward + backward, 1e-9);
  EXPECT_NEAR(share, 1.0, 1e-9);
}

TEST_F(ProfileCli, TableListsEveryNodeAndTheTotal) {
  ASSERT_EQ(Profile((dir_ / "job.lua").string() + " --steps 1 --batch-size 1"), 0) << err_;
  EXPECT_THAT(out_, HasSubstr("batch 1, CPU backend; mean of 1 forward+backward passes"));
  EXPECT_THAT(out_, HasSubstr("node     op              forward ms  backward ms  total ms"));
  auto job = testing::TinyJob(options_);
  ASSERT_TRUE(job.ok());
  for (const auto& n : job->model().nodes()) {
    EXPECT_NE(out_.find("\n" + n.name() + " "), std::string::npos) << n.name() << "\n" << out_;
  }
  EXPECT_THAT(out_, HasSubstr("\ntotal "));
  EXPECT_THAT(out_, HasSubstr("100.0%\n"));
}

// A fine-tuning job (model_load_path, no create_model) profiles the saved model.
TEST_F(ProfileCli, ProfilesTheModelOfAFineTuningJob) {
  auto job = testing::TinyJob(options_);
  ASSERT_TRUE(job.ok()) << job.status();
  auto backend = kernels::CreateCpuBackend();
  auto net = Network::Create(job->model(), backend.get(), {.batch_size = 1});
  ASSERT_TRUE(net.ok()) << net.status();
  ASSERT_TRUE(SaveModel((dir_ / "saved.h5").string(), **net, nullptr).ok());
  std::string source = testing::TinyJobSource(options_);
  source =
      source.substr(0, source.find("function create_model()")) + "model_load_path = 'saved.h5'\n";
  std::ofstream(dir_ / "finetune.lua") << source;
  ASSERT_EQ(Profile((dir_ / "finetune.lua").string() + " --steps 1 --json"), 0) << err_;
  auto j = nlohmann::json::parse(out_);
  ASSERT_EQ(j["nodes"].size(), static_cast<size_t>(job->model().nodes_size()));
  EXPECT_EQ(j["nodes"][1]["name"], job->model().nodes(1).name());
  EXPECT_GT(j["backward_ms"].get<double>(), 0);
  // A missing model file names the key.
  std::ofstream(dir_ / "finetune.lua")
      << source.substr(0, source.find("model_load_path")) + "model_load_path = 'nowhere.h5'\n";
  EXPECT_NE(Profile((dir_ / "finetune.lua").string()), 0);
  EXPECT_THAT(err_, HasSubstr("model_load_path"));
}

TEST_F(ProfileCli, BadArgumentsExitTwo) {
  EXPECT_EQ(Profile((dir_ / "job.lua").string() + " --steps 0"), 2);
  EXPECT_THAT(err_, HasSubstr("--steps must be at least 1, got 0"));
  EXPECT_EQ(Profile((dir_ / "missing.lua").string()), 2);
}

}  // namespace
}  // namespace elektronn
