// Draws ELEKTRONN2's composite warp (§7.4) and samples raw data trilinearly and labels by
// nearest neighbour (or trilinearly, with vector channels turned) through it; grey-value
// augmentation (§7.5).
#include "engine/data/warp.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "engine/core/status.h"

namespace elektronn {
namespace {

using Shape3 = std::array<int64_t, 3>;
constexpr char kAxisName[3] = {'z', 'x', 'y'};

WarpMatrix Identity() {
  WarpMatrix m{};
  for (int i = 0; i < 4; ++i) m[i][i] = 1.0;
  return m;
}

WarpMatrix Mul(const WarpMatrix& a, const WarpMatrix& b) {
  WarpMatrix m{};
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j) {
      double s = 0.0;
      for (int k = 0; k < 4; ++k) s += a[i][k] * b[k][j];
      m[i][j] = s;
    }
  }
  return m;
}

WarpMatrix Translate(double z, double x, double y) {
  WarpMatrix m = Identity();
  m[0][3] = z;
  m[1][3] = x;
  m[2][3] = y;
  return m;
}

WarpMatrix Scale(double z, double x, double y) {
  WarpMatrix m = Identity();
  m[0][0] = z;
  m[1][1] = x;
  m[2][2] = y;
  return m;
}

// ELEKTRONN2's rotate_z: a rotation in the x-y plane (z is the slicing axis).
WarpMatrix RotateInPlane(double a) {
  WarpMatrix m = Identity();
  m[1][1] = std::cos(a);
  m[1][2] = -std::sin(a);
  m[2][1] = std::sin(a);
  m[2][2] = std::cos(a);
  return m;
}

// ELEKTRONN2's rotate_y: a rotation in the z-x plane, tilting the slicing axis.
WarpMatrix RotateOutOfPlane(double a) {
  WarpMatrix m = Identity();
  m[0][0] = std::cos(a);
  m[0][1] = -std::sin(a);
  m[1][0] = std::sin(a);
  m[1][1] = std::cos(a);
  return m;
}

// Gauss-Jordan with partial pivoting; ELEKTRONN2 also inverts in float64 "for stability".
absl::StatusOr<WarpMatrix> Invert(const WarpMatrix& m) {
  WarpMatrix a = m;
  WarpMatrix inv = Identity();
  for (int col = 0; col < 4; ++col) {
    int pivot = col;
    for (int r = col + 1; r < 4; ++r) {
      if (std::abs(a[r][col]) > std::abs(a[pivot][col])) pivot = r;
    }
    if (!(std::abs(a[pivot][col]) > 1e-12)) {
      return absl::InvalidArgumentError("warp: the transform matrix is singular");
    }
    std::swap(a[pivot], a[col]);
    std::swap(inv[pivot], inv[col]);
    const double d = 1.0 / a[col][col];
    for (int j = 0; j < 4; ++j) {
      a[col][j] *= d;
      inv[col][j] *= d;
    }
    for (int r = 0; r < 4; ++r) {
      if (r == col || a[r][col] == 0.0) continue;
      const double f = a[r][col];
      for (int j = 0; j < 4; ++j) {
        a[r][j] -= f * a[col][j];
        inv[r][j] -= f * inv[col][j];
      }
    }
  }
  return inv;
}

// Offsets that place the label cube in the raw cube and the target patch in the input patch.
struct Geometry {
  Shape3 label_off{};   // label coordinate = raw coordinate - label_off
  Shape3 target_off{};  // target patch index = patch index - target_off
};

absl::StatusOr<Geometry> CheckGeometry(const Shape3& raw, const Shape3* label, const Shape3& ps,
                                       const Shape3& tps) {
  Geometry g;
  for (int a = 0; a < 3; ++a) {
    const char ax = kAxisName[a];
    if (ps[a] < 1 || raw[a] < 1) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "warp: patch %c=%d and raw cube %c=%d must both be at least 1", ax, ps[a], ax, raw[a]));
    }
    if (label == nullptr) continue;
    if (tps[a] < 1 || tps[a] > ps[a] || (ps[a] - tps[a]) % 2 != 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "warp: target patch %c=%d must be centred in the input patch %c=%d (1 <= target <= "
          "input, even difference)",
          ax, tps[a], ax, ps[a]));
    }
    if ((*label)[a] < 1 || (raw[a] - (*label)[a]) % 2 != 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "warp: the label cube must be centred in the raw cube, but along %c raw=%d and "
          "label=%d differ by %d (odd); crop the label cube by one voxel along %c",
          ax, raw[a], (*label)[a], raw[a] - (*label)[a], ax));
    }
    g.label_off[a] = (raw[a] - (*label)[a]) / 2;
    g.target_off[a] = (ps[a] - tps[a]) / 2;
  }
  return g;
}

// ELEKTRONN2's get_random_swapmat: permutes the rows of the identity.
WarpMatrix RandomSwapMatrix(bool lock_z, std::mt19937_64& rng) {
  static constexpr int kPerms[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2},
                                       {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
  const int n = lock_z ? 2 : 6;  // the first two keep z in place
  const int* perm = kPerms[std::uniform_int_distribution<int>(0, n - 1)(rng)];
  WarpMatrix m{};
  for (int r = 0; r < 3; ++r) m[r][perm[r]] = 1.0;
  m[3][3] = 1.0;
  return m;
}

// ELEKTRONN2's get_random_rotmat.
WarpMatrix RandomRotation(bool lock_z, double amount, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const double gamma = u(rng) * 2.0 * std::numbers::pi * amount;
  if (lock_z) return RotateInPlane(gamma);
  const double phi = u(rng) * 2.0 * std::numbers::pi * amount;
  const double theta = std::asin(u(rng)) * amount;
  return Mul(Mul(RotateInPlane(gamma), RotateOutOfPlane(-theta)), RotateInPlane(-phi));
}

// ELEKTRONN2's get_random_warpmat: identity plus small shears, scalings, translations and,
// optionally, perspective terms (kept tiny so the patch does not fold over).
WarpMatrix RandomWarp(bool lock_z, bool perspective, double amount, std::mt19937_64& rng) {
  const double a = 0.1 * amount;
  std::uniform_real_distribution<double> u(-a, a);
  WarpMatrix e;
  for (auto& row : e) {
    for (double& v : row) v = u(rng);
  }
  e[3][3] = 0.0;
  if (lock_z) {
    for (int i = 0; i < 4; ++i) e[0][i] = e[i][0] = 0.0;
  }
  for (int j = 0; j < 3; ++j) {
    e[3][j] = perspective ? std::clamp(e[3][j] * 0.05, -3e-3, 3e-3) : 0.0;
  }
  WarpMatrix w = Identity();
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j) w[i][j] += e[i][j];
  }
  return w;
}

// Source coordinates of one destination voxel; false where the homogeneous coordinate is not
// positive (the patch would reach the vanishing plane of the perspective).
bool MapToSource(const WarpMatrix& inv, bool projective, double z, double x, double y,
                 double src[3]) {
  double h[4];
  for (int k = 0; k < 4; ++k) h[k] = inv[k][0] * z + inv[k][1] * x + inv[k][2] * y + inv[k][3];
  if (projective) {
    if (!(h[3] > 0.0)) return false;
    for (int k = 0; k < 3; ++k) src[k] = h[k] / h[3];
  } else {
    for (int k = 0; k < 3; ++k) src[k] = h[k];
  }
  return true;
}

// ELEKTRONN2's corner test: the box [begin, begin + size) of the destination grid maps inside
// [0, bound) with one spare voxel above for interpolation (floor(min) >= 0, ceil(max + 1) <
// bound). For an affine map the corners bound the whole grid; for a perspective map too, since
// the image of a box that stays on one side of the vanishing plane is the hull of its corners.
bool InBounds(const WarpMatrix& inv, bool projective, const Shape3& begin, const Shape3& size,
              const Shape3& shift, const Shape3& bound) {
  double lo[3] = {INFINITY, INFINITY, INFINITY};
  double hi[3] = {-INFINITY, -INFINITY, -INFINITY};
  for (int corner = 0; corner < 8; ++corner) {
    double d[3];
    for (int a = 0; a < 3; ++a) d[a] = begin[a] + ((corner >> a) & 1) * (size[a] - 1);
    double s[3];
    if (!MapToSource(inv, projective, d[0], d[1], d[2], s)) return false;
    for (int a = 0; a < 3; ++a) {
      if (!std::isfinite(s[a])) return false;
      lo[a] = std::min(lo[a], s[a] - shift[a]);
      hi[a] = std::max(hi[a], s[a] - shift[a]);
    }
  }
  for (int a = 0; a < 3; ++a) {
    if (!(std::floor(lo[a]) >= 0.0 && std::ceil(hi[a] + 1.0) < static_cast<double>(bound[a]))) {
      return false;
    }
  }
  return true;
}

// Trilinear sampling of every raw channel, one destination row (fixed z, x) at a time: along a
// row the homogeneous source coordinate moves by a constant step. Each row is done in two
// passes, coordinates then gathers; the coordinate pass runs in blocks of fixed length because
// -O2 only vectorises loops whose trip count is known.
template <bool kProjective>
void SampleRaw(const Volume& raw, const WarpMatrix& inv, const Shape3& ps, float* out) {
  constexpr int64_t kBlock = 16;
  const int64_t nz = raw.z, nx = raw.x, ny = raw.y;
  const int64_t stride_x = ny, stride_z = nx * ny, stride_c = nz * nx * ny;
  const int64_t n_out = ps[0] * ps[1] * ps[2];
  const int64_t row = ps[2];
  const int64_t padded = (row + kBlock - 1) / kBlock * kBlock;
  std::vector<int64_t> offset(padded);
  std::vector<float> wz(padded), wx(padded), wy(padded);
  // The corner test guarantees 0 <= s <= size - 2 up to rounding; clamping the coordinate
  // changes nothing inside the volume but keeps rounding at the patch border, and the padding
  // lanes past the row end, from reading outside it (NaN compares false and becomes 0).
  const double max_z = nz - 2.0, max_x = nx - 2.0, max_y = ny - 2.0;
  const float* data = raw.data.data();
  int64_t v = 0;
  for (int64_t dz = 0; dz < ps[0]; ++dz) {
    for (int64_t dx = 0; dx < ps[1]; ++dx, v += row) {
      double base[4], step[4];
      for (int k = 0; k < 4; ++k) {
        base[k] = inv[k][0] * dz + inv[k][1] * dx + inv[k][3];
        step[k] = inv[k][2];
      }
      for (int64_t block = 0; block < padded; block += kBlock) {
        for (int64_t i = 0; i < kBlock; ++i) {
          const double dy = static_cast<double>(block + i);
          double sz = base[0] + dy * step[0];
          double sx = base[1] + dy * step[1];
          double sy = base[2] + dy * step[2];
          if constexpr (kProjective) {
            const double r = 1.0 / (base[3] + dy * step[3]);
            sz *= r;
            sx *= r;
            sy *= r;
          }
          sz = std::min(std::max(0.0, sz), max_z);
          sx = std::min(std::max(0.0, sx), max_x);
          sy = std::min(std::max(0.0, sy), max_y);
          const auto iz = static_cast<int64_t>(sz);
          const auto ix = static_cast<int64_t>(sx);
          const auto iy = static_cast<int64_t>(sy);
          wz[block + i] = static_cast<float>(sz - static_cast<double>(iz));
          wx[block + i] = static_cast<float>(sx - static_cast<double>(ix));
          wy[block + i] = static_cast<float>(sy - static_cast<double>(iy));
          offset[block + i] = iz * stride_z + ix * stride_x + iy;
        }
      }
      for (int64_t c = 0; c < raw.ch; ++c) {
        const float* __restrict src = data + c * stride_c;
        float* __restrict dst = out + c * n_out + v;
        for (int64_t dy = 0; dy < row; ++dy) {
          const float* p = src + offset[dy];
          const float a = wy[dy];
          const float c00 = p[0] + a * (p[1] - p[0]);
          const float c01 = p[stride_x] + a * (p[stride_x + 1] - p[stride_x]);
          const float c10 = p[stride_z] + a * (p[stride_z + 1] - p[stride_z]);
          const float c11 =
              p[stride_z + stride_x] + a * (p[stride_z + stride_x + 1] - p[stride_z + stride_x]);
          const float c0 = c00 + wx[dy] * (c01 - c00);
          const float c1 = c10 + wx[dy] * (c11 - c10);
          dst[dy] = c0 + wz[dy] * (c1 - c0);
        }
      }
    }
  }
}

// Samples every label channel on the central target sub-grid: discrete channels by nearest
// neighbour (rounding half to even like numpy's np.round), the others trilinearly (ELEKTRONN2's
// map_coordinates_linear; the corner test keeps one voxel to spare for it). `discrete` empty:
// all channels discrete.
void SampleLabel(const Volume& label, const WarpMatrix& inv, bool projective, const Shape3& tps,
                 const Geometry& g, const std::vector<bool>& discrete, float* out) {
  const int64_t n_out = tps[0] * tps[1] * tps[2];
  const int64_t stride_c = label.voxels();
  const int64_t n[3] = {label.z, label.x, label.y};
  const bool any_linear = std::find(discrete.begin(), discrete.end(), false) != discrete.end();
  int64_t v = 0;
  for (int64_t tz = 0; tz < tps[0]; ++tz) {
    for (int64_t tx = 0; tx < tps[1]; ++tx) {
      for (int64_t ty = 0; ty < tps[2]; ++ty, ++v) {
        double s[3] = {0.0, 0.0, 0.0};
        // Positive homogeneous coordinates were checked at the corners of this sub-grid.
        (void)MapToSource(inv, projective, tz + g.target_off[0], tx + g.target_off[1],
                          ty + g.target_off[2], s);
        int64_t near[3], lo[3];
        double w[3];
        for (int a = 0; a < 3; ++a) {
          // Clamped like the raw coordinates: rounding at the border cannot leave the cube.
          const double l = std::min(std::max(0.0, s[a] - g.label_off[a]), n[a] - 1.0);
          near[a] = static_cast<int64_t>(std::nearbyint(l));
          const double ll = std::max(0.0, std::min(l, n[a] - 2.0));
          lo[a] = static_cast<int64_t>(ll);
          w[a] = ll - static_cast<double>(lo[a]);
        }
        const int64_t src = label.index(0, near[0], near[1], near[2]);
        const int64_t base = any_linear ? label.index(0, lo[0], lo[1], lo[2]) : 0;
        // Neighbour steps, 0 along an axis of size 1 (its weight is 0 there).
        const int64_t sz = n[0] > 1 ? label.x * label.y : 0, sx = n[1] > 1 ? label.y : 0,
                      sy = n[2] > 1 ? 1 : 0;
        for (int64_t c = 0; c < label.ch; ++c) {
          if (discrete.empty() || discrete[c]) {
            out[c * n_out + v] = label.data[src + c * stride_c];
            continue;
          }
          const float* p = label.data.data() + base + c * stride_c;
          const double c00 = p[0] + w[2] * (p[sy] - p[0]);
          const double c01 = p[sx] + w[2] * (p[sx + sy] - p[sx]);
          const double c10 = p[sz] + w[2] * (p[sz + sy] - p[sz]);
          const double c11 = p[sz + sx] + w[2] * (p[sz + sx + sy] - p[sz + sx]);
          const double c0 = c00 + w[1] * (c01 - c00);
          const double c1 = c10 + w[1] * (c11 - c10);
          out[c * n_out + v] = static_cast<float>(c0 + w[0] * (c1 - c0));
        }
      }
    }
  }
}

// ELEKTRONN2's vector fix-up: each triple (z, x, y components) <- M_lin * triple, per voxel.
void RotateVectors(const WarpMatrix& forward, const std::vector<std::array<int64_t, 3>>& vectors,
                   int64_t n_out, float* out) {
  for (const auto& t : vectors) {
    float* c[3] = {out + t[0] * n_out, out + t[1] * n_out, out + t[2] * n_out};
    for (int64_t v = 0; v < n_out; ++v) {
      const double in[3] = {c[0][v], c[1][v], c[2][v]};
      for (int r = 0; r < 3; ++r) {
        c[r][v] = static_cast<float>(forward[r][0] * in[0] + forward[r][1] * in[1] +
                                     forward[r][2] * in[2]);
      }
    }
  }
}

}  // namespace

absl::Status CheckTargetSampling(const TargetSampling& s, int64_t channels) {
  if (!s.discrete.empty() && static_cast<int64_t>(s.discrete.size()) != channels) {
    return absl::InvalidArgumentError(
        absl::StrFormat("target sampling lists %d discrete flags for a target of %d channel(s)",
                        s.discrete.size(), channels));
  }
  std::vector<int> used(static_cast<size_t>(std::max<int64_t>(channels, 0)), -1);
  for (size_t k = 0; k < s.vectors.size(); ++k) {
    for (int64_t c : s.vectors[k]) {
      if (c < 0 || c >= channels) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "target_vec_ix triple %d (%d,%d,%d) names channel %d but the target has %d "
            "channel(s); valid: 0..%d",
            k, s.vectors[k][0], s.vectors[k][1], s.vectors[k][2], c, channels, channels - 1));
      }
      if (used[c] >= 0) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "target_vec_ix: channel %d appears %s; each channel belongs to at most one vector "
            "(z, x, y) triple",
            c, used[c] == static_cast<int>(k) ? "twice in one triple" : "in two triples"));
      }
      used[c] = static_cast<int>(k);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::array<double, 3>> WarpSourceOf(const WarpMatrix& forward,
                                                   const std::array<double, 3>& patch_pos) {
  ASSIGN_OR_RETURN(WarpMatrix inv, Invert(forward));
  const bool projective = forward[3][0] != 0.0 || forward[3][1] != 0.0 || forward[3][2] != 0.0;
  double s[3];
  if (!MapToSource(inv, projective, patch_pos[0], patch_pos[1], patch_pos[2], s)) {
    return absl::InvalidArgumentError("warp: the patch position lies beyond the vanishing plane");
  }
  return std::array<double, 3>{s[0], s[1], s[2]};
}

WarpMatrix RandomFlipMatrix(bool no_x_flip, std::mt19937_64& rng) {
  std::bernoulli_distribution flip(0.5);
  WarpMatrix f = Identity();
  for (int a = 0; a < 3; ++a) f[a][a] = flip(rng) ? -1.0 : 1.0;
  // ELEKTRONN2 protects index 2 (y in our (z, x, y) naming; its code calls it x).
  if (no_x_flip) f[2][2] = 1.0;
  return f;
}

absl::StatusOr<WarpTransform> DrawWarpTransform(const Shape3& raw_shape, const Shape3* label_shape,
                                                const Shape3& ps, const Shape3& tps,
                                                const WarpOptions& opt, std::mt19937_64& rng) {
  ASSIGN_OR_RETURN(Geometry g, CheckGeometry(raw_shape, label_shape, ps, tps));
  if (!(opt.aniso_factor > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("warp: aniso_factor=%g must be positive", opt.aniso_factor));
  }
  WarpTransform t;
  for (int a = 0; a < 3; ++a) {
    // numpy's randint truncates the half-voxel bounds; odd patches then sit on voxel centres
    // through the added 0.5.
    double lo = ps[a] / 2.0;
    double hi = raw_shape[a] - ps[a] / 2.0;
    if (label_shape != nullptr) {
      lo = std::max(lo, tps[a] / 2.0 + g.label_off[a]);
      hi = std::min(hi, (*label_shape)[a] - tps[a] / 2.0 + g.label_off[a]);
    }
    const auto ilo = static_cast<int64_t>(std::floor(lo));
    const auto ihi = static_cast<int64_t>(std::floor(hi));
    if (ihi <= ilo) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "warp: along %c the patch (input %d, target %d) does not fit the raw cube (%d) and "
          "label cube (%d) with a voxel to spare; use a smaller patch or larger cubes",
          kAxisName[a], ps[a], label_shape ? tps[a] : 0, raw_shape[a],
          label_shape ? (*label_shape)[a] : 0));
    }
    t.centre[a] = std::uniform_int_distribution<int64_t>(ilo, ihi - 1)(rng) + (ps[a] % 2) / 2.0;
  }

  const WarpMatrix flip = RandomFlipMatrix(opt.no_x_flip, rng);
  const WarpMatrix swap = opt.no_x_flip ? Identity() : RandomSwapMatrix(opt.lock_z, rng);
  WarpMatrix rot = Identity();
  WarpMatrix warp = Identity();
  if (std::abs(opt.warp_amount) > 1e-8) {  // np.isclose(warp_amount, 0)
    rot = RandomRotation(opt.lock_z, opt.warp_amount, rng);
    warp = RandomWarp(opt.lock_z, opt.perspective, opt.warp_amount, rng);
  }
  const WarpMatrix t_src = Translate(-t.centre[0], -t.centre[1], -t.centre[2]);
  const WarpMatrix s_src = Scale(opt.aniso_factor, 1.0, 1.0);  // z stretched to isotropic
  const WarpMatrix s_dest = opt.sample_aniso ? Scale(1.0 / opt.aniso_factor, 1.0, 1.0) : Identity();
  const WarpMatrix t_dest = Translate(ps[0] / 2.0, ps[1] / 2.0, ps[2] / 2.0);

  WarpMatrix m = t_dest;
  for (const WarpMatrix& f : {s_dest, rot, warp, flip, swap, s_src, t_src}) m = Mul(m, f);
  t.forward = m;
  return t;
}

absl::StatusOr<bool> WarpSourceBox(const Shape3& raw_shape, const Shape3* label_shape,
                                   const Shape3& ps, const Shape3& tps, const WarpMatrix& forward,
                                   Shape3* origin, Shape3* size) {
  ASSIGN_OR_RETURN(Geometry g, CheckGeometry(raw_shape, label_shape, ps, tps));
  ASSIGN_OR_RETURN(WarpMatrix inv, Invert(forward));
  const bool projective = forward[3][0] != 0.0 || forward[3][1] != 0.0 || forward[3][2] != 0.0;
  if (!InBounds(inv, projective, {0, 0, 0}, ps, {0, 0, 0}, raw_shape)) return false;
  if (label_shape != nullptr &&
      !InBounds(inv, projective, g.target_off, tps, g.label_off, *label_shape)) {
    return false;
  }
  double lo[3] = {INFINITY, INFINITY, INFINITY};
  double hi[3] = {-INFINITY, -INFINITY, -INFINITY};
  for (int corner = 0; corner < 8; ++corner) {
    double s[3];
    (void)MapToSource(inv, projective, ((corner >> 0) & 1) * (ps[0] - 1.0),
                      ((corner >> 1) & 1) * (ps[1] - 1.0), ((corner >> 2) & 1) * (ps[2] - 1.0), s);
    for (int a = 0; a < 3; ++a) {
      lo[a] = std::min(lo[a], s[a]);
      hi[a] = std::max(hi[a], s[a]);
    }
  }
  for (int a = 0; a < 3; ++a) {
    // InBounds keeps floor(lo) >= 0 and ceil(hi + 1) < shape; the spare voxel on each side
    // absorbs the rounding of the row-wise sampling.
    const auto first = std::max<int64_t>(0, static_cast<int64_t>(std::floor(lo[a])) - 1);
    const auto last =
        std::min<int64_t>(raw_shape[a] - 1, static_cast<int64_t>(std::ceil(hi[a] + 1.0)) + 1);
    (*origin)[a] = first;
    (*size)[a] = last - first + 1;
  }
  return true;
}

WarpMatrix ShiftSource(const WarpMatrix& forward, const Shape3& origin) {
  return Mul(forward, Translate(static_cast<double>(origin[0]), static_cast<double>(origin[1]),
                                static_cast<double>(origin[2])));
}

absl::StatusOr<bool> WarpSlice(const Volume& raw, const Volume* label, const Shape3& ps,
                               const Shape3& tps, const WarpMatrix& forward, float* out_raw,
                               float* out_target, const TargetSampling* sampling) {
  const Shape3 raw_shape = raw.spatial();
  Shape3 label_shape{};
  if (label != nullptr) label_shape = label->spatial();
  ASSIGN_OR_RETURN(Geometry g, CheckGeometry(raw_shape, label ? &label_shape : nullptr, ps, tps));
  if (out_raw == nullptr || (label != nullptr && out_target == nullptr)) {
    return absl::InvalidArgumentError("warp: missing output buffer for the raw or target patch");
  }
  if (static_cast<int64_t>(raw.data.size()) != raw.ch * raw.voxels() ||
      (label != nullptr &&
       static_cast<int64_t>(label->data.size()) != label->ch * label->voxels())) {
    return absl::InvalidArgumentError("warp: volume data size does not match its shape");
  }
  ASSIGN_OR_RETURN(WarpMatrix inv, Invert(forward));
  const bool projective = forward[3][0] != 0.0 || forward[3][1] != 0.0 || forward[3][2] != 0.0;
  if (label != nullptr && sampling != nullptr) {
    RETURN_IF_ERROR(CheckTargetSampling(*sampling, label->ch));
    if (projective && !sampling->vectors.empty()) {
      return absl::InvalidArgumentError(
          "warp: target_vec_ix rotates vectors by the linear part of the transform, which a "
          "perspective warp does not have; set warp_args.perspective = false");
    }
  }

  // Both checks come before any write, so an out-of-bounds draw leaves the outputs untouched.
  if (!InBounds(inv, projective, {0, 0, 0}, ps, {0, 0, 0}, raw_shape)) return false;
  if (label != nullptr && !InBounds(inv, projective, g.target_off, tps, g.label_off, label_shape)) {
    return false;
  }

  if (projective) {
    SampleRaw<true>(raw, inv, ps, out_raw);
  } else {
    SampleRaw<false>(raw, inv, ps, out_raw);
  }
  if (label != nullptr) {
    static const std::vector<bool> kAllDiscrete;
    SampleLabel(*label, inv, projective, tps, g, sampling ? sampling->discrete : kAllDiscrete,
                out_target);
    if (sampling != nullptr && !sampling->vectors.empty()) {
      RotateVectors(forward, sampling->vectors, tps[0] * tps[1] * tps[2], out_target);
    }
  }
  return true;
}

absl::StatusOr<bool> GetWarpedSlice(const Volume& raw, const Volume* label, const Shape3& ps,
                                    const Shape3& tps, const WarpOptions& opt, std::mt19937_64& rng,
                                    float* out_raw, float* out_target,
                                    const TargetSampling* sampling) {
  Shape3 label_shape{};
  if (label != nullptr) label_shape = label->spatial();
  ASSIGN_OR_RETURN(WarpTransform t, DrawWarpTransform(raw.spatial(), label ? &label_shape : nullptr,
                                                      ps, tps, opt, rng));
  return WarpSlice(raw, label, ps, tps, t.forward, out_raw, out_target, sampling);
}

void GreyAugment(float* data, int64_t channels, int64_t voxels, const std::vector<int64_t>& which,
                 std::mt19937_64& rng) {
  const size_t k = which.size();
  if (k == 0) return;
  // Same draw order as ELEKTRONN2: all contrasts, then all brightnesses, then all gammas.
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<double> alpha(k), shift(k), gamma(k);
  for (double& a : alpha) a = 1.0 + (u(rng) - 0.5) * 0.3;
  for (double& c : shift) c = (u(rng) - 0.5) * 0.3;
  for (double& gm : gamma) gm = std::exp2(u(rng) * 2.0 - 1.0);
  for (size_t i = 0; i < k; ++i) {
    // Channel lists are validated against the data when the config is read; a stray index
    // here must not write outside the block.
    if (which[i] < 0 || which[i] >= channels) continue;
    float* p = data + which[i] * voxels;
    const auto a = static_cast<float>(alpha[i]);
    const auto c = static_cast<float>(shift[i]);
    const auto gm = static_cast<float>(gamma[i]);
    for (int64_t v = 0; v < voxels; ++v) p[v] = std::pow(std::clamp(p[v] * a + c, 0.f, 1.f), gm);
  }
}

}  // namespace elektronn
