// Tile geometry of dense prediction (see tiling.h).
#include "engine/predict/tiling.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"

namespace elektronn {
namespace {

constexpr const char* kAxis[3] = {"z", "x", "y"};

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

absl::StatusOr<TileGeometry> ComputeTileGeometry(const TilingInput& in) {
  TileGeometry g;
  for (int a = 0; a < 3; ++a) {
    const int64_t raw = in.raw[a], ps = in.patch[a], fov = in.fov[a], s = in.strides[a];
    if (raw <= 0 || ps <= 0 || fov <= 0 || s <= 0 || in.out[a] <= 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "tiling axis %s: input %d, patch %d, fov %d, stride %d, output %d must all be positive",
          kAxis[a], raw, ps, fov, s, in.out[a]));
    }
    if (ps < fov || (ps - fov) % s != 0 || (ps - fov) / s + 1 != in.out[a]) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "tiling axis %s: patch %d with fov %d and stride %d gives %s outputs per pass, not %d",
          kAxis[a], ps, fov, s,
          ps < fov || (ps - fov) % s != 0 ? "no whole number of"
                                          : absl::StrFormat("%d", (ps - fov) / s + 1),
          in.out[a]));
    }
    g.offset[a] = fov / 2;
    g.tile_in[a] = ps + s - 1;
    g.tile_out[a] = in.out[a] * s;
    g.pred[a] = in.pad_raw ? raw : raw - 2 * g.offset[a];
    if (g.pred[a] <= 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "input %s=%d leaves no output: the field of view is %d (offset %d on each side); "
          "give an input of at least %d or mirror-pad it (pad_raw)",
          kAxis[a], raw, fov, g.offset[a], 2 * g.offset[a] + 1));
    }
    g.tiles[a] = CeilDiv(g.pred[a], g.tile_out[a]);
    g.input_shift[a] = in.pad_raw ? g.offset[a] : 0;
    g.output_offset[a] = in.pad_raw ? 0 : g.offset[a];
    g.passes_per_tile *= s;
  }
  return g;
}

Tile TileAt(const TileGeometry& g, Extent3 k) {
  Tile t;
  t.index = k;
  int64_t in0[3], out0[3], out_size[3];
  for (int a = 0; a < 3; ++a) {
    out0[a] = k[a] * g.tile_out[a];
    out_size[a] = std::min(g.tile_out[a], g.pred[a] - out0[a]);
    in0[a] = out0[a] - g.input_shift[a];
  }
  t.input = {in0[0], in0[1], in0[2], g.tile_in[0], g.tile_in[1], g.tile_in[2]};
  t.output = {out0[0], out0[1], out0[2], out_size[0], out_size[1], out_size[2]};
  return t;
}

Extent3 AlignedOutputChunk(const TileGeometry& g, Extent3 target) {
  Extent3 chunk;
  for (int a = 0; a < 3; ++a) {
    const double ratio = static_cast<double>(target[a]) / static_cast<double>(g.tile_out[a]);
    const int64_t m = std::clamp<int64_t>(std::llround(ratio), 1, g.tiles[a]);
    chunk[a] = m * g.tile_out[a];
  }
  return chunk;
}

absl::Status CheckOutputChunk(const TileGeometry& g, Extent3 chunk) {
  for (int a = 0; a < 3; ++a) {
    const int64_t t = g.tile_out[a];
    if (chunk[a] <= 0 || (chunk[a] % t != 0 && chunk[a] < g.pred[a])) {
      const int64_t lower = std::max<int64_t>(1, chunk[a] / t) * t;
      return absl::InvalidArgumentError(absl::StrFormat(
          "output chunk %s=%d does not end on a tile border (tiles are %d outputs long): each "
          "chunk would need tiles of its neighbours; use %d or %d",
          kAxis[a], chunk[a], t, lower, lower + t));
    }
  }
  return absl::OkStatus();
}

std::vector<Extent3> TilesOfChunk(const TileGeometry& g, Extent3 chunk, ChunkIndex c) {
  const int64_t idx[3] = {c.z, c.x, c.y};
  int64_t first[3], end[3];
  for (int a = 0; a < 3; ++a) {
    const int64_t m = CeilDiv(chunk[a], g.tile_out[a]);  // a chunk cut at pred ends a tile
    first[a] = std::min(idx[a] * m, g.tiles[a]);
    end[a] = std::min(first[a] + m, g.tiles[a]);
  }
  std::vector<Extent3> out;
  for (int64_t z = first[0]; z < end[0]; ++z) {
    for (int64_t x = first[1]; x < end[1]; ++x) {
      for (int64_t y = first[2]; y < end[2]; ++y) out.push_back({z, x, y});
    }
  }
  return out;
}

}  // namespace elektronn
