// Max and average pooling on cuDNN, channels-last. cuDNN's backward needs the forward's input
// and output: the kernel keeps the input's pointer (the engine keeps that tensor alive until the
// backward pass) and a copy of the output in its own buffer (allocated at creation), so a later
// in-place op on the pooled tensor cannot move the arg-max.
#include "kernels/cuda/cudnn_pool.h"

#include "absl/strings/str_format.h"
#include "kernels/cuda/cuda_backend.h"

namespace elektronn::kernels::cuda {
namespace {

class CudnnPool final : public PoolKernel {
 public:
  ~CudnnPool() override {
    if (pool_ != nullptr) cudnnDestroyPoolingDescriptor(pool_);
    if (y_copy_ != nullptr) ctx_->backend->Free(y_copy_);
  }
  std::vector<int64_t> out_spatial() const override { return out_; }

  absl::Status Forward(const float* src, float* dst) override {
    const float alpha = 1.f, beta = 0.f;
    ELK_CUDA_RETURN_IF_ERROR(
        CudnnStatus(cudnnPoolingForward(ctx_->cudnn, pool_, &alpha, x_.d, src, &beta, y_.d, dst),
                    "cudnnPoolingForward"));
    last_src_ = src;
    return CudaStatus(cudaMemcpyAsync(y_copy_, dst, dst_elems_ * sizeof(float),
                                      cudaMemcpyDeviceToDevice, ctx_->stream),
                      "cudaMemcpyAsync (pooling output)");
  }

  absl::Status Backward(const float* diff_dst, float* diff_src, bool accumulate) override {
    if (last_src_ == nullptr) {
      return absl::FailedPreconditionError("pooling backward before its forward");
    }
    const float alpha = 1.f, beta = accumulate ? 1.f : 0.f;
    return CudnnStatus(cudnnPoolingBackward(ctx_->cudnn, pool_, &alpha, y_.d, y_copy_, y_.d,
                                            diff_dst, x_.d, last_src_, &beta, x_.d, diff_src),
                       "cudnnPoolingBackward");
  }

  CudaContext* ctx_ = nullptr;
  std::vector<int64_t> out_;
  cudnnPoolingDescriptor_t pool_ = nullptr;
  TensorDesc x_, y_;
  int64_t dst_elems_ = 0;
  float* y_copy_ = nullptr;
  const float* last_src_ = nullptr;
};

}  // namespace

absl::StatusOr<std::unique_ptr<PoolKernel>> CreateCudnnPool(CudaContext* ctx, const PoolDesc& d) {
  const size_t nd = d.in_spatial.size();
  if (nd < 1 || nd > 3 || d.kernel.size() != nd || d.stride.size() != nd) {
    return absl::InvalidArgumentError(
        "pooling needs 1 to 3 spatial axes with matching kernel and stride");
  }
  auto k = std::make_unique<CudnnPool>();
  k->ctx_ = ctx;
  for (size_t i = 0; i < nd; ++i) {
    if (d.stride[i] < 1 || d.in_spatial[i] < d.kernel[i] ||
        (d.in_spatial[i] - d.kernel[i]) % d.stride[i] != 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("pooling axis %d: size %d does not fit pool %d with stride %d", i,
                          d.in_spatial[i], d.kernel[i], d.stride[i]));
    }
    k->out_.push_back((d.in_spatial[i] - d.kernel[i]) / d.stride[i] + 1);
  }
  k->dst_elems_ = d.batch * d.channels * Prod(k->out_);
  ELK_CUDA_RETURN_IF_ERROR(SetChannelsLast(k->x_.d, d.batch, d.channels, d.in_spatial));
  ELK_CUDA_RETURN_IF_ERROR(SetChannelsLast(k->y_.d, d.batch, d.channels, k->out_));
  std::vector<int> window, pad, stride;
  for (int64_t v : CudnnSpatial(d.kernel, 1)) window.push_back(static_cast<int>(v));
  for (int64_t v : CudnnSpatial(d.stride, 1)) stride.push_back(static_cast<int>(v));
  pad.assign(window.size(), 0);
  ELK_CUDA_RETURN_IF_ERROR(
      CudnnStatus(cudnnCreatePoolingDescriptor(&k->pool_), "cudnnCreatePoolingDescriptor"));
  const cudnnPoolingMode_t mode =
      d.mode == PoolMode::kMax ? CUDNN_POOLING_MAX : CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING;
  ELK_CUDA_RETURN_IF_ERROR(
      CudnnStatus(cudnnSetPoolingNdDescriptor(k->pool_, mode, CUDNN_NOT_PROPAGATE_NAN,
                                              static_cast<int>(window.size()), window.data(),
                                              pad.data(), stride.data()),
                  "cudnnSetPoolingNdDescriptor"));
  k->y_copy_ = ctx->backend->Allocate(k->dst_elems_);
  if (k->y_copy_ == nullptr) {
    absl::Status s = ctx->backend->ConsumeError();
    return s.ok() ? absl::ResourceExhaustedError("pooling: no device memory for its output copy")
                  : s;
  }
  return std::unique_ptr<PoolKernel>(std::move(k));
}

}  // namespace elektronn::kernels::cuda
