// Max and average pooling on cuDNN (CudaBackend::CreatePool).
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/cuda/cuda_util.h"

namespace elektronn::kernels::cuda {

absl::StatusOr<std::unique_ptr<PoolKernel>> CreateCudnnPool(CudaContext* ctx, const PoolDesc& d);

}  // namespace elektronn::kernels::cuda
