// The CUDA backend's element-wise half: every Backend function that is not memory management or a
// kernel factory, as our own CUDA kernels on one stream (kernels/cuda/*.cu). CudaBackend
// (cuda_backend.h) derives from it and adds memory, cuDNN convolutions and pooling and cuBLAS
// matrix products.
//
// Errors: Backend's element-wise functions return nothing, so every launch is checked and the
// first failure is kept (later calls become no-ops); ConsumeError() hands it over as an
// absl::Status and the engine's step boundaries ask for it (CudaBackend::Synchronize).
// Functions returning a host value (Sum, the losses, error counts) synchronise the stream.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "kernels/backend.h"

namespace elektronn::kernels::cuda {

class CudaExec;  // kernels/cuda/cuda_exec.cuh: the launches behind every op

class CudaOps : public Backend {
 public:
  // `stream` is the job's stream; `device` the CUDA ordinal every call runs on.
  CudaOps(int device, cudaStream_t stream);
  ~CudaOps() override;

  // The first error since the last call (OK if none) and clears it.
  absl::Status ConsumeError();

#include "kernels/cuda/elementwise_overrides.inc"  // Fill ... AdaDeltaUpdate

 protected:
  // Records `e` (with `what`) if it is the first error; returns true when `e` is cudaSuccess.
  bool Check(cudaError_t e, const char* what);
  // Checks the last kernel launch (cudaGetLastError).
  bool CheckLaunch(const char* what);
  // Device scratch of at least `bytes` for reductions; grown at compile time only
  // (a reduction of a larger size than seen before reallocates once).
  void* Scratch(size_t bytes);
  // Device memory of at least `bytes` an op keeps across its launches (batch normalisation's
  // per-channel coefficients), apart from Scratch; grown like it.
  void* Workspace(size_t bytes);
  // False once an error is recorded: ops then launch nothing until ConsumeError().
  bool ok() const { return first_error_.ok(); }
  // Records `message` as the first error, INVALID_ARGUMENT (an argument no kernel can take).
  void Fail(const std::string& message);

  int device_;
  cudaStream_t stream_;

 private:
  friend class CudaExec;
  // Frees `*p` and allocates `bytes` (rounded up) when `*capacity` is smaller.
  void* Grow(void** p, size_t* capacity, size_t bytes, const char* what);

  absl::Status first_error_;
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
};

}  // namespace elektronn::kernels::cuda
