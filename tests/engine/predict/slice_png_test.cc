// RenderSlicePng: the PNG's size and the errors for a volume that is not the prediction's.
#include "engine/predict/slice_png.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "engine/io/volume_store.h"
#include "tests/support/test_dir.h"

namespace elektronn {
namespace {

using ::testing::HasSubstr;

// Writes a float32 Zarr volume of `shape` (one chunk) with value f(c, z, x, y).
template <typename F>
void WriteVolume(const std::string& spec, VolumeShape shape, F f) {
  VolumeWriterOptions o;
  o.shape = shape;
  o.chunk = {shape.z, shape.x, shape.y};
  auto w = VolumeWriter::Open(spec, o);
  ASSERT_TRUE(w.ok()) << w.status();
  std::vector<float> data;
  for (int64_t c = 0; c < shape.c; ++c)
    for (int64_t z = 0; z < shape.z; ++z)
      for (int64_t x = 0; x < shape.x; ++x)
        for (int64_t y = 0; y < shape.y; ++y) data.push_back(f(c, z, x, y));
  ASSERT_TRUE((*w)->WriteChunk({0, 0, 0}, data).ok());
}

// Width and height from the PNG's IHDR chunk.
std::pair<int, int> PngSize(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_GE(b.size(), 24u);
  EXPECT_EQ(b.substr(1, 3), "PNG");
  auto be32 = [&](size_t at) {
    return (static_cast<uint8_t>(b[at]) << 24) | (static_cast<uint8_t>(b[at + 1]) << 16) |
           (static_cast<uint8_t>(b[at + 2]) << 8) | static_cast<uint8_t>(b[at + 3]);
  };
  return {static_cast<int>(be32(16)), static_cast<int>(be32(20))};
}

TEST(SlicePng, RawAndPredictionSideBySide) {
  const auto dir = testing::FreshTestDir("slice_png");
  const std::string raw = (dir / "raw.zarr").string(), pred = (dir / "pred.zarr").string();
  // A prediction with `pad none` is smaller than the raw by fov/2 per side.
  WriteVolume(raw, {1, 9, 20, 30}, [](auto, auto z, auto x, auto y) { return z + x + y; });
  WriteVolume(pred, {2, 5, 16, 26}, [](auto c, auto, auto x, auto) { return c ? x / 16.f : 0.f; });
  const std::string png = (dir / "slice.png").string();
  auto info = RenderSlicePng(raw, pred, png);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->z, 2);        // the middle slice
  EXPECT_EQ(info->channel, 1);  // the last channel
  EXPECT_EQ(info->width, 2 * 26 + 4);
  EXPECT_EQ(info->height, 16);
  EXPECT_EQ(PngSize(png), std::make_pair(2 * 26 + 4, 16));

  SlicePngOptions o;
  o.z = 5;
  EXPECT_THAT(std::string(RenderSlicePng(raw, pred, png, o).status().message()),
              HasSubstr("slice z=5 is outside the prediction's 5 slices"));
  o = {};
  o.channel = 2;
  EXPECT_THAT(std::string(RenderSlicePng(raw, pred, png, o).status().message()),
              HasSubstr("channel 2 is outside"));
  // Swapped arguments: the "prediction" is larger than the "raw".
  EXPECT_THAT(std::string(RenderSlicePng(pred, raw, png).status().message()),
              HasSubstr("is larger than the raw"));
  EXPECT_FALSE(RenderSlicePng(raw, (dir / "missing.zarr").string(), png).ok());
}

}  // namespace
}  // namespace elektronn
