// img-scalar border treatment: centre crop, symmetric or zero padding, edge padding.
#include "engine/data/border.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace elektronn {
namespace {

// numpy's 'symmetric' padding extended periodically: ... b a | a b c | c b a a b ...
int64_t Reflect(int64_t i, int64_t n) {
  const int64_t m = ((i % (2 * n)) + 2 * n) % (2 * n);
  return m < n ? m : 2 * n - 1 - m;
}

// out[k] = v[src(k)] per axis; src < 0 = zero.
template <typename Map>
Volume Remap(const Volume& v, const std::array<int64_t, 3>& size, Map src) {
  Volume out(v.ch, size[0], size[1], size[2]);
  for (int64_t c = 0; c < v.ch; ++c) {
    for (int64_t k = 0; k < size[0]; ++k) {
      const int64_t sk = src(0, k);
      for (int64_t i = 0; i < size[1]; ++i) {
        const int64_t si = src(1, i);
        for (int64_t j = 0; j < size[2]; ++j) {
          const int64_t sj = src(2, j);
          out.at(c, k, i, j) = (sk < 0 || si < 0 || sj < 0) ? 0.f : v.at(c, sk, si, sj);
        }
      }
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<Volume> ApplyBorderMode(const Volume& v, const std::array<int64_t, 3>& ps,
                                       const std::string& mode, bool treat_z) {
  const std::array<int64_t, 3> sh = v.spatial();
  if (mode == "keep") return v;
  std::array<int64_t, 3> size = sh, before{};
  const int first = treat_z ? 0 : 1;
  if (mode == "crop" || mode.empty()) {
    for (int a = first; a < 3; ++a) {
      if (sh[a] > ps[a]) {
        before[a] = -((sh[a] - ps[a]) / 2);
        size[a] = ps[a];
      }
    }
  } else if (mode == "mirror" || mode == "0-pad") {
    for (int a = first; a < 3; ++a) {
      if (sh[a] < ps[a]) {
        before[a] = (ps[a] - sh[a] + 1) / 2;
        size[a] = ps[a];
      }
    }
  } else {
    return absl::InvalidArgumentError(
        absl::StrFormat("border_mode '%s' is unknown; valid: crop, keep, mirror, 0-pad", mode));
  }
  const bool zero = mode == "0-pad";
  return Remap(v, size, [&](int a, int64_t k) -> int64_t {
    const int64_t s = k - before[a];
    if (s >= 0 && s < sh[a]) return s;
    return zero ? -1 : Reflect(s, sh[a]);
  });
}

Volume PadEdge(const Volume& v, int64_t n) {
  const std::array<int64_t, 3> sh = v.spatial();
  return Remap(v, {sh[0] + 2 * n, sh[1] + 2 * n, sh[2] + 2 * n},
               [&](int a, int64_t k) { return std::clamp<int64_t>(k - n, 0, sh[a] - 1); });
}

}  // namespace elektronn
