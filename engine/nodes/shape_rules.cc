// Shape rules shared by Conv and Pool.
#include "engine/nodes/shape_rules.h"

#include <algorithm>

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
  // Closed form (a scan took filter + pool steps, and error hints call this for every size they
  // try: a kernel of 1e6 hung `elektronn check`). Valid inputs are those whose L = in + k is at
  // least max(1, pool) and is congruent to r modulo pool: r = 0, or pool - 1 with MFP.
  constexpr int64_t kHuge = int64_t{1} << 40;
  if (pool < 1 || in < 0 || in > kHuge || filter < 0 || filter > kHuge || pool > kHuge) {
    return {-1, -1};
  }
  const int64_t k = mode == 0 ? 1 - filter : (mode == 2 ? filter - 1 : 0);
  const int64_t r = mfp ? pool - 1 : 0;
  const int64_t l_min = std::max<int64_t>(1, pool);
  auto mod = [pool](int64_t v) { return ((v % pool) + pool) % pool; };
  const int64_t L = in + k;
  // The largest valid L' < L, and the smallest valid L' > L.
  int64_t lo = L - 1 - mod(L - 1 - r);
  lo = lo >= l_min && lo - k > 0 ? lo - k : -1;
  const int64_t above = std::max(L + 1, l_min);
  const int64_t hi = above + mod(r - above) - k;
  return {lo, hi};
}

std::string AxisName(const TaggedShape& s, int spatial_idx) {
  return std::string(1, s.tags()[s.spatial_axes()[spatial_idx]]);
}

}  // namespace elektronn
