// CPU kernels of the losses family (reference §2.13): plain OpenMP loops behind the Backend's
// loss, Sobel, one-hot and classification functions (CpuBackend calls these).
#pragma once

#include <cstdint>

#include "kernels/backend.h"

namespace elektronn::kernels::cpu {

// ELEKTRONN2 marks unlabelled regression targets with -666 (T.isclose(target, -666)).
bool IsIgnoredTarget(float t);

double NllForward(const Backend::NllDesc& d, const float* p, const float* t, float* loss);
void NllBackward(const Backend::NllDesc& d, const float* p, const float* t, const float* dl,
                 double n_total, float* dp, bool acc);
void NllClassWeightsBackward(const Backend::NllDesc& d, const float* p, const float* t,
                             const float* dl, double n_total, float* dcw, bool acc);

int64_t RegressionLossForward(const Backend::RegressionLossDesc& d, const float* p, const float* t,
                              float* loss);
void RegressionLossBackward(const Backend::RegressionLossDesc& d, const float* p, const float* t,
                            const float* dl, int64_t n_labelled, float* dp, bool acc);
int64_t BinaryNllForward(int64_t n, bool label_entropy, const float* p, const float* t,
                         float* loss);
void BinaryNllBackward(int64_t n, const float* p, const float* t, const float* dl,
                       int64_t n_labelled, float* dp, bool acc);
void GaussianNllForward(int64_t n, Backend::SampleAxis s, bool sig_is_log, const float* mu,
                        const float* sig, const float* t, float* loss);
void GaussianNllBackward(int64_t n, Backend::SampleAxis s, bool sig_is_log, const float* mu,
                         const float* sig, const float* t, const float* dl, float* dmu, bool acc_mu,
                         float* dsig, bool acc_sig);
void BetaNllForward(int64_t n, Backend::SampleAxis s, const float* mode, const float* conc,
                    const float* t, float* loss);
void BetaNllBackward(int64_t n, Backend::SampleAxis s, const float* mode, const float* conc,
                     const float* t, const float* dl, float* dmode, bool acc_mode, float* dconc,
                     bool acc_conc);
void EuclideanDistanceForward(const float* a, const float* b, float* out, int64_t rows, int64_t ch);
void EuclideanDistanceBackward(const float* a, const float* b, const float* out, const float* dout,
                               float* da, bool acc_a, float* db, bool acc_b, int64_t rows,
                               int64_t ch);
void RampLossForward(const float* low, const float* big, float margin, float* out, int64_t rows,
                     int64_t ch);
void RampLossBackward(const float* low, const float* big, float margin, const float* dout,
                      float* dlow, bool acc_low, float* dbig, bool acc_big, int64_t rows,
                      int64_t ch);
void SobelForward(const Backend::SobelDesc& d, const float* src, float* dst);
void SobelBackward(const Backend::SobelDesc& d, const float* ddst, float* dsrc, bool acc);
void OneHot(const float* labels, float* out, int64_t rows, int64_t n_class);
void Classify(const float* p, float* out, int64_t rows, int64_t ch, int64_t n_class,
              bool threshold);
void CountBinaryErrors(const float* p, const float* t, int64_t n, int64_t* wrong,
                       int64_t* labelled);

// The 3^ndim Sobel weight of the derivative along axis `k` at offsets `o` (each in {0,1,2}),
// as ELEKTRONN2's SobelizedLoss builds it: [1, 0, -1] along k, [0.3, 0.4, 0.3] along the others.
float SobelWeight(int ndim, int k, const int* o);

}  // namespace elektronn::kernels::cpu
