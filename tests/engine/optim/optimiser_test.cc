// Optimiser update rules against hand-computed values (reference §4).
#include "engine/optim/optimiser.h"

#include <gtest/gtest.h>

#include <cmath>

namespace elektronn {
namespace {

// Two parameters of two entries each: "w" is regularised (weight decay), "b" is not.
class OptimiserTest : public ::testing::Test {
 protected:
  void SetUp() override {
    backend_ = kernels::CreateCpuBackend();
    for (int i = 0; i < 2; ++i) {
      Parameter& p = params_[i];
      p.node = "n";
      p.name = i == 0 ? "w" : "b";
      p.shape = {2};
      p.size = 2;
      p.value = values_[i];
      p.grad = grads_[i];
      p.reg_multiplier = i == 0 ? 1.f : 0.f;
    }
  }
  void Set(float w0, float w1, float g0, float g1) {
    for (int i = 0; i < 2; ++i) {
      values_[i][0] = w0;
      values_[i][1] = w1;
      grads_[i][0] = g0;
      grads_[i][1] = g1;
    }
  }
  std::vector<Parameter*> Params() { return {&params_[0], &params_[1]}; }

  std::unique_ptr<kernels::Backend> backend_;
  Parameter params_[2];
  float values_[2][2] = {};
  float grads_[2][2] = {};
};

TEST_F(OptimiserTest, AdamFirstStepMatchesElektronn2) {
  // Reference values: g=0.1 -> 0.7071*lr, g=1.0 -> 0.99504*lr (epsilon 1e-5 inside the root).
  Optimiser opt(OptimiserKind::kAdam, backend_.get(), Params());
  opt.hyper() = {1.0f, 0.9f, 0.0f, 0.999f};
  Set(0.f, 0.f, 0.1f, 1.0f);
  opt.Step();
  EXPECT_NEAR(values_[0][0], -0.70711, 1e-4);
  EXPECT_NEAR(values_[0][1], -0.99504, 1e-4);
  // Second step with the same gradient: m = 0.19 g, s = 0.001999 g^2,
  // direction = sqrt(1-0.999^2)/(1-0.9^2) * m / sqrt(s + 1e-5).
  opt.Step();
  const double g = 0.1, m = 0.19 * g, s = 0.001999 * g * g;
  const double dir = std::sqrt(1 - 0.999 * 0.999) / (1 - 0.81) * m / std::sqrt(s + 1e-5);
  EXPECT_NEAR(values_[0][0], -0.70711 - dir, 1e-4);
}

TEST_F(OptimiserTest, DecoupledWeightDecayOnlyOnRegularisedParameters) {
  Optimiser opt(OptimiserKind::kSgd, backend_.get(), Params());
  opt.hyper() = {0.1f, 0.9f, 0.5f, 0.999f};
  Set(2.f, -1.f, 0.f, 0.f);  // zero gradient: only weight decay moves w
  opt.Step();
  EXPECT_FLOAT_EQ(values_[0][0], 2.f - 0.1f * 0.5f * 2.f);
  EXPECT_FLOAT_EQ(values_[0][1], -1.f + 0.1f * 0.5f * 1.f);
  EXPECT_FLOAT_EQ(values_[1][0], 2.f);  // the bias is not regularised
  // Adam: weight decay added to the direction, not to the moments.
  Optimiser adam(OptimiserKind::kAdam, backend_.get(), Params());
  adam.hyper() = {0.1f, 0.9f, 0.5f, 0.999f};
  Set(2.f, 2.f, 0.f, 0.f);
  adam.Step();
  EXPECT_FLOAT_EQ(values_[0][0], 2.f - 0.1f * 0.5f * 2.f);
  EXPECT_FLOAT_EQ(values_[1][0], 2.f);
}

TEST_F(OptimiserTest, SgdHeavyBallMomentum) {
  Optimiser opt(OptimiserKind::kSgd, backend_.get(), Params());
  opt.hyper() = {0.5f, 0.9f, 0.0f, 0.999f};
  Set(1.f, 1.f, 0.2f, -0.4f);
  opt.Step();  // v = g; p -= lr v
  EXPECT_FLOAT_EQ(values_[1][0], 1.f - 0.5f * 0.2f);
  EXPECT_FLOAT_EQ(values_[1][1], 1.f + 0.5f * 0.4f);
  opt.Step();  // v = g + 0.9 g
  EXPECT_FLOAT_EQ(values_[1][0], 1.f - 0.5f * 0.2f - 0.5f * (0.2f + 0.9f * 0.2f));
}

TEST_F(OptimiserTest, AdaGradAccumulatesTheFirstGradientTwice) {
  Optimiser opt(OptimiserKind::kAdaGrad, backend_.get(), Params());
  opt.hyper() = {0.3f, 0.9f, 0.0f, 0.999f};
  Set(0.f, 0.f, 0.5f, -2.f);
  opt.Step();  // h = 2 g^2 -> step = lr * g / sqrt(2 g^2) = lr / sqrt(2) * sign(g)
  EXPECT_NEAR(values_[1][0], -0.3 / std::sqrt(2.0), 1e-6);
  EXPECT_NEAR(values_[1][1], 0.3 / std::sqrt(2.0), 1e-6);
  opt.Step();  // h = 3 g^2
  EXPECT_NEAR(values_[1][0], -0.3 / std::sqrt(2.0) - 0.3 / std::sqrt(3.0), 1e-6);
}

TEST_F(OptimiserTest, AdaDeltaUsesTheOldAccumulator) {
  Optimiser opt(OptimiserKind::kAdaDelta, backend_.get(), Params());
  opt.hyper() = {1.0f, 0.9f, 0.0f, 0.999f};  // rho = mom = 0.9
  Set(0.f, 0.f, 0.5f, 0.5f);
  opt.Step();  // s_old = 0, d = 0: direction = g * sqrt(1e-5) / sqrt(1e-5) = g
  EXPECT_NEAR(values_[1][0], -0.5, 1e-6);
  opt.Step();  // s = 0.1 g^2 (old), d = 0.1 g^2: direction = g sqrt(d+e)/sqrt(s+e)
  const double g = 0.5, s = 0.1 * g * g, d = 0.1 * g * g;
  EXPECT_NEAR(values_[1][0], -0.5 - g * std::sqrt(d + 1e-5) / std::sqrt(s + 1e-5), 1e-5);
}

TEST(OptimiserNames, ParseAndRejectUnknown) {
  EXPECT_EQ(*ParseOptimiser("Adam"), OptimiserKind::kAdam);
  auto bad = ParseOptimiser("RMSprop");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("SGD, Adam, AdaGrad, AdaDelta"),
            std::string::npos);
}

}  // namespace
}  // namespace elektronn
