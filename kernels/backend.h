// The compute seam: every number the engine computes goes through this interface.
//
// Conventions (see kernels/README.md):
//  * Activations are dense float32 in channels-last layout: (N, spatial..., C), so that
//    "features" is the innermost axis. Engine nodes never look inside a kernel's layout choices.
//  * Convolution weights live in a layout the kernel chooses (`weight_size()` floats); the kernel
//    converts to and from the canonical layout (out, in, k_0, ..., k_{d-1}) on request.
//  * Kernels are created once when a graph is compiled for a shape; `Forward`/`Backward*` are the
//    steady-state calls and must not allocate tensor memory.
//  * `accumulate` arguments ask a kernel to add into its output instead of overwriting it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace elektronn::kernels {

// kSelu, kConcentration, kRadius: ELEKTRONN2's selu, 7*softplus(x)+2 and 3+15*exp(0.15x).
enum class Eltwise {
  kLinear,
  kRelu,
  kTanh,
  kSigmoid,
  kAbs,
  kSoftplus,
  kElu,
  kSelu,
  kConcentration,
  kRadius
};

// True when act(max(a, b)) == max(act(a), act(b)), so the activation commutes with max-pooling
// and can be fused into the convolution that precedes the pool.
bool IsMonotone(Eltwise e);
const char* EltwiseName(Eltwise e);

// Precision of the heavy kernels (convolution, transposed convolution, matrix product, pooling).
// kBf16 is mixed precision behind the same float* interface: the kernel rounds its activation
// inputs and a copy of the weights to bfloat16 (8-bit mantissa) and accumulates in fp32; outputs,
// input and weight gradients stay fp32, and so do the master weights the optimiser updates. The
// bf16 weight copy is refreshed by every Forward (once per step). BackwardData/BackwardWeights
// reuse the bf16 rounding of `src` made by the last Forward, and of `diff_dst` made by the other
// backward call since then, when given the same pointer: the caller must not change those buffers
// in between (the graph never does). Backends refuse kBf16 where the hardware lacks it.
enum class DataType { kF32, kBf16 };
const char* DataTypeName(DataType t);  // "fp32", "bf16" (the job files' `precision` values)
// "fp32" or "" -> kF32, "bf16" -> kBf16; anything else INVALID_ARGUMENT naming `field` and the
// valid values.
absl::StatusOr<DataType> ParseDataType(const std::string& field, const std::string& value);
// True when this CPU has AVX512_BF16 and the OS enables AVX-512 (cpuid; no oneDNN needed).
bool CpuHasBf16();

struct ConvDesc {
  int64_t batch = 1;
  int64_t in_channels = 1;
  int64_t out_channels = 1;
  std::vector<int64_t> in_spatial;              // 1 to 3 axes
  std::vector<int64_t> kernel;                  // same rank as in_spatial
  std::vector<int64_t> pad;                     // symmetric zero padding per axis
  Eltwise fused_activation = Eltwise::kLinear;  // dst = act(conv(src) + bias)
  bool need_backward_data = true;               // false for a network's first layer
  DataType dtype = DataType::kF32;
};

class ConvKernel {
 public:
  virtual ~ConvKernel() = default;
  virtual std::vector<int64_t> out_spatial() const = 0;
  virtual int64_t weight_size() const = 0;
  virtual void ImportWeights(const float* canonical, float* native) const = 0;
  virtual void ExportWeights(const float* native, float* canonical) const = 0;
  // A short name of the implementation picked (e.g. "brgconv:avx512_core").
  virtual std::string impl_name() const = 0;

  virtual absl::Status Forward(const float* src, const float* w, const float* bias, float* dst) = 0;
  virtual absl::Status BackwardData(const float* diff_dst, const float* w, float* diff_src,
                                    bool accumulate) = 0;
  // diff_w in the native layout; diff_b has out_channels values. Both are overwritten.
  virtual absl::Status BackwardWeights(const float* src, const float* diff_dst, float* diff_w,
                                       float* diff_b) = 0;
};

// Transposed convolution (UpConv family): see Backend::CreateDeconv.
struct DeconvDesc {
  int64_t batch = 1;
  int64_t in_channels = 1;
  int64_t out_channels = 1;
  std::vector<int64_t> in_spatial;              // 1 to 3 axes
  std::vector<int64_t> kernel;                  // same rank as in_spatial
  std::vector<int64_t> stride;                  // same rank; UpConv uses stride = kernel
  Eltwise fused_activation = Eltwise::kLinear;  // dst = act(deconv(src) + bias)
  bool need_backward_data = true;
  DataType dtype = DataType::kF32;
};

// The checks every backend's factory makes first (1 to 3 spatial axes with matching kernel and
// padding or stride; sizes >= 1), so that all backends refuse the same descriptors alike.
absl::Status ValidateConvDesc(const ConvDesc& d);
absl::Status ValidateDeconvDesc(const DeconvDesc& d);

enum class PoolMode { kMax, kAverage };

struct PoolDesc {
  int64_t batch = 1;
  int64_t channels = 1;
  std::vector<int64_t> in_spatial;
  std::vector<int64_t> kernel;
  std::vector<int64_t> stride;
  PoolMode mode = PoolMode::kMax;
  // The CPU pools fp32 activations in fp32 either way: max pooling is exact in any precision and
  // rounding around it would only add memory traffic while activations between layers are fp32.
  DataType dtype = DataType::kF32;
};

// Holds its own workspace (argmax indices), so one kernel serves one forward/backward pair.
class PoolKernel {
 public:
  virtual ~PoolKernel() = default;
  virtual std::vector<int64_t> out_spatial() const = 0;
  virtual absl::Status Forward(const float* src, float* dst) = 0;
  virtual absl::Status Backward(const float* diff_dst, float* diff_src, bool accumulate) = 0;
};

// dst[m, n] = src[m, k] * w[k, n] + bias[n]; all row-major.
struct MatmulDesc {
  int64_t m = 1, k = 1, n = 1;
  Eltwise fused_activation = Eltwise::kLinear;  // dst = act(src * w + bias)
  DataType dtype = DataType::kF32;
};

class MatmulKernel {
 public:
  virtual ~MatmulKernel() = default;
  virtual absl::Status Forward(const float* src, const float* w, const float* bias, float* dst) = 0;
  virtual absl::Status BackwardData(const float* diff_dst, const float* w, float* diff_src,
                                    bool accumulate) = 0;
  virtual absl::Status BackwardWeights(const float* src, const float* diff_dst, float* diff_w,
                                       float* diff_b) = 0;
  // Names of the implementations picked (forward/backward-data/backward-weights), if known.
  virtual std::string impl_name() const { return ""; }
};

// A strided box inside a channels-last tensor, used by Crop and Concat and, with steps, by
// max-fragment-pooling and FragmentsToDense: element `k` of `extent` (N, spatial..., C) is
// copied from `src_origin + k * src_step` of a tensor shaped `src_shape` to
// `dst_origin + k * dst_step` of a tensor shaped `dst_shape`. Empty steps mean 1 on every axis.
struct BoxCopy {
  std::vector<int64_t> src_shape, dst_shape, src_origin, dst_origin, extent;
  std::vector<int64_t> src_step = {}, dst_step = {};
};

// Structural family (issue 11). Element-wise functions with arguments (ApplyFunc): a*x+b, x^a, clip
// to [a, b], exp, log.
enum class ScalarFunction { kAffine, kPow, kClip, kExp, kLog };

// Local response normalisation over channels-last (batch, spatial..., channels).
struct LrnDesc {
  int64_t batch = 1;
  std::vector<int64_t> spatial;
  int64_t channels = 1;
  bool channel_mode = false;    // false: window over the spatial axes, per channel
  std::vector<int64_t> window;  // odd sizes: one per spatial axis, or one (channel mode)
  float alpha = 1e-4f, k = 1.f, beta = 0.75f;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // Tensor memory. Allocations happen at compile time only.
  virtual float* Allocate(int64_t n_floats) = 0;
  virtual void Free(float* p) = 0;
  virtual void Fill(float* dst, float value, int64_t n) = 0;
  virtual void Copy(const float* src, float* dst, int64_t n) = 0;
  // Host <-> backend memory (identity copies on the CPU).
  virtual void Upload(const float* host, float* dst, int64_t n) = 0;
  virtual void Download(const float* src, float* host, int64_t n) = 0;

  virtual absl::StatusOr<std::unique_ptr<ConvKernel>> CreateConv(const ConvDesc& d) = 0;
  virtual absl::StatusOr<std::unique_ptr<PoolKernel>> CreatePool(const PoolDesc& d) = 0;
  virtual absl::StatusOr<std::unique_ptr<MatmulKernel>> CreateMatmul(const MatmulDesc& d) = 0;

  // Element-wise activations; backward uses dst (and src only for kAbs).
  virtual void EltwiseForward(Eltwise e, const float* src, float* dst, int64_t n) = 0;
  virtual void EltwiseBackward(Eltwise e, const float* src, const float* dst, const float* diff_dst,
                               float* diff_src, int64_t n, bool accumulate) = 0;
  // PReLU over channels-last rows: y = x > 0 ? x : slope[c] * x.
  virtual void PreluForward(const float* src, const float* slope, float* dst, int64_t rows,
                            int64_t channels) = 0;
  virtual void PreluBackward(const float* src, const float* slope, const float* diff_dst,
                             float* diff_src, float* diff_slope, int64_t rows, int64_t channels,
                             bool accumulate) = 0;
  // dst[r, c] += bias[c]; diff_bias[c] = sum_r diff[r, c].
  virtual void AddBias(float* dst, const float* bias, int64_t rows, int64_t channels) = 0;
  virtual void BiasGradient(const float* diff, float* diff_bias, int64_t rows,
                            int64_t channels) = 0;

  // Softmax over groups of `n_class` consecutive channels of each row.
  virtual void SoftmaxForward(const float* src, float* dst, int64_t rows, int64_t channels,
                              int64_t n_class) = 0;
  virtual void SoftmaxBackward(const float* dst, const float* diff_dst, float* diff_src,
                               int64_t rows, int64_t channels, int64_t n_class,
                               bool accumulate) = 0;

  // Multinoulli NLL per voxel row (reference §2.13): loss[r] = scale * sum_c -t*cw*log(p+1e-5)
  // with scale = rows*channels / (n_labelled + 1e-5) / n_indep / n_class, summed per row.
  // Sparse targets hold one class id per row and independent group; ids < 0 or >= n_class
  // are ignored. Returns the number of labelled entries.
  struct NllDesc {
    int64_t rows = 0, channels = 0, n_class = 0;
    bool sparse = true;
    const float* class_weights = nullptr;  // n_class values or null
    // losses family (issue 11): optional inputs (null = absent). Rows are batch-major, so the
    // batch index of row r is r / (rows / batch).
    int64_t batch = 1;
    const float* example_weights = nullptr;         // one value per row
    const float* mask_class_labeled = nullptr;      // (batch, channels): target *= mask
    const float* mask_class_not_present = nullptr;  // (batch, channels): adds -log(1-p)
    float weakness = 0;  // labelled groups: target <- (1-w) target + w p (differentiated)
  };
  // Returns the normaliser n_tot: the sum of the (masked) target plus the not-present mask
  // summed over every voxel (ELEKTRONN2's n_labelled_up + n_labelled_dn).
  virtual double NllForward(const NllDesc& d, const float* probs, const float* target,
                            float* loss) = 0;
  virtual void NllBackward(const NllDesc& d, const float* probs, const float* target,
                           const float* diff_loss, double n_total, float* diff_probs,
                           bool accumulate) = 0;
  // The gradient with respect to d.class_weights (n_class values; class_weights given as a
  // node): diff_cw[c] = sum over rows and groups of diff_loss[r] * scale *
  // (-t ew log(p + 1e-5) - m ew log(1 - p + 1e-5)) of class c. The normaliser does not depend
  // on the weights.
  virtual void NllClassWeightsBackward(const NllDesc& d, const float* probs, const float* target,
                                       const float* diff_loss, double n_total,
                                       float* diff_class_weights, bool accumulate) = 0;
  // Number of rows whose arg-max class differs from a labelled target, and of labelled rows.
  virtual void CountErrors(const float* probs, const float* target, int64_t rows, int64_t channels,
                           int64_t n_class, bool sparse, int64_t* wrong, int64_t* labelled) = 0;

  virtual double Sum(const float* src, int64_t n) = 0;
  // dst = a*x + (accumulate ? dst : 0)
  virtual void Scale(const float* x, float a, float* dst, int64_t n, bool accumulate) = 0;
  virtual void Add(const float* a, const float* b, float* dst, int64_t n) = 0;
  virtual void CopyBox(const BoxCopy& box, const float* src, float* dst, bool accumulate) = 0;
  // Inverted dropout with a counter-based mask: keep with probability 1-rate, scale 1/(1-rate).
  virtual void Dropout(const float* src, float* dst, int64_t n, float rate, uint64_t seed,
                       uint64_t step) = 0;
  virtual void DropoutBackward(const float* diff_dst, float* diff_src, int64_t n, float rate,
                               uint64_t seed, uint64_t step, bool accumulate) = 0;

  // Batch normalisation over channels-last rows (reference §2.4; batch_norm family).
  // Per-channel mean and biased standard deviation plus `eps` of src over all rows.
  virtual void BatchNormStatistics(const float* src, float* mean, float* std, int64_t rows,
                                   int64_t channels, float eps) = 0;
  // dst = act(gamma[c] / std[c] * (src - mean[c]) + beta[c]); dst may be src.
  virtual void BatchNormForward(const float* src, const float* mean, const float* std,
                                const float* gamma, const float* beta, float* dst, int64_t rows,
                                int64_t channels, Eltwise act) = 0;
  // 'fadeout' mode: the statistics and gamma mixed with the identity by `rate` in [0, 1]:
  // faded_mean = rate*mean, faded_std = rate*std + (1 - rate), faded_gamma = rate*gamma, in
  // float exactly as written (rate 1 returns the inputs bit for bit). Outputs may be inputs.
  virtual void BatchNormFade(const float* mean, const float* std, const float* gamma, float rate,
                             float* faded_mean, float* faded_std, float* faded_gamma,
                             int64_t channels) = 0;
  // Gradient of BatchNormForward without its activation (apply that to diff_dst first). With
  // `batch_statistics`, mean and std are src's own (std = sigma + eps), the forward ran on
  // their fade by `rate` (BatchNormFade; rate 1: 'train', no fade) and the gradient flows
  // through the faded statistics; gamma is the unfaded one and diff_gamma its gradient.
  // Without, mean and std are constants and rate must be 1. diff_gamma and diff_beta are
  // overwritten; diff_src may be diff_dst.
  virtual void BatchNormBackward(const float* src, const float* mean, const float* std,
                                 const float* gamma, const float* diff_dst, float* diff_src,
                                 float* diff_gamma, float* diff_beta, int64_t rows,
                                 int64_t channels, float eps, bool batch_statistics, float rate,
                                 bool accumulate) = 0;
  // running = decay * running + (1 - decay) * batch, for the mean and the std.
  virtual void BatchNormUpdateRunning(const float* batch_mean, const float* batch_std,
                                      float* running_mean, float* running_std, int64_t channels,
                                      float decay) = 0;
  // --- Structural, element-wise and probabilistic family (issue 11) ---
  // dst = a * b (+ dst when accumulating): MultMerge forward, and its backward with diff_dst.
  virtual void Multiply(const float* a, const float* b, float* dst, int64_t n, bool accumulate) = 0;
  // dst[perm-ordered index] = src: axis i of dst is axis perm[i] of src (dims = src's sizes).
  virtual void Transpose(const std::vector<int64_t>& dims, const std::vector<int>& perm,
                         const float* src, float* dst, bool accumulate) = 0;
  // ApplyFunc's functions with arguments; backward reads src.
  virtual void ScalarFunctionForward(ScalarFunction f, float a, float b, const float* src,
                                     float* dst, int64_t n) = 0;
  virtual void ScalarFunctionBackward(ScalarFunction f, float a, float b, const float* src,
                                      const float* diff_dst, float* diff_src, int64_t n,
                                      bool accumulate) = 0;
  // Maxout over channels-last rows: dst[r, c] = max_i src[r, c*k + i], c < channels / k.
  virtual void MaxoutForward(const float* src, float* dst, int64_t rows, int64_t channels,
                             int64_t k) = 0;
  // The gradient goes to the first maximal input of each group.
  virtual void MaxoutBackward(const float* src, const float* diff_dst, float* diff_src,
                              int64_t rows, int64_t channels, int64_t k, bool accumulate) = 0;
  // Local response normalisation (reference §2.11): dst = src / (k + alpha * m)^beta, m the mean
  // of src^2 over the window. `workspace` holds 2 * numel floats: forward leaves
  // (k + alpha * m) in the first half for backward, which uses the second half as scratch.
  virtual void LrnForward(const LrnDesc& d, const float* src, float* dst, float* workspace) = 0;
  virtual void LrnBackward(const LrnDesc& d, const float* src, const float* diff_dst,
                           float* diff_src, float* workspace, bool accumulate) = 0;
  // Reparameterised Gaussian sample: dst[o, s, i] = mu[o, i] + exp(log_sig[o, i]) * eps with
  // eps ~ N(0, 1) counter-based on (seed, step, index of dst), like Dropout's mask.
  virtual void GaussianSample(const float* mu, const float* log_sig, float* dst, int64_t outer,
                              int64_t samples, int64_t inner, uint64_t seed, uint64_t step) = 0;
  // diff_mu = sum_s diff_dst, diff_log_sig = sum_s diff_dst * (dst - mu); a null target is
  // skipped, each target with its own accumulate flag.
  virtual void GaussianSampleBackward(const float* mu, const float* dst, const float* diff_dst,
                                      float* diff_mu, bool accumulate_mu, float* diff_log_sig,
                                      bool accumulate_log_sig, int64_t outer, int64_t samples,
                                      int64_t inner) = 0;
  // The AEVB prior term 0.5 * (mu^2 + sigma^2 - 1 - 2 log sigma), sigma = exp(log_sig).
  virtual void GaussianPriorForward(const float* mu, const float* log_sig, float* dst,
                                    int64_t n) = 0;
  virtual void GaussianPriorBackward(const float* mu, const float* log_sig, const float* diff_dst,
                                     float* diff_mu, bool accumulate_mu, float* diff_log_sig,
                                     bool accumulate_log_sig, int64_t n) = 0;
  // losses family (issue 11): regression/probabilistic losses and output nodes (reference
  // §2.13). Targets equal to -666 (kIgnoredTarget) are ignored where noted; `scale` is
  // N_total / (N_labelled + 1) with N = numbers of elements. No gradient flows into targets.
  enum class RegressionKind { kSquared, kAbs };
  struct RegressionLossDesc {
    int64_t rows = 0, channels = 0;
    RegressionKind kind = RegressionKind::kSquared;
    float margin = 0;            // 0: none; else a term counts only where |t - p| >= margin
    float scale_correction = 0;  // 0: none; squared x c/(|t|+c), abs x (c|t|+1)
  };
  // loss[r] = mean over channels of the element terms; returns N_labelled.
  virtual int64_t RegressionLossForward(const RegressionLossDesc& d, const float* pred,
                                        const float* target, float* loss) = 0;
  virtual void RegressionLossBackward(const RegressionLossDesc& d, const float* pred,
                                      const float* target, const float* diff_loss,
                                      int64_t n_labelled, float* diff_pred, bool accumulate) = 0;
  // Elementwise -t log(p+1e-5) - (1-t) log(1-p+1e-5) [+ label entropy], times scale.
  virtual int64_t BinaryNllForward(int64_t n, bool subtract_label_entropy, const float* pred,
                                   const float* target, float* loss) = 0;
  virtual void BinaryNllBackward(int64_t n, const float* pred, const float* target,
                                 const float* diff_loss, int64_t n_labelled, float* diff_pred,
                                 bool accumulate) = 0;
  // GaussianNLL and BetaNLL take the target broadcast over a sample axis 's' of the prediction
  // (ELEKTRONN2 dimshuffles it in): element i of the n-element prediction reads target element
  // (i / (samples * inner)) * inner + i % inner, where `inner` is the number of elements after
  // 's' in memory. The default (samples = 1) is one target per element.
  struct SampleAxis {
    int64_t samples = 1, inner = 1;
  };
  // 0.5 ln(2 pi) + ln sig + 0.5 ((t - mu) / sig)^2; sig_is_log: sig holds ln(sigma).
  virtual void GaussianNllForward(int64_t n, SampleAxis s, bool sig_is_log, const float* mu,
                                  const float* sig, const float* target, float* loss) = 0;
  virtual void GaussianNllBackward(int64_t n, SampleAxis s, bool sig_is_log, const float* mu,
                                   const float* sig, const float* target, const float* diff_loss,
                                   float* diff_mu, bool accumulate_mu, float* diff_sig,
                                   bool accumulate_sig) = 0;
  // -log Beta(t; a, b) + softplus(-c), a = m (c-2) + 1, b = (1-m)(c-2) + 1.
  virtual void BetaNllForward(int64_t n, SampleAxis s, const float* mode, const float* conc,
                              const float* target, float* loss) = 0;
  virtual void BetaNllBackward(int64_t n, SampleAxis s, const float* mode, const float* conc,
                               const float* target, const float* diff_loss, float* diff_mode,
                               bool accumulate_mode, float* diff_conc, bool accumulate_conc) = 0;
  // out[r] = || a[r,:] - b[r,:] ||_2 ; diff_a / diff_b may be null.
  virtual void EuclideanDistanceForward(const float* a, const float* b, float* out, int64_t rows,
                                        int64_t channels) = 0;
  virtual void EuclideanDistanceBackward(const float* a, const float* b, const float* out,
                                         const float* diff_out, float* diff_a, bool accumulate_a,
                                         float* diff_b, bool accumulate_b, int64_t rows,
                                         int64_t channels) = 0;
  // out[r] = mean_c max(low - big + margin, 0); diff_low / diff_big may be null.
  virtual void RampLossForward(const float* low, const float* big, float margin, float* out,
                               int64_t rows, int64_t channels) = 0;
  virtual void RampLossBackward(const float* low, const float* big, float margin,
                                const float* diff_out, float* diff_low, bool accumulate_low,
                                float* diff_big, bool accumulate_big, int64_t rows,
                                int64_t channels) = 0;
  // Constant 3^d Sobel filters, zero ('same') padding, channels-last: src (batch, spatial...,
  // c) -> dst (batch, spatial..., d * c), channel k*c + i = derivative along spatial axis k of
  // channel i (ELEKTRONN2's SobelizedLoss weights, applied as a cross-correlation).
  struct SobelDesc {
    int64_t batch = 1, channels = 1;
    std::vector<int64_t> spatial;  // 1 to 3 axes
  };
  virtual void SobelForward(const SobelDesc& d, const float* src, float* dst) = 0;
  virtual void SobelBackward(const SobelDesc& d, const float* diff_dst, float* diff_src,
                             bool accumulate) = 0;
  // out[r, c] = (labels[r] == c) for c < n_class.
  virtual void OneHot(const float* labels, float* out, int64_t rows, int64_t n_class) = 0;
  // threshold: out = (p > 0.5) elementwise; else out[r, g] = arg-max over group g of n_class.
  virtual void Classify(const float* probs, float* out, int64_t rows, int64_t channels,
                        int64_t n_class, bool threshold) = 0;
  // Errors of thresholded predictions (p > 0.5) against binary targets; targets < 0 (e.g. -1,
  // -666) are unlabelled.
  virtual void CountBinaryErrors(const float* probs, const float* target, int64_t n, int64_t* wrong,
                                 int64_t* labelled) = 0;
  // Transposed convolution (UpConv family, reference §2.8). The kernel is a ConvKernel whose
  // "src" is the deconvolution's input and "dst" its larger output: dst[o] with
  // o = i * stride + k (per axis) accumulates w[out, in, k] * src[i] (no kernel flip), so
  // out_spatial = (in - 1) * stride + kernel. Canonical weights are (out, in, k_0, ...).
  virtual absl::StatusOr<std::unique_ptr<ConvKernel>> CreateDeconv(const DeconvDesc& d) {
    (void)d;
    return absl::UnimplementedError(name() + " has no transposed convolution (CreateDeconv)");
  }

  // Waits until every call issued so far has finished and returns the first error any of them
  // hit (the CUDA backend's launches run asynchronously on its stream and its element-wise
  // functions return nothing). The trainer calls it at step boundaries; host-synchronous
  // backends have nothing to report.
  virtual absl::Status Synchronize() { return absl::OkStatus(); }

  // Optimiser updates over flat parameter buffers (reference §4).
  struct OptimiserStep {
    float lr = 0, mom = 0, wd = 0, beta2 = 0.999f, eps = 1e-5f;
    float wd_multiplier = 0;  // 0 if the parameter is not regularised
    int64_t t = 0;            // Adam's step count after increment
  };
  virtual void SgdUpdate(const OptimiserStep& s, const float* g, float* p, float* v, int64_t n) = 0;
  virtual void AdamUpdate(const OptimiserStep& s, const float* g, float* p, float* m, float* v,
                          int64_t n) = 0;
  virtual void AdaGradUpdate(const OptimiserStep& s, const float* g, float* p, float* h,
                             bool first_step, int64_t n) = 0;
  virtual void AdaDeltaUpdate(const OptimiserStep& s, const float* g, float* p, float* sq, float* d,
                              int64_t n) = 0;
};

// True while the calling thread is inside a third-party library call (oneDNN's primitive execute,
// which builds a small argument map per call). Lets tests attribute heap allocations.
bool InLibraryCall();

// The oneDNN CPU backend (threads: OpenMP's, set by OMP_NUM_THREADS).
std::unique_ptr<Backend> CreateCpuBackend();

// What a job asks of its backend: the device ("cpu" or "cuda:N"), for the CPU how many threads
// (0: OpenMP's default, i.e. OMP_NUM_THREADS), and for CUDA the numerics: TF32 tensor cores
// (off: full FP32, matching the CPU within parity tolerance), deterministic algorithms only, and
// a timed cuDNN algorithm search per shape instead of its heuristics.
struct BackendOptions {
  std::string device = "cpu";
  int threads = 0;
  bool allow_tf32 = false;
  bool deterministic = false;
  bool timed_algorithm_search = false;
};

// The one way the worker, tools and benchmarks get a backend. An unknown or unavailable
// device is INVALID_ARGUMENT / UNAVAILABLE naming it and what this build offers.
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const BackendOptions& options);

// The devices this build can create backends for on this host, e.g. {"cpu", "cuda:0"}: cuda:N
// only with the CUDA backend compiled in and N devices visible at run time.
std::vector<std::string> AvailableDevices();

}  // namespace elektronn::kernels
