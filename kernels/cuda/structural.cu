// CudaOps' box-copy, transpose, maxout, LRN and Gaussian-sampling kernels: the ops templates of
// ops_structural.h on the device executor (cuda_exec.cuh), one instantiation per Backend function
// (dispatch_structural.inc).
#include "absl/strings/str_format.h"
#include "kernels/cuda/cuda_exec.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/ops_structural.h"

namespace elektronn::kernels::cuda {

#define ELK_OPS_CLASS CudaOps
#define ELK_OPS_EXEC(ex, name) CudaExec ex(this, name)
#include "kernels/cuda/dispatch_structural.inc"
#undef ELK_OPS_EXEC
#undef ELK_OPS_CLASS

}  // namespace elektronn::kernels::cuda
