// Tile geometry of dense prediction: §3.6's numbers for a worked example, and for many random
// nets that tiles partition the output, read only what their outputs need, and fit the chunks.
#include "engine/predict/tiling.h"

#include <gtest/gtest.h>

#include <random>
#include <set>

namespace elektronn {
namespace {

// A strided 3-D net: patch (23,185,185), fov (9,21,21), strides (1,2,2), 15x83x83 per pass.
TilingInput Example(bool pad_raw) {
  TilingInput in;
  in.raw = {100, 1000, 1000};
  in.patch = {23, 185, 185};
  in.fov = {9, 21, 21};
  in.strides = {1, 2, 2};
  in.out = {15, 83, 83};
  in.pad_raw = pad_raw;
  return in;
}

TEST(TilingTest, WorkedExampleWithoutPadding) {
  auto g = ComputeTileGeometry(Example(false));
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->offset, (Extent3{4, 10, 10}));
  EXPECT_EQ(g->tile_in, (Extent3{23, 186, 186}));   // ps + S - 1
  EXPECT_EQ(g->tile_out, (Extent3{15, 166, 166}));  // out * S = tile_in - fov + 1
  EXPECT_EQ(g->pred, (Extent3{92, 980, 980}));      // raw - 2 off
  EXPECT_EQ(g->tiles, (Extent3{7, 6, 6}));          // ceil(pred / tile_out)
  EXPECT_EQ(g->output_offset, (Extent3{4, 10, 10}));
  EXPECT_EQ(g->input_shift, (Extent3{0, 0, 0}));
  EXPECT_EQ(g->passes_per_tile, 4);
  const Tile first = TileAt(*g, {0, 0, 0});
  EXPECT_EQ(first.input, (Box{0, 0, 0, 23, 186, 186}));
  EXPECT_EQ(first.output, (Box{0, 0, 0, 15, 166, 166}));
  // The last tile reads past the input (90+23 > 100, 830+186 > 1000); its output is cut.
  const Tile last = TileAt(*g, {6, 5, 5});
  EXPECT_EQ(last.input, (Box{90, 830, 830, 23, 186, 186}));
  EXPECT_EQ(last.output, (Box{90, 830, 830, 2, 150, 150}));
}

TEST(TilingTest, WorkedExampleWithMirrorPadding) {
  auto g = ComputeTileGeometry(Example(true));
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->pred, (Extent3{100, 1000, 1000}));
  EXPECT_EQ(g->tiles, (Extent3{7, 7, 7}));
  EXPECT_EQ(g->output_offset, (Extent3{0, 0, 0}));
  EXPECT_EQ(TileAt(*g, {0, 0, 0}).input, (Box{-4, -10, -10, 23, 186, 186}));
  EXPECT_EQ(TileAt(*g, {6, 6, 6}).output, (Box{90, 996, 996, 10, 4, 4}));
}

TEST(TilingTest, ErrorsNameTheAxisAndAFix) {
  TilingInput in = Example(false);
  in.out = {15, 84, 83};
  auto bad = ComputeTileGeometry(in);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(),
            "tiling axis x: patch 185 with fov 21 and stride 2 gives 83 outputs per pass, not 84");
  in = Example(false);
  in.raw = {8, 1000, 1000};
  bad = ComputeTileGeometry(in);
  EXPECT_EQ(bad.status().message(),
            "input z=8 leaves no output: the field of view is 9 (offset 4 on each side); give "
            "an input of at least 9 or mirror-pad it (pad_raw)");
  in.pad_raw = true;  // a single slab works when mirrored
  EXPECT_TRUE(ComputeTileGeometry(in).ok());
}

TEST(TilingTest, ChunksAlignToTiles) {
  auto g = ComputeTileGeometry(Example(false));
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(AlignedOutputChunk(*g), (Extent3{60, 166, 166}));                  // 4 x 15, 1 x 166
  EXPECT_EQ(AlignedOutputChunk(*g, {200, 400, 1}), (Extent3{105, 332, 166}));  // 7 tiles max
  EXPECT_TRUE(CheckOutputChunk(*g, {60, 166, 332}).ok());
  EXPECT_TRUE(CheckOutputChunk(*g, {92, 980, 980}).ok());  // one chunk per axis
  EXPECT_EQ(CheckOutputChunk(*g, {64, 166, 166}).message(),
            "output chunk z=64 does not end on a tile border (tiles are 15 outputs long): each "
            "chunk would need tiles of its neighbours; use 60 or 75");
  EXPECT_EQ(
      TilesOfChunk(*g, {60, 166, 332}, {1, 5, 2}),
      (std::vector<Extent3>{{4, 5, 4}, {4, 5, 5}, {5, 5, 4}, {5, 5, 5}, {6, 5, 4}, {6, 5, 5}}));
}

// Random nets and inputs: every output voxel is filled by exactly one tile, which holds the
// voxel's whole field of view; kept outputs read nothing of the zero padding; every tile of a
// chunk lies inside the chunk and every tile belongs to exactly one chunk.
TEST(TilingTest, RandomGeometriesPartitionTheOutput) {
  std::mt19937 rng(11);
  auto uni = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  for (int trial = 0; trial < 300; ++trial) {
    TilingInput in;
    in.pad_raw = uni(0, 1) == 1;
    for (int a = 0; a < 3; ++a) {
      in.fov[a] = uni(1, 9);
      in.strides[a] = uni(1, 3);
      in.out[a] = uni(1, 4);
      in.patch[a] = in.fov[a] + (in.out[a] - 1) * in.strides[a];
      in.raw[a] = uni(in.pad_raw ? 1 : 2 * (in.fov[a] / 2) + 1, 40);
    }
    auto g = ComputeTileGeometry(in);
    ASSERT_TRUE(g.ok()) << g.status();
    for (int a = 0; a < 3; ++a) {
      ASSERT_EQ(g->tile_out[a], g->tile_in[a] - in.fov[a] + 1);
      // Along one axis: tiles cover [0, pred) once; output p (tile-local q) reads tile input
      // [q, q + fov), which must lie in the tile and, in input coordinates, inside the input
      // or (pad_raw) its mirrored margin of `offset`.
      std::vector<int> covered(static_cast<size_t>(g->pred[a]), 0);
      for (int64_t k = 0; k < g->tiles[a]; ++k) {
        Extent3 idx = {0, 0, 0};
        idx[a] = k;
        const Tile t = TileAt(*g, idx);
        const int64_t o0 = a == 0 ? t.output.z0 : a == 1 ? t.output.x0 : t.output.y0;
        const int64_t on = a == 0 ? t.output.dz : a == 1 ? t.output.dx : t.output.dy;
        const int64_t i0 = a == 0 ? t.input.z0 : a == 1 ? t.input.x0 : t.input.y0;
        ASSERT_GT(on, 0);
        for (int64_t p = o0; p < o0 + on; ++p) {
          covered[p]++;
          const int64_t q = p - o0;
          ASSERT_LE(q + in.fov[a], g->tile_in[a]);
          const int64_t lo = i0 + q, hi = i0 + q + in.fov[a] - 1;  // input coordinates
          ASSERT_EQ(lo, p + g->output_offset[a] - g->offset[a]);
          const int64_t margin = in.pad_raw ? g->offset[a] : 0;
          ASSERT_GE(lo, -margin);
          ASSERT_LT(hi, in.raw[a] + margin);
        }
      }
      for (int c : covered) ASSERT_EQ(c, 1);
    }
    // Chunks: aligned, then cut at pred as the writer does.
    const Extent3 target = {uni(1, 30), uni(1, 30), uni(1, 30)};
    Extent3 chunk = AlignedOutputChunk(*g, target);
    ASSERT_TRUE(CheckOutputChunk(*g, chunk).ok());
    for (int a = 0; a < 3; ++a) chunk[a] = std::min(chunk[a], g->pred[a]);
    ASSERT_TRUE(CheckOutputChunk(*g, chunk).ok());
    std::set<Extent3> seen;
    for (int64_t cz = 0; cz * chunk[0] < g->pred[0]; ++cz)
      for (int64_t cx = 0; cx * chunk[1] < g->pred[1]; ++cx)
        for (int64_t cy = 0; cy * chunk[2] < g->pred[2]; ++cy) {
          const int64_t c0[3] = {cz * chunk[0], cx * chunk[1], cy * chunk[2]};
          for (const Extent3& k : TilesOfChunk(*g, chunk, {cz, cx, cy})) {
            ASSERT_TRUE(seen.insert(k).second);
            const Box o = TileAt(*g, k).output;
            ASSERT_GE(o.z0, c0[0]);
            ASSERT_LE(o.z0 + o.dz, std::min(c0[0] + chunk[0], g->pred[0]));
            ASSERT_GE(o.x0, c0[1]);
            ASSERT_LE(o.x0 + o.dx, std::min(c0[1] + chunk[1], g->pred[1]));
            ASSERT_GE(o.y0, c0[2]);
            ASSERT_LE(o.y0 + o.dy, std::min(c0[2] + chunk[2], g->pred[2]));
          }
        }
    ASSERT_EQ(static_cast<int64_t>(seen.size()), g->tiles[0] * g->tiles[1] * g->tiles[2]);
  }
}

}  // namespace
}  // namespace elektronn
