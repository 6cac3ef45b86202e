// Shape rules shared by Conv and Pool.
#include "engine/nodes/shape_rules.h"

#include "absl/strings/cord.h"
#include "absl/strings/str_format.h"

namespace elektronn {

absl::Status ShapeAxisError(const std::string& message, char tag) {
  absl::Status s = absl::InvalidArgumentError(message);
  s.SetPayload(kShapeAxisPayload, absl::Cord(std::string(1, tag)));
  return s;
}

absl::Status CheckImageLayout(const TaggedShape& s, const std::string& who) {
  if (s.TagIndex('b') != 0 || !s.HasTag('f') || s.ndim() < 1 || s.ndim() > 3 ||
      s.rank() != s.ndim() + 2) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: input tags \"%s\" are not an image layout; need 'b' first, an 'f' axis and 1 to 3 of "
        "z,x,y (e.g. \"b,f,z,x,y\")",
        who, s.tags_string()));
  }
  return absl::OkStatus();
}

int64_t ConvAxisOut(int64_t in, int64_t filter, int64_t pool, int mode, bool mfp) {
  const int64_t k = mode == 0 ? 1 - filter : (mode == 2 ? filter - 1 : 0);
  const int64_t L = in + k;
  if (L < 1 || L < pool) return -1;
  if (mfp) {
    if ((L - pool + 1) % pool != 0) return -1;
  } else if (L % pool != 0) {
    return -1;
  }
  return L / pool;
}

std::pair<int64_t, int64_t> NearestValidConvInput(int64_t in, int64_t filter, int64_t pool,
                                                  int mode, bool mfp) {
  int64_t lo = -1, hi = -1;
  for (int64_t d = 1; d < 4 * pool + filter + 8 && (lo < 0 || hi < 0); ++d) {
    if (lo < 0 && in - d > 0 && ConvAxisOut(in - d, filter, pool, mode, mfp) > 0) lo = in - d;
    if (hi < 0 && ConvAxisOut(in + d, filter, pool, mode, mfp) > 0) hi = in + d;
  }
  return {lo, hi};
}

std::string AxisName(const TaggedShape& s, int spatial_idx) {
  return std::string(1, s.tags()[s.spatial_axes()[spatial_idx]]);
}

}  // namespace elektronn
