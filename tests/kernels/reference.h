// Naive reference kernels that every backend is compared against: plain loops, double sums.
//
// Tensors are host vectors in the layouts of kernels/backend.h: activations channels-last
// (N, spatial..., C), convolution weights canonical (out, in, k_0, ..., k_{d-1}), matrices
// row-major. Nothing here is fast or clever on purpose; each loop follows the definition.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/backend.h"

namespace elektronn::testing {

// Parameter gradients of a layer: weights (canonical layout) and bias.
struct WeightGrads {
  std::vector<float> w;
  std::vector<float> bias;
};

// The activation functions of kernels::Eltwise, in double precision.
double Activate(kernels::Eltwise e, double x);

// Convolution: cross-correlation (no kernel flip), stride 1, symmetric zero padding `d.pad`.
std::vector<int64_t> ConvOutSpatial(const kernels::ConvDesc& d);
int64_t ConvSrcSize(const kernels::ConvDesc& d);
int64_t ConvDstSize(const kernels::ConvDesc& d);
int64_t ConvWeightSize(const kernels::ConvDesc& d);
// dst = act(conv(src, w) + bias), act = d.fused_activation.
std::vector<float> ConvForward(const kernels::ConvDesc& d, const std::vector<float>& src,
                               const std::vector<float>& w, const std::vector<float>& bias);
// diff_src = d(conv)/d(src)^T diff_dst (the activation is not part of it).
std::vector<float> ConvBackwardData(const kernels::ConvDesc& d, const std::vector<float>& diff_dst,
                                    const std::vector<float>& w);
WeightGrads ConvBackwardWeights(const kernels::ConvDesc& d, const std::vector<float>& src,
                                const std::vector<float>& diff_dst);

// Pooling without padding; windows must fit (in - kernel) % stride == 0.
std::vector<int64_t> PoolOutSpatial(const kernels::PoolDesc& d);
int64_t PoolSrcSize(const kernels::PoolDesc& d);
int64_t PoolDstSize(const kernels::PoolDesc& d);
std::vector<float> PoolForward(const kernels::PoolDesc& d, const std::vector<float>& src);
// Max: each window's gradient goes to its first maximum in scan order (as oneDNN's
// strict '>' comparison does); use tie-free inputs. Average: spread evenly over the window.
std::vector<float> PoolBackward(const kernels::PoolDesc& d, const std::vector<float>& src,
                                const std::vector<float>& diff_dst);

// dst[m, n] = act(sum_k src[m, k] w[k, n] + bias[n]).
std::vector<float> MatmulForward(const kernels::MatmulDesc& d, const std::vector<float>& src,
                                 const std::vector<float>& w, const std::vector<float>& bias);
// diff_src[m, k] = sum_n diff_dst[m, n] w[k, n].
std::vector<float> MatmulBackwardData(const kernels::MatmulDesc& d,
                                      const std::vector<float>& diff_dst,
                                      const std::vector<float>& w);
// diff_w[k, n] = sum_m src[m, k] diff_dst[m, n]; diff_bias[n] = sum_m diff_dst[m, n].
WeightGrads MatmulBackwardWeights(const kernels::MatmulDesc& d, const std::vector<float>& src,
                                  const std::vector<float>& diff_dst);

// Softmax over each group of `n_class` consecutive channels of every row.
std::vector<float> SoftmaxForward(const std::vector<float>& src, int64_t rows, int64_t channels,
                                  int64_t n_class);
// diff_src = y * (diff_dst - sum_group(y * diff_dst)).
std::vector<float> SoftmaxBackward(const std::vector<float>& dst,
                                   const std::vector<float>& diff_dst, int64_t rows,
                                   int64_t channels, int64_t n_class);

}  // namespace elektronn::testing
