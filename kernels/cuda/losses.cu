// CudaOps' loss, distance, Sobel, one-hot, classification and error-count kernels: the ops
// templates of ops_losses.h, ops_sobel.h on the device executor (cuda_exec.cuh), one instantiation
// per Backend function (dispatch_losses.inc).
#include "kernels/cuda/cuda_exec.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/ops_losses.h"
#include "kernels/cuda/ops_sobel.h"

namespace elektronn::kernels::cuda {

#define ELK_OPS_CLASS CudaOps
#define ELK_OPS_EXEC(ex, name) CudaExec ex(this, name)
#include "kernels/cuda/dispatch_losses.inc"
#undef ELK_OPS_EXEC
#undef ELK_OPS_CLASS

}  // namespace elektronn::kernels::cuda
