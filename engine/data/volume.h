// Volume: a multi-channel 3-D image in memory, channels first (ch, z, x, y), float32.
// Raw EM data (uint8 on disk) is stored divided by 255; labels are stored as float class ids.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace elektronn {

struct Volume {
  int64_t ch = 1, z = 1, x = 1, y = 1;
  std::vector<float> data;

  Volume() = default;
  Volume(int64_t c, int64_t zz, int64_t xx, int64_t yy)
      : ch(c), z(zz), x(xx), y(yy), data(static_cast<size_t>(c * zz * xx * yy), 0.f) {}
  std::array<int64_t, 3> spatial() const { return {z, x, y}; }
  int64_t voxels() const { return z * x * y; }
  int64_t index(int64_t c, int64_t k, int64_t i, int64_t j) const {
    return ((c * z + k) * x + i) * y + j;
  }
  float& at(int64_t c, int64_t k, int64_t i, int64_t j) { return data[index(c, k, i, j)]; }
  float at(int64_t c, int64_t k, int64_t i, int64_t j) const { return data[index(c, k, i, j)]; }
};

}  // namespace elektronn
