// The daemon's one-job-per-GPU rule (server/gpu_assignment.h), without a GPU.
#include "server/gpu_assignment.h"

#include <gtest/gtest.h>

namespace elektronn {
namespace {

TEST(CudaIndex, ParsesCudaDevicesOnly) {
  EXPECT_EQ(CudaIndex("cuda:0"), 0);
  EXPECT_EQ(CudaIndex("cuda:3"), 3);
  EXPECT_EQ(CudaIndex("cuda"), 0);
  EXPECT_EQ(CudaIndex("cpu"), std::nullopt);
  EXPECT_EQ(CudaIndex(""), std::nullopt);
  EXPECT_EQ(CudaIndex("cuda:x"), std::nullopt);
  EXPECT_EQ(CudaIndex("cuda:-1"), std::nullopt);
}

TEST(GpuAssignment, SecondJobOnABusyGpuWaitsWithTheHolderNamed) {
  GpuAssignment a;
  EXPECT_EQ(a.WhyWait("cuda:0"), "");
  ASSERT_TRUE(a.Hold("jobs/000001", "cuda:0"));
  EXPECT_EQ(a.WhyWait("cuda:0"), "cuda:0 is held by jobs/000001");
  EXPECT_EQ(a.WhyWait("cuda"), "cuda:0 is held by jobs/000001");  // "cuda" means cuda:0
  EXPECT_FALSE(a.Hold("jobs/000002", "cuda:0"));                  // never two jobs on one GPU
  EXPECT_EQ(a.holders().at(0), "jobs/000001");                    // the first holder stays
}

TEST(GpuAssignment, OtherGpusAndTheCpuStayFree) {
  GpuAssignment a;
  ASSERT_TRUE(a.Hold("jobs/000001", "cuda:0"));
  EXPECT_EQ(a.WhyWait("cuda:1"), "");
  EXPECT_EQ(a.WhyWait("cpu"), "");
  EXPECT_EQ(a.WhyWait(""), "");
  EXPECT_TRUE(a.Hold("jobs/000002", "cuda:1"));
  EXPECT_TRUE(a.Hold("jobs/000003", "cpu"));  // CPU jobs share the host
  EXPECT_TRUE(a.Hold("jobs/000004", "cpu"));
  EXPECT_EQ(a.holders().size(), 2u);
}

}  // namespace
}  // namespace elektronn
