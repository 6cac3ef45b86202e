// Shape, field-of-view and stride rules shared by Conv and Pool (reference §2.5–§2.7).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/core/tagged_shape.h"

namespace elektronn {

// Payload key under which shape errors name the offending tag (so the graph can search the
// nearest valid network input sizes).
inline constexpr char kShapeAxisPayload[] = "type.elektronn.dev/shape-axis";
absl::Status ShapeAxisError(const std::string& message, char tag);

// Checks that `s` is laid out as a batched image tensor: 'b' first, then 'f' and 1 to 3 spatial
// axes in any order, nothing else.
absl::Status CheckImageLayout(const TaggedShape& s, const std::string& who);

// Conv/pool output length on one axis: L = in + k (k = 1-f | f-1 | 0), out = L // p; validity
// L % p == 0, or L % p == p-1 with MFP. Returns -1 when invalid.
int64_t ConvAxisOut(int64_t in, int64_t filter, int64_t pool, int mode, bool mfp);
// The nearest input sizes below and above `in` for which ConvAxisOut is valid.
std::pair<int64_t, int64_t> NearestValidConvInput(int64_t in, int64_t filter, int64_t pool,
                                                  int mode, bool mfp);
std::string AxisName(const TaggedShape& s, int spatial_idx);

}  // namespace elektronn
