// Naive reference of the transposed convolution (UpConv family, reference §2.8): plain loops,
// double sums. Layouts as tests/kernels/reference.h: activations channels-last
// (N, spatial..., C), weights canonical (out, in, k_0, ..., k_{d-1}).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/backend.h"
#include "tests/kernels/reference.h"

namespace elektronn::testing {

// out = (in - 1) * stride + kernel per axis.
std::vector<int64_t> DeconvOutSpatial(const kernels::DeconvDesc& d);
int64_t DeconvSrcSize(const kernels::DeconvDesc& d);
int64_t DeconvDstSize(const kernels::DeconvDesc& d);
int64_t DeconvWeightSize(const kernels::DeconvDesc& d);
// dst[n, i*stride + k, o] = act(bias[o] + sum over (i, k, c) of w[o, c, k] * src[n, i, c]).
std::vector<float> DeconvForward(const kernels::DeconvDesc& d, const std::vector<float>& src,
                                 const std::vector<float>& w, const std::vector<float>& bias);
// diff_src[n, i, c] = sum over (k, o) of w[o, c, k] * diff_dst[n, i*stride + k, o].
std::vector<float> DeconvBackwardData(const kernels::DeconvDesc& d,
                                      const std::vector<float>& diff_dst,
                                      const std::vector<float>& w);
// diff_w[o, c, k] = sum over (n, i) of src[n, i, c] * diff_dst[n, i*stride + k, o];
// diff_bias[o] = sum of diff_dst over all but the channel axis.
WeightGrads DeconvBackwardWeights(const kernels::DeconvDesc& d, const std::vector<float>& src,
                                  const std::vector<float>& diff_dst);

}  // namespace elektronn::testing
