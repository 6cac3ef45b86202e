// PNG encoding: pixels survive a libpng decode, files are written atomically, errors are clear.
#include "engine/io/png.h"

#include <gtest/gtest.h>
#include <png.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/support/test_dir.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;

constexpr char kPngSignature[] = "\x89PNG\r\n\x1a\n";

// A gradient that differs in every channel, row and column, so swapped axes or channels show.
std::vector<uint8_t> Gradient(int width, int height, int channels) {
  std::vector<uint8_t> p;
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      for (int c = 0; c < channels; ++c)
        p.push_back(static_cast<uint8_t>(17 * x + 31 * y + 71 * c));
    }
  }
  return p;
}

struct Decoded {
  int width = 0;
  int height = 0;
  int channels = 0;  // as stored in the file
  std::vector<uint8_t> pixels;
};

// Decodes with libpng's simplified API into the file's own format (no conversion).
Decoded Decode(const std::string& png) {
  Decoded d;
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&image, png.data(), png.size())) {
    ADD_FAILURE() << "libpng cannot read the PNG: " << image.message;
    return d;
  }
  d.width = static_cast<int>(image.width);
  d.height = static_cast<int>(image.height);
  d.channels = static_cast<int>(PNG_IMAGE_SAMPLE_CHANNELS(image.format));
  d.pixels.resize(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, d.pixels.data(), 0, nullptr)) {
    ADD_FAILURE() << "libpng cannot decode the PNG: " << image.message;
  }
  return d;
}

class PngRoundTripTest : public ::testing::TestWithParam<int> {};

TEST_P(PngRoundTripTest, PixelsSurviveDecode) {
  const int channels = GetParam();
  constexpr int kWidth = 7, kHeight = 5;  // odd, unequal sizes catch stride and axis mix-ups
  const std::vector<uint8_t> pixels = Gradient(kWidth, kHeight, channels);
  absl::StatusOr<std::string> png = EncodePng(pixels.data(), kWidth, kHeight, channels);
  ASSERT_TRUE(png.ok()) << png.status();
  ASSERT_GE(png->size(), 8u);
  EXPECT_EQ(png->substr(0, 8), std::string(kPngSignature, 8));

  const Decoded d = Decode(*png);
  EXPECT_EQ(d.width, kWidth);
  EXPECT_EQ(d.height, kHeight);
  EXPECT_EQ(d.channels, channels);
  EXPECT_EQ(d.pixels, pixels);
}

INSTANTIATE_TEST_SUITE_P(Channels, PngRoundTripTest, ::testing::Values(1, 2, 3, 4));

TEST(PngTest, OnePixel) {
  const uint8_t grey = 200;
  absl::StatusOr<std::string> png = EncodePng(&grey, 1, 1, 1);
  ASSERT_TRUE(png.ok()) << png.status();
  EXPECT_EQ(Decode(*png).pixels, std::vector<uint8_t>{200});
}

TEST(PngTest, InvalidArguments) {
  const std::vector<uint8_t> pixels(64, 0);
  absl::Status s = EncodePng(pixels.data(), 0, 4, 1).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("0x4"), std::string_view::npos) << s;

  EXPECT_EQ(EncodePng(pixels.data(), 4, -1, 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EncodePng(nullptr, 4, 4, 1).status().code(), absl::StatusCode::kInvalidArgument);

  for (int channels : {0, 5}) {
    s = EncodePng(pixels.data(), 2, 2, channels).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find(absl::StrCat(channels, " channels")), std::string_view::npos) << s;
    EXPECT_NE(s.message().find("3 (RGB)"), std::string_view::npos) << s;
  }
}

TEST(PngTest, LibpngErrorBecomesStatus) {
  // Wider than libpng's default user limit (1000000): rejected inside libpng via its longjmp.
  constexpr int kWidth = 1000001;
  const std::vector<uint8_t> row(kWidth, 0);
  absl::Status s = EncodePng(row.data(), kWidth, 1, 1).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("libpng"), std::string_view::npos) << s;
  EXPECT_NE(s.message().find("IHDR"), std::string_view::npos) << s;
  // And the encoder still works afterwards.
  EXPECT_TRUE(EncodePng(row.data(), 10, 1, 1).ok());
}

class PngFileTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::FreshTestDir("png_test"); }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path dir_;
};

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST_F(PngFileTest, WritesTheEncodedBytesAndReplacesAtomically) {
  const fs::path path = dir_ / "preview.png";
  const std::vector<uint8_t> a = Gradient(9, 3, 3);
  ASSERT_TRUE(WritePngFile(path.string(), a.data(), 9, 3, 3).ok());
  EXPECT_EQ(ReadFile(path), *EncodePng(a.data(), 9, 3, 3));

  // Overwriting replaces the file; no temporary is left behind.
  const std::vector<uint8_t> b = Gradient(4, 4, 1);
  ASSERT_TRUE(WritePngFile(path.string(), b.data(), 4, 4, 1).ok());
  EXPECT_EQ(Decode(ReadFile(path)).pixels, b);
  int entries = 0;
  for (const auto& e : fs::directory_iterator(dir_)) {
    ++entries;
    EXPECT_EQ(e.path().filename(), "preview.png");
  }
  EXPECT_EQ(entries, 1);
}

TEST_F(PngFileTest, UnwritablePaths) {
  const uint8_t grey = 1;
  const std::string missing = (dir_ / "no_such_dir" / "x.png").string();
  absl::Status s = WritePngFile(missing, &grey, 1, 1, 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(s.message().find(missing), std::string_view::npos) << s;
  EXPECT_NE(s.message().find("does not exist"), std::string_view::npos) << s;

  // A directory where the file should go: the rename fails and the temporary is cleaned up.
  const fs::path taken = dir_ / "taken.png";
  fs::create_directories(taken / "inside");
  s = WritePngFile(taken.string(), &grey, 1, 1, 1);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find(taken.string()), std::string_view::npos) << s;
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);

  // Encoding errors name the file too.
  s = WritePngFile((dir_ / "bad.png").string(), &grey, 1, 1, 7);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("bad.png"), std::string_view::npos) << s;
}

TEST(FloatToGrey8Test, ScalesClipsAndRounds) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> values = {-1.0f, 0.0f, 0.25f, 0.5f, 1.0f, 2.0f, nan};
  absl::StatusOr<std::vector<uint8_t>> grey = FloatToGrey8(values, 0.0f, 1.0f);
  ASSERT_TRUE(grey.ok()) << grey.status();
  // 0.25 * 255 = 63.75 -> 64; 0.5 * 255 = 127.5 -> 128.
  EXPECT_EQ(*grey, (std::vector<uint8_t>{0, 0, 64, 128, 255, 255, 0}));

  grey = FloatToGrey8(std::vector<float>{-3.0f, 1.0f}, -3.0f, 1.0f);
  ASSERT_TRUE(grey.ok()) << grey.status();
  EXPECT_EQ(*grey, (std::vector<uint8_t>{0, 255}));
}

TEST(FloatToGrey8Test, RejectsBadRanges) {
  const std::vector<float> values = {0.0f};
  for (auto [lo, hi] :
       std::vector<std::pair<float, float>>{{1.0f, 1.0f},
                                            {2.0f, 1.0f},
                                            {0.0f, std::numeric_limits<float>::infinity()},
                                            {std::numeric_limits<float>::quiet_NaN(), 1.0f}}) {
    absl::Status s = FloatToGrey8(values, lo, hi).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << lo << " " << hi;
    EXPECT_NE(s.message().find("min < max"), std::string_view::npos) << s;
  }
}

}  // namespace
}  // namespace elektronn
