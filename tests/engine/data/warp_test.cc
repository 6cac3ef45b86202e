// Warped patch cutting and grey augmentation against ELEKTRONN2's semantics (reference §7.4, §7.5).
#include "engine/data/warp.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <vector>

namespace elektronn {
namespace {

using Shape3 = std::array<int64_t, 3>;

Volume RandomVolume(int64_t ch, int64_t z, int64_t x, int64_t y, uint64_t seed) {
  Volume v(ch, z, x, y);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  for (float& f : v.data) f = u(rng);
  return v;
}

int64_t Voxels(const Shape3& s) { return s[0] * s[1] * s[2]; }

// Index into a (ch, s) channels-first block.
int64_t At(const Shape3& s, int64_t c, int64_t z, int64_t x, int64_t y) {
  return ((c * s[0] + z) * s[1] + x) * s[2] + y;
}

// With warp 0, aniso cancelled by sample_aniso and no flip or swap drawn, the composite is a
// pure translation: raw and target are plain crops around the drawn centre.
TEST(WarpTest, ZeroWarpWithoutFlipsIsATranslation) {
  const Volume raw = RandomVolume(2, 20, 30, 32, 1);
  const Volume label = RandomVolume(1, 16, 26, 26, 2);  // centred: offset (2, 2, 3)
  const Shape3 ps = {7, 11, 12}, tps = {3, 5, 6};
  WarpOptions opt;
  opt.warp_amount = 0.0;
  opt.no_x_flip = true;  // no swap; z and x may still flip, those draws are skipped
  opt.lock_z = true;
  opt.aniso_factor = 2.0;
  opt.sample_aniso = true;
  const Shape3 lab_shape = label.spatial();

  int unflipped = 0;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    std::mt19937_64 rng(seed);
    std::mt19937_64 peek = rng;
    auto t = DrawWarpTransform(raw.spatial(), &lab_shape, ps, tps, opt, peek);
    ASSERT_TRUE(t.ok()) << t.status();
    bool identity_linear = true;
    for (int i = 0; i < 4; ++i) {
      for (int j = 0; j < 3; ++j) identity_linear &= t->forward[i][j] == (i == j ? 1.0 : 0.0);
    }
    if (!identity_linear) continue;
    ++unflipped;
    for (int a = 0; a < 3; ++a) EXPECT_EQ(t->forward[a][3], ps[a] / 2.0 - t->centre[a]);

    std::vector<float> out(2 * Voxels(ps)), target(Voxels(tps));
    auto ok = GetWarpedSlice(raw, &label, ps, tps, opt, rng, out.data(), target.data());
    ASSERT_TRUE(ok.ok()) << ok.status();
    ASSERT_TRUE(*ok) << "a pure translation inside the cube is never out of bounds";
    Shape3 start;
    for (int a = 0; a < 3; ++a) {
      start[a] = static_cast<int64_t>(t->centre[a] - ps[a] / 2.0);
      ASSERT_EQ(start[a], t->centre[a] - ps[a] / 2.0) << "patch must start on a voxel";
    }
    for (int64_t c = 0; c < 2; ++c)
      for (int64_t z = 0; z < ps[0]; ++z)
        for (int64_t x = 0; x < ps[1]; ++x)
          for (int64_t y = 0; y < ps[2]; ++y)
            ASSERT_EQ(out[At(ps, c, z, x, y)], raw.at(c, start[0] + z, start[1] + x, start[2] + y))
                << "seed " << seed << " at " << c << "," << z << "," << x << "," << y;
    const Shape3 off = {2, 2, 3};  // label offset in raw
    for (int64_t z = 0; z < tps[0]; ++z)
      for (int64_t x = 0; x < tps[1]; ++x)
        for (int64_t y = 0; y < tps[2]; ++y) {
          const int64_t lz = start[0] + (ps[0] - tps[0]) / 2 + z - off[0];
          const int64_t lx = start[1] + (ps[1] - tps[1]) / 2 + x - off[1];
          const int64_t ly = start[2] + (ps[2] - tps[2]) / 2 + y - off[2];
          ASSERT_EQ(target[At(tps, 0, z, x, y)], label.at(0, lz, lx, ly)) << "seed " << seed;
        }
  }
  EXPECT_GE(unflipped, 20);  // about a quarter of 200 draws flip neither z nor x
}

TEST(WarpTest, FlipMatrixIsSelfInverseAndFair) {
  for (bool no_x_flip : {false, true}) {
    std::mt19937_64 rng(7);
    int flipped[3] = {0, 0, 0};
    const int n = 2000;
    for (int i = 0; i < n; ++i) {
      const WarpMatrix f = RandomFlipMatrix(no_x_flip, rng);
      for (int r = 0; r < 4; ++r) {
        for (int c = 0; c < 4; ++c) {
          double ff = 0.0;
          for (int k = 0; k < 4; ++k) ff += f[r][k] * f[k][c];
          ASSERT_EQ(ff, r == c ? 1.0 : 0.0);
          if (r != c) {
            ASSERT_EQ(f[r][c], 0.0);
          }
        }
      }
      ASSERT_EQ(f[3][3], 1.0);
      for (int a = 0; a < 3; ++a) {
        ASSERT_TRUE(f[a][a] == 1.0 || f[a][a] == -1.0);
        flipped[a] += f[a][a] < 0;
      }
    }
    EXPECT_NEAR(flipped[0], n / 2, 150);
    EXPECT_NEAR(flipped[1], n / 2, 150);
    if (no_x_flip) {
      EXPECT_EQ(flipped[2], 0);
    } else {
      EXPECT_NEAR(flipped[2], n / 2, 150);
    }
  }
}

// With warp 0 every output is the crop around the centre, flipped per axis about the patch
// centre ps/2 (so a flipped axis reads the window one voxel further on, as in ELEKTRONN2) and
// possibly with x and y swapped; all 16 variants occur.
TEST(WarpTest, ZeroWarpGivesAFlippedOrSwappedCrop) {
  const Volume raw = RandomVolume(1, 16, 24, 24, 3);
  const Shape3 ps = {5, 9, 9};
  WarpOptions opt;
  opt.warp_amount = 0.0;
  opt.lock_z = true;
  opt.no_x_flip = false;
  opt.aniso_factor = 2.0;
  std::set<int> seen;
  int in_bounds = 0;
  std::vector<float> out(Voxels(ps));
  for (uint64_t seed = 0; seed < 600; ++seed) {
    std::mt19937_64 rng(seed);
    std::mt19937_64 peek = rng;
    auto t = DrawWarpTransform(raw.spatial(), nullptr, ps, {1, 1, 1}, opt, peek);
    ASSERT_TRUE(t.ok());
    auto ok = GetWarpedSlice(raw, nullptr, ps, {1, 1, 1}, opt, rng, out.data(), nullptr);
    ASSERT_TRUE(ok.ok());
    if (!*ok) continue;
    ++in_bounds;
    int match = -1;
    for (int variant = 0; variant < 16; ++variant) {
      const int f[3] = {variant & 1 ? -1 : 1, variant & 2 ? -1 : 1, variant & 4 ? -1 : 1};
      const bool swap = variant & 8;
      bool equal = true;
      for (int64_t z = 0; z < ps[0] && equal; ++z)
        for (int64_t x = 0; x < ps[1] && equal; ++x)
          for (int64_t y = 0; y < ps[2] && equal; ++y) {
            // dest = F P (src - c) + ps/2  =>  src = c + P F (dest - ps/2).
            const double e[3] = {f[0] * (z - ps[0] / 2.0), f[1] * (x - ps[1] / 2.0),
                                 f[2] * (y - ps[2] / 2.0)};
            const double u[3] = {e[0], swap ? e[2] : e[1], swap ? e[1] : e[2]};
            const auto sz = static_cast<int64_t>(t->centre[0] + u[0]);
            const auto sx = static_cast<int64_t>(t->centre[1] + u[1]);
            const auto sy = static_cast<int64_t>(t->centre[2] + u[2]);
            equal = out[At(ps, 0, z, x, y)] == raw.at(0, sz, sx, sy);
          }
      if (equal) {
        EXPECT_EQ(match, -1) << "random data cannot match two variants";
        match = variant;
      }
    }
    ASSERT_NE(match, -1) << "seed " << seed << ": output is no flipped/swapped crop";
    seen.insert(match);
  }
  EXPECT_GT(in_bounds, 300);
  EXPECT_EQ(seen.size(), 16u);
}

// sample_aniso=false keeps z isotropic: output slices are half a raw slice apart (aniso 2).
TEST(WarpTest, SampleAnisoControlsZSpacing) {
  Volume raw(1, 30, 20, 20);
  for (int64_t z = 0; z < raw.z; ++z)
    for (int64_t x = 0; x < raw.x; ++x)
      for (int64_t y = 0; y < raw.y; ++y) raw.at(0, z, x, y) = 0.01f * z;
  const Shape3 ps = {6, 5, 5};
  for (bool sample_aniso : {true, false}) {
    WarpOptions opt;
    opt.warp_amount = 0.0;
    opt.aniso_factor = 2.0;
    opt.sample_aniso = sample_aniso;
    std::mt19937_64 rng(11);
    std::vector<float> out(Voxels(ps));
    int cut = 0;
    for (int i = 0; i < 20; ++i) {
      auto ok = GetWarpedSlice(raw, nullptr, ps, {1, 1, 1}, opt, rng, out.data(), nullptr);
      ASSERT_TRUE(ok.ok());
      if (!*ok) continue;
      ++cut;
      const float step = sample_aniso ? 0.01f : 0.005f;
      for (int64_t z = 1; z < ps[0]; ++z)
        for (int64_t x = 0; x < ps[1]; ++x)
          for (int64_t y = 0; y < ps[2]; ++y)
            ASSERT_NEAR(std::abs(out[At(ps, 0, z, x, y)] - out[At(ps, 0, z - 1, x, y)]), step, 1e-5)
                << "sample_aniso=" << sample_aniso;
    }
    EXPECT_GT(cut, 10);
  }
}

// 2-D nets (ps_z = 1) with lock_z: any in-plane warp still reads a single z slice.
TEST(WarpTest, TwoDimensionalPatchWithLockZReadsOneSlice) {
  Volume raw = RandomVolume(1, 10, 60, 60, 4);
  // z encoded in the integer part, texture in the fraction: blending slices would show.
  for (int64_t z = 0; z < raw.z; ++z)
    for (int64_t x = 0; x < raw.x; ++x)
      for (int64_t y = 0; y < raw.y; ++y) raw.at(0, z, x, y) = 10.f * z + 0.5f * raw.at(0, z, x, y);
  const Shape3 ps = {1, 25, 25};
  WarpOptions opt;
  opt.warp_amount = 1.0;
  opt.lock_z = true;
  std::mt19937_64 rng(5);
  std::vector<float> out(Voxels(ps));
  int cut = 0;
  for (int i = 0; i < 100; ++i) {
    auto ok = GetWarpedSlice(raw, nullptr, ps, {1, 1, 1}, opt, rng, out.data(), nullptr);
    ASSERT_TRUE(ok.ok());
    if (!*ok) continue;
    ++cut;
    const float slice = std::floor(out[0] / 10.f);
    for (float v : out) {
      ASSERT_GE(v, 10.f * slice);
      ASSERT_LE(v, 10.f * slice + 0.5f);
    }
  }
  EXPECT_GT(cut, 50);
}

// Raw grey value encodes the label (raw = label / 10) in a checkerboard of blocks, the label
// cube is smaller than the raw cube; after full 3-D warps with perspective, the nearest-
// neighbour target must agree with the rounded interpolated raw at the same patch position.
// For a parity checkerboard the two agree everywhere but at exact ties, so even a half-voxel
// misalignment shows up.
TEST(WarpTest, LabelsStayAlignedWithRaw) {
  const Shape3 raw_shape = {40, 90, 90}, lab_shape = {30, 70, 70};
  const Shape3 off = {5, 10, 10};
  auto block = [](int64_t z, int64_t x, int64_t y) {
    return static_cast<float>((z / 4 + x / 8 + y / 8) % 2);
  };
  Volume raw(1, raw_shape[0], raw_shape[1], raw_shape[2]);
  Volume label(1, lab_shape[0], lab_shape[1], lab_shape[2]);
  for (int64_t z = 0; z < raw.z; ++z)
    for (int64_t x = 0; x < raw.x; ++x)
      for (int64_t y = 0; y < raw.y; ++y) raw.at(0, z, x, y) = block(z, x, y) / 10.f;
  for (int64_t z = 0; z < label.z; ++z)
    for (int64_t x = 0; x < label.x; ++x)
      for (int64_t y = 0; y < label.y; ++y)
        label.at(0, z, x, y) = block(z + off[0], x + off[1], y + off[2]);

  const Shape3 ps = {9, 41, 41}, tps = {5, 21, 21};
  for (bool lock_z : {true, false}) {
    WarpOptions opt;
    opt.warp_amount = 1.0;
    opt.perspective = true;
    opt.lock_z = lock_z;
    std::mt19937_64 rng(lock_z ? 21 : 22);
    std::vector<float> out(Voxels(ps)), target(Voxels(tps));
    int64_t agree = 0, total = 0, projective = 0;
    int cut = 0;
    for (int i = 0; i < 3000 && cut < 30; ++i) {
      std::mt19937_64 peek = rng;
      auto t = DrawWarpTransform(raw_shape, &lab_shape, ps, tps, opt, peek);
      ASSERT_TRUE(t.ok());
      projective += t->forward[3][1] != 0.0 || t->forward[3][2] != 0.0;
      auto ok = GetWarpedSlice(raw, &label, ps, tps, opt, rng, out.data(), target.data());
      ASSERT_TRUE(ok.ok()) << ok.status();
      if (!*ok) continue;
      ++cut;
      for (int64_t z = 0; z < tps[0]; ++z)
        for (int64_t x = 0; x < tps[1]; ++x)
          for (int64_t y = 0; y < tps[2]; ++y) {
            const float r = out[At(ps, 0, z + (ps[0] - tps[0]) / 2, x + (ps[1] - tps[1]) / 2,
                                   y + (ps[2] - tps[2]) / 2)];
            agree += std::nearbyint(r * 10.f) == target[At(tps, 0, z, x, y)];
            ++total;
          }
    }
    EXPECT_EQ(cut, 30) << "lock_z=" << lock_z;
    EXPECT_GT(projective, 0);
    EXPECT_GT(static_cast<double>(agree) / total, 0.99) << "lock_z=" << lock_z;
  }
}

// A draw that leaves the cube is reported as false and writes nothing; one that stays inside
// writes only interpolated values of the data.
TEST(WarpTest, OutOfBoundsReturnsFalseAndWritesNothing) {
  const Volume raw = RandomVolume(1, 20, 40, 40, 6);
  const Volume label = RandomVolume(1, 20, 40, 40, 7);
  constexpr float kSentinel = -5.f;
  struct Case {
    Shape3 ps, tps;
    bool expect_some_in_bounds;
  };
  // The largest patch that fits, and a smaller one that warps sometimes in, sometimes out.
  for (const Case& c :
       {Case{{18, 38, 38}, {14, 34, 34}, false}, Case{{9, 23, 23}, {5, 11, 11}, true}}) {
    WarpOptions opt;
    opt.warp_amount = 1.0;
    opt.perspective = true;
    std::mt19937_64 rng(8);
    int in = 0, out_of = 0;
    std::vector<float> out(Voxels(c.ps)), target(Voxels(c.tps));
    for (int i = 0; i < 300; ++i) {
      std::fill(out.begin(), out.end(), kSentinel);
      std::fill(target.begin(), target.end(), kSentinel);
      auto ok = GetWarpedSlice(raw, &label, c.ps, c.tps, opt, rng, out.data(), target.data());
      ASSERT_TRUE(ok.ok()) << ok.status();
      if (*ok) {
        ++in;
        for (float v : out) ASSERT_TRUE(v >= 0.f && v <= 1.f) << v;
        for (float v : target) ASSERT_TRUE(v >= 0.f && v <= 1.f) << v;
      } else {
        ++out_of;
        for (float v : out) ASSERT_EQ(v, kSentinel);
        for (float v : target) ASSERT_EQ(v, kSentinel);
      }
    }
    EXPECT_GT(out_of, 0);
    if (c.expect_some_in_bounds) {
      EXPECT_GT(in, 0);
    }
  }
}

// A small label cube in a large raw cube: warps that keep the input patch inside the raw cube
// can still push the target out of the label cube, which must count as out of bounds.
TEST(WarpTest, TargetLeavingTheLabelCubeIsOutOfBounds) {
  const Volume raw = RandomVolume(1, 30, 60, 60, 12);
  const Volume label = RandomVolume(1, 12, 30, 30, 13);
  const Shape3 lab_shape = label.spatial();
  const Shape3 ps = {9, 25, 25}, tps = {9, 25, 25};
  WarpOptions opt;
  opt.warp_amount = 1.0;
  std::mt19937_64 rng(14);
  std::vector<float> out(Voxels(ps)), target(Voxels(tps), -5.f);
  int raw_only_in = 0, both_in = 0;
  for (int i = 0; i < 200; ++i) {
    auto t = DrawWarpTransform(raw.spatial(), &lab_shape, ps, tps, opt, rng);
    ASSERT_TRUE(t.ok());
    auto raw_in = WarpSlice(raw, nullptr, ps, tps, t->forward, out.data(), nullptr);
    ASSERT_TRUE(raw_in.ok());
    ASSERT_TRUE(*raw_in) << "the raw cube has room for any rotation here";
    std::fill(target.begin(), target.end(), -5.f);
    auto all_in = WarpSlice(raw, &label, ps, tps, t->forward, out.data(), target.data());
    ASSERT_TRUE(all_in.ok());
    if (*all_in) {
      ++both_in;
    } else {
      ++raw_only_in;
      for (float v : target) ASSERT_EQ(v, -5.f);
    }
  }
  EXPECT_GT(raw_only_in, 0);
  EXPECT_GT(both_in, 0);
}

TEST(WarpTest, GeometryErrorsNameTheAxis) {
  const Volume raw(1, 24, 40, 40);
  std::mt19937_64 rng(9);
  std::vector<float> out(10000), target(10000);
  const WarpOptions opt;
  auto expect_error = [&](const Volume& lab, Shape3 ps, Shape3 tps, const std::string& needle) {
    auto r = GetWarpedSlice(raw, &lab, ps, tps, opt, rng, out.data(), target.data());
    ASSERT_FALSE(r.ok()) << needle;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().message();
  };
  expect_error(Volume(1, 20, 31, 30), {5, 9, 9}, {3, 5, 5}, "along x raw=40 and label=31");
  expect_error(Volume(1, 20, 30, 35), {5, 9, 9}, {3, 5, 5}, "along y raw=40 and label=35");
  expect_error(Volume(1, 21, 30, 30), {5, 9, 9}, {3, 5, 5}, "along z raw=24 and label=21");
  expect_error(Volume(1, 20, 30, 30), {5, 9, 9}, {3, 4, 5}, "target patch x=4");
  expect_error(Volume(1, 20, 30, 30), {25, 9, 9}, {3, 5, 5}, "along z the patch");
  EXPECT_EQ(std::count(out.begin(), out.end(), 0.f), 10000) << "errors must not write";
}

TEST(GreyAugmentTest, PerChannelFactorsWithinRange) {
  const int64_t channels = 3, voxels = 101;
  std::vector<float> base(channels * voxels);
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t v = 0; v < voxels; ++v) base[c * voxels + v] = v / 100.f;  // 0..1 in each
  int differing = 0;
  for (uint64_t seed = 0; seed < 500; ++seed) {
    std::vector<float> d = base;
    std::mt19937_64 rng(seed);
    GreyAugment(d.data(), channels, voxels, {0, 2}, rng);
    for (int64_t v = 0; v < voxels; ++v) ASSERT_EQ(d[voxels + v], base[voxels + v]);
    for (int64_t c : {0, 2}) {
      const float* p = d.data() + c * voxels;
      for (int64_t v = 0; v < voxels; ++v) {
        ASSERT_GE(p[v], 0.f);
        ASSERT_LE(p[v], 1.f);
        if (v > 0) {
          ASSERT_GE(p[v], p[v - 1]) << "one monotone map per channel";
        }
      }
      // x=0 -> clip(c)^gamma <= 0.15^0.5; x=1 -> clip(alpha + c)^gamma >= 0.7^2.
      EXPECT_LE(p[0], std::sqrt(0.15f) + 1e-6f);
      EXPECT_GE(p[voxels - 1], 0.49f - 1e-6f);
    }
    differing += !std::equal(d.begin(), d.begin() + voxels, d.begin() + 2 * voxels);
  }
  EXPECT_EQ(differing, 500) << "identical channels must get their own factors";
}

}  // namespace
}  // namespace elektronn
