// CudaOps' optimiser update kernels: the ops templates of ops_optim.h on the
// device executor (cuda_exec.cuh), one instantiation per Backend function (dispatch_optim.inc).
#include "kernels/cuda/cuda_exec.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/ops_optim.h"

namespace elektronn::kernels::cuda {

#define ELK_OPS_CLASS CudaOps
#define ELK_OPS_EXEC(ex, name) CudaExec ex(this, name)
#include "kernels/cuda/dispatch_optim.inc"
#undef ELK_OPS_EXEC
#undef ELK_OPS_CLASS

}  // namespace elektronn::kernels::cuda
