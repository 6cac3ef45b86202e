// MnistData: Debian's Fashion-MNIST IDX files (skipped when absent), crops, layout, errors.
#include "engine/data/mnist.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;

bool DebianFilesPresent() {
  return fs::exists(absl::StrCat(MnistData::kDebianPath, "/train-images-idx3-ubyte.gz")) &&
         fs::exists(absl::StrCat(MnistData::kDebianPath, "/t10k-labels-idx1-ubyte.gz"));
}

BatchGeometry Geometry(int64_t b, const char* tags = "b,f,y,x") {
  BatchGeometry g;
  g.input = TaggedShape::Create({b, 1, 26, 26}, tags).value();
  g.target = TaggedShape::Create({b, 1}, "b,f").value();
  return g;
}

// Writes a tiny IDX set (plain files) where image i has every pixel = 10*i + row (so crops are
// recognisable) and label i % 10.
void WriteTinySet(const std::string& dir, const std::string& prefix, uint32_t n) {
  auto be = [](std::ofstream& f, uint32_t v) {
    const unsigned char b[4] = {static_cast<unsigned char>(v >> 24),
                                static_cast<unsigned char>(v >> 16),
                                static_cast<unsigned char>(v >> 8), static_cast<unsigned char>(v)};
    f.write(reinterpret_cast<const char*>(b), 4);
  };
  std::ofstream img(absl::StrCat(dir, "/", prefix, "-images-idx3-ubyte"), std::ios::binary);
  be(img, 0x803);
  be(img, n);
  be(img, 28);
  be(img, 28);
  for (uint32_t i = 0; i < n; ++i)
    for (int r = 0; r < 28; ++r)
      for (int c = 0; c < 28; ++c) img.put(static_cast<char>(10 * i + r));
  std::ofstream lab(absl::StrCat(dir, "/", prefix, "-labels-idx1-ubyte"), std::ios::binary);
  be(lab, 0x801);
  be(lab, n);
  for (uint32_t i = 0; i < n; ++i) lab.put(static_cast<char>(i % 10));
}

TEST(MnistTest, DebianFashionMnist) {
  // A missing test dependency is a failure, not a skip (scripts/test installs it).
  ASSERT_TRUE(DebianFilesPresent())
      << "Debian's dataset-fashion-mnist is not installed (no IDX files in "
      << MnistData::kDebianPath << "): apt-get install dataset-fashion-mnist";
  auto d = MnistData::Create(v1::MnistParams(), Geometry(20));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ((*d)->train_size(), 60000);
  EXPECT_EQ((*d)->test_size(), 10000);
  EXPECT_GT((*d)->mean(), 0.1f);
  EXPECT_LT((*d)->mean(), 0.5f);
  std::printf("%s\n", (*d)->Describe().c_str());

  std::vector<float> in(20 * 26 * 26), tg(20);
  std::mt19937_64 rng(1);
  std::set<float> classes;
  for (Split split : {Split::kTrain, Split::kValid}) {
    for (int i = 0; i < 20; ++i) {
      ASSERT_TRUE((*d)->GetBatch(split, rng, in.data(), tg.data()).ok());
      for (float t : tg) {
        ASSERT_EQ(t, std::floor(t));
        ASSERT_GE(t, 0.f);
        ASSERT_LE(t, 9.f);
        classes.insert(t);
      }
      for (float v : in) {
        ASSERT_GE(v, -(*d)->mean() - 1e-6f);
        ASSERT_LE(v, 1.f - (*d)->mean() + 1e-6f);
      }
    }
  }
  EXPECT_EQ(classes.size(), 10u);

  // The whole test set in order, with a short last batch.
  int64_t seen = 0, filled = 0;
  std::vector<int64_t> per_class(10, 0);
  for (int64_t start = 0; start < (*d)->test_size(); start += 3000) {
    std::vector<float> tin(3000 * 26 * 26), ttg(3000);
    ASSERT_TRUE((*d)->GetTestBatch(start, 3000, tin.data(), ttg.data(), &filled).ok());
    for (int64_t i = 0; i < filled; ++i) ++per_class[static_cast<int>(ttg[i])];
    seen += filled;
  }
  EXPECT_EQ(filled, 1000);
  EXPECT_EQ(seen, 10000);
  for (int64_t c : per_class) EXPECT_EQ(c, 1000);  // Fashion-MNIST's test set is balanced
  EXPECT_EQ((*d)->GetTestBatch(10000, 1, in.data(), tg.data(), &filled).code(),
            absl::StatusCode::kOutOfRange);
}

TEST(MnistTest, CropsLayoutAndCentring) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/mnist_tiny");
  fs::remove_all(dir);
  fs::create_directories(dir);
  WriteTinySet(dir, "train", 4);
  WriteTinySet(dir, "t10k", 3);
  v1::MnistParams p;
  p.set_path(dir);
  auto d = MnistData::Create(p, Geometry(8));
  ASSERT_TRUE(d.ok()) << d.status();
  // Training mean over 4 images with rows 0..27: (10*1.5 + 13.5) / 255.
  EXPECT_NEAR((*d)->mean(), (15.0 + 13.5) / 255.0, 1e-6);
  const float m = (*d)->mean();
  std::vector<float> in(8 * 26 * 26), tg(8);
  std::mt19937_64 rng(3);
  std::set<int> row_offsets;
  for (int it = 0; it < 20; ++it) {
    ASSERT_TRUE((*d)->GetBatch(Split::kTrain, rng, in.data(), tg.data()).ok());
    for (int b = 0; b < 8; ++b) {
      const int image = static_cast<int>(tg[b]);  // labels are i % 10 = i here
      // Pixel (row r) of the crop = 10*image + row0 + r; rows run along y (axis 2).
      const float first = (in[b * 676] + m) * 255.f - 10.f * image;
      const int row0 = static_cast<int>(std::lround(first));
      ASSERT_TRUE(row0 == 0 || row0 == 1) << row0;
      row_offsets.insert(row0);
      for (int r = 0; r < 26; ++r)
        for (int c = 0; c < 26; ++c)
          ASSERT_NEAR(in[b * 676 + r * 26 + c], (10.f * image + row0 + r) / 255.f - m, 1e-6);
    }
  }
  EXPECT_EQ(row_offsets, (std::set<int>{0, 1}));
  // Validation / test: centre crop (row offset 1).
  ASSERT_TRUE((*d)->GetBatch(Split::kValid, rng, in.data(), tg.data()).ok());
  for (int b = 0; b < 8; ++b) {
    EXPECT_NEAR(in[b * 676], (10.f * tg[b] + 1) / 255.f - m, 1e-6);
  }
  int64_t filled = 0;
  ASSERT_TRUE((*d)->GetTestBatch(1, 5, in.data(), tg.data(), &filled).ok());
  EXPECT_EQ(filled, 2);
  EXPECT_EQ(tg[0], 1.f);
  EXPECT_EQ(tg[1], 2.f);

  // Tags b,f,x,y: rows go along y, which is now the last axis.
  auto dt = MnistData::Create(p, Geometry(2, "b,f,x,y"));
  ASSERT_TRUE(dt.ok()) << dt.status();
  ASSERT_TRUE((*dt)->GetTestBatch(0, 2, in.data(), tg.data(), &filled).ok());
  EXPECT_NEAR(in[1], (1.f + 1) / 255.f - m, 1e-6);   // x=0, y=1: row 1 of the crop
  EXPECT_NEAR(in[26], (1.f + 0) / 255.f - m, 1e-6);  // x=1, y=0: row 0
}

TEST(MnistTest, Errors) {
  v1::MnistParams p;
  p.set_path(absl::StrCat(::testing::TempDir(), "/no_such_mnist_dir"));
  auto d = MnistData::Create(p, Geometry(2));
  EXPECT_EQ(d.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(d.status().message().find("dataset-fashion-mnist"), std::string::npos) << d.status();

  const std::string dir = absl::StrCat(::testing::TempDir(), "/mnist_half");
  fs::remove_all(dir);
  fs::create_directories(dir);
  WriteTinySet(dir, "train", 2);
  p.set_path(dir);
  d = MnistData::Create(p, Geometry(2));
  EXPECT_EQ(d.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(d.status().message().find("t10k-images-idx3-ubyte"), std::string::npos) << d.status();

  WriteTinySet(dir, "t10k", 2);
  BatchGeometry g = Geometry(2);
  g.input = TaggedShape::Create({2, 1, 28, 28}, "b,f,y,x").value();
  d = MnistData::Create(p, g);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(d.status().message().find("(b,1,26,26)"), std::string::npos) << d.status();

  // A corrupt (truncated) gzip file.
  fs::remove(absl::StrCat(dir, "/t10k-labels-idx1-ubyte"));
  gzFile f = gzopen(absl::StrCat(dir, "/t10k-labels-idx1-ubyte.gz").c_str(), "wb");
  const unsigned char hdr[6] = {0, 0, 8, 1, 0, 0};
  gzwrite(f, hdr, 6);
  gzclose(f);
  d = MnistData::Create(p, Geometry(2));
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(d.status().message().find("truncated"), std::string::npos) << d.status();
}

}  // namespace
}  // namespace elektronn
