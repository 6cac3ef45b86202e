// The whole of neuro3d_lite on the CPU and on CUDA device 0 (ctest label `gpu`): the same
// initial parameters (the same seed) and inputs give forward outputs within 1e-4 and, after one
// Adam step, parameters within 1e-4 (normalised by the largest magnitude, as the parity harness
// measures). Without a device the test skips saying why, unless ELK_REQUIRE_GPU is set
// (scripts/gpu-check), where a missing device fails.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "engine/graph/model_builder.h"
#include "engine/graph/network.h"
#include "engine/optim/optimiser.h"
#include "kernels/backend.h"

namespace elektronn {
namespace {

// max |a - b| / (max |b| + 1e-6); infinite on a NaN or size mismatch.
double NormalisedError(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(static_cast<double>(a[i]) - b[i]);
    if (std::isnan(d)) return INFINITY;
    diff = std::max(diff, d);
    scale = std::max(scale, std::fabs(static_cast<double>(b[i])));
  }
  return diff / (scale + 1e-6);
}

struct StepResult {
  std::vector<float> probs;
  double loss = 0;
  std::vector<std::vector<float>> params_after_step;
  std::vector<std::string> param_names;
};

// Forward (outputs), backward and one Adam step (parameters) of neuro3d_lite on `b`.
StepResult TrainOneStep(kernels::Backend* b) {
  StepResult r;
  // The smallest input neuro3d_lite takes (1 output voxel in x and y): fast on the CPU.
  const v1::ModelSpec spec = Neuro3dSpec({5, 39, 39}, true);
  auto net_or = Network::Create(spec, b, {.batch_size = 2, .seed = 7});
  EXPECT_TRUE(net_or.ok()) << net_or.status();
  if (!net_or.ok()) return r;
  Network& net = **net_or;
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<float> x(net.graph().Find("raw")->numel()), t(net.graph().Find("target")->numel());
  for (float& v : x) v = u(rng);
  for (float& v : t) v = u(rng) < 0.5f ? 0.f : 1.f;
  EXPECT_TRUE(net.SetInput("raw", x).ok());
  EXPECT_TRUE(net.SetInput("target", t).ok());
  net.set_training(true);
  EXPECT_TRUE(net.Forward().ok());
  auto probs = net.Output(net.graph().spec().designations().prediction_node());
  EXPECT_TRUE(probs.ok()) << probs.status();
  if (probs.ok()) r.probs = *probs;
  auto loss = net.Scalar("loss");
  EXPECT_TRUE(loss.ok()) << loss.status();
  r.loss = loss.ok() ? *loss : NAN;
  Optimiser adam(OptimiserKind::kAdam, b, net.params());
  adam.hyper().lr = 1e-3f;
  adam.hyper().wd = 5e-5f;
  EXPECT_TRUE(net.Backward().ok());
  adam.Step();
  EXPECT_TRUE(b->Synchronize().ok());
  for (const Parameter* p : net.params()) {
    r.params_after_step.push_back(net.ParamValue(*p));
    r.param_names.push_back(p->key());
  }
  return r;
}

TEST(CudaNetwork, Neuro3dLiteMatchesTheCpu) {
  auto cuda = kernels::CreateBackend({.device = "cuda:0"});
  const char* require = std::getenv("ELK_REQUIRE_GPU");
  if (!cuda.ok() && absl::IsUnavailable(cuda.status()) && (!require || !*require)) {
    GTEST_SKIP() << cuda.status().message();
  }
  ASSERT_TRUE(cuda.ok()) << cuda.status();
  auto cpu = kernels::CreateBackend({.device = "cpu"});
  ASSERT_TRUE(cpu.ok()) << cpu.status();

  const StepResult want = TrainOneStep(cpu->get());
  const StepResult got = TrainOneStep(cuda->get());
  ASSERT_FALSE(want.probs.empty());
  EXPECT_LT(NormalisedError(got.probs, want.probs), 1e-4) << "forward outputs differ";
  EXPECT_NEAR(got.loss, want.loss, 1e-4 * std::max(1.0, std::fabs(want.loss)));
  ASSERT_EQ(got.params_after_step.size(), want.params_after_step.size());
  for (size_t i = 0; i < want.params_after_step.size(); ++i) {
    const double err = NormalisedError(got.params_after_step[i], want.params_after_step[i]);
    EXPECT_LT(err, 1e-4) << want.param_names[i] << " after one Adam step";
  }
}

// bf16 is the CPU's mixed precision; the CUDA backend refuses it by name instead of computing in
// fp32 behind the job's back.
TEST(CudaNetwork, RefusesBf16) {
  auto cuda = kernels::CreateBackend({.device = "cuda:0"});
  const char* require = std::getenv("ELK_REQUIRE_GPU");
  if (!cuda.ok() && absl::IsUnavailable(cuda.status()) && (!require || !*require)) {
    GTEST_SKIP() << cuda.status().message();
  }
  ASSERT_TRUE(cuda.ok()) << cuda.status();
  kernels::MatmulDesc d;
  d.m = 4;
  d.k = 8;
  d.n = 2;
  d.dtype = kernels::DataType::kBf16;
  auto k = (*cuda)->CreateMatmul(d);
  ASSERT_FALSE(k.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(k.status())) << k.status();
  EXPECT_NE(k.status().message().find("fp32 only"), std::string::npos) << k.status();
}

}  // namespace
}  // namespace elektronn
