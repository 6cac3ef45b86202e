// CudaOps' element-wise, bias, softmax, arithmetic, dropout and ApplyFunc kernels: the ops
// templates of ops_elementwise.h on the device executor (cuda_exec.cuh), one instantiation per
// Backend function (dispatch_elementwise.inc).
#include "kernels/cuda/cuda_exec.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/ops_elementwise.h"

namespace elektronn::kernels::cuda {

#define ELK_OPS_CLASS CudaOps
#define ELK_OPS_EXEC(ex, name) CudaExec ex(this, name)
#include "kernels/cuda/dispatch_elementwise.inc"
#undef ELK_OPS_EXEC
#undef ELK_OPS_CLASS

}  // namespace elektronn::kernels::cuda
