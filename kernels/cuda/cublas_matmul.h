// Matrix products on cuBLAS (CudaBackend::CreateMatmul).
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/cuda/cuda_util.h"

namespace elektronn::kernels::cuda {

absl::StatusOr<std::unique_ptr<MatmulKernel>> CreateCublasMatmul(CudaContext* ctx,
                                                                 const MatmulDesc& d);

}  // namespace elektronn::kernels::cuda
