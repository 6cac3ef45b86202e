// One z slice of an input volume and its prediction side by side as a PNG (grey: the raw on the
// left, one output channel's probability on the right), for a first look at a prediction
// (`elektronn render-slice`, scripts/run-example).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace elektronn {

struct SlicePngOptions {
  int64_t z = -1;        // output slice; -1: the middle one
  int64_t channel = -1;  // output channel; -1: the last (the boundary class of a 2-class net)
};

struct SlicePngInfo {
  int64_t z = 0, channel = 0;  // what was drawn (output coordinates)
  int width = 0, height = 0;
};

// Reads slice `z` of the prediction `pred` (a volume spec, (c,z,x,y)) and the aligned slice of
// `raw`, and writes `png`. Alignment: the prediction is centred in the raw (true for every
// --pad mode of `elektronn predict` on a whole volume: mirror/zero give the same extent, none
// shrinks it by fov/2 on each side); a prediction larger than the raw is refused. Raw values
// are stretched from their slice's min..max, probabilities from 0..1.
absl::StatusOr<SlicePngInfo> RenderSlicePng(const std::string& raw, const std::string& pred,
                                            const std::string& png, const SlicePngOptions& o = {});

}  // namespace elektronn
