// `elektronn calc`: the report and --json for a conv+pool chain and for a job file, and exit
// code 2 with a clear message for bad input.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/strings/str_cat.h"
#include "tests/support/cli_test.h"
#include "tests/support/tiny_job.h"

namespace elektronn {
namespace {

using ::testing::HasSubstr;

class CalcCli : public testing::CliTest {
 protected:
  void SetUp() override {
    MakeDir("elk_calc_cli_");
    testing::TinyJobOptions o;
    o.hidden = "out = nm.Conv{out, 4, {1, 3, 3}, {1, 2, 2}}";
    o.input_zxy = {3, 18, 18};
    std::ofstream(dir_ / "job.lua") << testing::TinyJobSource(o);
  }
  // Runs `elektronn calc <args>`; returns the exit code, stdout and stderr in out_/err_.
  int Calc(const std::string& args) { return Run(absl::StrCat(ELK_ELEKTRONN_BIN, " calc ", args)); }
};

TEST_F(CalcCli, PrintsTheReportOfAChain) {
  ASSERT_EQ(Calc("--filters 3,3,3 --poolings 2,2,1 --desired 100"), 0) << err_;
  EXPECT_THAT(out_, HasSubstr("patch_size (100) changed to (98) (size not possible)\n"
                              "patch_size: 98\n"));
  EXPECT_THAT(out_, HasSubstr("layer  fragment sizes  unpooled sizes  receptive fields  strides  "
                              "overlap\n"
                              "1      48              96              4                 2        "
                              "2\n"));
  EXPECT_THAT(out_, HasSubstr("offset: 9.0"));
  EXPECT_THAT(out_, HasSubstr("valid patch sizes: 18, 22, 26, 30, 34, 38, ..., 4998 (every 4; "
                              "1246 sizes)"));
  EXPECT_THAT(out_, HasSubstr("warning: Receptive fields are not centred with the even field of "
                              "view 18"));
}

TEST_F(CalcCli, JsonOfAnAnisotropicMfpChain) {
  ASSERT_EQ(Calc("--filters 1x6x6,4x4x4,2x2x2,1x1x1 --poolings 1x2x2,2x2x2,2x2x2,1x1x1 "
                 "--mfp-layers 1,1,0,0 --desired 8,211,211 --json"),
            0)
      << err_;
  auto j = nlohmann::json::parse(out_);
  ASSERT_EQ(j["axes"].size(), 3u);
  EXPECT_EQ(j["axes"][0]["patch_size"], 10);
  EXPECT_EQ(j["axes"][0]["change"], "patch_size (8) changed to (10) (size too small)");
  EXPECT_EQ(j["axes"][1]["patch_size"], 210);
  EXPECT_EQ(j["axes"][1]["receptive_fields"], nlohmann::json({7, 15, 23, 23}));
  EXPECT_EQ(j["axes"][2]["overlaps"], nlohmann::json({5, 11, 15, 15}));
  EXPECT_EQ(j["axes"][2]["offset"], 11.5);
  EXPECT_EQ(j["axes"][1]["valid_patch_sizes"][0], 26);
  EXPECT_TRUE(j["warnings"].empty());
}

TEST_F(CalcCli, AsksAJobFilesModel) {
  ASSERT_EQ(Calc((dir_ / "job.lua").string() + " --desired 3,25,18"), 0) << err_;
  EXPECT_THAT(out_, HasSubstr("x: patch_size (25) changed to (24) (size not possible)"));
  EXPECT_THAT(out_, HasSubstr("input 'raw' zxy: patch_size (3, 24, 18)"));
  EXPECT_THAT(out_, HasSubstr("valid sizes along x: 4, 6, 8, 10, 12, 14, ..., 4998 (every 2;"));
  EXPECT_THAT(out_, HasSubstr("Conv"));
  ASSERT_EQ(Calc((dir_ / "job.lua").string() + " --json --max-size 40"), 0) << err_;
  auto j = nlohmann::json::parse(out_);
  EXPECT_EQ(j["input"], "raw");
  EXPECT_EQ(j["axes"][1]["axis"], "x");
  EXPECT_EQ(j["axes"][1]["patch_size"], 18);
  EXPECT_EQ(j["axes"][1]["valid_patch_sizes"].size(), 19u);  // 4, 6, ..., 40
  EXPECT_EQ(j["nodes"][1]["spatial_shape"], nlohmann::json({3, 8, 8}));
  EXPECT_EQ(j["nodes"][1]["fov"], nlohmann::json({1, 4, 4}));
}

TEST_F(CalcCli, BadInputExitsTwoWithAClearMessage) {
  EXPECT_EQ(Calc("--filters 3,x --poolings 2,2"), 2);
  EXPECT_THAT(err_, HasSubstr("error: --filters: layer 2 is 'x'"));
  EXPECT_TRUE(out_.empty());
  EXPECT_EQ(Calc("--filters 3,3 --poolings 2,2 --force-center"), 2);
  EXPECT_THAT(err_, HasSubstr("even field of view 10"));
  EXPECT_EQ(Calc(""), 2);
  EXPECT_THAT(err_, HasSubstr("either a job file or --filters and --poolings"));
  EXPECT_EQ(Calc((dir_ / "job.lua").string() + " --desired 3,25"), 2);
  EXPECT_THAT(err_, HasSubstr("--desired has 2 sizes; input node 'raw' has 3 spatial axes"));
  EXPECT_EQ(Calc("--filters 3 --poolings 1 --ndim 4"), 2);  // CLI11's range check
}

}  // namespace
}  // namespace elektronn
