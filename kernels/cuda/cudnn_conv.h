// cuDNN convolutions in channels-last layout (the legacy cudnnConvolution* API with NHWC/NDHWC
// descriptors) and the two kernels built on them: ConvKernel (CreateConv) and the transposed
// convolution (CreateDeconv), which runs the same cuDNN convolution with the directions swapped.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/cuda/cuda_util.h"

namespace elektronn::kernels::cuda {

absl::StatusOr<std::unique_ptr<ConvKernel>> CreateCudnnConv(CudaContext* ctx, const ConvDesc& d);
absl::StatusOr<std::unique_ptr<ConvKernel>> CreateCudnnDeconv(CudaContext* ctx,
                                                              const DeconvDesc& d);

// Canonical (out, in, k...) weights <-> cuDNN's NHWC filter layout (K, k..., C), where K and C
// are the cuDNN filter's output and input channels. `swap` (transposed convolutions): the cuDNN
// filter's K is the canonical `in` and its C the canonical `out`.
void CanonicalToCudnnFilter(const float* canonical, float* native, int64_t out, int64_t in,
                            int64_t taps, bool swap);
void CudnnFilterToCanonical(const float* native, float* canonical, int64_t out, int64_t in,
                            int64_t taps, bool swap);

}  // namespace elektronn::kernels::cuda
