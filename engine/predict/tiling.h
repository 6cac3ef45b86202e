// Tile geometry of dense prediction (ELEKTRONN2's predict_dense, behaviour reference §3.6), as
// pure functions: which input box each tile reads, which output box it fills, and output chunks
// aligned to tiles so that every output chunk is computed and written exactly once.
//
// Per spatial axis (z,x,y), with the net's patch `ps`, field of view `fov`, prediction strides
// `S` and per-pass output `out` (so out = (ps - fov)/S + 1):
//   off      = fov / 2
//   tile_in  = ps + S - 1          (one pass per shift in [0,S), each reading ps)
//   tile_out = out * S = tile_in - fov + 1
//   pred     = raw - 2*off, or raw with pad_raw (the input mirrored by off on both sides)
//   tiles    = ceil(pred / tile_out), laid out without overlap in output space: tile k fills
//              output [k*tile_out, (k+1)*tile_out) cut at pred, and reads input
//              [k*tile_out - shift, ... + tile_in) where shift = off with pad_raw, else 0.
// Output voxel p sits at input voxel p + (pad_raw ? 0 : off): the writer's `offset`.
// A border tile's input may reach past the input (and, with pad_raw, before it): ELEKTRONN2 mirrors
// the first `off` voxels outside and zero-pads beyond. Kept outputs never depend on the
// zero-padded part (output p < pred reads input up to p + fov - 1 <= the input's end); only the
// cut surplus does, so any padding there gives the same kept values.
//
// Output chunks: chunk = m * tile_out per axis (m >= 1), so chunk borders fall on tile borders
// and each chunk is the union of whole tiles (cut at pred). The predictor computes a chunk's
// tiles and writes the chunk once; resuming skips done chunks without recomputing any tile of
// them. (tile_out = chunk is the m = 1 case; larger m gives fewer, larger files where tile_out
// is small, e.g. z of anisotropic nets.)
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/io/volume_store.h"

namespace elektronn {

using Extent3 = std::array<int64_t, 3>;  // (z,x,y)

struct TilingInput {
  Extent3 raw = {0, 0, 0};      // input volume, spatial
  Extent3 patch = {0, 0, 0};    // the net's input patch ps
  Extent3 fov = {0, 0, 0};      // field of view
  Extent3 strides = {1, 1, 1};  // prediction strides S (1 for plain and MFP nets)
  Extent3 out = {0, 0, 0};      // the net's output per pass for `patch`
  bool pad_raw = false;         // mirror the input by fov/2 so pred covers all of it
};

struct TileGeometry {
  Extent3 offset = {0, 0, 0};         // fov / 2
  Extent3 tile_in = {0, 0, 0};        // input box of one tile
  Extent3 tile_out = {0, 0, 0};       // output box of one tile (before cutting at pred)
  Extent3 pred = {0, 0, 0};           // output volume
  Extent3 tiles = {0, 0, 0};          // tiles per axis
  Extent3 input_shift = {0, 0, 0};    // tile k reads from k*tile_out - input_shift
  Extent3 output_offset = {0, 0, 0};  // output voxel 0 sits at this input voxel
  int64_t passes_per_tile = 1;        // prod(S): forward passes per tile
};

// Errors name the axis and values: a patch inconsistent with fov/strides/out, or an input
// smaller than the field of view without pad_raw (with the smallest input that would work).
absl::StatusOr<TileGeometry> ComputeTileGeometry(const TilingInput& in);

struct Tile {
  Extent3 index = {0, 0, 0};
  Box input;   // input coordinates, tile_in large; may reach outside the input
  Box output;  // output coordinates, cut at pred
};
Tile TileAt(const TileGeometry& g, Extent3 index);

// Output chunk = m * tile_out per axis with m = max(1, round(target / tile_out)), and at most
// the tiles the axis has (so no chunk is larger than pred rounded up to whole tiles).
Extent3 AlignedOutputChunk(const TileGeometry& g, Extent3 target = {64, 64, 64});

// OK when chunk borders fall on tile borders: per axis a multiple of tile_out, or at least pred
// (one chunk, as the writer cuts it). Otherwise names the axis and the nearest valid sizes.
absl::Status CheckOutputChunk(const TileGeometry& g, Extent3 chunk);

// The tiles whose outputs make up output chunk `chunk_index` of a chunk shape that passes
// CheckOutputChunk (as given or as cut to pred by the writer), in C order.
std::vector<Extent3> TilesOfChunk(const TileGeometry& g, Extent3 chunk, ChunkIndex chunk_index);

}  // namespace elektronn
