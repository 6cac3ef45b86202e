// BatchCreatorImage on small generated cubes: shapes, strided-target placement, splits, errors.
#include "engine/data/batch_creator_image.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/data/h5_volume.h"
#include "engine/data/labels.h"
#include "engine/io/knossos.h"
#include "tests/support/test_dir.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;

// Raw cubes encode (cube, z, x, y) in their grey value, so every input voxel of a batch tells
// where it was cut from whatever flips and swaps were drawn.
constexpr int64_t kZ = 10, kX = 24, kY = 24, kCubes = 3;
constexpr int64_t kN = kCubes * kZ * kX * kY + 1;

float Encode(int64_t cube, int64_t z, int64_t x, int64_t y) {
  return static_cast<float>(((cube * kZ + z) * kX + x) * kY + y + 1) / static_cast<float>(kN);
}
struct Pos {
  int64_t cube, z, x, y;
};
Pos Decode(float v) {
  int64_t i = std::lround(static_cast<double>(v) * kN) - 1;
  Pos p;
  p.y = i % kY;
  i /= kY;
  p.x = i % kX;
  i /= kX;
  p.z = i % kZ;
  p.cube = i / kZ;
  return p;
}
// Label of cube c at label-cube position (z, x, y): distinct ranges per cube.
float LabelValue(int64_t cube, int64_t z, int64_t x, int64_t y) {
  return static_cast<float>(10 * cube + (z + 2 * x + 3 * y) % 5);
}

struct CubeSpec {
  std::array<int64_t, 3> label_shape = {8, 20, 20};  // centred: (1,2,2) smaller on each side
  int64_t raw_ch = 1, label_ch = 1;
  bool float_labels = false;
  float label_extra = 0.f;  // added to every label (0.5: not integral)
};

class BatchCreatorImageTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::FreshTestDir("bci_test").string(); }

  void WriteCubes(const CubeSpec& spec = CubeSpec()) {
    for (int64_t c = 0; c < kCubes; ++c) {
      Volume raw(spec.raw_ch, kZ, kX, kY);
      for (int64_t ch = 0; ch < spec.raw_ch; ++ch)
        for (int64_t z = 0; z < kZ; ++z)
          for (int64_t x = 0; x < kX; ++x)
            for (int64_t y = 0; y < kY; ++y) raw.at(ch, z, x, y) = Encode(c, z, x, y);
      ASSERT_TRUE(
          WriteH5Volume(absl::StrCat(dir_, "/raw_", c, ".h5"), "raw", raw, H5Dtype::kFloat32, false)
              .ok());
      const auto& ls = spec.label_shape;
      Volume lab(spec.label_ch, ls[0], ls[1], ls[2]);
      for (int64_t ch = 0; ch < spec.label_ch; ++ch)
        for (int64_t z = 0; z < ls[0]; ++z)
          for (int64_t x = 0; x < ls[1]; ++x)
            for (int64_t y = 0; y < ls[2]; ++y)
              lab.at(ch, z, x, y) = LabelValue(c, z, x, y) + spec.label_extra;
      ASSERT_TRUE(WriteH5Volume(absl::StrCat(dir_, "/lab_", c, ".h5"), "lab", lab,
                                spec.float_labels ? H5Dtype::kFloat32 : H5Dtype::kInt16, true)
                      .ok());
    }
  }

  v1::BatchCreatorImageParams Params(std::vector<int64_t> valid = {2}) const {
    v1::BatchCreatorImageParams p;
    p.set_d_path(dir_);
    p.set_l_path(dir_);
    for (int64_t c = 0; c < kCubes; ++c) {
      auto* d = p.add_d_files();
      d->set_file(absl::StrCat("raw_", c, ".h5"));
      d->set_key("raw");
      auto* l = p.add_l_files();
      l->set_file(absl::StrCat("lab_", c, ".h5"));
      l->set_key("lab");
    }
    for (int64_t v : valid) p.add_valid_cubes(v);
    return p;
  }

  // Input (b,1,5,11,11); target fov (3,5,5) → offsets (1,2,2), dense target (3,7,7), strides
  // (1,2,2) → target (b,1,3,4,4).
  static BatchGeometry Geometry3D(int64_t b = 3) {
    BatchGeometry g;
    g.input = TaggedShape::Create({b, 1, 5, 11, 11}, "b,f,z,x,y").value();
    g.target = TaggedShape::Create({b, 1, 3, 4, 4}, "b,f,z,x,y", {1, 2, 2}, {3, 5, 5}).value();
    return g;
  }

  static v1::DataBatchArgs NoWarp() {
    v1::DataBatchArgs a;
    a.set_warp(0);
    return a;
  }

  std::string dir_;
};

// Index into a buffer laid out per `s`'s tags.
int64_t Offset(const TaggedShape& s, int64_t b, int64_t f, int64_t z, int64_t x, int64_t y) {
  int64_t off = 0, stride = 1;
  for (int i = s.rank() - 1; i >= 0; --i) {
    const char t = s.tags()[i];
    const int64_t v = t == 'b' ? b : t == 'f' ? f : t == 'z' ? z : t == 'x' ? x : y;
    off += v * stride;
    stride *= s.size(i);
  }
  return off;
}

// For every delivered target voxel k: the input voxel at offset + k*stride was cut from some
// raw position; the target must be the label at that same position (whatever the orientation).
// Also checks that every input voxel decodes to a valid position. Returns the cubes seen.
std::set<int64_t> CheckBatch(const BatchCreatorImage& d, const std::vector<float>& in,
                             const std::vector<float>& tg, const std::array<int64_t, 3>& cube_off) {
  const BatchGeometry& g = d.geometry();
  const auto ps = d.patch_size();
  const auto off = d.target_offsets();
  const auto st = d.target_strides();
  const auto ts = d.target_size();
  std::set<int64_t> cubes;
  const int64_t batch = g.input.SizeOf('b');
  for (int64_t b = 0; b < batch; ++b) {
    Pos first = Decode(in[Offset(g.input, b, 0, 0, 0, 0)]);
    cubes.insert(first.cube);
    for (int64_t z = 0; z < ps[0]; ++z)
      for (int64_t x = 0; x < ps[1]; ++x)
        for (int64_t y = 0; y < ps[2]; ++y) {
          const float v = in[Offset(g.input, b, 0, z, x, y)];
          const Pos p = Decode(v);
          EXPECT_NEAR(v, Encode(p.cube, p.z, p.x, p.y), 1e-6);
          EXPECT_EQ(p.cube, first.cube);
        }
    for (int64_t z = 0; z < ts[0]; ++z)
      for (int64_t x = 0; x < ts[1]; ++x)
        for (int64_t y = 0; y < ts[2]; ++y) {
          const Pos p = Decode(in[Offset(g.input, b, 0, off[0] + z * st[0], off[1] + x * st[1],
                                         off[2] + y * st[2])]);
          const float want =
              LabelValue(p.cube, p.z - cube_off[0], p.x - cube_off[1], p.y - cube_off[2]);
          const float got = tg[Offset(g.target, b, 0, z, x, y)];
          EXPECT_EQ(got, want) << "example " << b << " target (" << z << "," << x << "," << y
                               << ") from raw (" << p.z << "," << p.x << "," << p.y << ")";
          EXPECT_EQ(got, std::floor(got));
          if (got != want) return cubes;  // one report per batch is enough
        }
  }
  return cubes;
}

TEST_F(BatchCreatorImageTest, ShapesAndDescribe) {
  WriteCubes();
  auto d = BatchCreatorImage::Create(Params(), NoWarp(), Geometry3D(), "");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ((*d)->patch_size(), (std::array<int64_t, 3>{5, 11, 11}));
  EXPECT_EQ((*d)->dense_target_size(), (std::array<int64_t, 3>{3, 7, 7}));
  EXPECT_EQ((*d)->target_size(), (std::array<int64_t, 3>{3, 4, 4}));
  EXPECT_EQ((*d)->target_offsets(), (std::array<int64_t, 3>{1, 2, 2}));
  EXPECT_EQ((*d)->train_cubes(), (std::vector<int>{0, 1}));
  EXPECT_EQ((*d)->valid_cubes(), (std::vector<int>{2}));
  EXPECT_TRUE((*d)->has_validation());
  EXPECT_EQ((*d)->Describe(),
            "1-target Data Set with 1 input channel(s): #train cubes: 2 and #valid cubes: 1, "
            "6400 labelled pixels.");
}

// h5stream (issue 15): cubes read patch by patch give exactly the batches of cubes in memory
// (the same draws, the same sampling), and hold no cube in memory.
TEST_F(BatchCreatorImageTest, StreamedCubesGiveTheBatchesOfLoadedOnes) {
  WriteCubes();
  v1::BatchCreatorImageParams streamed = Params();
  streamed.set_h5stream(true);
  for (double warp : {0.0, 1.0}) {
    v1::DataBatchArgs args;
    args.set_warp(warp);
    auto eager = BatchCreatorImage::Create(Params(), args, Geometry3D(), "");
    auto lazy = BatchCreatorImage::Create(streamed, args, Geometry3D(), "");
    ASSERT_TRUE(eager.ok()) << eager.status();
    ASSERT_TRUE(lazy.ok()) << lazy.status();
    EXPECT_FALSE((*eager)->cube(0).streamed());
    EXPECT_TRUE((*lazy)->cube(0).streamed());
    EXPECT_TRUE((*lazy)->cube(0).raw.data.empty());
    EXPECT_TRUE((*lazy)->cube(0).label.data.empty());
    EXPECT_EQ((*lazy)->Describe(), (*eager)->Describe());
    const BatchGeometry& g = (*eager)->geometry();
    std::vector<float> in_a(g.input.stripnone_prod()), tg_a(g.target.stripnone_prod());
    std::vector<float> in_b(in_a.size()), tg_b(tg_a.size());
    std::mt19937_64 rng_a(11), rng_b(11);
    for (int i = 0; i < 20; ++i) {
      const Split split = i % 4 == 3 ? Split::kValid : Split::kTrain;
      ASSERT_TRUE((*eager)->GetBatch(split, rng_a, in_a.data(), tg_a.data()).ok());
      ASSERT_TRUE((*lazy)->GetBatch(split, rng_b, in_b.data(), tg_b.data()).ok());
      float max_diff = 0;
      for (size_t k = 0; k < in_a.size(); ++k) {
        max_diff = std::max(max_diff, std::abs(in_a[k] - in_b[k]));
      }
      // Without warping every coordinate is exact; warped ones are computed through a shifted
      // matrix and may differ in the last bits.
      if (warp == 0.0) {
        EXPECT_EQ(max_diff, 0.f) << "batch " << i;
      } else {
        EXPECT_LT(max_diff, 1e-5f) << "batch " << i;
      }
      EXPECT_EQ(tg_a, tg_b) << "batch " << i << " warp " << warp;
    }
  }
}

TEST_F(BatchCreatorImageTest, StreamedCubesRefuseWhatNeedsWholeCubes) {
  WriteCubes();
  v1::BatchCreatorImageParams p = Params();
  p.set_h5stream(true);
  p.set_xyz_order(true);
  auto d = BatchCreatorImage::Create(p, NoWarp(), Geometry3D(), "");
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("zxy=false"), std::string::npos) << d.status();
  p.set_xyz_order(false);
  p.mutable_ids2barriers();
  d = BatchCreatorImage::Create(p, NoWarp(), Geometry3D(), "");
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("ids2barriers"), std::string::npos) << d.status();
}

// A KNOSSOS raw dataset (key "knossos") pairs with an HDF5 label cube and gives the batches of
// the same voxels stored as HDF5.
TEST_F(BatchCreatorImageTest, KnossosRawCubesGiveTheBatchesOfTheSameHdf5Voxels) {
  // KNOSSOS (x, y, z) = (150, 140, 12): volume (z, x, y) = (12, 140, 150), 2 x 2 cubes.
  auto value = [](int64_t x, int64_t y, int64_t z) {
    return static_cast<uint8_t>((x * 7 + y * 13 + z * 29) % 251);
  };
  ASSERT_TRUE(WriteKnossosDataset(dir_ + "/em", "em", {150, 140, 12}, value).ok());
  Volume raw(1, 12, 140, 150), lab(1, 10, 136, 146);
  for (int64_t z = 0; z < 12; ++z)
    for (int64_t x = 0; x < 140; ++x)
      for (int64_t y = 0; y < 150; ++y) raw.at(0, z, x, y) = value(y, x, z) / 255.f;
  for (int64_t z = 0; z < 10; ++z)
    for (int64_t x = 0; x < 136; ++x)
      for (int64_t y = 0; y < 146; ++y) lab.at(0, z, x, y) = LabelValue(0, z, x, y);
  ASSERT_TRUE(WriteH5Volume(dir_ + "/em.h5", "raw", raw, H5Dtype::kUint8, false).ok());
  ASSERT_TRUE(WriteH5Volume(dir_ + "/lab.h5", "lab", lab, H5Dtype::kInt16, true).ok());
  v1::BatchCreatorImageParams h5, kn;
  for (auto* p : {&h5, &kn}) {
    p->set_d_path(dir_);
    p->set_l_path(dir_);
    auto* l = p->add_l_files();
    l->set_file("lab.h5");
    l->set_key("lab");
  }
  h5.add_d_files()->set_file("em.h5");
  h5.mutable_d_files(0)->set_key("raw");
  kn.add_d_files()->set_file("em");
  kn.mutable_d_files(0)->set_key("knossos");
  kn.set_max_ram(8);  // 4 cubes: the whole dataset, so nothing is read twice
  v1::DataBatchArgs args;
  args.set_warp(0.5);
  auto a = BatchCreatorImage::Create(h5, args, Geometry3D(), "");
  auto b = BatchCreatorImage::Create(kn, args, Geometry3D(), "");
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_TRUE((*b)->cube(0).streamed());
  EXPECT_EQ((*b)->cube(0).raw_shape, (std::array<int64_t, 3>{12, 140, 150}));
  const BatchGeometry& g = (*a)->geometry();
  std::vector<float> in_a(g.input.stripnone_prod()), tg_a(g.target.stripnone_prod());
  std::vector<float> in_b(in_a.size()), tg_b(tg_a.size());
  std::mt19937_64 rng_a(5), rng_b(5);
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE((*a)->GetBatch(Split::kTrain, rng_a, in_a.data(), tg_a.data()).ok());
    ASSERT_TRUE((*b)->GetBatch(Split::kTrain, rng_b, in_b.data(), tg_b.data()).ok());
    float max_diff = 0;
    for (size_t k = 0; k < in_a.size(); ++k) {
      max_diff = std::max(max_diff, std::abs(in_a[k] - in_b[k]));
    }
    EXPECT_LT(max_diff, 1e-5f) << "batch " << i;
    EXPECT_EQ(tg_a, tg_b) << "batch " << i;
  }
  // A KNOSSOS entry that is not a dataset names where it looked.
  kn.mutable_d_files(0)->set_file("nowhere");
  auto c = BatchCreatorImage::Create(kn, args, Geometry3D(), "");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("nowhere/mag1/knossos.conf"), std::string::npos)
      << c.status();
}

TEST_F(BatchCreatorImageTest, StridedTargetIsDenseLabelAtOffsetPlusKStride) {
  WriteCubes();
  auto d = BatchCreatorImage::Create(Params(), NoWarp(), Geometry3D(), "");
  ASSERT_TRUE(d.ok()) << d.status();
  const BatchGeometry& g = (*d)->geometry();
  std::vector<float> in(g.input.stripnone_prod()), tg(g.target.stripnone_prod());
  std::mt19937_64 rng(7);
  std::set<int64_t> seen;
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE((*d)->GetBatch(Split::kTrain, rng, in.data(), tg.data()).ok());
    for (int64_t c : CheckBatch(**d, in, tg, {1, 2, 2})) seen.insert(c);
  }
  EXPECT_EQ(seen, (std::set<int64_t>{0, 1}));  // training cubes only
}

TEST_F(BatchCreatorImageTest, ValidationUsesOnlyValidCubes) {
  WriteCubes();
  v1::DataBatchArgs args = NoWarp();
  args.add_grey_augment_channels(0);  // train only: validation values stay exact
  auto d = BatchCreatorImage::Create(Params({0}), args, Geometry3D(), "");
  ASSERT_TRUE(d.ok()) << d.status();
  const BatchGeometry& g = (*d)->geometry();
  std::vector<float> in(g.input.stripnone_prod()), tg(g.target.stripnone_prod());
  std::mt19937_64 rng(3);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE((*d)->GetBatch(Split::kValid, rng, in.data(), tg.data()).ok());
    EXPECT_EQ(CheckBatch(**d, in, tg, {1, 2, 2}), (std::set<int64_t>{0}));
    for (float t : tg) EXPECT_LT(t, 10.f);  // cube 0's labels are 0..4
  }
  // Training batches come from cubes 1 and 2 and are grey-augmented (values still in [0,1]).
  ASSERT_TRUE((*d)->GetBatch(Split::kTrain, rng, in.data(), tg.data()).ok());
  for (float t : tg) EXPECT_GE(t, 10.f);
  for (float v : in) {
    EXPECT_GE(v, 0.f);
    EXPECT_LE(v, 1.f);
  }
}

TEST_F(BatchCreatorImageTest, CubePriosSelectTrainingCubes) {
  WriteCubes();
  v1::BatchCreatorImageParams p = Params({});
  p.add_cube_prios(0);
  p.add_cube_prios(1);
  p.add_cube_prios(0);
  auto d = BatchCreatorImage::Create(p, NoWarp(), Geometry3D(), "");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_FALSE((*d)->has_validation());
  const BatchGeometry& g = (*d)->geometry();
  std::vector<float> in(g.input.stripnone_prod()), tg(g.target.stripnone_prod());
  std::mt19937_64 rng(1);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE((*d)->GetBatch(Split::kTrain, rng, in.data(), tg.data()).ok());
    EXPECT_EQ(CheckBatch(**d, in, tg, {1, 2, 2}), (std::set<int64_t>{1}));
  }
  absl::Status s = (*d)->GetBatch(Split::kValid, rng, in.data(), tg.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(BatchCreatorImageTest, WarpedBatchesHaveValidClassIds) {
  CubeSpec spec;
  spec.label_shape = {kZ, kX, kY};  // labels as large as the raw cubes
  WriteCubes(spec);
  v1::DataBatchArgs args;
  args.set_warp(1);
  args.mutable_warp_args()->set_warp_amount(0.3);
  args.add_grey_augment_channels(0);
  BatchGeometry g;
  g.input = TaggedShape::Create({2, 1, 3, 9, 9}, "b,f,z,x,y").value();
  g.target = TaggedShape::Create({2, 1, 3, 9, 9}, "b,f,z,x,y").value();
  auto d = BatchCreatorImage::Create(Params(), args, g, "");
  ASSERT_TRUE(d.ok()) << d.status();
  std::vector<float> in(g.input.stripnone_prod()), tg(g.target.stripnone_prod());
  std::mt19937_64 rng(11);
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE((*d)->GetBatch(Split::kTrain, rng, in.data(), tg.data()).ok());
    for (float t : tg) {
      ASSERT_EQ(t, std::floor(t));
      ASSERT_TRUE((t >= 0 && t <= 4) || (t >= 10 && t <= 14)) << t;  // cubes 0 and 1
    }
  }
}

TEST_F(BatchCreatorImageTest, TwoDimensionalNetCutsSingleSlices) {
  WriteCubes();
  BatchGeometry g;
  g.input = TaggedShape::Create({4, 1, 11, 11}, "b,f,x,y").value();
  g.target = TaggedShape::Create({4, 1, 4, 4}, "b,f,x,y", {2, 2}, {5, 5}).value();
  auto d = BatchCreatorImage::Create(Params(), NoWarp(), g, "");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ((*d)->patch_size(), (std::array<int64_t, 3>{1, 11, 11}));
  EXPECT_EQ((*d)->target_size(), (std::array<int64_t, 3>{1, 4, 4}));
  std::vector<float> in(g.input.stripnone_prod()), tg(g.target.stripnone_prod());
  std::mt19937_64 rng(5);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE((*d)->GetBatch(Split::kTrain, rng, in.data(), tg.data()).ok());
    CheckBatch(**d, in, tg, {1, 2, 2});
    // One z-slice per example.
    for (int64_t b = 0; b < 4; ++b) {
      const int64_t z = Decode(in[Offset(g.input, b, 0, 0, 0, 0)]).z;
      for (int64_t x = 0; x < 11; ++x)
        for (int64_t y = 0; y < 11; ++y) ASSERT_EQ(Decode(in[Offset(g.input, b, 0, 0, x, y)]).z, z);
    }
  }
}

TEST_F(BatchCreatorImageTest, NonCanonicalLayoutAndUnequalStrides) {
  WriteCubes();
  // Tags b,f,z,y,x: spatial order z,y,x, so strides/fov are given as (z, y, x).
  BatchGeometry g;
  g.input = TaggedShape::Create({2, 1, 5, 11, 11}, "b,f,z,y,x").value();
  // offsets z1, y2, x1 → dense (3, 7, 9); strides z1, y2, x3 → (3, 4, 3).
  g.target = TaggedShape::Create({2, 1, 3, 4, 3}, "b,f,z,y,x", {1, 2, 3}, {3, 5, 3}).value();
  auto d = BatchCreatorImage::Create(Params(), NoWarp(), g, "");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ((*d)->target_offsets(), (std::array<int64_t, 3>{1, 1, 2}));
  EXPECT_EQ((*d)->target_strides(), (std::array<int64_t, 3>{1, 3, 2}));
  EXPECT_EQ((*d)->target_size(), (std::array<int64_t, 3>{3, 3, 4}));
  std::vector<float> in(g.input.stripnone_prod()), tg(g.target.stripnone_prod());
  std::mt19937_64 rng(9);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE((*d)->GetBatch(Split::kTrain, rng, in.data(), tg.data()).ok());
    CheckBatch(**d, in, tg, {1, 2, 2});
  }
}

TEST_F(BatchCreatorImageTest, ForceDenseDeliversTheDenseTarget) {
  WriteCubes();
  v1::DataBatchArgs args = NoWarp();
  args.set_force_dense(true);
  BatchGeometry g = Geometry3D(2);
  g.target = TaggedShape::Create({2, 1, 3, 7, 7}, "b,f,z,x,y", {1, 2, 2}, {3, 5, 5}).value();
  auto d = BatchCreatorImage::Create(Params(), args, g, "");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ((*d)->target_size(), (std::array<int64_t, 3>{3, 7, 7}));
  std::vector<float> in(g.input.stripnone_prod()), tg(g.target.stripnone_prod());
  std::mt19937_64 rng(2);
  ASSERT_TRUE((*d)->GetBatch(Split::kTrain, rng, in.data(), tg.data()).ok());
  // With force_dense, target k sits on input offset + k.
  const auto off = (*d)->target_offsets();
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t z = 0; z < 3; ++z)
      for (int64_t x = 0; x < 7; ++x)
        for (int64_t y = 0; y < 7; ++y) {
          const Pos p = Decode(in[Offset(g.input, b, 0, off[0] + z, off[1] + x, off[2] + y)]);
          ASSERT_EQ(tg[Offset(g.target, b, 0, z, x, y)],
                    LabelValue(p.cube, p.z - 1, p.x - 2, p.y - 2));
        }
}

TEST_F(BatchCreatorImageTest, ConcurrentCallersEachWithTheirOwnRng) {
  WriteCubes();
  auto d = BatchCreatorImage::Create(Params(), NoWarp(), Geometry3D(), "");
  ASSERT_TRUE(d.ok()) << d.status();
  const BatchCreatorImage& src = **d;
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const BatchGeometry& g = src.geometry();
      std::vector<float> in(g.input.stripnone_prod()), tg(g.target.stripnone_prod());
      std::mt19937_64 rng(100 + t);
      for (int i = 0; i < 25; ++i) {
        if (!src.GetBatch(Split::kTrain, rng, in.data(), tg.data()).ok()) return;
        CheckBatch(src, in, tg, {1, 2, 2});
      }
      ok[t] = 1;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok, (std::vector<int>{1, 1, 1, 1}));
}

TEST_F(BatchCreatorImageTest, RelativeAndHomePathsResolve) {
  WriteCubes();
  v1::BatchCreatorImageParams p = Params();
  const std::string name = fs::path(dir_).filename().string();
  p.set_d_path(name);  // relative to base_dir
  p.set_l_path(absl::StrCat("~/", name));
  const char* old_home = std::getenv("HOME");
  const std::string saved = old_home ? old_home : "";
  setenv("HOME", fs::path(dir_).parent_path().c_str(), 1);
  auto d = BatchCreatorImage::Create(p, NoWarp(), Geometry3D(), fs::path(dir_).parent_path());
  if (old_home) setenv("HOME", saved.c_str(), 1);
  ASSERT_TRUE(d.ok()) << d.status();
  const std::string normal = fs::path(dir_).lexically_normal().string();
  EXPECT_EQ((*d)->cube(0).raw_file, absl::StrCat(normal, "/raw_0.h5"));
  EXPECT_EQ((*d)->cube(0).label_file, absl::StrCat(normal, "/lab_0.h5"));
}

// ---- Errors.

std::string Message(const absl::Status& s) { return std::string(s.message()); }

TEST_F(BatchCreatorImageTest, OffCentreLabelsAreRejected) {
  CubeSpec spec;
  spec.label_shape = {9, 20, 20};  // z difference 1: odd
  WriteCubes(spec);
  auto d = BatchCreatorImage::Create(Params(), NoWarp(), Geometry3D(), "");
  ASSERT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string m = Message(d.status());
  EXPECT_NE(m.find("not centred"), std::string::npos) << m;
  EXPECT_NE(m.find("lab_0.h5"), std::string::npos) << m;
  EXPECT_NE(m.find("along z the size difference is 1"), std::string::npos) << m;
}

TEST_F(BatchCreatorImageTest, MismatchedChannelsAreRejected) {
  CubeSpec spec;
  spec.raw_ch = 2;
  WriteCubes(spec);
  auto d = BatchCreatorImage::Create(Params(), NoWarp(), Geometry3D(), "");
  ASSERT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  std::string m = Message(d.status());
  EXPECT_NE(m.find("raw_0.h5"), std::string::npos) << m;
  EXPECT_NE(m.find("2 channel(s) but the input node has f=1"), std::string::npos) << m;

  spec = CubeSpec();
  spec.label_ch = 2;
  WriteCubes(spec);
  d = BatchCreatorImage::Create(Params(), NoWarp(), Geometry3D(), "");
  ASSERT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  m = Message(d.status());
  EXPECT_NE(m.find("lab_0.h5"), std::string::npos) << m;
  EXPECT_NE(m.find("2 channel(s) but the target node has f=1"), std::string::npos) << m;
}

TEST_F(BatchCreatorImageTest, MissingFileIsNotFound) {
  WriteCubes();
  fs::remove(absl::StrCat(dir_, "/lab_1.h5"));
  auto d = BatchCreatorImage::Create(Params(), NoWarp(), Geometry3D(), "");
  ASSERT_EQ(d.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(Message(d.status()).find("lab_1.h5' does not exist"), std::string::npos) << d.status();
}

TEST_F(BatchCreatorImageTest, MissingKeyListsKeys) {
  WriteCubes();
  v1::BatchCreatorImageParams p = Params();
  p.mutable_d_files(0)->set_key("data");
  auto d = BatchCreatorImage::Create(p, NoWarp(), Geometry3D(), "");
  ASSERT_EQ(d.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(Message(d.status()).find("no dataset 'data'; datasets in the file: raw"),
            std::string::npos)
      << d.status();
}

TEST_F(BatchCreatorImageTest, UnequalFileListsAreRejected) {
  WriteCubes();
  v1::BatchCreatorImageParams p = Params();
  p.mutable_l_files()->RemoveLast();
  auto d = BatchCreatorImage::Create(p, NoWarp(), Geometry3D(), "");
  ASSERT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(Message(d.status()).find("3 d_files but 2 l_files"), std::string::npos) << d.status();
}

TEST_F(BatchCreatorImageTest, NonIntegralLabelsAreRejected) {
  CubeSpec spec;
  spec.float_labels = true;
  spec.label_extra = 0.5f;
  WriteCubes(spec);
  auto d = BatchCreatorImage::Create(Params(), NoWarp(), Geometry3D(), "");
  ASSERT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(Message(d.status()).find("integral class ids"), std::string::npos) << d.status();
}

TEST_F(BatchCreatorImageTest, TargetShapeMustMatchStridedDenseTarget) {
  WriteCubes();
  BatchGeometry g = Geometry3D();
  g.target = TaggedShape::Create({3, 1, 3, 5, 5}, "b,f,z,x,y", {1, 2, 2}, {3, 5, 5}).value();
  auto d = BatchCreatorImage::Create(Params(), NoWarp(), g, "");
  ASSERT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(Message(d.status()).find("(3,5,5) does not match"), std::string::npos) << d.status();
  EXPECT_NE(Message(d.status()).find("= (3,4,4)"), std::string::npos) << d.status();
}

TEST_F(BatchCreatorImageTest, PatchLargerThanCubeIsRejectedAtCreate) {
  WriteCubes();
  BatchGeometry g;
  g.input = TaggedShape::Create({1, 1, 5, 31, 11}, "b,f,z,x,y").value();
  g.target = TaggedShape::Create({1, 1, 5, 31, 11}, "b,f,z,x,y").value();
  auto d = BatchCreatorImage::Create(Params(), NoWarp(), g, "");
  ASSERT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string m = Message(d.status());
  EXPECT_NE(m.find("patch (5,31,11) does not fit cube"), std::string::npos) << m;
  EXPECT_NE(m.find("raw_0.h5"), std::string::npos) << m;
}

TEST_F(BatchCreatorImageTest, GivesUpWhenWarpedPatchesNeverFit) {
  CubeSpec spec;
  spec.label_shape = {kZ, kX, kY};
  WriteCubes(spec);
  v1::DataBatchArgs args;
  // Full 3-D rotations and axis permutations: a (9,23,23) patch in a (10,24,24) cube fits
  // almost never.
  args.set_warp(1);
  args.mutable_warp_args()->set_lock_z(false);
  BatchGeometry g;
  g.input = TaggedShape::Create({1, 1, 9, 23, 23}, "b,f,z,x,y").value();
  g.target = TaggedShape::Create({1, 1, 9, 23, 23}, "b,f,z,x,y").value();
  auto d = BatchCreatorImage::Create(Params(), args, g, "");
  ASSERT_TRUE(d.ok()) << d.status();
  std::vector<float> in(g.input.stripnone_prod()), tg(g.target.stripnone_prod());
  std::mt19937_64 rng(4);
  absl::Status s = (*d)->GetBatch(Split::kTrain, rng, in.data(), tg.data());
  ASSERT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(Message(s).find("patch (9,23,23)"), std::string::npos) << s;
  EXPECT_NE(Message(s).find("does not fit cube"), std::string::npos) << s;
  EXPECT_NE(Message(s).find("1000 consecutive"), std::string::npos) << s;
}

TEST_F(BatchCreatorImageTest, GivesUpWhenIgnoreThreshRejectsEverything) {
  CubeSpec spec;
  spec.label_extra = -100.f;  // every label negative (= unlabelled)
  WriteCubes(spec);
  v1::DataBatchArgs args = NoWarp();
  args.set_ignore_thresh(0.5);
  auto d = BatchCreatorImage::Create(Params(), args, Geometry3D(), "");
  ASSERT_TRUE(d.ok()) << d.status();
  const BatchGeometry& g = (*d)->geometry();
  std::vector<float> in(g.input.stripnone_prod()), tg(g.target.stripnone_prod());
  std::mt19937_64 rng(4);
  absl::Status s = (*d)->GetBatch(Split::kTrain, rng, in.data(), tg.data());
  ASSERT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(Message(s).find("ignore_thresh=0.5"), std::string::npos) << s;
  // Without the threshold the same cubes deliver (negative targets are ignore labels).
  args.clear_ignore_thresh();
  d = BatchCreatorImage::Create(Params(), args, Geometry3D(), "");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE((*d)->GetBatch(Split::kTrain, rng, in.data(), tg.data()).ok());
}

// ---- Data family: targets derived from IDs, lazy-label masks, non-geometric augmentations.

// Segmentation IDs of the label cubes: blocks of 2 (z) x 3 (x) x 4 (y) voxels, ID 0 =
// background in a quarter of them, so that neighbours are sometimes equal, sometimes not.
float IdValue(int64_t cube, int64_t z, int64_t x, int64_t y) {
  return static_cast<float>((z / 2 + x / 3 + y / 4 + cube) % 4);
}

class BatchCreatorTargetsTest : public BatchCreatorImageTest {
 protected:
  void WriteIdCubes() {
    WriteCubes();  // raw cubes as usual; label cubes replaced by IDs below
    for (int64_t c = 0; c < kCubes; ++c) {
      Volume lab(1, 8, 20, 20);
      for (int64_t z = 0; z < 8; ++z)
        for (int64_t x = 0; x < 20; ++x)
          for (int64_t y = 0; y < 20; ++y) lab.at(0, z, x, y) = IdValue(c, z, x, y);
      const std::string f = absl::StrCat(dir_, "/lab_", c, ".h5");
      fs::remove(f);
      ASSERT_TRUE(WriteH5Volume(f, "lab", lab, H5Dtype::kInt16, false).ok());
    }
  }
  // The ID under input voxel (z,x,y) of example b (decoded from the raw grey value).
  static float IdAtInput(const BatchGeometry& g, const std::vector<float>& in, int64_t b, int64_t z,
                         int64_t x, int64_t y) {
    const Pos p = Decode(in[Offset(g.input, b, 0, z, x, y)]);
    return IdValue(p.cube, p.z - 1, p.x - 2, p.y - 2);
  }
};

TEST_F(BatchCreatorTargetsTest, AffinitiesFollowTheIdsUnderTheStridedTarget) {
  WriteIdCubes();
  v1::DataBatchArgs a = NoWarp();
  a.set_affinities("affinity");
  BatchGeometry g = Geometry3D();
  g.target = TaggedShape::Create({3, 3, 3, 4, 4}, "b,f,z,x,y", {1, 2, 2}, {3, 5, 5}).value();
  auto d = BatchCreatorImage::Create(Params(), a, g, "");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ((*d)->label_margin(), (std::array<int64_t, 3>{1, 1, 1}));
  std::vector<float> in(g.input.stripnone_prod()), tg(g.target.stripnone_prod());
  std::mt19937_64 rng(3);
  int64_t ones = 0, zeros = 0;
  for (int it = 0; it < 10; ++it) {
    ASSERT_TRUE((*d)->GetBatch(Split::kTrain, rng, in.data(), tg.data()).ok());
    for (int64_t b = 0; b < 3; ++b)
      for (int64_t e = 0; e < 3; ++e)
        for (int64_t z = 0; z < 3; ++z)
          for (int64_t x = 0; x < 4; ++x)
            for (int64_t y = 0; y < 4; ++y) {
              // Dense index (z, 2x, 2y) sits on input voxel offset + that; its edge partner one
              // voxel further along axis e (in patch coordinates, whatever flips were drawn).
              const int64_t iz = 1 + z, ix = 2 + 2 * x, iy = 2 + 2 * y;
              const float u = IdAtInput(g, in, b, iz, ix, iy);
              const float v = IdAtInput(g, in, b, iz + (e == 0), ix + (e == 1), iy + (e == 2));
              const float want = (u == v && u > 0) ? 1.f : 0.f;
              const float got = tg[Offset(g.target, b, e, z, x, y)];
              ASSERT_EQ(got, want)
                  << "b " << b << " edge " << e << " at " << z << "," << x << "," << y;
              ones += got == 1.f;
              zeros += got == 0.f;
            }
  }
  EXPECT_GT(ones, 100);
  EXPECT_GT(zeros, 100);
}

TEST_F(BatchCreatorTargetsTest, AffinityEdgesBeyondTheInputPatchAreIgnored) {
  WriteIdCubes();
  v1::DataBatchArgs a = NoWarp();
  a.set_affinities("affinity");
  BatchGeometry g;  // fov 1: the target is the whole patch, no label context around it
  g.input = TaggedShape::Create({2, 1, 3, 9, 9}, "b,f,z,x,y").value();
  g.target = TaggedShape::Create({2, 3, 3, 9, 9}, "b,f,z,x,y", {1, 1, 1}, {1, 1, 1}).value();
  auto d = BatchCreatorImage::Create(Params(), a, g, "");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ((*d)->label_margin(), (std::array<int64_t, 3>{0, 0, 0}));
  std::vector<float> in(g.input.stripnone_prod()), tg(g.target.stripnone_prod());
  std::mt19937_64 rng(4);
  ASSERT_TRUE((*d)->GetBatch(Split::kTrain, rng, in.data(), tg.data()).ok());
  const std::array<int64_t, 3> n = {3, 9, 9};
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t e = 0; e < 3; ++e)
      for (int64_t z = 0; z < 3; ++z)
        for (int64_t x = 0; x < 9; ++x)
          for (int64_t y = 0; y < 9; ++y) {
            const std::array<int64_t, 3> p = {z, x, y};
            const float got = tg[Offset(g.target, b, e, z, x, y)];
            if (p[e] == n[e] - 1) {
              ASSERT_EQ(got, BatchCreatorImage::kUndefinedAffinity);
              continue;
            }
            const float u = IdAtInput(g, in, b, z, x, y);
            const float v = IdAtInput(g, in, b, z + (e == 0), x + (e == 1), y + (e == 2));
            ASSERT_EQ(got, (u == v && u > 0) ? 1.f : 0.f);
          }
}

TEST_F(BatchCreatorTargetsTest, NhoodTargetsAreShiftedIds) {
  WriteIdCubes();
  v1::DataBatchArgs a = NoWarp();
  a.set_nhood_targets(true);
  a.set_force_dense(true);
  BatchGeometry g = Geometry3D(2);
  g.target = TaggedShape::Create({2, 7, 3, 7, 7}, "b,f,z,x,y", {1, 2, 2}, {3, 5, 5}).value();
  auto d = BatchCreatorImage::Create(Params(), a, g, "");
  ASSERT_TRUE(d.ok()) << d.status();
  std::vector<float> in(g.input.stripnone_prod()), tg(g.target.stripnone_prod());
  std::mt19937_64 rng(5);
  ASSERT_TRUE((*d)->GetBatch(Split::kTrain, rng, in.data(), tg.data()).ok());
  const auto nh = DefaultNhoodTargets();
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t e = 0; e < 7; ++e)
      for (int64_t z = 0; z < 3; ++z)
        for (int64_t x = 0; x < 7; ++x)
          for (int64_t y = 0; y < 7; ++y) {
            const float want =
                IdAtInput(g, in, b, 1 + z + nh[e][0], 2 + x + nh[e][1], 2 + y + nh[e][2]);
            ASSERT_EQ(tg[Offset(g.target, b, e, z, x, y)], want) << e;
          }
}

TEST_F(BatchCreatorTargetsTest, Ids2BarriersAtLoad) {
  WriteIdCubes();
  v1::BatchCreatorImageParams p = Params();
  // Boundaries only within z-sections (blocks are 2 sections thick), not diluted, so that block
  // interiors survive and ID-0 interiors become class 2.
  v1::Ids2BarriersArgs* ia = p.mutable_ids2barriers();
  ia->set_ecs_as_barr("new_class");
  for (bool c : {false, true, true}) ia->add_connectivity(c);
  for (int i = 0; i < 3; ++i) ia->add_dilute(false);
  auto d = BatchCreatorImage::Create(p, NoWarp(), Geometry3D(), "");
  ASSERT_TRUE(d.ok()) << d.status();
  auto ids = ReadH5Volume(absl::StrCat(dir_, "/lab_1.h5"), "lab", false);
  ASSERT_TRUE(ids.ok());
  Ids2BarriersOptions o;
  o.ecs = EcsMode::kNewClass;
  o.connectivity = {false, true, true};
  o.dilute = {false, false, false};
  EXPECT_EQ((*d)->cube(1).label.data, Ids2Barriers(*ids, o).data);
  std::set<float> values((*d)->cube(1).label.data.begin(), (*d)->cube(1).label.data.end());
  EXPECT_EQ(values, (std::set<float>{0.f, 1.f, 2.f}));
}

TEST_F(BatchCreatorTargetsTest, BadTargetConfigurationsNameTheKey) {
  WriteIdCubes();
  v1::DataBatchArgs a = NoWarp();
  a.set_affinities("affinity");
  auto d = BatchCreatorImage::Create(Params(), a, Geometry3D(), "");  // target f=1, not 3
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("f=1 but affinities with 3 offset(s)"), std::string::npos)
      << d.status();
  a.set_affinities("malis");
  EXPECT_EQ(BatchCreatorImage::Create(Params(), a, Geometry3D(), "").status().code(),
            absl::StatusCode::kUnimplemented);
  a.set_affinities("affine");
  d = BatchCreatorImage::Create(Params(), a, Geometry3D(), "");
  EXPECT_NE(d.status().message().find("affinities='affine' is unknown"), std::string::npos);
  a = NoWarp();
  a.set_blurry_blobs_probability(1.5);
  d = BatchCreatorImage::Create(Params(), a, Geometry3D(), "");
  EXPECT_NE(d.status().message().find("blurry_blobs_probability=1.5"), std::string::npos)
      << d.status();
  a = NoWarp();
  a.mutable_noisy_random_erasing_args()->add_blob_size_range(4);
  a.mutable_noisy_random_erasing_args()->add_blob_size_range(2);
  d = BatchCreatorImage::Create(Params(), a, Geometry3D(), "");
  EXPECT_NE(d.status().message().find("noisy_random_erasing_args.blob_size_range=(4,2)"),
            std::string::npos)
      << d.status();
}

// Fraction of training examples in which an augmentation with probability p shows: uniform
// erasing with a value (-5) that raw data never has.
TEST_F(BatchCreatorTargetsTest, AugmentationsApplyWithTheirProbabilityOnTrainingOnly) {
  WriteCubes();
  for (double p : {0.0, 0.5, 1.0}) {
    v1::DataBatchArgs a = NoWarp();
    a.set_uniform_random_erasing_probability(p);
    auto* e = a.mutable_uniform_random_erasing_args();
    e->set_value(-5);
    e->add_num_blob_range(1), e->add_num_blob_range(2);
    e->add_blob_size_range(2), e->add_blob_size_range(4);
    auto d = BatchCreatorImage::Create(Params(), a, Geometry3D(), "");
    ASSERT_TRUE(d.ok()) << d.status();
    const BatchGeometry& g = (*d)->geometry();
    std::vector<float> in(g.input.stripnone_prod()), tg(g.target.stripnone_prod());
    std::mt19937_64 rng(9);
    const int64_t per = in.size() / 3;
    int erased = 0, total = 0;
    for (int it = 0; it < 100; ++it) {
      ASSERT_TRUE((*d)->GetBatch(Split::kTrain, rng, in.data(), tg.data()).ok());
      for (int64_t b = 0; b < 3; ++b, ++total) {
        erased += std::count(in.begin() + b * per, in.begin() + (b + 1) * per, -5.f) > 0;
      }
    }
    const double frac = static_cast<double>(erased) / total;
    if (p == 0.0) {
      EXPECT_EQ(erased, 0);
    } else if (p == 1.0) {
      EXPECT_EQ(erased, total);
    } else {
      EXPECT_NEAR(frac, 0.5, 0.1) << erased << " of " << total;
    }
    // Validation batches are never augmented.
    ASSERT_TRUE((*d)->GetBatch(Split::kValid, rng, in.data(), tg.data()).ok());
    EXPECT_EQ(std::count(in.begin(), in.end(), -5.f), 0);
  }
}

TEST_F(BatchCreatorTargetsTest, LazyLabelMasksPerCube) {
  WriteCubes();
  // Cube 1 has flags; cube 0 none (every class labelled, none absent).
  ASSERT_TRUE(
      WriteH5Int16Array(absl::StrCat(dir_, "/lab_1.h5"), "ll_mask", {{2, 3}, {1, 0, 1, 0, 1, 0}})
          .ok());
  v1::DataBatchArgs a = NoWarp();
  a.set_ret_ll_mask(true);
  BatchGeometry g = Geometry3D();
  g.extras.push_back({"mask_class_labeled", TaggedShape::Create({3, 3}, "b,f").value()});
  g.extras.push_back({"mask_class_not_present", TaggedShape::Create({3, 3}, "b,f").value()});
  auto d = BatchCreatorImage::Create(Params(), a, g, "");
  ASSERT_TRUE(d.ok()) << d.status();
  std::vector<float> in(g.input.stripnone_prod()), tg(g.target.stripnone_prod()), m0(9), m1(9);
  float* extras[2] = {m0.data(), m1.data()};
  std::mt19937_64 rng(2);
  std::set<int64_t> seen;
  for (int it = 0; it < 10; ++it) {
    ASSERT_TRUE((*d)->GetBatch(Split::kTrain, rng, in.data(), tg.data(), extras).ok());
    for (int64_t b = 0; b < 3; ++b) {
      const int64_t cube = Decode(in[Offset(g.input, b, 0, 0, 0, 0)]).cube;
      seen.insert(cube);
      const std::vector<float> l(m0.begin() + 3 * b, m0.begin() + 3 * b + 3);
      const std::vector<float> n(m1.begin() + 3 * b, m1.begin() + 3 * b + 3);
      if (cube == 1) {
        EXPECT_EQ(l, (std::vector<float>{1, 0, 1}));
        EXPECT_EQ(n, (std::vector<float>{0, 1, 0}));
      } else {
        EXPECT_EQ(l, (std::vector<float>{1, 1, 1}));
        EXPECT_EQ(n, (std::vector<float>{0, 0, 0}));
      }
    }
  }
  EXPECT_EQ(seen, (std::set<int64_t>{0, 1}));
  // Without the mask buffers, or without the model's mask inputs: clear errors.
  EXPECT_FALSE((*d)->GetBatch(Split::kTrain, rng, in.data(), tg.data()).ok());
  auto bad = BatchCreatorImage::Create(Params(), a, Geometry3D(), "");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'mask_class_labeled' and 'mask_class_not_present'"),
            std::string::npos)
      << bad.status();
  // A mask of the wrong width.
  g.extras[0].shape = TaggedShape::Create({3, 2}, "b,f").value();
  g.extras[1].shape = TaggedShape::Create({3, 2}, "b,f").value();
  bad = BatchCreatorImage::Create(Params(), a, g, "");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'ll_mask' has shape (2,3); it must be (2, 2)"),
            std::string::npos)
      << bad.status();
}

}  // namespace
}  // namespace elektronn
