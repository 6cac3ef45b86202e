// Demo data: files written and readable, plausible barrier fraction, EM-like contrast, determinism.
#include "engine/data/demo_data.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/data/h5_volume.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;

double Mean(const Volume& v, const Volume& mask, float which) {
  double s = 0;
  int64_t n = 0;
  for (size_t i = 0; i < v.data.size(); ++i) {
    if (mask.data[i] == which) {
      s += v.data[i];
      ++n;
    }
  }
  return n ? s / n : 0.0;
}

TEST(DemoDataTest, WritesReadableCubesWithPlausibleBarriers) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/demo_data_test");
  fs::remove_all(dir);
  DemoDataOptions opt;  // the defaults the trainer's demo uses
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(MakeDemoData(dir, opt).ok());
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("demo data: %.2f s\n", secs);
  EXPECT_LT(secs, 60.0);  // ~20 s budget on two shared cores, with slack for a loaded machine

  for (int i = 0; i < opt.num_cubes; ++i) {
    const std::string raw_path = absl::StrCat(dir, "/raw_", i, ".h5");
    const std::string lab_path = absl::StrCat(dir, "/barrier_", i, ".h5");
    absl::StatusOr<Volume> raw = ReadH5Volume(raw_path, "raw", false);
    ASSERT_TRUE(raw.ok()) << raw.status();
    absl::StatusOr<Volume> lab = ReadH5Volume(lab_path, "lab", false);
    ASSERT_TRUE(lab.ok()) << lab.status();
    EXPECT_EQ(raw->spatial(), opt.shape);
    EXPECT_EQ(lab->spatial(), opt.shape);
    EXPECT_EQ(raw->ch, 1);
    EXPECT_EQ(lab->ch, 1);
    int64_t barrier = 0;
    for (float v : lab->data) {
      ASSERT_TRUE(v == 0.f || v == 1.f) << v;
      barrier += v == 1.f;
    }
    const double fraction = static_cast<double>(barrier) / lab->data.size();
    EXPECT_GT(fraction, 0.10) << raw_path;
    EXPECT_LT(fraction, 0.50) << raw_path;
    // Membranes are dark, cell interiors mid-grey.
    const double on = Mean(*raw, *lab, 1.f), off = Mean(*raw, *lab, 0.f);
    EXPECT_LT(on + 0.15, off) << "barrier mean " << on << ", interior mean " << off;
    EXPECT_GT(off, 0.35);
    EXPECT_LT(off, 0.85);
    const auto raw_bytes = fs::file_size(raw_path), lab_bytes = fs::file_size(lab_path);
    std::printf(
        "cube %d: barrier fraction %.3f, membrane grey %.3f, interior grey %.3f, "
        "raw_%d.h5 %.2f MB, barrier_%d.h5 %.2f MB\n",
        i, fraction, on, off, i, raw_bytes / 1e6, i, lab_bytes / 1e6);
    EXPECT_LT(raw_bytes, 4'000'000u);
    EXPECT_LT(lab_bytes, 1'000'000u);
  }
  absl::StatusOr<Volume> preview = ReadH5Volume(absl::StrCat(dir, "/preview.h5"), "raw", false);
  ASSERT_TRUE(preview.ok()) << preview.status();
  EXPECT_EQ(preview->spatial(), opt.preview_shape);
  std::printf("preview.h5 %.2f MB\n", fs::file_size(absl::StrCat(dir, "/preview.h5")) / 1e6);
}

TEST(DemoDataTest, DeterministicAndSeedDependent) {
  DemoDataOptions opt;
  Volume a, b, c, la, lb, lc;
  GenerateDemoCube(opt, {8, 48, 40}, 0, &a, &la);
  GenerateDemoCube(opt, {8, 48, 40}, 0, &b, &lb);
  EXPECT_EQ(a.data, b.data);
  EXPECT_EQ(la.data, lb.data);
  opt.seed = 2;
  GenerateDemoCube(opt, {8, 48, 40}, 0, &c, &lc);
  EXPECT_NE(a.data, c.data);
  for (float v : a.data) {
    ASSERT_GE(v, 0.f);
    ASSERT_LE(v, 1.f);
  }
}

// Data family: the segmentation behind the barriers (ids_<i>.h5) for affinity targets.
TEST(DemoDataTest, IdsAreTheCellsTheBarriersSeparate) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/demo_data_ids_test");
  fs::remove_all(dir);
  DemoDataOptions opt;
  opt.num_cubes = 1;
  opt.shape = {8, 64, 64};
  opt.preview_shape = {4, 16, 16};
  ASSERT_TRUE(MakeDemoData(dir, opt).ok());
  absl::StatusOr<Volume> ids = ReadH5Volume(absl::StrCat(dir, "/ids_0.h5"), "lab", false);
  ASSERT_TRUE(ids.ok()) << ids.status();
  absl::StatusOr<Volume> lab = ReadH5Volume(absl::StrCat(dir, "/barrier_0.h5"), "lab", false);
  ASSERT_TRUE(lab.ok()) << lab.status();
  ASSERT_EQ(ids->spatial(), opt.shape);
  std::set<float> distinct;
  for (float v : ids->data) {
    ASSERT_GE(v, 1.f);
    distinct.insert(v);
  }
  EXPECT_GT(distinct.size(), 5u);
  // Neighbours in different cells: at least one of them is on the membrane.
  int64_t boundary_pairs = 0;
  const Volume& id = *ids;
  for (int64_t z = 0; z < id.z; ++z) {
    for (int64_t x = 0; x < id.x; ++x) {
      for (int64_t y = 0; y < id.y; ++y) {
        if (y + 1 < id.y && id.at(0, z, x, y) != id.at(0, z, x, y + 1)) {
          ++boundary_pairs;
          ASSERT_TRUE(lab->at(0, z, x, y) == 1.f || lab->at(0, z, x, y + 1) == 1.f);
        }
        if (x + 1 < id.x && id.at(0, z, x, y) != id.at(0, z, x + 1, y)) {
          ASSERT_TRUE(lab->at(0, z, x, y) == 1.f || lab->at(0, z, x + 1, y) == 1.f);
        }
        if (z + 1 < id.z && id.at(0, z, x, y) != id.at(0, z + 1, x, y)) {
          ASSERT_TRUE(lab->at(0, z, x, y) == 1.f || lab->at(0, z + 1, x, y) == 1.f);
        }
      }
    }
  }
  EXPECT_GT(boundary_pairs, 100);
  // The barrier file is what it was before the IDs existed.
  Volume raw2, lab2;
  GenerateDemoCube(opt, opt.shape, 0, &raw2, &lab2);
  EXPECT_EQ(lab2.data, lab->data);
}

TEST(DemoDataTest, RejectsBadOptions) {
  DemoDataOptions opt;
  opt.num_cubes = 0;
  EXPECT_EQ(MakeDemoData(::testing::TempDir(), opt).code(), absl::StatusCode::kInvalidArgument);
  opt = DemoDataOptions();
  opt.shape = {0, 10, 10};
  EXPECT_EQ(MakeDemoData(::testing::TempDir(), opt).code(), absl::StatusCode::kInvalidArgument);
  opt = DemoDataOptions();
  opt.patch_side = 22;  // no centre voxel
  const absl::Status s = MakeDemoData(::testing::TempDir(), opt);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("patch_side=22 odd and positive"), std::string::npos) << s;
}

}  // namespace
}  // namespace elektronn
