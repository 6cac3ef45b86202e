// Naive references of the losses family's backend functions (plain loops, double sums), written
// from ELEKTRONN2's formulas (reference §2.13), independent of kernels/cpu/losses.cc.
#pragma once

#include <cstdint>
#include <vector>

namespace elektronn::testing::losses {

using Vec = std::vector<float>;

// MultinoulliNLL with every option. Empty vectors mean "absent".
struct NllExt {
  int64_t rows = 0, channels = 0, n_class = 0, batch = 1;
  bool sparse = true;
  Vec class_weights, example_weights, mask_labeled, mask_not_present;
  double weakness = 0;
};
struct NllExtResult {
  Vec loss;
  double n_total = 0;
};
NllExtResult NllExtForward(const NllExt& p, const Vec& probs, const Vec& target);
Vec NllExtBackward(const NllExt& p, const Vec& probs, const Vec& target, const Vec& diff_loss,
                   double n_total);
// The gradient with respect to the class weights (n_class values).
Vec NllExtClassWeightsBackward(const NllExt& p, const Vec& probs, const Vec& target,
                               const Vec& diff_loss, double n_total);

// SquaredLoss (squared = true) and AbsLoss; margin / scale_correction 0 = off.
struct Regression {
  int64_t rows = 0, channels = 0;
  bool squared = true;
  double margin = 0, scale_correction = 0;
};
Vec RegressionForward(const Regression& p, const Vec& pred, const Vec& target, int64_t* n_labelled);
Vec RegressionBackward(const Regression& p, const Vec& pred, const Vec& target,
                       const Vec& diff_loss);

Vec BinaryNllForward(bool label_entropy, const Vec& pred, const Vec& target, int64_t* n_labelled);
Vec BinaryNllBackward(const Vec& pred, const Vec& target, const Vec& diff_loss);

Vec GaussianNllForward(bool sig_is_log, const Vec& mu, const Vec& sig, const Vec& target);
// Gradients by central differences of the double-precision forward formula.
void GaussianNllBackward(bool sig_is_log, const Vec& mu, const Vec& sig, const Vec& target,
                         const Vec& diff_loss, Vec* diff_mu, Vec* diff_sig);
Vec BetaNllForward(const Vec& mode, const Vec& conc, const Vec& target);
void BetaNllBackward(const Vec& mode, const Vec& conc, const Vec& target, const Vec& diff_loss,
                     Vec* diff_mode, Vec* diff_conc);

Vec EuclideanForward(const Vec& a, const Vec& b, int64_t rows, int64_t channels);
void EuclideanBackward(const Vec& a, const Vec& b, const Vec& diff_out, int64_t rows,
                       int64_t channels, Vec* diff_a, Vec* diff_b);
Vec RampForward(const Vec& low, const Vec& big, double margin, int64_t rows, int64_t channels);
void RampBackward(const Vec& low, const Vec& big, double margin, const Vec& diff_out, int64_t rows,
                  int64_t channels, Vec* diff_low, Vec* diff_big);

// ELEKTRONN2's SobelizedLoss weights, built as its numpy code does: (f*ndim, f, 3, ...) in
// canonical (out, in, k...) order, then a 'same' zero-padded cross-correlation over
// channels-last data (batch, spatial..., f) -> (batch, spatial..., f*ndim).
Vec SobelWeights(int ndim, int64_t f);
Vec SobelForward(const Vec& src, int64_t batch, const std::vector<int64_t>& spatial, int64_t f);
// The adjoint: diff_src[j] = sum_i W[i, j] diff_dst[i] (explicit transpose of the operator).
Vec SobelBackward(const Vec& diff_dst, int64_t batch, const std::vector<int64_t>& spatial,
                  int64_t f);

Vec OneHot(const Vec& labels, int64_t n_class);
Vec Classify(const Vec& probs, int64_t rows, int64_t channels, int64_t n_class, bool threshold);
void CountBinaryErrors(const Vec& probs, const Vec& target, int64_t* wrong, int64_t* labelled);

}  // namespace elektronn::testing::losses
