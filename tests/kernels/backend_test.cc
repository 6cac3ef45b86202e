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
  // No host has 10000 GPUs: without the CUDA backend, without a driver or without that
  // device, the error is UNAVAILABLE and says so ("no CUDA backend" / "no CUDA device").
  auto cuda = CreateBackend({.device = "cuda:9999"});
  EXPECT_EQ(cuda.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(cuda.status().message().find("'cuda:9999'"), std::string::npos) << cuda.status();
  EXPECT_NE(cuda.status().message().find("no CUDA"), std::string::npos) << cuda.status();
  auto bad = CreateBackend({.device = "gpu"});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("valid: cpu, cuda:N"), std::string::npos);
  EXPECT_EQ(CreateBackend({.device = "cpu", .threads = -1}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(AvailableDevices, CpuFirstThenTheCudaDevicesFound) {
  const std::vector<std::string> d = AvailableDevices();
  ASSERT_FALSE(d.empty());
  EXPECT_EQ(d[0], "cpu");
  for (size_t i = 1; i < d.size(); ++i) {
    EXPECT_EQ(d[i], "cuda:" + std::to_string(i - 1));
    // Every device listed can be created.
    auto b = CreateBackend({.device = d[i]});
    EXPECT_TRUE(b.ok()) << d[i] << ": " << b.status();
  }
}

}  // namespace
}  // namespace elektronn::kernels
