// BatchCreatorImage in img-scalar mode (one label vector per image patch) and its target
// sampling keys for image labels (target_discrete_ix / target_vec_ix), on generated h5 cubes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/data/batch_creator_image.h"
#include "engine/data/h5_volume.h"
#include "tests/support/test_dir.h"

namespace elektronn {
namespace {

// Raw grey values encode (cube, z, x, y), so an unwarped input voxel tells where it came from.
constexpr int64_t kMaxSide = 32, kCubes = 3;
constexpr int64_t kN = kCubes * kMaxSide * kMaxSide * kMaxSide + 1;

float Encode(int64_t cube, int64_t z, int64_t x, int64_t y) {
  return static_cast<float>(((cube * kMaxSide + z) * kMaxSide + x) * kMaxSide + y + 1) /
         static_cast<float>(kN);
}
struct Pos {
  int64_t cube, z, x, y;
};
Pos Decode(float v) {
  int64_t i = std::lround(static_cast<double>(v) * kN) - 1;
  Pos p;
  p.y = i % kMaxSide;
  i /= kMaxSide;
  p.x = i % kMaxSide;
  i /= kMaxSide;
  p.z = i % kMaxSide;
  p.cube = i / kMaxSide;
  return p;
}

class ScalarTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::FreshTestDir("bci_scalar").string(); }

  // Cube c: raw `shape` (z, x, y) of encoded positions; label dataset `label` (shape, values).
  void WriteCube(int64_t c, const std::array<int64_t, 3>& shape, const H5Array& label) {
    Volume raw(1, shape[0], shape[1], shape[2]);
    for (int64_t z = 0; z < shape[0]; ++z)
      for (int64_t x = 0; x < shape[1]; ++x)
        for (int64_t y = 0; y < shape[2]; ++y) raw.at(0, z, x, y) = Encode(c, z, x, y);
    ASSERT_TRUE(
        WriteH5Volume(absl::StrCat(dir_, "/raw_", c, ".h5"), "raw", raw, H5Dtype::kFloat32, false)
            .ok());
    ASSERT_TRUE(WriteH5Int16Array(absl::StrCat(dir_, "/lab_", c, ".h5"), "lab", label).ok());
  }
  // Label vector of cube c: (10c + 1, -c).
  static H5Array CubeLabel(int64_t c) {
    return {{2}, {static_cast<double>(10 * c + 1), static_cast<double>(-c)}};
  }
  void WriteCubes(const std::array<int64_t, 3>& shape = {10, 24, 24}) {
    for (int64_t c = 0; c < kCubes; ++c) WriteCube(c, shape, CubeLabel(c));
  }

  v1::BatchCreatorImageParams Params(const std::string& border = "keep", int n = kCubes,
                                     std::vector<int64_t> valid = {2}) const {
    v1::BatchCreatorImageParams p;
    p.set_d_path(dir_);
    p.set_l_path(dir_);
    for (int64_t c = 0; c < n; ++c) {
      auto* d = p.add_d_files();
      d->set_file(absl::StrCat("raw_", c, ".h5"));
      d->set_key("raw");
      auto* l = p.add_l_files();
      l->set_file(absl::StrCat("lab_", c, ".h5"));
      l->set_key("lab");
    }
    for (int64_t v : valid) p.add_valid_cubes(v);
    p.set_border_mode(border);
    return p;
  }

  // Input (b,1,5,11,11), target (b,f) without spatial axes.
  static BatchGeometry Geometry3D(int64_t b = 4, int64_t f = 2) {
    BatchGeometry g;
    g.input = TaggedShape::Create({b, 1, 5, 11, 11}, "b,f,z,x,y").value();
    g.target = TaggedShape::Create({b, f}, "b,f").value();
    return g;
  }
  static BatchGeometry Geometry2D(int64_t b = 4) {
    BatchGeometry g;
    g.input = TaggedShape::Create({b, 1, 11, 11}, "b,f,x,y").value();
    g.target = TaggedShape::Create({b, 1}, "b,f").value();
    return g;
  }
  static v1::DataBatchArgs NoWarp() {
    v1::DataBatchArgs a;
    a.set_warp(0);
    return a;
  }

  std::string dir_;
};

std::string Message(const absl::Status& s) { return std::string(s.message()); }

// Each example's label is the vector of the cube its patch was cut from; the validation split
// draws only the validation cube.
TEST_F(ScalarTest, LabelIsTheVectorOfTheCubeDrawn) {
  WriteCubes();
  auto d = BatchCreatorImage::Create(Params(), NoWarp(), Geometry3D(), "");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE((*d)->img_scalar());
  EXPECT_EQ((*d)->Describe(),
            "2-target Data Set with 1 input channel(s): #train cubes: 2 and #valid cubes: 1, 2 "
            "labelled pixels.");
  std::mt19937_64 rng(1);
  const int64_t ps_n = 5 * 11 * 11;
  std::vector<float> in(4 * ps_n), tg(4 * 2);
  for (Split split : {Split::kTrain, Split::kValid}) {
    std::set<int64_t> seen;
    for (int rep = 0; rep < 10; ++rep) {
      ASSERT_TRUE((*d)->GetBatch(split, rng, in.data(), tg.data()).ok());
      for (int64_t b = 0; b < 4; ++b) {
        const int64_t cube = Decode(in[b * ps_n]).cube;
        for (int64_t v = 0; v < ps_n; ++v) ASSERT_EQ(Decode(in[b * ps_n + v]).cube, cube);
        seen.insert(cube);
        EXPECT_EQ(tg[2 * b], 10 * cube + 1) << "example " << b;
        EXPECT_EQ(tg[2 * b + 1], -cube) << "example " << b;
      }
    }
    const std::set<int64_t> want =
        split == Split::kTrain ? std::set<int64_t>{0, 1} : std::set<int64_t>{2};
    EXPECT_EQ(seen, want);
  }
}

// Warped patches (rotations need room: 'keep' on cubes larger than the patch) keep the label.
TEST_F(ScalarTest, WarpedPatchesKeepTheirLabel) {
  WriteCubes({12, 30, 30});
  v1::DataBatchArgs a;
  a.set_warp(1);
  a.add_grey_augment_channels(0);
  auto d = BatchCreatorImage::Create(Params("keep", kCubes, {}), a, Geometry3D(), "");
  ASSERT_TRUE(d.ok()) << d.status();
  std::mt19937_64 rng(2);
  std::vector<float> in(4 * 5 * 11 * 11), tg(8);
  std::set<float> labels;
  for (int rep = 0; rep < 10; ++rep) {
    ASSERT_TRUE((*d)->GetBatch(Split::kTrain, rng, in.data(), tg.data()).ok());
    for (int64_t b = 0; b < 4; ++b) {
      labels.insert(tg[2 * b]);
      EXPECT_EQ(tg[2 * b + 1], -(tg[2 * b] - 1) / 10);  // both entries from one cube
    }
  }
  EXPECT_EQ(labels, (std::set<float>{1, 11, 21}));
}

// crop: the cube is cut to its centre patch; keep: patches roam the whole cube.
TEST_F(ScalarTest, CropAndKeepDecideWherePatchesComeFrom) {
  WriteCubes();  // (10, 24, 24); patch (5, 11, 11): crop keeps z 2..6, x and y 6..16
  for (const std::string mode : {"crop", "keep"}) {
    auto d = BatchCreatorImage::Create(Params(mode), NoWarp(), Geometry3D(), "");
    ASSERT_TRUE(d.ok()) << d.status();
    const auto& c = (*d)->cube(0);
    const std::array<int64_t, 3> want =
        mode == "crop" ? std::array<int64_t, 3>{5, 11, 11} : std::array<int64_t, 3>{10, 24, 24};
    EXPECT_EQ(c.border_shape, want) << mode;
    EXPECT_EQ(c.raw_shape, (std::array<int64_t, 3>{want[0] + 2, want[1] + 2, want[2] + 2}));
    std::mt19937_64 rng(3);
    std::vector<float> in(4 * 5 * 11 * 11), tg(8);
    bool outside_centre = false;
    for (int rep = 0; rep < 20; ++rep) {
      ASSERT_TRUE((*d)->GetBatch(Split::kTrain, rng, in.data(), tg.data()).ok());
      for (float v : in) {
        const Pos p = Decode(v);
        const bool inside = p.z >= 2 && p.z <= 6 && p.x >= 6 && p.x <= 16 && p.y >= 6 && p.y <= 16;
        if (mode == "crop") {
          ASSERT_TRUE(inside) << p.z << "," << p.x << "," << p.y;
        }
        outside_centre |= !inside;
      }
    }
    if (mode == "keep") {
      EXPECT_TRUE(outside_centre);
    }
  }
}

// mirror and 0-pad bring a cube smaller than the patch up to the patch size: symmetric
// reflection (numpy's 'symmetric') or zeros, ceil(difference / 2) before.
TEST_F(ScalarTest, MirrorAndZeroPadGrowSmallCubes) {
  WriteCubes({3, 8, 8});  // patch (5, 11, 11): pad z 1 + 1, x and y 2 + 1
  for (const std::string mode : {"mirror", "0-pad"}) {
    auto d = BatchCreatorImage::Create(Params(mode), NoWarp(), Geometry3D(), "");
    ASSERT_TRUE(d.ok()) << d.status();
    const auto& c = (*d)->cube(1);
    EXPECT_EQ(c.border_shape, (std::array<int64_t, 3>{5, 11, 11})) << mode;
    // Treated voxel (z, x, y) sits at (z+1, x+1, y+1) behind the one-voxel spare.
    auto at = [&](int64_t z, int64_t x, int64_t y) { return c.raw.at(0, z + 1, x + 1, y + 1); };
    if (mode == "mirror") {
      EXPECT_EQ(at(0, 0, 0), Encode(1, 0, 1, 1));  // z: reflect(-1) = 0; x, y: reflect(-2) = 1
      EXPECT_EQ(at(1, 2, 2), Encode(1, 0, 0, 0));
      EXPECT_EQ(at(4, 10, 9), Encode(1, 2, 7, 7));  // z 3 -> 2, x 8 -> 7, y 7 in the cube
    } else {
      EXPECT_EQ(at(0, 5, 5), 0.f);
      EXPECT_EQ(at(1, 2, 2), Encode(1, 0, 0, 0));
      EXPECT_EQ(at(2, 10, 5), 0.f);
    }
    // Patches cover the whole treated cube: zeros appear in 0-pad batches, never in mirror.
    std::mt19937_64 rng(4);
    std::vector<float> in(4 * 5 * 11 * 11), tg(8);
    ASSERT_TRUE((*d)->GetBatch(Split::kTrain, rng, in.data(), tg.data()).ok());
    const auto zeros = std::count(in.begin(), in.end(), 0.f);
    if (mode == "mirror") {
      EXPECT_EQ(zeros, 0);
    } else {
      EXPECT_GT(zeros, 0);
    }
  }
  // crop cannot grow a cube: a clear error naming the fix.
  auto d = BatchCreatorImage::Create(Params("crop"), NoWarp(), Geometry3D(), "");
  ASSERT_FALSE(d.ok());
  EXPECT_NE(Message(d.status())
                .find("smaller than the patch (5,11,11) along z after border_mode "
                      "'crop'; use border_mode 'mirror' or '0-pad'"),
            std::string::npos)
      << d.status();
}

// 2-D networks: a (z, f) label dataset gives every z-slice its own label, so a stack of
// labelled images is one cube; z is never cropped or padded by border_mode.
TEST_F(ScalarTest, PerSliceLabelsFor2DNetworks) {
  H5Array lab{{6, 1}, {}};
  for (int k = 0; k < 6; ++k) lab.data.push_back(100 + k);
  WriteCube(0, {6, 16, 16}, lab);
  auto d = BatchCreatorImage::Create(Params("crop", 1, {}), NoWarp(), Geometry2D(), "");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ((*d)->cube(0).border_shape, (std::array<int64_t, 3>{6, 11, 11}));
  std::mt19937_64 rng(5);
  std::vector<float> in(4 * 11 * 11), tg(4);
  std::set<float> seen;
  for (int rep = 0; rep < 30; ++rep) {
    ASSERT_TRUE((*d)->GetBatch(Split::kTrain, rng, in.data(), tg.data()).ok());
    for (int64_t b = 0; b < 4; ++b) {
      const int64_t z = Decode(in[b * 121 + 60]).z;
      EXPECT_EQ(tg[b], 100 + z) << "example " << b;
      seen.insert(tg[b]);
    }
  }
  EXPECT_EQ(seen.size(), 6u);
}

TEST_F(ScalarTest, ConfigurationErrors) {
  WriteCubes();
  auto expect = [&](const v1::BatchCreatorImageParams& p, const v1::DataBatchArgs& a,
                    const BatchGeometry& g, const std::string& needle) {
    auto d = BatchCreatorImage::Create(p, a, g, "");
    ASSERT_FALSE(d.ok()) << needle;
    EXPECT_NE(Message(d.status()).find(needle), std::string::npos) << d.status();
  };
  expect(Params(), NoWarp(), Geometry3D(4, 3),
         "has shape (2); with a target of f=3 it must be (3,) (one label vector for the whole "
         "cube) (per-slice labels (z, f) need a 2-D network)");
  v1::BatchCreatorImageParams stream = Params();
  stream.set_h5stream(true);
  expect(stream, NoWarp(), Geometry3D(), "need the raw cubes in memory for border_mode");
  v1::DataBatchArgs aff = NoWarp();
  aff.set_affinities("affinity");
  expect(Params(), aff, Geometry3D(), "has no spatial axes (img-scalar");
  v1::BatchCreatorImageParams vec = Params();
  vec.mutable_target_discrete_ix();
  expect(vec, NoWarp(), Geometry3D(), "an img-scalar target (no spatial axes) has no image label");
  BatchGeometry odd = Geometry3D();
  odd.target = TaggedShape::Create({2, 4}, "f,b").value();
  expect(Params(), NoWarp(), odd, "must be \"b,f\" or \"b\"");
  v1::DataBatchArgs ignore = NoWarp();
  ignore.set_ignore_thresh(0.4);  // cubes 1 and 2 have one negative entry of 2: 0.5 > 0.4
  auto d = BatchCreatorImage::Create(Params("keep", kCubes, {0}), ignore, Geometry3D(), "");
  ASSERT_TRUE(d.ok()) << d.status();
  std::mt19937_64 rng(6);
  std::vector<float> in(4 * 5 * 11 * 11), tg(8);
  auto s = (*d)->GetBatch(Split::kTrain, rng, in.data(), tg.data());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(Message(s).find("discarded by ignore_thresh=0.4"), std::string::npos) << s;
}

// Image labels (img-img) with target_discrete_ix / target_vec_ix: the default demands integral
// class ids everywhere; naming the discrete channels lets the others hold vectors, which come
// out turned by the drawn flips and swaps.
TEST_F(ScalarTest, ImageLabelsWithVectorAndDiscreteChannels) {
  Volume raw(1, 10, 24, 24), lab(4, 10, 24, 24);
  for (int64_t i = 0; i < lab.voxels(); ++i) {
    lab.data[i] = static_cast<float>(i % 3);
    lab.data[lab.voxels() + i] = 0.5f;
    lab.data[2 * lab.voxels() + i] = 2.f;
    lab.data[3 * lab.voxels() + i] = -3.f;
  }
  ASSERT_TRUE(WriteH5Volume(dir_ + "/raw_0.h5", "raw", raw, H5Dtype::kFloat32, false).ok());
  ASSERT_TRUE(WriteH5Volume(dir_ + "/lab_0.h5", "lab", lab, H5Dtype::kFloat32, false).ok());
  BatchGeometry g;
  g.input = TaggedShape::Create({2, 1, 5, 11, 11}, "b,f,z,x,y").value();
  g.target = TaggedShape::Create({2, 4, 5, 11, 11}, "b,f,z,x,y", {1, 1, 1}, {1, 1, 1}).value();
  v1::BatchCreatorImageParams p = Params("crop", 1, {});
  auto d = BatchCreatorImage::Create(p, NoWarp(), g, "");
  ASSERT_FALSE(d.ok());
  EXPECT_NE(Message(d.status()).find("holds 0.5 at (ch,z,x,y)=(1,0,0,0)"), std::string::npos)
      << d.status();

  p.mutable_target_discrete_ix()->add_ix(0);
  auto* t = p.add_target_vec_ix();
  for (int c : {1, 2, 3}) t->add_ix(c);
  d = BatchCreatorImage::Create(p, NoWarp(), g, "");
  ASSERT_TRUE(d.ok()) << d.status();
  std::mt19937_64 rng(7);
  const int64_t n = 5 * 11 * 11;
  std::vector<float> in(2 * n), tg(2 * 4 * n);
  std::set<std::vector<float>> vectors;
  for (int rep = 0; rep < 20; ++rep) {
    ASSERT_TRUE((*d)->GetBatch(Split::kTrain, rng, in.data(), tg.data()).ok());
    for (int64_t b = 0; b < 2; ++b) {
      const float* e = tg.data() + b * 4 * n;
      const std::vector<float> v = {e[n], e[2 * n], e[3 * n]};
      vectors.insert(v);
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_TRUE(e[i] == 0 || e[i] == 1 || e[i] == 2) << e[i];
        for (int c = 1; c < 4; ++c) ASSERT_EQ(e[c * n + i], v[c - 1]);
      }
      // z keeps its axis (lock_z) and may flip; x and y may swap and flip.
      EXPECT_EQ(std::abs(v[0]), 0.5f);
      EXPECT_TRUE((std::abs(v[1]) == 2 && std::abs(v[2]) == 3) ||
                  (std::abs(v[1]) == 3 && std::abs(v[2]) == 2));
    }
  }
  EXPECT_GT(vectors.size(), 4u) << "flips and swaps must turn the vectors";

  auto expect = [&](const v1::BatchCreatorImageParams& q, const v1::DataBatchArgs& a,
                    const std::string& needle) {
    auto r = BatchCreatorImage::Create(q, a, g, "");
    ASSERT_FALSE(r.ok()) << needle;
    EXPECT_NE(Message(r.status()).find(needle), std::string::npos) << r.status();
  };
  v1::BatchCreatorImageParams q = p;
  q.mutable_target_discrete_ix()->add_ix(4);
  expect(q, NoWarp(),
         "target_discrete_ix lists channel 4 but the target node has f=4; valid: 0..3");
  q = p;
  q.mutable_target_vec_ix(0)->set_ix(2, 5);
  expect(q, NoWarp(), "names channel 5 but the target has 4 channel(s); valid: 0..3");
  q = p;
  q.mutable_target_vec_ix(0)->add_ix(0);
  expect(q, NoWarp(), "target_vec_ix entry (1,2,3,0) must name 3 channels");
  v1::DataBatchArgs persp = NoWarp();
  persp.mutable_warp_args()->set_perspective(true);
  expect(p, persp, "set warp_args.perspective = false");
}

}  // namespace
}  // namespace elektronn
