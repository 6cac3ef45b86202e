// The CUDA backend's host-side weight layouts (kernels/cuda/cudnn_conv.h), without a GPU:
// canonical (out, in, k...) <-> cuDNN's NHWC filters (K, k..., C).
#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include "kernels/cuda/cudnn_conv.h"

namespace elektronn::kernels::cuda {
namespace {

TEST(CudnnFilterLayout, ConvolutionIsOutTapsIn) {
  const int64_t out = 2, in = 3, taps = 4;
  std::vector<float> canonical(out * in * taps), native(canonical.size(), -1.f);
  std::iota(canonical.begin(), canonical.end(), 0.f);  // value = (o*in + i)*taps + t
  CanonicalToCudnnFilter(canonical.data(), native.data(), out, in, taps, false);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t t = 0; t < taps; ++t)
      for (int64_t i = 0; i < in; ++i) {
        EXPECT_EQ(native[(o * taps + t) * in + i], (o * in + i) * taps + t)
            << "o=" << o << " t=" << t << " i=" << i;
      }
  std::vector<float> back(canonical.size(), -1.f);
  CudnnFilterToCanonical(native.data(), back.data(), out, in, taps, false);
  EXPECT_EQ(back, canonical);
}

TEST(CudnnFilterLayout, TransposedConvolutionIsInTapsOut) {
  // A transposed convolution runs cuDNN's convolution backwards: the cuDNN filter's output
  // channels are the canonical inputs.
  const int64_t out = 3, in = 2, taps = 5;
  std::vector<float> canonical(out * in * taps), native(canonical.size(), -1.f);
  std::iota(canonical.begin(), canonical.end(), 0.f);
  CanonicalToCudnnFilter(canonical.data(), native.data(), out, in, taps, true);
  for (int64_t i = 0; i < in; ++i)
    for (int64_t t = 0; t < taps; ++t)
      for (int64_t o = 0; o < out; ++o) {
        EXPECT_EQ(native[(i * taps + t) * out + o], (o * in + i) * taps + t)
            << "i=" << i << " t=" << t << " o=" << o;
      }
  std::vector<float> back(canonical.size(), -1.f);
  CudnnFilterToCanonical(native.data(), back.data(), out, in, taps, true);
  EXPECT_EQ(back, canonical);
}

}  // namespace
}  // namespace elektronn::kernels::cuda
