// bf16 mixed precision (issue 14) in the engine: the job file's `precision` key and its errors
// (training in bf16: bf16_training_test.cc).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "engine/lua/job_file.h"
#include "kernels/backend.h"
#include "tests/support/examples.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;

using testing::ExamplePath;

std::string Neuro3dLiteWith(const std::string& extra) {
  std::ifstream in(ExamplePath("neuro3d_lite.lua"));
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_FALSE(ss.str().empty()) << "examples/neuro3d_lite.lua not found";
  return ss.str() + "\n" + extra + "\n";
}

TEST(Precision, JobFileKeyGoesToTheResources) {
  auto bf16 = LoadJobSource(Neuro3dLiteWith("precision = 'bf16'"), "neuro3d_lite.lua");
  ASSERT_TRUE(bf16.ok()) << bf16.status();
  EXPECT_EQ(bf16->resources().precision(), "bf16");
  auto fp32 = LoadJobSource(Neuro3dLiteWith("precision = 'fp32'"), "neuro3d_lite.lua");
  ASSERT_TRUE(fp32.ok()) << fp32.status();
  EXPECT_EQ(fp32->resources().precision(), "fp32");
  auto absent = LoadJobSource(Neuro3dLiteWith(""), "neuro3d_lite.lua");
  ASSERT_TRUE(absent.ok()) << absent.status();
  EXPECT_EQ(absent->resources().precision(), "");
  ASSERT_TRUE(kernels::ParseDataType("x", absent->resources().precision()).ok());
  EXPECT_EQ(*kernels::ParseDataType("x", absent->resources().precision()), kernels::DataType::kF32);
}

TEST(Precision, BadValueNamesTheKeyAndTheValidValues) {
  auto job = LoadJobSource(Neuro3dLiteWith("precision = 'fp16'"), "neuro3d_lite.lua");
  ASSERT_FALSE(job.ok());
  const std::string m(job.status().message());
  EXPECT_NE(m.find("precision"), std::string::npos) << m;
  EXPECT_NE(m.find("'fp32', 'bf16'"), std::string::npos) << m;
  EXPECT_NE(m.find("'fp16'"), std::string::npos) << m;

  // The same check where a JobSpec arrives without a job file (daemon, --job-spec).
  auto p = kernels::ParseDataType("job.resources.precision", "half");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(p.status().message(),
            "job.resources.precision is 'half'; valid values: 'fp32' (default), 'bf16'");
}

}  // namespace
}  // namespace elektronn
