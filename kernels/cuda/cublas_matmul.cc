// Matrix products on cuBLAS sgemm. Our matrices are row-major; cuBLAS is column-major, so each
// product is computed transposed: a row-major (r x c) matrix is a column-major (c x r) one.
//   forward:          dst[m,n] = src[m,k] w[k,n]          ->  dst^T = w^T src^T
//   backward-data:    diff_src[m,k] = diff_dst[m,n] w^T    ->  diff_src^T = w diff_dst^T
//   backward-weights: diff_w[k,n] = src^T diff_dst         ->  diff_w^T = diff_dst^T src
// Bias and activation follow as the backend's element-wise kernels; the math mode is the
// handle's (full FP32 unless the job allows TF32).
#include "kernels/cuda/cublas_matmul.h"

#include <climits>

#include "absl/strings/str_format.h"
#include "kernels/cuda/cuda_backend.h"

namespace elektronn::kernels::cuda {
namespace {

class CublasMatmul final : public MatmulKernel {
 public:
  absl::Status Forward(const float* src, const float* w, const float* bias, float* dst) override {
    const float alpha = 1.f, beta = 0.f;
    ELK_CUDA_RETURN_IF_ERROR(
        CublasStatus(cublasSgemm(ctx_->cublas, CUBLAS_OP_N, CUBLAS_OP_N, n_, m_, k_, &alpha, w, n_,
                                 src, k_, &beta, dst, n_),
                     "cublasSgemm (matmul forward)"));
    CudaBackend* b = ctx_->backend;
    if (bias != nullptr) b->AddBias(dst, bias, m_, n_);
    if (act_ != Eltwise::kLinear) b->EltwiseForward(act_, dst, dst, int64_t{m_} * n_);
    return b->ConsumeError();
  }
  absl::Status BackwardData(const float* diff_dst, const float* w, float* diff_src,
                            bool accumulate) override {
    const float alpha = 1.f, beta = accumulate ? 1.f : 0.f;
    return CublasStatus(cublasSgemm(ctx_->cublas, CUBLAS_OP_T, CUBLAS_OP_N, k_, m_, n_, &alpha, w,
                                    n_, diff_dst, n_, &beta, diff_src, k_),
                        "cublasSgemm (matmul backward-data)");
  }
  absl::Status BackwardWeights(const float* src, const float* diff_dst, float* diff_w,
                               float* diff_b) override {
    const float alpha = 1.f, beta = 0.f;
    ELK_CUDA_RETURN_IF_ERROR(
        CublasStatus(cublasSgemm(ctx_->cublas, CUBLAS_OP_N, CUBLAS_OP_T, n_, k_, m_, &alpha,
                                 diff_dst, n_, src, k_, &beta, diff_w, n_),
                     "cublasSgemm (matmul backward-weights)"));
    if (diff_b == nullptr) return absl::OkStatus();
    ctx_->backend->BiasGradient(diff_dst, diff_b, m_, n_);
    return ctx_->backend->ConsumeError();
  }

  CudaContext* ctx_ = nullptr;
  int m_ = 0, k_ = 0, n_ = 0;
  Eltwise act_ = Eltwise::kLinear;
};

}  // namespace

absl::StatusOr<std::unique_ptr<MatmulKernel>> CreateCublasMatmul(CudaContext* ctx,
                                                                 const MatmulDesc& d) {
  if (d.m <= 0 || d.k <= 0 || d.n <= 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("matrix product needs positive sizes, got m=%d k=%d n=%d", d.m, d.k, d.n));
  }
  if (d.m > INT_MAX || d.k > INT_MAX || d.n > INT_MAX) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "matrix product m=%d k=%d n=%d does not fit cuBLAS's int sizes", d.m, d.k, d.n));
  }
  auto k = std::make_unique<CublasMatmul>();
  k->ctx_ = ctx;
  k->m_ = static_cast<int>(d.m);
  k->k_ = static_cast<int>(d.k);
  k->n_ = static_cast<int>(d.n);
  k->act_ = d.fused_activation;
  return std::unique_ptr<MatmulKernel>(std::move(k));
}

}  // namespace elektronn::kernels::cuda
