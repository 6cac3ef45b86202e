// `elektronn spec` / `submit` --precision, --device, --tf32, --deterministic: the JobSpec they
// build carries them in resources (--precision overriding the job file's `precision`); bad
// values are refused naming them.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "elektronn/v1/training.pb.h"
#include "tests/support/cli_test.h"
#include "tests/support/tiny_job.h"

namespace elektronn {
namespace {

class SpecPrecision : public testing::CliTest {
 protected:
  void SetUp() override {
    MakeDir("spec_precision_");
    testing::TinyJobOptions tiny;
    tiny.save_path = (dir_ / "runs").string();
    std::ofstream(dir_ / "tiny.lua") << testing::TinyJobSource(tiny) << "\nprecision = 'fp32'\n";
  }
  // The JobSpec `elektronn spec tiny.lua <args>` writes; fails the test if it does not.
  v1::JobSpec Spec(const std::string& args) {
    const std::string file = (dir_ / "spec.pb").string();
    const int rc = Run(std::string(ELK_ELEKTRONN_BIN) + " spec " + (dir_ / "tiny.lua").string() +
                       " -o " + file + " " + args);
    EXPECT_EQ(rc, 0) << err_;
    v1::JobSpec spec;
    EXPECT_TRUE(spec.ParseFromString(Read(file))) << "no JobSpec in " << file;
    return spec;
  }
};

TEST_F(SpecPrecision, JobFileValueUnlessOverridden) {
  EXPECT_EQ(Spec("").resources().precision(), "fp32");
  EXPECT_EQ(Spec("--precision bf16").resources().precision(), "bf16");
}

TEST_F(SpecPrecision, DeviceAndCudaNumerics) {
  const v1::JobSpec plain = Spec("");
  EXPECT_EQ(plain.resources().device(), "");
  EXPECT_FALSE(plain.resources().allow_tf32());
  EXPECT_FALSE(plain.resources().deterministic());
  const v1::JobSpec gpu = Spec("--device cuda:1 --tf32 --deterministic");
  EXPECT_EQ(gpu.resources().device(), "cuda:1");
  EXPECT_TRUE(gpu.resources().allow_tf32());
  EXPECT_TRUE(gpu.resources().deterministic());
  EXPECT_NE(Run(std::string(ELK_ELEKTRONN_BIN) + " spec " + (dir_ / "tiny.lua").string() +
                " --device gpu0"),
            0);
  EXPECT_NE(err_.find("'gpu0' is not a device: cpu or cuda:N"), std::string::npos) << err_;
}

TEST_F(SpecPrecision, RejectsOtherValues) {
  EXPECT_NE(Run(std::string(ELK_ELEKTRONN_BIN) + " spec " + (dir_ / "tiny.lua").string() +
                " --precision fp16"),
            0);
  EXPECT_NE(err_.find("fp16"), std::string::npos) << err_;
  EXPECT_EQ(Run(std::string(ELK_ELEKTRONN_BIN) + " submit --help"), 0);
  EXPECT_NE(out_.find("--precision"), std::string::npos) << "submit --help:\n" << out_;
}

}  // namespace
}  // namespace elektronn
