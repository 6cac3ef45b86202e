// CudaOps' batch-normalisation kernels: the ops templates of ops_batch_norm.h on the
// device executor (cuda_exec.cuh), one instantiation per Backend function
// (dispatch_batch_norm.inc).
#include "kernels/cuda/cuda_exec.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/ops_batch_norm.h"

namespace elektronn::kernels::cuda {

#define ELK_OPS_CLASS CudaOps
#define ELK_OPS_EXEC(ex, name) CudaExec ex(this, name)
#include "kernels/cuda/dispatch_batch_norm.inc"
#undef ELK_OPS_EXEC
#undef ELK_OPS_CLASS

}  // namespace elektronn::kernels::cuda
