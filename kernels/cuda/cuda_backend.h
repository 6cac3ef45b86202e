// The CUDA backend: CudaOps' element-wise kernels plus device memory, host transfers, cuDNN
// convolutions and pooling, and cuBLAS matrix products, all on one stream per backend (one per
// job). Memory comes from the device's stream-ordered pool (cudaMallocAsync), which keeps freed
// blocks, so a network compiled once allocates nothing in its steady-state steps.
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/cuda/cuda_devices.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_util.h"

namespace elektronn::kernels::cuda {

// The job's stream: a base listed before CudaOps, so it exists before CudaOps is built and is
// destroyed after CudaOps and everything else has released it.
struct StreamHolder {
  explicit StreamHolder(int device);
  ~StreamHolder();
  StreamHolder(const StreamHolder&) = delete;
  StreamHolder& operator=(const StreamHolder&) = delete;
  cudaStream_t stream = nullptr;
  cudaError_t error = cudaSuccess;  // of cudaSetDevice / cudaStreamCreate
};

class CudaBackend final : private StreamHolder, public CudaOps {
 public:
  // Use CreateCudaBackend.
  CudaBackend(int device, const CudaOptions& options);
  ~CudaBackend() override;

  // Creates the handles (cuDNN, cuBLAS) bound to the stream and the pinned staging buffers.
  absl::Status Init();

  std::string name() const override { return "cuda:" + std::to_string(device_); }

  float* Allocate(int64_t n_floats) override;
  void Free(float* p) override;
  // Through pinned staging chunks, asynchronous: the host buffer may be reused on return.
  void Upload(const float* host, float* dst, int64_t n) override;
  // Synchronous: the host holds the values on return.
  void Download(const float* src, float* host, int64_t n) override;

  absl::StatusOr<std::unique_ptr<ConvKernel>> CreateConv(const ConvDesc& d) override;
  absl::StatusOr<std::unique_ptr<PoolKernel>> CreatePool(const PoolDesc& d) override;
  absl::StatusOr<std::unique_ptr<MatmulKernel>> CreateMatmul(const MatmulDesc& d) override;
  absl::StatusOr<std::unique_ptr<ConvKernel>> CreateDeconv(const DeconvDesc& d) override;

  // Waits for the stream and reports the first error of any launch since the last call.
  absl::Status Synchronize() override;

  const CudaOptions& options() const { return ctx_.options; }

 private:
  // Makes device_ the calling thread's current device; false (error recorded) if it fails.
  bool OnDevice();

  static constexpr size_t kStagingFloats = size_t{4} << 20;  // 16 MiB per chunk
  CudaContext ctx_;
  float* staging_[2] = {nullptr, nullptr};
  cudaEvent_t staged_[2] = {nullptr, nullptr};
  int next_staging_ = 0;
};

// A backend on device `device` (an index of the devices CUDA_VISIBLE_DEVICES leaves visible).
absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(int device, const CudaOptions& options);

}  // namespace elektronn::kernels::cuda
