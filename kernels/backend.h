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

enum class Eltwise { kLinear, kRelu, kTanh, kSigmoid, kAbs, kSoftplus, kElu };

// True when act(max(a, b)) == max(act(a), act(b)), so the activation commutes with max-pooling
// and can be fused into the convolution that precedes the pool.
bool IsMonotone(Eltwise e);
const char* EltwiseName(Eltwise e);

struct ConvDesc {
  int64_t batch = 1;
  int64_t in_channels = 1;
  int64_t out_channels = 1;
  std::vector<int64_t> in_spatial;              // 1 to 3 axes
  std::vector<int64_t> kernel;                  // same rank as in_spatial
  std::vector<int64_t> pad;                     // symmetric zero padding per axis
  Eltwise fused_activation = Eltwise::kLinear;  // dst = act(conv(src) + bias)
  bool need_backward_data = true;               // false for a network's first layer
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
};

enum class PoolMode { kMax, kAverage };

struct PoolDesc {
  int64_t batch = 1;
  int64_t channels = 1;
  std::vector<int64_t> in_spatial;
  std::vector<int64_t> kernel;
  std::vector<int64_t> stride;
  PoolMode mode = PoolMode::kMax;
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
};

class MatmulKernel {
 public:
  virtual ~MatmulKernel() = default;
  virtual absl::Status Forward(const float* src, const float* w, const float* bias, float* dst) = 0;
  virtual absl::Status BackwardData(const float* diff_dst, const float* w, float* diff_src,
                                    bool accumulate) = 0;
  virtual absl::Status BackwardWeights(const float* src, const float* diff_dst, float* diff_w,
                                       float* diff_b) = 0;
};

// A strided box inside a channels-last tensor, used by Crop and Concat and, with steps, by
// max-fragment-pooling and FragmentsToDense: element `k` of `extent` (N, spatial..., C) is
// copied from `src_origin + k * src_step` of a tensor shaped `src_shape` to
// `dst_origin + k * dst_step` of a tensor shaped `dst_shape`. Empty steps mean 1 on every axis.
struct BoxCopy {
  std::vector<int64_t> src_shape, dst_shape, src_origin, dst_origin, extent;
  std::vector<int64_t> src_step = {}, dst_step = {};
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
  };
  virtual int64_t NllForward(const NllDesc& d, const float* probs, const float* target,
                             float* loss) = 0;
  virtual void NllBackward(const NllDesc& d, const float* probs, const float* target,
                           const float* diff_loss, int64_t n_labelled, float* diff_probs,
                           bool accumulate) = 0;
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

  // Transposed convolution (UpConv family, reference §2.8). The kernel is a ConvKernel whose
  // "src" is the deconvolution's input and "dst" its larger output: dst[o] with
  // o = i * stride + k (per axis) accumulates w[out, in, k] * src[i] (no kernel flip), so
  // out_spatial = (in - 1) * stride + kernel. Canonical weights are (out, in, k_0, ...).
  virtual absl::StatusOr<std::unique_ptr<ConvKernel>> CreateDeconv(const DeconvDesc& d) {
    (void)d;
    return absl::UnimplementedError(name() + " has no transposed convolution (CreateDeconv)");
  }

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

// What a job asks of its backend: the device ("cpu", or "cuda:N" once the CUDA backend exists)
// and, for the CPU, how many threads (0: OpenMP's default, i.e. OMP_NUM_THREADS).
struct BackendOptions {
  std::string device = "cpu";
  int threads = 0;
};

// The one way the worker, tools and benchmarks get a backend. An unknown or unavailable
// device is INVALID_ARGUMENT / UNAVAILABLE naming it and what this build offers.
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const BackendOptions& options);

// The devices this build can create backends for, e.g. {"cpu"}.
std::vector<std::string> AvailableDevices();

}  // namespace elektronn::kernels
