// PNG encoding (libpng) for previews, plots and TensorBoard images.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace elektronn {

// Encodes 8-bit pixels as a PNG file's bytes. `pixels` holds `height` rows of `width` pixels,
// top row first, each pixel `channels` interleaved bytes: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA
// (the same numbers as TensorBoard's Summary.Image.colorspace). Errors: a null `pixels`, a
// width or height < 1, a channel count outside 1..4 (InvalidArgument), and whatever libpng
// rejects, e.g. a width above its limit of 1000000 (InvalidArgument, libpng's message).
absl::StatusOr<std::string> EncodePng(const uint8_t* pixels, int width, int height, int channels);

// Encodes as above and writes the PNG to `path` atomically: `<path>.tmp-<pid>` in the same
// directory, fsync'd, renamed over `path`, directory fsync'd, so a reader (or a crash) sees the
// old file or the new one, never a torn one. Errors name `path` and the failing step.
absl::Status WritePngFile(const std::string& path, const uint8_t* pixels, int width, int height,
                          int channels);

// Maps float values to 8-bit grey for EncodePng: `min_value` -> 0, `max_value` -> 255, linear
// in between and rounded to nearest, values outside the range clipped to it, NaN -> 0.
// InvalidArgument unless both bounds are finite and min_value < max_value.
absl::StatusOr<std::vector<uint8_t>> FloatToGrey8(std::span<const float> values, float min_value,
                                                  float max_value);

}  // namespace elektronn
