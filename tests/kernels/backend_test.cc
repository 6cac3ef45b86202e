// CreateBackend: the device names a job may give, and clear errors for the rest.
#include "kernels/backend.h"

#include <gtest/gtest.h>

namespace elektronn::kernels {
namespace {

TEST(CreateBackend, CpuByNameOrDefault) {
  for (const char* device : {"", "cpu"}) {
    auto b = CreateBackend({.device = device, .threads = 1});
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_NE((*b)->name().find("cpu"), std::string::npos) << (*b)->name();
  }
}

TEST(CreateBackend, UnknownOrMissingDevicesAreErrorsNamingThem) {
  auto cuda = CreateBackend({.device = "cuda:0"});
  EXPECT_EQ(cuda.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(cuda.status().message().find("'cuda:0'"), std::string::npos) << cuda.status();
  auto bad = CreateBackend({.device = "gpu"});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("valid: cpu, cuda:N"), std::string::npos);
  EXPECT_EQ(CreateBackend({.device = "cpu", .threads = -1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AvailableDevices(), std::vector<std::string>{"cpu"});
}

}  // namespace
}  // namespace elektronn::kernels
