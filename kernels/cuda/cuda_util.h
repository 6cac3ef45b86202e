// What the CUDA backend's library kernels share: status conversion of CUDA, cuDNN and cuBLAS
// results (every error names the call), RAII descriptors, and the context each kernel holds (the
// backend's handles, stream, options and the shared workspace).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <cstdint>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace elektronn::kernels::cuda {

#define ELK_CUDA_RETURN_IF_ERROR(expr)         \
  do {                                         \
    ::absl::Status elk_status_ = (expr);       \
    if (!elk_status_.ok()) return elk_status_; \
  } while (0)

// OK, or an INTERNAL error "<what>: <library's message>" (UNAVAILABLE for missing devices and
// drivers, RESOURCE_EXHAUSTED for out-of-memory).
absl::Status CudaStatus(cudaError_t e, const std::string& what);
absl::Status CudnnStatus(cudnnStatus_t s, const std::string& what);
absl::Status CublasStatus(cublasStatus_t s, const std::string& what);

// What a job chose for its CUDA backend (BackendOptions carries it from the job spec).
struct CudaOptions {
  bool allow_tf32 = false;     // TF32 tensor cores in cuDNN and cuBLAS (off: full FP32)
  bool deterministic = false;  // only deterministic cuDNN algorithms (backward passes)
  bool timed_search = false;   // cudnnFind* once per shape instead of the heuristics
};

class CudaBackend;

// Everything a library kernel needs of its backend. The workspace is shared by all kernels of a
// backend (one stream: no two run at once) and grows only while kernels are created.
struct CudaContext {
  int device = 0;
  cudaStream_t stream = nullptr;
  cudnnHandle_t cudnn = nullptr;
  cublasHandle_t cublas = nullptr;
  CudaOptions options;
  CudaBackend* backend = nullptr;  // for the element-wise functions (bias, activation)
  void* workspace = nullptr;
  size_t workspace_bytes = 0;

  // Grows the workspace to at least `bytes` (compile time only).
  absl::Status ReserveWorkspace(size_t bytes);
};

inline int64_t Prod(const std::vector<int64_t>& v) {
  return std::accumulate(v.begin(), v.end(), int64_t{1}, std::multiplies<>());
}

// Owning wrappers of the cuDNN descriptors used here.
struct TensorDesc {
  cudnnTensorDescriptor_t d = nullptr;
  TensorDesc() { cudnnCreateTensorDescriptor(&d); }
  ~TensorDesc() { cudnnDestroyTensorDescriptor(d); }
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
};
struct FilterDesc {
  cudnnFilterDescriptor_t d = nullptr;
  FilterDesc() { cudnnCreateFilterDescriptor(&d); }
  ~FilterDesc() { cudnnDestroyFilterDescriptor(d); }
  FilterDesc(const FilterDesc&) = delete;
  FilterDesc& operator=(const FilterDesc&) = delete;
};
struct ConvolutionDesc {
  cudnnConvolutionDescriptor_t d = nullptr;
  ConvolutionDesc() { cudnnCreateConvolutionDescriptor(&d); }
  ~ConvolutionDesc() { cudnnDestroyConvolutionDescriptor(d); }
  ConvolutionDesc(const ConvolutionDesc&) = delete;
  ConvolutionDesc& operator=(const ConvolutionDesc&) = delete;
};

// A channels-last activation (N, spatial..., C) as a cuDNN NHWC / NDHWC tensor. cuDNN wants at
// least two spatial axes, so a 1-D tensor gets a leading spatial axis of size 1.
absl::Status SetChannelsLast(cudnnTensorDescriptor_t d, int64_t n, int64_t c,
                             std::vector<int64_t> spatial);
// The cuDNN spatial axes of a 1- to 3-D description (1-D: a leading axis of size 1).
std::vector<int64_t> CudnnSpatial(const std::vector<int64_t>& v, int64_t fill_1d);

// Convolution as a cuDNN cross-correlation in channels-last layout: what CreateConv and
// CreateDeconv share. `x` is the larger side (conv src, deconv dst), `y` the smaller.
struct CudnnConvShape {
  int64_t batch = 1, x_channels = 1, y_channels = 1;
  std::vector<int64_t> x_spatial, y_spatial, kernel, pad, stride;
};

}  // namespace elektronn::kernels::cuda
