// Non-geometric augmentations (reference §7.5): nga blur + noise, blurry blobs, random erasing.
#include "engine/data/augment.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace elektronn {
namespace {

using Shape3 = std::array<int64_t, 3>;

// scipy.ndimage "reflect": (d c b a | a b c d | d c b a).
int64_t Reflect(int64_t i, int64_t n) {
  if (n == 1) return 0;
  const int64_t period = 2 * n;
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - 1 - i;
}

// Draws the blobs of one channel and calls fill(lo, size) for each.
// A template, not std::function: no heap allocation per call.
template <typename Fill>
void ForEachBlob(const Shape3& s, const BlobOptions& o, std::mt19937_64& rng, const Fill& fill) {
  int64_t smallest = -1;
  for (int a = 0; a < 3; ++a) {
    if (s[a] > 1 && (smallest < 0 || s[a] < smallest)) smallest = s[a];
  }
  if (smallest < 0) smallest = 1;
  const int64_t n = o.num_hi > o.num_lo
                        ? std::uniform_int_distribution<int64_t>(o.num_lo, o.num_hi - 1)(rng)
                        : o.num_lo;
  for (int64_t b = 0; b < n; ++b) {
    const int64_t edge = o.size_hi > o.size_lo
                             ? std::uniform_int_distribution<int64_t>(o.size_lo, o.size_hi - 1)(rng)
                             : o.size_lo;
    if (edge > smallest) break;  // ELEKTRONN2: a blob that does not fit ends blob creation
    Shape3 lo{}, size{};
    for (int a = 0; a < 3; ++a) {
      size[a] = s[a] > 1 ? edge : 1;
      lo[a] = std::uniform_int_distribution<int64_t>(0, s[a] - size[a])(rng);
    }
    fill(lo, size);
  }
}

}  // namespace

void GaussianBlurBox(float* channel, const Shape3& s, const Shape3& lo, const Shape3& size,
                     double sigma) {
  if (!(sigma > 0)) return;
  const int64_t radius = static_cast<int64_t>(4.0 * sigma + 0.5);
  thread_local std::vector<double> kernel, line;
  kernel.assign(2 * radius + 1, 0.0);
  double sum = 0;
  for (int64_t k = -radius; k <= radius; ++k) {
    kernel[k + radius] = std::exp(-0.5 * static_cast<double>(k * k) / (sigma * sigma));
    sum += kernel[k + radius];
  }
  for (double& w : kernel) w /= sum;
  const Shape3 stride = {s[1] * s[2], s[2], 1};
  for (int a = 0; a < 3; ++a) {
    const int64_t n = size[a];
    if (n <= 1) continue;
    if (static_cast<int64_t>(line.size()) < n) line.resize(n);
    // The two other axes.
    const int b = a == 0 ? 1 : 0, c = a == 2 ? 1 : 2;
    for (int64_t i = lo[b]; i < lo[b] + size[b]; ++i) {
      for (int64_t j = lo[c]; j < lo[c] + size[c]; ++j) {
        float* base = channel + i * stride[b] + j * stride[c] + lo[a] * stride[a];
        for (int64_t t = 0; t < n; ++t) {
          double acc = 0;
          for (int64_t k = -radius; k <= radius; ++k) {
            acc += kernel[k + radius] * base[Reflect(t + k, n) * stride[a]];
          }
          line[t] = acc;
        }
        for (int64_t t = 0; t < n; ++t) base[t * stride[a]] = static_cast<float>(line[t]);
      }
    }
  }
}

void NgaBlurNoise(float* data, int64_t ch, const Shape3& s, std::mt19937_64& rng) {
  const int64_t vox = s[0] * s[1] * s[2];
  for (int64_t c = 0; c < ch; ++c) GaussianBlurBox(data + c * vox, s, {0, 0, 0}, s, 1.0);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  for (int64_t i = 0; i < ch * vox; ++i) data[i] += 0.15f * (u(rng) - 0.5f);
}

void BlurryBlobs(float* data, int64_t ch, const Shape3& s, const BlobOptions& o,
                 std::mt19937_64& rng) {
  const int64_t vox = s[0] * s[1] * s[2];
  for (int64_t c = 0; c < ch; ++c) {
    ForEachBlob(s, o, rng, [&](const Shape3& lo, const Shape3& size) {
      const double sigma =
          o.diffuseness > 0 ? o.diffuseness : std::uniform_real_distribution<double>(1.0, 5.0)(rng);
      GaussianBlurBox(data + c * vox, s, lo, size, sigma);
    });
  }
}

namespace {
template <typename Fn>
void FillBox(float* channel, const Shape3& s, const Shape3& lo, const Shape3& size, Fn value) {
  for (int64_t z = lo[0]; z < lo[0] + size[0]; ++z) {
    for (int64_t x = lo[1]; x < lo[1] + size[1]; ++x) {
      float* row = channel + (z * s[1] + x) * s[2];
      for (int64_t y = lo[2]; y < lo[2] + size[2]; ++y) row[y] = value();
    }
  }
}
}  // namespace

void UniformRandomErasing(float* data, int64_t ch, const Shape3& s, const BlobOptions& o,
                          std::mt19937_64& rng) {
  const int64_t vox = s[0] * s[1] * s[2];
  for (int64_t c = 0; c < ch; ++c) {
    ForEachBlob(s, o, rng, [&](const Shape3& lo, const Shape3& size) {
      FillBox(data + c * vox, s, lo, size, [&] { return o.value; });
    });
  }
}

void NoisyRandomErasing(float* data, int64_t ch, const Shape3& s, const BlobOptions& o,
                        std::mt19937_64& rng) {
  const int64_t vox = s[0] * s[1] * s[2];
  std::uniform_real_distribution<float> u(o.noise_lo, o.noise_hi);
  for (int64_t c = 0; c < ch; ++c) {
    ForEachBlob(s, o, rng, [&](const Shape3& lo, const Shape3& size) {
      FillBox(data + c * vox, s, lo, size, [&] { return u(rng); });
    });
  }
}

}  // namespace elektronn
