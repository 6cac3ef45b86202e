// Naive reference kernels that every backend is compared against: plain loops, double sums.
//
// Tensors are host vectors in the layouts of kernels/backend.h: activations channels-last
// (N, spatial..., C), convolution weights canonical (out, in, k_0, ..., k_{d-1}), matrices
// row-major. Nothing here is fast or clever on purpose; each loop follows the definition.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/backend.h"

namespace elektronn::testing {

// Parameter gradients of a layer: weights (canonical layout) and bias.
struct WeightGrads {
  std::vector<float> w;
  std::vector<float> bias;
};

// The activation functions of kernels::Eltwise, in double precision.
double Activate(kernels::Eltwise e, double x);

// Convolution: cross-correlation (no kernel flip), stride 1, symmetric zero padding `d.pad`.
std::vector<int64_t> ConvOutSpatial(const kernels::ConvDesc& d);
int64_t ConvSrcSize(const kernels::ConvDesc& d);
int64_t ConvDstSize(const kernels::ConvDesc& d);
int64_t ConvWeightSize(const kernels::ConvDesc& d);
// dst = act(conv(src, w) + bias), act = d.fused_activation.
std::vector<float> ConvForward(const kernels::ConvDesc& d, const std::vector<float>& src,
                               const std::vector<float>& w, const std::vector<float>& bias);
// diff_src = d(conv)/d(src)^T diff_dst (the activation is not part of it).
std::vector<float> ConvBackwardData(const kernels::ConvDesc& d, const std::vector<float>& diff_dst,
                                    const std::vector<float>& w);
WeightGrads ConvBackwardWeights(const kernels::ConvDesc& d, const std::vector<float>& src,
                                const std::vector<float>& diff_dst);

// Pooling without padding; windows must fit (in - kernel) % stride == 0.
std::vector<int64_t> PoolOutSpatial(const kernels::PoolDesc& d);
int64_t PoolSrcSize(const kernels::PoolDesc& d);
int64_t PoolDstSize(const kernels::PoolDesc& d);
std::vector<float> PoolForward(const kernels::PoolDesc& d, const std::vector<float>& src);
// Max: each window's gradient goes to its first maximum in scan order (as oneDNN's
// strict '>' comparison does); use tie-free inputs. Average: spread evenly over the window.
std::vector<float> PoolBackward(const kernels::PoolDesc& d, const std::vector<float>& src,
                                const std::vector<float>& diff_dst);

// dst[m, n] = act(sum_k src[m, k] w[k, n] + bias[n]).
std::vector<float> MatmulForward(const kernels::MatmulDesc& d, const std::vector<float>& src,
                                 const std::vector<float>& w, const std::vector<float>& bias);
// diff_src[m, k] = sum_n diff_dst[m, n] w[k, n].
std::vector<float> MatmulBackwardData(const kernels::MatmulDesc& d,
                                      const std::vector<float>& diff_dst,
                                      const std::vector<float>& w);
// diff_w[k, n] = sum_m src[m, k] diff_dst[m, n]; diff_bias[n] = sum_m diff_dst[m, n].
WeightGrads MatmulBackwardWeights(const kernels::MatmulDesc& d, const std::vector<float>& src,
                                  const std::vector<float>& diff_dst);

// Softmax over each group of `n_class` consecutive channels of every row.
std::vector<float> SoftmaxForward(const std::vector<float>& src, int64_t rows, int64_t channels,
                                  int64_t n_class);
// diff_src = y * (diff_dst - sum_group(y * diff_dst)).
std::vector<float> SoftmaxBackward(const std::vector<float>& dst,
                                   const std::vector<float>& diff_dst, int64_t rows,
                                   int64_t channels, int64_t n_class);

// --- element-wise ---

// d act / dx at x, written from the definitions (not through the output as backends do).
double ActivateDerivative(kernels::Eltwise e, double x);
std::vector<float> EltwiseForward(kernels::Eltwise e, const std::vector<float>& src);
// diff_src = act'(src) * diff_dst.
std::vector<float> EltwiseBackward(kernels::Eltwise e, const std::vector<float>& src,
                                   const std::vector<float>& diff_dst);

// PReLU over channels-last rows: y = x > 0 ? x : slope[c] * x.
std::vector<float> PreluForward(const std::vector<float>& src, const std::vector<float>& slope,
                                int64_t rows, int64_t channels);
struct PreluGrads {
  std::vector<float> src;
  std::vector<float> slope;  // sum over rows of x * diff_dst where x <= 0
};
PreluGrads PreluBackward(const std::vector<float>& src, const std::vector<float>& slope,
                         const std::vector<float>& diff_dst, int64_t rows, int64_t channels);

// dst[r, c] + bias[c].
std::vector<float> AddBias(const std::vector<float>& dst, const std::vector<float>& bias,
                           int64_t rows, int64_t channels);
// diff_bias[c] = sum_r diff[r, c].
std::vector<float> BiasGradient(const std::vector<float>& diff, int64_t rows, int64_t channels);

// --- loss and metric ---

// A MultinoulliNLL problem as ELEKTRONN2 states it (reference §2.13). `class_weights` empty
// means all 1.
struct NllProblem {
  int64_t rows = 0, channels = 0, n_class = 0;
  bool sparse = true;
  std::vector<float> class_weights;
};
// The target as ELEKTRONN2 sees it after its sparse-to-one-hot conversion (T.eq(id, class)):
// (rows, channels), all zero in a group whose id is negative, >= n_class or not an integer.
std::vector<double> NllDenseTarget(const NllProblem& p, const std::vector<float>& target);
struct NllResult {
  std::vector<float> loss;  // one value per row
  double n_labelled = 0;    // ELEKTRONN2's target.sum()
};
// loss[r] = scale * sum_f -t * cw * log(p + 1e-5),
// scale = rows * channels / (n_labelled + 1e-5) / n_indep / n_class.
NllResult NllForward(const NllProblem& p, const std::vector<float>& probs,
                     const std::vector<float>& target);
// d(sum_r diff_loss[r] * loss[r]) / d probs, with scale fixed by the given n_labelled.
std::vector<float> NllBackward(const NllProblem& p, const std::vector<float>& probs,
                               const std::vector<float>& target,
                               const std::vector<float>& diff_loss, double n_labelled);

struct ErrorCount {
  int64_t wrong = 0, labelled = 0;
};
// Per row and independent group: the first arg-max of the probabilities against the label
// (sparse: an integer id in [0, n_class), others ignored; dense: the arg-max of a group with a
// non-zero entry, all-zero groups ignored).
ErrorCount CountErrors(const std::vector<float>& probs, const std::vector<float>& target,
                       int64_t rows, int64_t channels, int64_t n_class, bool sparse);

// --- arithmetic and copies ---

double Sum(const std::vector<float>& src);
// a * x + (accumulate ? prior : 0).
std::vector<float> Scale(const std::vector<float>& x, float a, const std::vector<float>& prior,
                         bool accumulate);
std::vector<float> Add(const std::vector<float>& a, const std::vector<float>& b);
// `prior` with the box of `src` written (or added) at box.dst_origin, stepping by the boxes'
// steps.
std::vector<float> CopyBox(const kernels::BoxCopy& box, const std::vector<float>& src,
                           const std::vector<float>& prior, bool accumulate);

// --- optimisers (reference §4, ELEKTRONN2's optimiser.py) ---

// A parameter and its optimiser state: SGD (v), Adam (m, s), AdaGrad (h), AdaDelta (s, d).
struct OptimiserState {
  std::vector<float> p, slot0, slot1;
};
// Weight decay `wd * m * p` joins the step direction (never the moments) for parameters with
// wd_multiplier m > 0; AdaGrad adds plain `wd * p` and divides it by sqrt(h) with g.
OptimiserState SgdStep(const kernels::Backend::OptimiserStep& s, const std::vector<float>& g,
                       OptimiserState st);
OptimiserState AdamStep(const kernels::Backend::OptimiserStep& s, const std::vector<float>& g,
                        OptimiserState st);
// `first_step`: ELEKTRONN2's initialiser pass adds g^2 to h once before the first update.
OptimiserState AdaGradStep(const kernels::Backend::OptimiserStep& s, const std::vector<float>& g,
                           bool first_step, OptimiserState st);
OptimiserState AdaDeltaStep(const kernels::Backend::OptimiserStep& s, const std::vector<float>& g,
                            OptimiserState st);

}  // namespace elektronn::testing
