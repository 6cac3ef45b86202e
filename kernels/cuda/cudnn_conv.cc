// cuDNN convolutions, channels-last. One CudnnConvolution holds the descriptors and the three
// algorithms (forward, backward-data, backward-filter) of one shape, chosen once when the kernel is
// created: cuDNN's heuristics (cudnnGet*_v7), or with CudaOptions::timed_search one timed
// cudnnFind* search; with CudaOptions::deterministic only deterministic algorithms; without
// CudaOptions::allow_tf32 only FMA (full FP32) math. The workspace is the backend's shared one.
//
// ConvKernel:  y = conv(x), dx = conv^T(dy), dw = corr(x, dy).
// Deconv:      dst = conv^T(src) (cuDNN backward-data), diff_src = conv(diff_dst) (forward),
//              dw = corr(diff_dst, src) (backward-filter with x = dst side, dy = src side).
#include "kernels/cuda/cudnn_conv.h"

#include <algorithm>
#include <climits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "kernels/cuda/cuda_backend.h"

namespace elektronn::kernels::cuda {

void CanonicalToCudnnFilter(const float* canonical, float* native, int64_t out, int64_t in,
                            int64_t taps, bool swap) {
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i)
      for (int64_t t = 0; t < taps; ++t) {
        const int64_t n = swap ? (i * taps + t) * out + o : (o * taps + t) * in + i;
        native[n] = canonical[(o * in + i) * taps + t];
      }
}

void CudnnFilterToCanonical(const float* native, float* canonical, int64_t out, int64_t in,
                            int64_t taps, bool swap) {
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i)
      for (int64_t t = 0; t < taps; ++t) {
        const int64_t n = swap ? (i * taps + t) * out + o : (o * taps + t) * in + i;
        canonical[(o * in + i) * taps + t] = native[n];
      }
}

namespace {

bool RejectMath(cudnnMathType_t m, const CudaOptions& o) {
  return !o.allow_tf32 && (m == CUDNN_TENSOR_OP_MATH || m == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION);
}

// The three directions of one cuDNN convolution (x: the larger side, y: the smaller).
class CudnnConvolution {
 public:
  absl::Status Init(CudaContext* ctx, const CudnnConvShape& s, bool need_fwd, bool need_bwd_data) {
    ctx_ = ctx;
    const int64_t fill = 1;
    ELK_CUDA_RETURN_IF_ERROR(SetChannelsLast(x_.d, s.batch, s.x_channels, s.x_spatial));
    ELK_CUDA_RETURN_IF_ERROR(SetChannelsLast(y_.d, s.batch, s.y_channels, s.y_spatial));
    std::vector<int> fdims = {static_cast<int>(s.y_channels), static_cast<int>(s.x_channels)};
    for (int64_t k : CudnnSpatial(s.kernel, fill)) fdims.push_back(static_cast<int>(k));
    ELK_CUDA_RETURN_IF_ERROR(
        CudnnStatus(cudnnSetFilterNdDescriptor(w_.d, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC,
                                               static_cast<int>(fdims.size()), fdims.data()),
                    "cudnnSetFilterNdDescriptor"));
    std::vector<int> pad, stride, dil;
    for (int64_t p : CudnnSpatial(s.pad, 0)) pad.push_back(static_cast<int>(p));
    for (int64_t v : CudnnSpatial(s.stride, 1)) stride.push_back(static_cast<int>(v));
    dil.assign(pad.size(), 1);
    const cudnnMathType_t math = ctx->options.allow_tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
    for (ConvolutionDesc* c : {&fwd_c_, &bwd_data_c_, &bwd_filter_c_}) {
      ELK_CUDA_RETURN_IF_ERROR(
          CudnnStatus(cudnnSetConvolutionNdDescriptor(c->d, static_cast<int>(pad.size()),
                                                      pad.data(), stride.data(), dil.data(),
                                                      CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
                      "cudnnSetConvolutionNdDescriptor"));
      ELK_CUDA_RETURN_IF_ERROR(
          CudnnStatus(cudnnSetConvolutionMathType(c->d, math), "cudnnSetConvolutionMathType"));
    }
    size_t ws = 0;
    if (need_fwd) ELK_CUDA_RETURN_IF_ERROR(ChooseForward(&ws));
    if (need_bwd_data) ELK_CUDA_RETURN_IF_ERROR(ChooseBackwardData(&ws));
    ELK_CUDA_RETURN_IF_ERROR(ChooseBackwardFilter(&ws));
    return ctx->ReserveWorkspace(ws);
  }

  // y = conv(x, w) (+ beta * y).
  absl::Status Forward(const float* x, const float* w, float* y, float beta) {
    const float alpha = 1.f;
    return CudnnStatus(
        cudnnConvolutionForward(ctx_->cudnn, &alpha, x_.d, x, w_.d, w, fwd_c_.d, fwd_algo_,
                                ctx_->workspace, ctx_->workspace_bytes, &beta, y_.d, y),
        "cudnnConvolutionForward");
  }
  // y = relu(conv(x, w) + bias), one fused call.
  absl::Status ForwardBiasRelu(const float* x, const float* w, const float* bias, float* y,
                               cudnnTensorDescriptor_t bias_d, cudnnActivationDescriptor_t act) {
    const float alpha1 = 1.f, alpha2 = 0.f;
    return CudnnStatus(
        cudnnConvolutionBiasActivationForward(ctx_->cudnn, &alpha1, x_.d, x, w_.d, w, fwd_c_.d,
                                              fwd_algo_, ctx_->workspace, ctx_->workspace_bytes,
                                              &alpha2, y_.d, y, bias_d, bias, act, y_.d, y),
        "cudnnConvolutionBiasActivationForward");
  }
  // dx = conv^T(dy, w) (+ beta * dx).
  absl::Status BackwardData(const float* dy, const float* w, float* dx, float beta) {
    const float alpha = 1.f;
    return CudnnStatus(cudnnConvolutionBackwardData(ctx_->cudnn, &alpha, w_.d, w, y_.d, dy,
                                                    bwd_data_c_.d, bwd_data_algo_, ctx_->workspace,
                                                    ctx_->workspace_bytes, &beta, x_.d, dx),
                       "cudnnConvolutionBackwardData");
  }
  // dw = corr(x, dy) (overwritten).
  absl::Status BackwardFilter(const float* x, const float* dy, float* dw) {
    const float alpha = 1.f, beta = 0.f;
    return CudnnStatus(
        cudnnConvolutionBackwardFilter(ctx_->cudnn, &alpha, x_.d, x, y_.d, dy, bwd_filter_c_.d,
                                       bwd_filter_algo_, ctx_->workspace, ctx_->workspace_bytes,
                                       &beta, w_.d, dw),
        "cudnnConvolutionBackwardFilter");
  }

  std::string algorithms() const { return algos_; }
  cudnnConvolutionFwdAlgo_t forward_algo() const { return fwd_algo_; }

 private:
  template <typename Perf>
  absl::StatusOr<Perf> Pick(const std::vector<Perf>& perf, int n, bool need_determinism,
                            const char* what) {
    std::vector<std::string> seen;
    for (int i = 0; i < n; ++i) {
      const Perf& p = perf[i];
      seen.push_back(absl::StrCat(static_cast<int>(p.algo), ":", static_cast<int>(p.status)));
      if (p.status != CUDNN_STATUS_SUCCESS || RejectMath(p.mathType, ctx_->options)) continue;
      if (need_determinism && p.determinism != CUDNN_DETERMINISTIC) continue;
      return p;
    }
    return absl::UnimplementedError(absl::StrCat(
        what, ": cuDNN offers no ", need_determinism ? "deterministic " : "",
        ctx_->options.allow_tf32 ? "" : "FP32 (non-TF32) ",
        "algorithm for this shape (algorithm:status tried: ", absl::StrJoin(seen, ", "), ")"));
  }

  absl::Status ChooseForward(size_t* ws) {
    int max = 0, n = 0;
    ELK_CUDA_RETURN_IF_ERROR(
        CudnnStatus(cudnnGetConvolutionForwardAlgorithmMaxCount(ctx_->cudnn, &max),
                    "cudnnGetConvolutionForwardAlgorithmMaxCount"));
    std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(std::max(max, 1));
    if (ctx_->options.timed_search) {
      ELK_CUDA_RETURN_IF_ERROR(
          CudnnStatus(cudnnFindConvolutionForwardAlgorithm(ctx_->cudnn, x_.d, w_.d, fwd_c_.d, y_.d,
                                                           max, &n, perf.data()),
                      "cudnnFindConvolutionForwardAlgorithm"));
    } else {
      ELK_CUDA_RETURN_IF_ERROR(
          CudnnStatus(cudnnGetConvolutionForwardAlgorithm_v7(ctx_->cudnn, x_.d, w_.d, fwd_c_.d,
                                                             y_.d, max, &n, perf.data()),
                      "cudnnGetConvolutionForwardAlgorithm_v7"));
    }
    auto p = Pick(perf, n, false, "convolution forward");
    if (!p.ok()) return p.status();
    fwd_algo_ = p->algo;
    if (ctx_->options.allow_tf32) cudnnSetConvolutionMathType(fwd_c_.d, p->mathType);
    size_t bytes = 0;
    ELK_CUDA_RETURN_IF_ERROR(
        CudnnStatus(cudnnGetConvolutionForwardWorkspaceSize(ctx_->cudnn, x_.d, w_.d, fwd_c_.d, y_.d,
                                                            fwd_algo_, &bytes),
                    "cudnnGetConvolutionForwardWorkspaceSize"));
    *ws = std::max(*ws, bytes);
    absl::StrAppend(&algos_, "fwd", static_cast<int>(fwd_algo_));
    return absl::OkStatus();
  }

  absl::Status ChooseBackwardData(size_t* ws) {
    int max = 0, n = 0;
    ELK_CUDA_RETURN_IF_ERROR(
        CudnnStatus(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(ctx_->cudnn, &max),
                    "cudnnGetConvolutionBackwardDataAlgorithmMaxCount"));
    std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(std::max(max, 1));
    if (ctx_->options.timed_search) {
      ELK_CUDA_RETURN_IF_ERROR(
          CudnnStatus(cudnnFindConvolutionBackwardDataAlgorithm(
                          ctx_->cudnn, w_.d, y_.d, bwd_data_c_.d, x_.d, max, &n, perf.data()),
                      "cudnnFindConvolutionBackwardDataAlgorithm"));
    } else {
      ELK_CUDA_RETURN_IF_ERROR(
          CudnnStatus(cudnnGetConvolutionBackwardDataAlgorithm_v7(
                          ctx_->cudnn, w_.d, y_.d, bwd_data_c_.d, x_.d, max, &n, perf.data()),
                      "cudnnGetConvolutionBackwardDataAlgorithm_v7"));
    }
    auto p = Pick(perf, n, ctx_->options.deterministic, "convolution backward-data");
    if (!p.ok()) return p.status();
    bwd_data_algo_ = p->algo;
    if (ctx_->options.allow_tf32) cudnnSetConvolutionMathType(bwd_data_c_.d, p->mathType);
    size_t bytes = 0;
    ELK_CUDA_RETURN_IF_ERROR(
        CudnnStatus(cudnnGetConvolutionBackwardDataWorkspaceSize(
                        ctx_->cudnn, w_.d, y_.d, bwd_data_c_.d, x_.d, bwd_data_algo_, &bytes),
                    "cudnnGetConvolutionBackwardDataWorkspaceSize"));
    *ws = std::max(*ws, bytes);
    absl::StrAppend(&algos_, algos_.empty() ? "" : "/", "bwd_data",
                    static_cast<int>(bwd_data_algo_));
    return absl::OkStatus();
  }

  absl::Status ChooseBackwardFilter(size_t* ws) {
    int max = 0, n = 0;
    ELK_CUDA_RETURN_IF_ERROR(
        CudnnStatus(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(ctx_->cudnn, &max),
                    "cudnnGetConvolutionBackwardFilterAlgorithmMaxCount"));
    std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(std::max(max, 1));
    if (ctx_->options.timed_search) {
      ELK_CUDA_RETURN_IF_ERROR(
          CudnnStatus(cudnnFindConvolutionBackwardFilterAlgorithm(
                          ctx_->cudnn, x_.d, y_.d, bwd_filter_c_.d, w_.d, max, &n, perf.data()),
                      "cudnnFindConvolutionBackwardFilterAlgorithm"));
    } else {
      ELK_CUDA_RETURN_IF_ERROR(
          CudnnStatus(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
                          ctx_->cudnn, x_.d, y_.d, bwd_filter_c_.d, w_.d, max, &n, perf.data()),
                      "cudnnGetConvolutionBackwardFilterAlgorithm_v7"));
    }
    auto p = Pick(perf, n, ctx_->options.deterministic, "convolution backward-filter");
    if (!p.ok()) return p.status();
    bwd_filter_algo_ = p->algo;
    if (ctx_->options.allow_tf32) cudnnSetConvolutionMathType(bwd_filter_c_.d, p->mathType);
    size_t bytes = 0;
    ELK_CUDA_RETURN_IF_ERROR(
        CudnnStatus(cudnnGetConvolutionBackwardFilterWorkspaceSize(
                        ctx_->cudnn, x_.d, y_.d, bwd_filter_c_.d, w_.d, bwd_filter_algo_, &bytes),
                    "cudnnGetConvolutionBackwardFilterWorkspaceSize"));
    *ws = std::max(*ws, bytes);
    absl::StrAppend(&algos_, algos_.empty() ? "" : "/", "bwd_filter",
                    static_cast<int>(bwd_filter_algo_));
    return absl::OkStatus();
  }

  CudaContext* ctx_ = nullptr;
  TensorDesc x_, y_;
  FilterDesc w_;
  ConvolutionDesc fwd_c_, bwd_data_c_, bwd_filter_c_;
  cudnnConvolutionFwdAlgo_t fwd_algo_ = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
  cudnnConvolutionBwdDataAlgo_t bwd_data_algo_ = CUDNN_CONVOLUTION_BWD_DATA_ALGO_0;
  cudnnConvolutionBwdFilterAlgo_t bwd_filter_algo_ = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0;
  std::string algos_;
};

// Bias and activation after a convolution: fused (relu, cudnnConvolutionBiasActivationForward)
// where cuDNN takes it, else AddBias and the activation as the backend's element-wise kernels.
class BiasActivation {
 public:
  absl::Status Init(int64_t channels, int nd_cudnn, Eltwise act) {
    act_ = act;
    std::vector<int> dims(nd_cudnn + 2, 1);
    dims[1] = static_cast<int>(channels);
    ELK_CUDA_RETURN_IF_ERROR(
        CudnnStatus(cudnnSetTensorNdDescriptorEx(bias_.d, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT,
                                                 static_cast<int>(dims.size()), dims.data()),
                    "cudnnSetTensorNdDescriptorEx (bias)"));
    ELK_CUDA_RETURN_IF_ERROR(
        CudnnStatus(cudnnCreateActivationDescriptor(&relu_), "cudnnCreateActivationDescriptor"));
    return CudnnStatus(
        cudnnSetActivationDescriptor(relu_, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN, 0.0),
        "cudnnSetActivationDescriptor");
  }
  ~BiasActivation() {
    if (relu_ != nullptr) cudnnDestroyActivationDescriptor(relu_);
  }
  // Unfused tail: dst += bias; dst = act(dst).
  absl::Status Apply(CudaBackend* b, const float* bias, float* dst, int64_t rows,
                     int64_t channels) {
    if (bias != nullptr) b->AddBias(dst, bias, rows, channels);
    if (act_ != Eltwise::kLinear) b->EltwiseForward(act_, dst, dst, rows * channels);
    return b->ConsumeError();
  }
  bool fusable(const float* bias) const { return act_ == Eltwise::kRelu && bias && fused_ok_; }
  cudnnTensorDescriptor_t bias_desc() const { return bias_.d; }
  cudnnActivationDescriptor_t relu() const { return relu_; }
  // cuDNN refused the fused call for this algorithm: use the unfused tail from now on.
  void disable_fusion() { fused_ok_ = false; }

 private:
  Eltwise act_ = Eltwise::kLinear;
  TensorDesc bias_;
  cudnnActivationDescriptor_t relu_ = nullptr;
  bool fused_ok_ = true;
};

class CudnnConvKernel final : public ConvKernel {
 public:
  static absl::StatusOr<std::unique_ptr<ConvKernel>> Create(CudaContext* ctx, const ConvDesc& d) {
    auto k = std::make_unique<CudnnConvKernel>();
    k->ctx_ = ctx;
    k->d_ = d;
    CudnnConvShape s;
    s.batch = d.batch;
    s.x_channels = d.in_channels;
    s.y_channels = d.out_channels;
    s.x_spatial = d.in_spatial;
    s.kernel = d.kernel;
    s.pad = d.pad;
    s.stride.assign(d.kernel.size(), 1);
    for (size_t i = 0; i < d.in_spatial.size(); ++i) {
      const int64_t o = d.in_spatial[i] + 2 * d.pad[i] - d.kernel[i] + 1;
      if (o <= 0) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "convolution axis %d: input %d with kernel %d and padding %d leaves no output", i,
            d.in_spatial[i], d.kernel[i], d.pad[i]));
      }
      s.y_spatial.push_back(o);
    }
    k->out_spatial_ = s.y_spatial;
    k->rows_out_ = d.batch * Prod(s.y_spatial);
    ELK_CUDA_RETURN_IF_ERROR(k->conv_.Init(ctx, s, true, d.need_backward_data));
    ELK_CUDA_RETURN_IF_ERROR(k->tail_.Init(
        d.out_channels, d.in_spatial.size() == 1 ? 2 : static_cast<int>(d.in_spatial.size()),
        d.fused_activation));
    return std::unique_ptr<ConvKernel>(std::move(k));
  }

  std::vector<int64_t> out_spatial() const override { return out_spatial_; }
  int64_t weight_size() const override {
    return d_.out_channels * d_.in_channels * Prod(d_.kernel);
  }
  std::string impl_name() const override { return "cudnn:" + conv_.algorithms(); }
  void ImportWeights(const float* canonical, float* native) const override {
    CanonicalToCudnnFilter(canonical, native, d_.out_channels, d_.in_channels, Prod(d_.kernel),
                           false);
  }
  void ExportWeights(const float* native, float* canonical) const override {
    CudnnFilterToCanonical(native, canonical, d_.out_channels, d_.in_channels, Prod(d_.kernel),
                           false);
  }

  absl::Status Forward(const float* src, const float* w, const float* bias, float* dst) override {
    if (tail_.fusable(bias)) {
      absl::Status s = conv_.ForwardBiasRelu(src, w, bias, dst, tail_.bias_desc(), tail_.relu());
      if (s.ok()) return s;
      // cuDNN refuses some algorithm / layout combinations for the fused call (NOT_SUPPORTED,
      // sometimes BAD_PARAM): fall back to the unfused tail for good; a real fault recurs there.
      tail_.disable_fusion();
    }
    ELK_CUDA_RETURN_IF_ERROR(conv_.Forward(src, w, dst, 0.f));
    return tail_.Apply(ctx_->backend, bias, dst, rows_out_, d_.out_channels);
  }
  absl::Status BackwardData(const float* diff_dst, const float* w, float* diff_src,
                            bool accumulate) override {
    if (!d_.need_backward_data) {
      return absl::FailedPreconditionError("convolution was created without backward-data");
    }
    return conv_.BackwardData(diff_dst, w, diff_src, accumulate ? 1.f : 0.f);
  }
  absl::Status BackwardWeights(const float* src, const float* diff_dst, float* diff_w,
                               float* diff_b) override {
    ELK_CUDA_RETURN_IF_ERROR(conv_.BackwardFilter(src, diff_dst, diff_w));
    if (diff_b == nullptr) return absl::OkStatus();
    ctx_->backend->BiasGradient(diff_dst, diff_b, rows_out_, d_.out_channels);
    return ctx_->backend->ConsumeError();
  }

 private:
  CudaContext* ctx_ = nullptr;
  ConvDesc d_;
  std::vector<int64_t> out_spatial_;
  int64_t rows_out_ = 0;
  CudnnConvolution conv_;
  BiasActivation tail_;
};

class CudnnDeconvKernel final : public ConvKernel {
 public:
  static absl::StatusOr<std::unique_ptr<ConvKernel>> Create(CudaContext* ctx, const DeconvDesc& d) {
    auto k = std::make_unique<CudnnDeconvKernel>();
    k->ctx_ = ctx;
    k->d_ = d;
    CudnnConvShape s;
    s.batch = d.batch;
    s.x_channels = d.out_channels;  // the deconvolution's large output is cuDNN's x
    s.y_channels = d.in_channels;
    s.y_spatial = d.in_spatial;
    s.kernel = d.kernel;
    s.stride = d.stride;
    s.pad.assign(d.kernel.size(), 0);
    for (size_t i = 0; i < d.in_spatial.size(); ++i) {
      s.x_spatial.push_back((d.in_spatial[i] - 1) * d.stride[i] + d.kernel[i]);
    }
    k->out_spatial_ = s.x_spatial;
    k->rows_out_ = d.batch * Prod(s.x_spatial);
    ELK_CUDA_RETURN_IF_ERROR(k->conv_.Init(ctx, s, d.need_backward_data, true));
    ELK_CUDA_RETURN_IF_ERROR(k->tail_.Init(
        d.out_channels, d.in_spatial.size() == 1 ? 2 : static_cast<int>(d.in_spatial.size()),
        d.fused_activation));
    k->tail_.disable_fusion();  // the forward is cuDNN's backward-data: nothing to fuse into
    return std::unique_ptr<ConvKernel>(std::move(k));
  }

  std::vector<int64_t> out_spatial() const override { return out_spatial_; }
  int64_t weight_size() const override {
    return d_.out_channels * d_.in_channels * Prod(d_.kernel);
  }
  std::string impl_name() const override { return "cudnn-transposed:" + conv_.algorithms(); }
  void ImportWeights(const float* canonical, float* native) const override {
    CanonicalToCudnnFilter(canonical, native, d_.out_channels, d_.in_channels, Prod(d_.kernel),
                           true);
  }
  void ExportWeights(const float* native, float* canonical) const override {
    CudnnFilterToCanonical(native, canonical, d_.out_channels, d_.in_channels, Prod(d_.kernel),
                           true);
  }

  absl::Status Forward(const float* src, const float* w, const float* bias, float* dst) override {
    ELK_CUDA_RETURN_IF_ERROR(conv_.BackwardData(src, w, dst, 0.f));
    return tail_.Apply(ctx_->backend, bias, dst, rows_out_, d_.out_channels);
  }
  absl::Status BackwardData(const float* diff_dst, const float* w, float* diff_src,
                            bool accumulate) override {
    if (!d_.need_backward_data) {
      return absl::FailedPreconditionError(
          "transposed convolution was created without backward-data");
    }
    return conv_.Forward(diff_dst, w, diff_src, accumulate ? 1.f : 0.f);
  }
  absl::Status BackwardWeights(const float* src, const float* diff_dst, float* diff_w,
                               float* diff_b) override {
    ELK_CUDA_RETURN_IF_ERROR(conv_.BackwardFilter(diff_dst, src, diff_w));
    if (diff_b == nullptr) return absl::OkStatus();
    ctx_->backend->BiasGradient(diff_dst, diff_b, rows_out_, d_.out_channels);
    return ctx_->backend->ConsumeError();
  }

 private:
  CudaContext* ctx_ = nullptr;
  DeconvDesc d_;
  std::vector<int64_t> out_spatial_;
  int64_t rows_out_ = 0;
  CudnnConvolution conv_;
  BiasActivation tail_;
};

absl::Status CheckInt(const std::vector<int64_t>& v, const char* what) {
  for (int64_t x : v) {
    if (x < 0 || x > INT_MAX) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " ", x, " does not fit cuDNN's int dimensions"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ConvKernel>> CreateCudnnConv(CudaContext* ctx, const ConvDesc& d) {
  ELK_CUDA_RETURN_IF_ERROR(ValidateConvDesc(d));
  ELK_CUDA_RETURN_IF_ERROR(CheckInt({d.batch, d.in_channels, d.out_channels}, "convolution size"));
  ELK_CUDA_RETURN_IF_ERROR(CheckInt(d.in_spatial, "convolution input size"));
  return CudnnConvKernel::Create(ctx, d);
}

absl::StatusOr<std::unique_ptr<ConvKernel>> CreateCudnnDeconv(CudaContext* ctx,
                                                              const DeconvDesc& d) {
  ELK_CUDA_RETURN_IF_ERROR(ValidateDeconvDesc(d));
  ELK_CUDA_RETURN_IF_ERROR(
      CheckInt({d.batch, d.in_channels, d.out_channels}, "transposed convolution size"));
  return CudnnDeconvKernel::Create(ctx, d);
}

}  // namespace elektronn::kernels::cuda
