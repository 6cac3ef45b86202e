// Target channel sampling of the warp (reference §7.4): target_discrete_ix (nearest neighbour vs
// trilinear) and target_vec_ix (vector triples turned by the linear part of the forward matrix).
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <vector>

#include "engine/data/warp.h"

namespace elektronn {
namespace {

using Shape3 = std::array<int64_t, 3>;

int64_t Voxels(const Shape3& s) { return s[0] * s[1] * s[2]; }

// A constant vector field (channels 0-2: z, x, y components) turns exactly as M_lin says. Without
// warping M_lin is a signed permutation (flips and the x-y swap): the components come out
// permuted and negated; with warping the constant field stays constant under interpolation and
// comes out multiplied by the drawn rotation/shear.
TEST(WarpTargetTest, VectorTriplesTurnWithTheTransform) {
  const float v[3] = {0.5f, 2.f, -3.f};
  Volume raw(1, 20, 40, 40);
  Volume label(4, 16, 36, 36);
  for (int c = 0; c < 3; ++c) {
    std::fill(label.data.begin() + c * label.voxels(),
              label.data.begin() + (c + 1) * label.voxels(), v[c]);
  }
  std::fill(label.data.begin() + 3 * label.voxels(), label.data.end(), 7.f);  // a plain channel
  const Shape3 lab_shape = label.spatial();
  const Shape3 ps = {5, 15, 15}, tps = {3, 9, 9};
  TargetSampling ts;
  ts.discrete = {false, false, false, true};
  ts.vectors = {{0, 1, 2}};
  for (double amount : {0.0, 1.0}) {
    WarpOptions opt;
    opt.warp_amount = amount;
    int swapped = 0, flipped = 0, done = 0;
    for (uint64_t seed = 0; seed < 60; ++seed) {
      std::mt19937_64 rng(seed), peek(seed);
      auto t = DrawWarpTransform(raw.spatial(), &lab_shape, ps, tps, opt, peek);
      ASSERT_TRUE(t.ok()) << t.status();
      std::vector<float> out(Voxels(ps)), target(4 * Voxels(tps));
      auto ok = GetWarpedSlice(raw, &label, ps, tps, opt, rng, out.data(), target.data(), &ts);
      ASSERT_TRUE(ok.ok()) << ok.status();
      if (!*ok) continue;
      ++done;
      const auto& m = t->forward;
      double want[3];
      for (int r = 0; r < 3; ++r) want[r] = m[r][0] * v[0] + m[r][1] * v[1] + m[r][2] * v[2];
      if (amount == 0.0) {
        // A signed permutation keeping z (lock_z): |z| stays 0.5, x and y keep or swap 2 and 3.
        EXPECT_EQ(std::abs(want[0]), 0.5);
        swapped += std::abs(want[1]) == 3.0;
        flipped += want[1] == -2.0 || want[1] == 3.0;
      }
      const int64_t n = Voxels(tps);
      for (int64_t i = 0; i < n; ++i) {
        for (int c = 0; c < 3; ++c) {
          ASSERT_NEAR(target[c * n + i], want[c], 1e-4) << "seed " << seed << " channel " << c;
        }
        ASSERT_EQ(target[3 * n + i], 7.f);
      }
    }
    EXPECT_GT(done, 20);
    if (amount == 0.0) {
      EXPECT_GT(swapped, 0);
      EXPECT_GT(flipped, 0);
    }
  }
}

// Nearest-neighbour channels keep the label values present in the source; a trilinear channel of
// the same ids produces in-between values, and a trilinear linear ramp is reproduced exactly at
// the source coordinates the transform says.
TEST(WarpTargetTest, DiscreteChannelsKeepValuesOthersInterpolate) {
  Volume raw(1, 20, 40, 40);
  Volume label(3, 16, 36, 36);
  std::mt19937_64 fill(3);
  std::uniform_int_distribution<int> cls(0, 4);
  for (int64_t i = 0; i < label.voxels(); ++i) {
    const float id = static_cast<float>(cls(fill));
    label.data[i] = id;
    label.data[label.voxels() + i] = id;
  }
  auto ramp = [](double z, double x, double y) { return z + 0.25 * x - 0.5 * y; };
  for (int64_t z = 0; z < label.z; ++z)
    for (int64_t x = 0; x < label.x; ++x)
      for (int64_t y = 0; y < label.y; ++y)
        label.at(2, z, x, y) = static_cast<float>(ramp(z, x, y));
  const Shape3 lab_shape = label.spatial();
  const Shape3 ps = {5, 15, 15}, tps = {3, 9, 9};
  const Shape3 label_off = {2, 2, 2}, target_off = {1, 3, 3};
  TargetSampling ts;
  ts.discrete = {true, false, false};
  WarpOptions opt;  // warp_amount 1: rotations and shears, so coordinates fall between voxels
  std::set<float> discrete_values, linear_values;
  int done = 0;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    std::mt19937_64 rng(seed), peek(seed);
    auto t = DrawWarpTransform(raw.spatial(), &lab_shape, ps, tps, opt, peek);
    ASSERT_TRUE(t.ok());
    const int64_t n = Voxels(tps);
    std::vector<float> out(Voxels(ps)), target(3 * n);
    auto ok = GetWarpedSlice(raw, &label, ps, tps, opt, rng, out.data(), target.data(), &ts);
    ASSERT_TRUE(ok.ok()) << ok.status();
    if (!*ok) continue;
    ++done;
    int64_t i = 0;
    for (int64_t z = 0; z < tps[0]; ++z)
      for (int64_t x = 0; x < tps[1]; ++x)
        for (int64_t y = 0; y < tps[2]; ++y, ++i) {
          discrete_values.insert(target[i]);
          linear_values.insert(target[n + i]);
          auto s = WarpSourceOf(t->forward, {static_cast<double>(z + target_off[0]),
                                             static_cast<double>(x + target_off[1]),
                                             static_cast<double>(y + target_off[2])});
          ASSERT_TRUE(s.ok());
          const double want =
              ramp((*s)[0] - label_off[0], (*s)[1] - label_off[1], (*s)[2] - label_off[2]);
          ASSERT_NEAR(target[2 * n + i], want, 1e-3) << "seed " << seed;
        }
  }
  EXPECT_GT(done, 10);
  for (float f : discrete_values) EXPECT_TRUE(f >= 0 && f <= 4 && f == std::floor(f)) << f;
  int fractional = 0;
  for (float f : linear_values) fractional += f != std::floor(f);
  EXPECT_GT(fractional, 100) << "a trilinear channel of class ids must blend neighbours";

  // Without a sampling description every channel is discrete (ELEKTRONN2's default).
  std::mt19937_64 rng(5);
  std::vector<float> out(Voxels(ps)), target(3 * Voxels(tps));
  WarpOptions flat;
  flat.warp_amount = 0.3;
  for (int k = 0; k < 10; ++k) {
    auto ok = GetWarpedSlice(raw, &label, ps, tps, flat, rng, out.data(), target.data());
    ASSERT_TRUE(ok.ok());
    for (int64_t i = 0; i < Voxels(tps); ++i) ASSERT_EQ(target[i], target[Voxels(tps) + i]);
  }
}

TEST(WarpTargetTest, SamplingErrors) {
  TargetSampling s;
  s.vectors = {{0, 1, 3}};
  auto st = CheckTargetSampling(s, 3);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("names channel 3 but the target has 3 channel(s); valid: 0..2"),
            std::string::npos)
      << st;
  s.vectors = {{0, 1, 1}};
  EXPECT_NE(CheckTargetSampling(s, 3).message().find("channel 1 appears twice in one triple"),
            std::string::npos);
  s.vectors = {{0, 1, 2}, {2, 3, 4}};
  EXPECT_NE(CheckTargetSampling(s, 5).message().find("channel 2 appears in two triples"),
            std::string::npos);
  s.vectors = {{0, 1, 2}};
  EXPECT_TRUE(CheckTargetSampling(s, 3).ok());
  s.discrete = {true, false};
  EXPECT_NE(CheckTargetSampling(s, 3).message().find("2 discrete flags for a target of 3"),
            std::string::npos);

  // Vectors under a perspective transform: refused, nothing written.
  Volume raw(1, 20, 40, 40), label(3, 20, 40, 40);
  TargetSampling vec;
  vec.vectors = {{0, 1, 2}};
  WarpMatrix m{};
  for (int i = 0; i < 4; ++i) m[i][i] = 1.0;
  m[3][1] = 1e-3;
  std::vector<float> out(5 * 9 * 9, -1.f), target(3 * 5 * 9 * 9, -1.f);
  auto r = WarpSlice(raw, &label, {5, 9, 9}, {5, 9, 9}, m, out.data(), target.data(), &vec);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("perspective"), std::string::npos) << r.status();
  for (float f : target) ASSERT_EQ(f, -1.f);
}

}  // namespace
}  // namespace elektronn
