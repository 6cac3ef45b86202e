// Non-geometric augmentations on generated patches with fixed seeds: each test checks the
// statistical effect the augmentation must have (and what it must leave alone).
#include "engine/data/augment.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace elektronn {
namespace {

using Shape3 = std::array<int64_t, 3>;

// 0/1 alternating along x and y (constant along z): the highest spatial frequency in-plane.
std::vector<float> Checkerboard(const Shape3& s) {
  std::vector<float> v(s[0] * s[1] * s[2]);
  for (int64_t z = 0; z < s[0]; ++z)
    for (int64_t x = 0; x < s[1]; ++x)
      for (int64_t y = 0; y < s[2]; ++y) v[(z * s[1] + x) * s[2] + y] = (x + y) % 2 ? 1.f : 0.f;
  return v;
}

TEST(GaussianBlurBox, ConservesMassAndLeavesOutsideAlone) {
  const Shape3 s = {1, 1, 21};
  std::vector<float> v(21, 0.f);
  v[10] = 1.f;
  v[0] = 7.f;  // outside the box
  GaussianBlurBox(v.data(), s, {0, 0, 2}, {1, 1, 17}, 1.0);
  EXPECT_EQ(v[0], 7.f);
  double mass = 0;
  for (int i = 2; i < 19; ++i) mass += v[i];
  EXPECT_NEAR(mass, 1.0, 1e-6);
  // Peak of a unit-sigma Gaussian: 1/sqrt(2 pi) = 0.39894 (truncation at 4 sigma: < 1e-4).
  EXPECT_NEAR(v[10], 0.39894, 2e-4);
  EXPECT_NEAR(v[9], v[11], 1e-7);
  EXPECT_NEAR(v[11], 0.39894 * std::exp(-0.5), 2e-4);
  // Mirror borders (scipy "reflect"): a delta on the box's first voxel keeps the weights of
  // offsets 0 and -1 (mirrored onto itself): 0.39894 + 0.24197; the mass stays in the box.
  std::vector<float> e(21, 0.f);
  e[2] = 1.f;
  GaussianBlurBox(e.data(), s, {0, 0, 2}, {1, 1, 17}, 1.0);
  EXPECT_NEAR(e[2], 0.64091, 3e-4);
  double in_box = 0;
  for (int i = 2; i < 19; ++i) in_box += e[i];
  EXPECT_NEAR(in_box, 1.0, 1e-6);
  EXPECT_EQ(e[1], 0.f);
}

TEST(NgaBlurNoise, BlursThenAddsBoundedUniformNoise) {
  // QUIRK 5 fixed: the blur is applied. A checkerboard's highest frequency is damped by
  // exp(-pi^2/2) ~ 0.007 per blurred axis, so interior voxels end within 0.075 (noise) + 0.01
  // of 0.5; ELEKTRONN2's discarded blur would leave them near 0 and 1.
  const Shape3 s = {4, 24, 24};
  std::vector<float> v = Checkerboard(s);
  std::mt19937_64 rng(7);
  NgaBlurNoise(v.data(), 1, s, rng);
  for (int64_t z = 0; z < s[0]; ++z)
    for (int64_t x = 5; x < s[1] - 5; ++x)
      for (int64_t y = 5; y < s[2] - 5; ++y)
        ASSERT_LT(std::abs(v[(z * s[1] + x) * s[2] + y] - 0.5f), 0.085f)
            << z << "," << x << "," << y;

  // On a constant patch the blur changes nothing: what is left is the noise, uniform in
  // [-0.075, 0.075): mean 0, variance 0.15^2/12 = 0.001875.
  std::vector<float> c(s[0] * s[1] * s[2], 0.5f);
  NgaBlurNoise(c.data(), 1, s, rng);
  double mean = 0, var = 0;
  for (float x : c) {
    ASSERT_GE(x, 0.5f - 0.0751f);
    ASSERT_LE(x, 0.5f + 0.0751f);
    mean += x - 0.5;
  }
  mean /= c.size();
  for (float x : c) var += (x - 0.5 - mean) * (x - 0.5 - mean);
  var /= c.size();
  EXPECT_NEAR(mean, 0.0, 0.005);  // 7 standard errors
  EXPECT_NEAR(var, 0.001875, 0.0002);
}

TEST(BlurryBlobs, BlursOnlyInsideBlobs) {
  const Shape3 s = {8, 48, 48};
  const std::vector<float> orig = Checkerboard(s);
  std::vector<float> v = orig;
  BlobOptions o;
  o.num_lo = 3, o.num_hi = 4;    // exactly 3 blobs
  o.size_lo = 8, o.size_hi = 9;  // of edge 8
  o.diffuseness = 2.0;
  std::mt19937_64 rng(3);
  BlurryBlobs(v.data(), 1, s, o, rng);
  int64_t changed = 0;
  double dev = 0;
  double total = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    total += v[i];
    if (v[i] == orig[i]) continue;
    ++changed;
    dev += std::abs(v[i] - 0.5);
  }
  EXPECT_GT(changed, 8 * 8 * 8 / 2);  // at least one blob, most of its voxels changed
  EXPECT_LE(changed, 3 * 8 * 8 * 8);  // nothing outside the three blobs
  EXPECT_LT(dev / changed, 0.2);      // contrast inside blobs mostly gone (was 0.5)
  EXPECT_NEAR(total / v.size(), 0.5, 0.01);

  // A blob edge larger than the smallest side ends blob creation (ELEKTRONN2)...
  std::vector<float> w = orig;
  o.size_lo = 9, o.size_hi = 10;
  BlurryBlobs(w.data(), 1, s, o, rng);
  EXPECT_EQ(w, orig);
  // ...but a depth-1 (2-D) patch still gets blobs: z is left out of the smallest side.
  const Shape3 s2 = {1, 48, 48};
  std::vector<float> flat = Checkerboard(s2), flat_orig = flat;
  BlurryBlobs(flat.data(), 1, s2, o, rng);
  EXPECT_NE(flat, flat_orig);
}

TEST(UniformRandomErasing, FillsCubesWithTheValue) {
  const Shape3 s = {8, 32, 32};
  std::vector<float> v(s[0] * s[1] * s[2], 1.f);
  BlobOptions o;
  o.num_lo = 2, o.num_hi = 3;
  o.size_lo = 4, o.size_hi = 5;
  o.value = 0.25f;
  std::mt19937_64 rng(11);
  UniformRandomErasing(v.data(), 1, s, o, rng);
  int64_t erased = 0;
  for (float x : v) {
    ASSERT_TRUE(x == 1.f || x == 0.25f) << x;
    erased += x == 0.25f;
  }
  EXPECT_GE(erased, 4 * 4 * 4);  // two cubes of 64, possibly overlapping
  EXPECT_LE(erased, 2 * 4 * 4 * 4);
  // Two channels: each gets its own blobs.
  std::vector<float> two(2 * s[0] * s[1] * s[2], 1.f);
  UniformRandomErasing(two.data(), 2, s, o, rng);
  const int64_t vox = s[0] * s[1] * s[2];
  int64_t e0 = 0, e1 = 0;
  for (int64_t i = 0; i < vox; ++i) e0 += two[i] == 0.25f, e1 += two[vox + i] == 0.25f;
  EXPECT_GE(e0, 64);
  EXPECT_GE(e1, 64);
}

TEST(NoisyRandomErasing, UniformNoiseOnTheZeroOneScale) {
  const Shape3 s = {8, 64, 64};
  std::vector<float> v(s[0] * s[1] * s[2], 2.f);  // outside every noise range
  BlobOptions o;  // noise range defaults to [0, 1) (QUIRK 5: ELEKTRONN2 used 0-255)
  o.num_lo = 20, o.num_hi = 21;
  o.size_lo = 6, o.size_hi = 7;
  std::mt19937_64 rng(5);
  NoisyRandomErasing(v.data(), 1, s, o, rng);
  int64_t erased = 0;
  double mean = 0;
  for (float x : v) {
    if (x == 2.f) continue;
    ASSERT_GE(x, 0.f);
    ASSERT_LT(x, 1.f);
    ++erased;
    mean += x;
  }
  ASSERT_GT(erased, 1000);  // 20 cubes of 216 voxels, some overlapping
  EXPECT_NEAR(mean / erased, 0.5, 0.03);
  std::vector<float> w(s[0] * s[1] * s[2], 2.f);
  o.noise_lo = 0.2f, o.noise_hi = 0.3f;
  NoisyRandomErasing(w.data(), 1, s, o, rng);
  for (float x : w) {
    if (x != 2.f) ASSERT_TRUE(x >= 0.2f && x < 0.3f) << x;
  }
}

}  // namespace
}  // namespace elektronn
