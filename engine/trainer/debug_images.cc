#include "engine/trainer/debug_images.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/io/png.h"

namespace elektronn {
namespace {

// Row-major element strides of `shape` (all sizes known).
std::vector<int64_t> ElementStrides(const TaggedShape& shape) {
  std::vector<int64_t> s(shape.rank(), 1);
  for (int i = shape.rank() - 2; i >= 0; --i) s[i] = s[i + 1] * shape.size(i + 1);
  return s;
}

// One 2-D slice (x rows, y columns) of example 0, channel 0, at z index `z` (ignored without z).
std::vector<float> Slice(const TaggedShape& shape, std::span<const float> v, int64_t z, int* h,
                         int* w) {
  const std::vector<int64_t> st = ElementStrides(shape);
  int64_t base = 0;
  if (shape.HasTag('z')) base += z * st[shape.TagIndex('z')];
  const int xi = shape.TagIndex('x'), yi = shape.TagIndex('y');
  *h = static_cast<int>(shape.size(xi));
  *w = static_cast<int>(shape.size(yi));
  std::vector<float> out(static_cast<size_t>(*h) * *w);
  for (int x = 0; x < *h; ++x) {
    for (int y = 0; y < *w; ++y) out[x * *w + y] = v[base + x * st[xi] + y * st[yi]];
  }
  return out;
}

// Values to 0..255 by the finite values' range (NaN and the -666 ignore value: 0).
std::vector<uint8_t> Grey(const std::vector<float>& v) {
  float lo = INFINITY, hi = -INFINITY;
  for (float x : v) {
    if (std::isfinite(x) && x != -666.f) lo = std::min(lo, x), hi = std::max(hi, x);
  }
  std::vector<uint8_t> g(v.size(), 0);
  if (!(hi >= lo)) return g;
  const float scale = hi > lo ? 255.f / (hi - lo) : 0.f;
  for (size_t i = 0; i < v.size(); ++i) {
    if (std::isfinite(v[i]) && v[i] != -666.f) {
      g[i] = static_cast<uint8_t>(std::lround(hi > lo ? (v[i] - lo) * scale : 128.f));
    }
  }
  return g;
}

absl::Status CheckSpatial(const TaggedShape& s, std::span<const float> v, const char* what) {
  if (!s.HasTag('x') || !s.HasTag('y') || !s.fully_known() || s.stripnone_prod() < 1 ||
      static_cast<int64_t>(v.size()) < s.stripnone_prod()) {
    return absl::InvalidArgumentError(absl::StrCat("the batch's ", what, " (", s.ToString(), ", ",
                                                   v.size(), " values) has no x,y image"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteBatchImage(const std::string& path, const TaggedShape& input_shape,
                             std::span<const float> input, const TaggedShape& target_shape,
                             std::span<const float> target) {
  if (absl::Status s = CheckSpatial(input_shape, input, "input"); !s.ok()) return s;
  const int64_t nz = input_shape.HasTag('z') ? input_shape.SizeOf('z') : 1;
  const int64_t zmid = nz / 2;
  int h = 0, w = 0;
  const std::vector<uint8_t> raw = Grey(Slice(input_shape, input, zmid, &h, &w));
  const bool has_target = CheckSpatial(target_shape, target, "target").ok();
  // Target voxel (i, j) covers input pixels offset + [i·stride, (i+1)·stride).
  std::vector<float> placed(raw.size(), NAN);
  if (has_target) {
    const std::vector<int64_t> off = target_shape.offsets();
    const std::vector<int64_t>& stride = target_shape.strides();
    const int nd = target_shape.ndim();
    auto axis = [&](char tag) {  // index among the spatial axes
      const int a = target_shape.TagIndex(tag);
      const auto& sp = target_shape.spatial_axes();
      return static_cast<int>(std::find(sp.begin(), sp.end(), a) - sp.begin());
    };
    int64_t tz = 0;
    if (target_shape.HasTag('z') && nd == 3) {
      const int za = axis('z');
      tz = std::clamp<int64_t>((zmid - off[za]) / std::max<int64_t>(1, stride[za]), 0,
                               target_shape.SizeOf('z') - 1);
    }
    int th = 0, tw = 0;
    const std::vector<float> t = Slice(target_shape, target, tz, &th, &tw);
    const int xa = axis('x'), ya = axis('y');
    for (int i = 0; i < th; ++i) {
      for (int j = 0; j < tw; ++j) {
        for (int64_t a = 0; a < stride[xa]; ++a) {
          for (int64_t b = 0; b < stride[ya]; ++b) {
            const int64_t x = off[xa] + i * stride[xa] + a, y = off[ya] + j * stride[ya] + b;
            if (x < h && y < w) placed[x * w + y] = t[i * tw + j];
          }
        }
      }
    }
  }
  const std::vector<uint8_t> lab = Grey(placed);
  const int panels = has_target ? 3 : 1, gap = 4;
  const int width = panels * w + (panels - 1) * gap;
  std::vector<uint8_t> rgb(static_cast<size_t>(width) * h * 3, 255);
  auto put = [&](int panel, int x, int y, uint8_t r, uint8_t g, uint8_t b) {
    uint8_t* p = &rgb[(static_cast<size_t>(x) * width + panel * (w + gap) + y) * 3];
    p[0] = r, p[1] = g, p[2] = b;
  };
  for (int x = 0; x < h; ++x) {
    for (int y = 0; y < w; ++y) {
      const size_t k = static_cast<size_t>(x) * w + y;
      put(0, x, y, raw[k], raw[k], raw[k]);
      if (!has_target) continue;
      if (std::isnan(placed[k])) {
        put(1, x, y, 128, 128, 128);
        put(2, x, y, raw[k], raw[k], raw[k]);
      } else {
        put(1, x, y, lab[k], lab[k], lab[k]);
        put(2, x, y, static_cast<uint8_t>(std::max<int>(raw[k] / 2, lab[k])), raw[k] / 2,
            raw[k] / 2);
      }
    }
  }
  return WritePngFile(path, rgb.data(), width, h, 3);
}

absl::Status WriteFilterImage(const std::string& path, const std::vector<int64_t>& shape,
                              std::span<const float> w) {
  if (shape.size() < 4) {
    return absl::InvalidArgumentError(
        absl::StrCat("a parameter of shape (", absl::StrJoin(shape, ","),
                     ") holds no convolution filters (want out, in, [z,] x, y)"));
  }
  const int64_t n_out = shape[0], kx = shape[shape.size() - 2], ky = shape.back();
  const int64_t kz = shape.size() == 5 ? shape[2] : 1;
  int64_t per_out = 1;
  for (size_t i = 1; i < shape.size(); ++i) per_out *= shape[i];
  const int64_t zoff = (kz / 2) * kx * ky;  // input channel 0, middle z
  const int scale =
      static_cast<int>(std::max<int64_t>(1, (16 + std::max(kx, ky) - 1) / std::max(kx, ky)));
  const int cols = static_cast<int>(std::ceil(std::sqrt(static_cast<double>(n_out))));
  const int rows = static_cast<int>((n_out + cols - 1) / cols);
  const int th = static_cast<int>(kx) * scale, tw = static_cast<int>(ky) * scale, gap = 2;
  const int width = cols * tw + (cols - 1) * gap, height = rows * th + (rows - 1) * gap;
  std::vector<uint8_t> rgb(static_cast<size_t>(width) * height * 3, 255);
  for (int64_t o = 0; o < n_out; ++o) {
    std::vector<float> tile(w.begin() + o * per_out + zoff,
                            w.begin() + o * per_out + zoff + kx * ky);
    const std::vector<uint8_t> g = Grey(tile);
    const int r0 = static_cast<int>(o / cols) * (th + gap);
    const int c0 = static_cast<int>(o % cols) * (tw + gap);
    for (int x = 0; x < th; ++x) {
      for (int y = 0; y < tw; ++y) {
        const uint8_t v = g[(x / scale) * ky + y / scale];
        uint8_t* p = &rgb[(static_cast<size_t>(r0 + x) * width + c0 + y) * 3];
        p[0] = p[1] = p[2] = v;
      }
    }
  }
  return WritePngFile(path, rgb.data(), width, height, 3);
}

}  // namespace elektronn
