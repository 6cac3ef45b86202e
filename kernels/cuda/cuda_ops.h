// The CUDA backend's element-wise half: every Backend function that is not memory management or a
// kernel factory, as our own CUDA kernels on one stream (kernels/cuda/*.cu). CudaBackend
// (cuda_backend.h) derives from it and adds memory, cuDNN convolutions and pooling and cuBLAS
// matrix products.
//
// Errors: Backend's element-wise functions return nothing, so every launch is checked and the
// first failure is kept (later calls become no-ops); ConsumeError() hands it over as an
// absl::Status and the engine's step boundaries ask for it (CudaBackend::Synchronize).
// Functions returning a host value (Sum, the losses, error counts) synchronise the stream.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "kernels/backend.h"

namespace elektronn::kernels::cuda {

class CudaExec;  // kernels/cuda/cuda_exec.cuh: the launches behind every op

class CudaOps : public Backend {
 public:
  // `stream` is the job's stream; `device` the CUDA ordinal every call runs on.
  CudaOps(int device, cudaStream_t stream);
  ~CudaOps() override;

  // The first error since the last call (OK if none) and clears it.
  absl::Status ConsumeError();

  void Fill(float* dst, float value, int64_t n) override;
  void Copy(const float* src, float* dst, int64_t n) override;
  void EltwiseForward(Eltwise e, const float* src, float* dst, int64_t n) override;
  void EltwiseBackward(Eltwise e, const float* src, const float* dst, const float* diff_dst,
                       float* diff_src, int64_t n, bool accumulate) override;
  void PreluForward(const float* src, const float* slope, float* dst, int64_t rows,
                    int64_t channels) override;
  void PreluBackward(const float* src, const float* slope, const float* diff_dst, float* diff_src,
                     float* diff_slope, int64_t rows, int64_t channels, bool accumulate) override;
  void AddBias(float* dst, const float* bias, int64_t rows, int64_t channels) override;
  void BiasGradient(const float* diff, float* diff_bias, int64_t rows, int64_t channels) override;
  void SoftmaxForward(const float* src, float* dst, int64_t rows, int64_t channels,
                      int64_t n_class) override;
  void SoftmaxBackward(const float* dst, const float* diff_dst, float* diff_src, int64_t rows,
                       int64_t channels, int64_t n_class, bool accumulate) override;
  double NllForward(const NllDesc& d, const float* probs, const float* target,
                    float* loss) override;
  void NllBackward(const NllDesc& d, const float* probs, const float* target,
                   const float* diff_loss, double n_total, float* diff_probs,
                   bool accumulate) override;
  void NllClassWeightsBackward(const NllDesc& d, const float* probs, const float* target,
                               const float* diff_loss, double n_total, float* diff_class_weights,
                               bool accumulate) override;
  void CountErrors(const float* probs, const float* target, int64_t rows, int64_t channels,
                   int64_t n_class, bool sparse, int64_t* wrong, int64_t* labelled) override;
  double Sum(const float* src, int64_t n) override;
  void Scale(const float* x, float a, float* dst, int64_t n, bool accumulate) override;
  void Add(const float* a, const float* b, float* dst, int64_t n) override;
  void CopyBox(const BoxCopy& box, const float* src, float* dst, bool accumulate) override;
  void Dropout(const float* src, float* dst, int64_t n, float rate, uint64_t seed,
               uint64_t step) override;
  void DropoutBackward(const float* diff_dst, float* diff_src, int64_t n, float rate, uint64_t seed,
                       uint64_t step, bool accumulate) override;
  void BatchNormStatistics(const float* src, float* mean, float* std, int64_t rows,
                           int64_t channels, float eps) override;
  void BatchNormForward(const float* src, const float* mean, const float* std, const float* gamma,
                        const float* beta, float* dst, int64_t rows, int64_t channels,
                        Eltwise act) override;
  void BatchNormFade(const float* mean, const float* std, const float* gamma, float rate,
                     float* faded_mean, float* faded_std, float* faded_gamma,
                     int64_t channels) override;
  void BatchNormBackward(const float* src, const float* mean, const float* std, const float* gamma,
                         const float* diff_dst, float* diff_src, float* diff_gamma,
                         float* diff_beta, int64_t rows, int64_t channels, float eps,
                         bool batch_statistics, float rate, bool accumulate) override;
  void BatchNormUpdateRunning(const float* batch_mean, const float* batch_std, float* running_mean,
                              float* running_std, int64_t channels, float decay) override;
  void Multiply(const float* a, const float* b, float* dst, int64_t n, bool accumulate) override;
  void Transpose(const std::vector<int64_t>& dims, const std::vector<int>& perm, const float* src,
                 float* dst, bool accumulate) override;
  void ScalarFunctionForward(ScalarFunction f, float a, float b, const float* src, float* dst,
                             int64_t n) override;
  void ScalarFunctionBackward(ScalarFunction f, float a, float b, const float* src,
                              const float* diff_dst, float* diff_src, int64_t n,
                              bool accumulate) override;
  void MaxoutForward(const float* src, float* dst, int64_t rows, int64_t channels,
                     int64_t k) override;
  void MaxoutBackward(const float* src, const float* diff_dst, float* diff_src, int64_t rows,
                      int64_t channels, int64_t k, bool accumulate) override;
  void LrnForward(const LrnDesc& d, const float* src, float* dst, float* workspace) override;
  void LrnBackward(const LrnDesc& d, const float* src, const float* diff_dst, float* diff_src,
                   float* workspace, bool accumulate) override;
  void GaussianSample(const float* mu, const float* log_sig, float* dst, int64_t outer,
                      int64_t samples, int64_t inner, uint64_t seed, uint64_t step) override;
  void GaussianSampleBackward(const float* mu, const float* dst, const float* diff_dst,
                              float* diff_mu, bool accumulate_mu, float* diff_log_sig,
                              bool accumulate_log_sig, int64_t outer, int64_t samples,
                              int64_t inner) override;
  void GaussianPriorForward(const float* mu, const float* log_sig, float* dst, int64_t n) override;
  void GaussianPriorBackward(const float* mu, const float* log_sig, const float* diff_dst,
                             float* diff_mu, bool accumulate_mu, float* diff_log_sig,
                             bool accumulate_log_sig, int64_t n) override;
  int64_t RegressionLossForward(const RegressionLossDesc& d, const float* pred, const float* target,
                                float* loss) override;
  void RegressionLossBackward(const RegressionLossDesc& d, const float* pred, const float* target,
                              const float* diff_loss, int64_t n_labelled, float* diff_pred,
                              bool accumulate) override;
  int64_t BinaryNllForward(int64_t n, bool subtract_label_entropy, const float* pred,
                           const float* target, float* loss) override;
  void BinaryNllBackward(int64_t n, const float* pred, const float* target, const float* diff_loss,
                         int64_t n_labelled, float* diff_pred, bool accumulate) override;
  void GaussianNllForward(int64_t n, SampleAxis s, bool sig_is_log, const float* mu,
                          const float* sig, const float* target, float* loss) override;
  void GaussianNllBackward(int64_t n, SampleAxis s, bool sig_is_log, const float* mu,
                           const float* sig, const float* target, const float* diff_loss,
                           float* diff_mu, bool accumulate_mu, float* diff_sig,
                           bool accumulate_sig) override;
  void BetaNllForward(int64_t n, SampleAxis s, const float* mode, const float* conc,
                      const float* target, float* loss) override;
  void BetaNllBackward(int64_t n, SampleAxis s, const float* mode, const float* conc,
                       const float* target, const float* diff_loss, float* diff_mode,
                       bool accumulate_mode, float* diff_conc, bool accumulate_conc) override;
  void EuclideanDistanceForward(const float* a, const float* b, float* out, int64_t rows,
                                int64_t channels) override;
  void EuclideanDistanceBackward(const float* a, const float* b, const float* out,
                                 const float* diff_out, float* diff_a, bool accumulate_a,
                                 float* diff_b, bool accumulate_b, int64_t rows,
                                 int64_t channels) override;
  void RampLossForward(const float* low, const float* big, float margin, float* out, int64_t rows,
                       int64_t channels) override;
  void RampLossBackward(const float* low, const float* big, float margin, const float* diff_out,
                        float* diff_low, bool accumulate_low, float* diff_big, bool accumulate_big,
                        int64_t rows, int64_t channels) override;
  void SobelForward(const SobelDesc& d, const float* src, float* dst) override;
  void SobelBackward(const SobelDesc& d, const float* diff_dst, float* diff_src,
                     bool accumulate) override;
  void OneHot(const float* labels, float* out, int64_t rows, int64_t n_class) override;
  void Classify(const float* probs, float* out, int64_t rows, int64_t channels, int64_t n_class,
                bool threshold) override;
  void CountBinaryErrors(const float* probs, const float* target, int64_t n, int64_t* wrong,
                         int64_t* labelled) override;
  void SgdUpdate(const OptimiserStep& s, const float* g, float* p, float* v, int64_t n) override;
  void AdamUpdate(const OptimiserStep& s, const float* g, float* p, float* m, float* v,
                  int64_t n) override;
  void AdaGradUpdate(const OptimiserStep& s, const float* g, float* p, float* h, bool first_step,
                     int64_t n) override;
  void AdaDeltaUpdate(const OptimiserStep& s, const float* g, float* p, float* sq, float* d,
                      int64_t n) override;

 protected:
  // Records `e` (with `what`) if it is the first error; returns true when `e` is cudaSuccess.
  bool Check(cudaError_t e, const char* what);
  // Checks the last kernel launch (cudaGetLastError).
  bool CheckLaunch(const char* what);
  // Device scratch of at least `bytes` for reductions; grown at compile time only
  // (a reduction of a larger size than seen before reallocates once).
  void* Scratch(size_t bytes);
  // Device memory of at least `bytes` an op keeps across its launches (batch normalisation's
  // per-channel coefficients), apart from Scratch; grown like it.
  void* Workspace(size_t bytes);
  // False once an error is recorded: ops then launch nothing until ConsumeError().
  bool ok() const { return first_error_.ok(); }
  // Records `message` as the first error, INVALID_ARGUMENT (an argument no kernel can take).
  void Fail(const std::string& message);

  int device_;
  cudaStream_t stream_;

 private:
  friend class CudaExec;
  // Frees `*p` and allocates `bytes` (rounded up) when `*capacity` is smaller.
  void* Grow(void** p, size_t* capacity, size_t bytes, const char* what);

  absl::Status first_error_;
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
};

}  // namespace elektronn::kernels::cuda
