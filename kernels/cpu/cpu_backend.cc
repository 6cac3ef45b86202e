// The CPU backend: oneDNN for convolution, pooling and matrix products; OpenMP loops for the
// element-wise, softmax, loss and optimiser kernels (memory-bound, simple, vectorised by the
// compiler).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_format.h"
#include "kernels/cpu/activation.h"
#include "kernels/cpu/batch_norm.h"  // batch_norm family
#include "kernels/cpu/deconv.h"      // UpConv family
#include "kernels/cpu/losses.h"      // losses family (issue 11)
#include "kernels/cpu/onednn_util.h"
#include "kernels/cpu/parallel.h"    // ParallelFor, kMinParallelIterations
#include "kernels/cpu/structural.h"  // structural family (issue 11)

namespace elektronn::kernels {

namespace cpu {

void ColumnSum(const float* x, int64_t rows, int64_t cols, float* out) {
  const int nt = omp_get_max_threads();
  thread_local std::vector<float> partial;  // grows on first use only
  if (partial.size() < static_cast<size_t>(nt * cols)) partial.resize(nt * cols);
  float* part = partial.data();
  std::fill(part, part + nt * cols, 0.f);
  auto add_rows = [&](float* local, int64_t r) {
    const float* row = x + r * cols;
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) local[c] += row[c];
  };
  if (rows > kMinParallelIterations) {  // not an `if` clause: see ParallelFor
#pragma omp parallel num_threads(nt)
    {
      float* local = part + omp_get_thread_num() * cols;
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; ++r) add_rows(local, r);
    }
  } else {
    for (int64_t r = 0; r < rows; ++r) add_rows(part, r);
  }
  for (int64_t c = 0; c < cols; ++c) {
    float s = 0.f;
    for (int t = 0; t < nt; ++t) s += part[t * cols + c];
    out[c] = s;
  }
}

namespace {

// SplitMix64: a counter-based hash, so dropout masks depend only on (seed, step, index).
inline uint64_t Mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
inline bool Keep(uint64_t seed, uint64_t step, int64_t i, float rate) {
  uint64_t h = Mix(seed ^ Mix(step ^ Mix(static_cast<uint64_t>(i))));
  return static_cast<float>((h >> 40) * (1.0 / 16777216.0)) >= rate;
}

// Derivative expressed through the output y (and x for abs).
inline float ActGrad(Eltwise e, float x, float y) {
  switch (e) {
    case Eltwise::kLinear:
      return 1.f;
    case Eltwise::kRelu:
      return y > 0.f ? 1.f : 0.f;
    case Eltwise::kTanh:
      return 1.f - y * y;
    case Eltwise::kSigmoid:
      return y * (1.f - y);
    case Eltwise::kAbs:
      return x > 0.f ? 1.f : (x < 0.f ? -1.f : 0.f);
    case Eltwise::kSoftplus:
      return -std::expm1(-y);  // sigmoid(x) = 1 - exp(-softplus(x))
    case Eltwise::kElu:
      return y > 0.f ? 1.f : y + 1.f;
    // Structural family (issue 11), through y as the fused paths pass no x.
    case Eltwise::kSelu:  // y <= 0: scale * alpha * exp(x) = y + scale * alpha
      return y > 0.f ? 1.0507009873554805f : y + 1.0507009873554805f * 1.6732632423543772f;
    case Eltwise::kConcentration:  // 7 * sigmoid(x), softplus(x) = (y - 2) / 7
      return -7.f * std::expm1(-(y - 2.f) / 7.f);
    case Eltwise::kRadius:  // 0.15 * 15 * exp(0.15 x) = 0.15 * (y - 3)
      return 0.15f * (y - 3.f);
  }
  return 1.f;
}

class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu-onednn"; }

  float* Allocate(int64_t n) override {
    size_t bytes = ((std::max<int64_t>(n, 1) * sizeof(float)) + 63) / 64 * 64;
    return static_cast<float*>(std::aligned_alloc(64, bytes));
  }
  void Free(float* p) override { std::free(p); }
  void Fill(float* dst, float v, int64_t n) override {
    ParallelForSimd(n, [&](int64_t i) { dst[i] = v; });
  }
  void Copy(const float* src, float* dst, int64_t n) override {
    if (n > 0) std::memcpy(dst, src, n * sizeof(float));
  }
  void Upload(const float* host, float* dst, int64_t n) override { Copy(host, dst, n); }
  void Download(const float* src, float* host, int64_t n) override { Copy(src, host, n); }

  absl::StatusOr<std::unique_ptr<ConvKernel>> CreateConv(const ConvDesc& d) override {
    return cpu::CreateDnnlConv(&ctx_, d);
  }
  absl::StatusOr<std::unique_ptr<PoolKernel>> CreatePool(const PoolDesc& d) override {
    return cpu::CreateDnnlPool(&ctx_, d);
  }
  absl::StatusOr<std::unique_ptr<MatmulKernel>> CreateMatmul(const MatmulDesc& d) override {
    return cpu::CreateDnnlMatmul(&ctx_, d);
  }
  // UpConv family: transposed convolution.
  absl::StatusOr<std::unique_ptr<ConvKernel>> CreateDeconv(const DeconvDesc& d) override {
    return cpu::CreateDnnlDeconv(&ctx_, d);
  }

  void EltwiseForward(Eltwise e, const float* src, float* dst, int64_t n) override {
    ParallelForSimd(n, [&](int64_t i) { dst[i] = Act(e, src[i]); });
  }
  void EltwiseBackward(Eltwise e, const float* src, const float* dst, const float* dd, float* ds,
                       int64_t n, bool acc) override {
    ParallelForSimd(n, [&](int64_t i) {
      float g = dd[i] * ActGrad(e, src ? src[i] : 0.f, dst ? dst[i] : 0.f);
      ds[i] = acc ? ds[i] + g : g;
    });
  }
  void PreluForward(const float* src, const float* slope, float* dst, int64_t rows,
                    int64_t ch) override {
    ParallelFor(rows, [&](int64_t r) {
      for (int64_t c = 0; c < ch; ++c) {
        float x = src[r * ch + c];
        dst[r * ch + c] = x > 0.f ? x : slope[c] * x;
      }
    });
  }
  void PreluBackward(const float* src, const float* slope, const float* dd, float* ds,
                     float* dslope, int64_t rows, int64_t ch, bool acc) override {
    for (int64_t c = 0; c < ch; ++c) dslope[c] = 0.f;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < ch; ++c) {
        int64_t i = r * ch + c;
        float x = src[i];
        float g = x > 0.f ? dd[i] : slope[c] * dd[i];
        if (x <= 0.f) dslope[c] += x * dd[i];
        ds[i] = acc ? ds[i] + g : g;
      }
  }
  void AddBias(float* dst, const float* bias, int64_t rows, int64_t ch) override {
    ParallelFor(rows, [&](int64_t r) {
#pragma omp simd
      for (int64_t c = 0; c < ch; ++c) dst[r * ch + c] += bias[c];
    });
  }
  void BiasGradient(const float* diff, float* db, int64_t rows, int64_t ch) override {
    cpu::ColumnSum(diff, rows, ch, db);
  }

  void SoftmaxForward(const float* src, float* dst, int64_t rows, int64_t ch,
                      int64_t n_class) override {
    const int64_t groups = rows * (ch / n_class);
    ParallelFor(groups, [&](int64_t g) {
      const float* x = src + g * n_class;
      float* y = dst + g * n_class;
      float mx = x[0];
      for (int64_t c = 1; c < n_class; ++c) mx = std::max(mx, x[c]);
      float s = 0.f;
      for (int64_t c = 0; c < n_class; ++c) s += (y[c] = std::exp(x[c] - mx));
      float inv = 1.f / s;
      for (int64_t c = 0; c < n_class; ++c) y[c] *= inv;
    });
  }
  void SoftmaxBackward(const float* y, const float* dy, float* dx, int64_t rows, int64_t ch,
                       int64_t n_class, bool acc) override {
    const int64_t groups = rows * (ch / n_class);
    ParallelFor(groups, [&](int64_t g) {
      const int64_t o = g * n_class;
      float dot = 0.f;
      for (int64_t c = 0; c < n_class; ++c) dot += y[o + c] * dy[o + c];
      for (int64_t c = 0; c < n_class; ++c) {
        float v = y[o + c] * (dy[o + c] - dot);
        dx[o + c] = acc ? dx[o + c] + v : v;
      }
    });
  }

  double NllForward(const NllDesc& d, const float* p, const float* t, float* loss) override {
    return cpu::NllForward(d, p, t, loss);
  }
  void NllBackward(const NllDesc& d, const float* p, const float* t, const float* dl,
                   double n_total, float* dp, bool acc) override {
    cpu::NllBackward(d, p, t, dl, n_total, dp, acc);
  }
  void NllClassWeightsBackward(const NllDesc& d, const float* p, const float* t, const float* dl,
                               double n_total, float* dcw, bool acc) override {
    cpu::NllClassWeightsBackward(d, p, t, dl, n_total, dcw, acc);
  }
  // losses family (issue 11): thin calls into kernels/cpu/losses.cc.
  int64_t RegressionLossForward(const RegressionLossDesc& d, const float* p, const float* t,
                                float* loss) override {
    return cpu::RegressionLossForward(d, p, t, loss);
  }
  void RegressionLossBackward(const RegressionLossDesc& d, const float* p, const float* t,
                              const float* dl, int64_t n_lab, float* dp, bool acc) override {
    cpu::RegressionLossBackward(d, p, t, dl, n_lab, dp, acc);
  }
  int64_t BinaryNllForward(int64_t n, bool ent, const float* p, const float* t,
                           float* loss) override {
    return cpu::BinaryNllForward(n, ent, p, t, loss);
  }
  void BinaryNllBackward(int64_t n, const float* p, const float* t, const float* dl, int64_t n_lab,
                         float* dp, bool acc) override {
    cpu::BinaryNllBackward(n, p, t, dl, n_lab, dp, acc);
  }
  void GaussianNllForward(int64_t n, SampleAxis s, bool lg, const float* mu, const float* sig,
                          const float* t, float* loss) override {
    cpu::GaussianNllForward(n, s, lg, mu, sig, t, loss);
  }
  void GaussianNllBackward(int64_t n, SampleAxis s, bool lg, const float* mu, const float* sig,
                           const float* t, const float* dl, float* dmu, bool amu, float* dsig,
                           bool asig) override {
    cpu::GaussianNllBackward(n, s, lg, mu, sig, t, dl, dmu, amu, dsig, asig);
  }
  void BetaNllForward(int64_t n, SampleAxis s, const float* m, const float* c, const float* t,
                      float* loss) override {
    cpu::BetaNllForward(n, s, m, c, t, loss);
  }
  void BetaNllBackward(int64_t n, SampleAxis s, const float* m, const float* c, const float* t,
                       const float* dl, float* dm, bool am, float* dc, bool ac) override {
    cpu::BetaNllBackward(n, s, m, c, t, dl, dm, am, dc, ac);
  }
  void EuclideanDistanceForward(const float* a, const float* b, float* out, int64_t rows,
                                int64_t ch) override {
    cpu::EuclideanDistanceForward(a, b, out, rows, ch);
  }
  void EuclideanDistanceBackward(const float* a, const float* b, const float* out,
                                 const float* dout, float* da, bool aa, float* db, bool ab,
                                 int64_t rows, int64_t ch) override {
    cpu::EuclideanDistanceBackward(a, b, out, dout, da, aa, db, ab, rows, ch);
  }
  void RampLossForward(const float* lo, const float* bg, float m, float* out, int64_t rows,
                       int64_t ch) override {
    cpu::RampLossForward(lo, bg, m, out, rows, ch);
  }
  void RampLossBackward(const float* lo, const float* bg, float m, const float* dout, float* dlo,
                        bool alo, float* dbg, bool abg, int64_t rows, int64_t ch) override {
    cpu::RampLossBackward(lo, bg, m, dout, dlo, alo, dbg, abg, rows, ch);
  }
  void SobelForward(const SobelDesc& d, const float* src, float* dst) override {
    cpu::SobelForward(d, src, dst);
  }
  void SobelBackward(const SobelDesc& d, const float* dd, float* ds, bool acc) override {
    cpu::SobelBackward(d, dd, ds, acc);
  }
  void OneHot(const float* labels, float* out, int64_t rows, int64_t n_class) override {
    cpu::OneHot(labels, out, rows, n_class);
  }
  void Classify(const float* p, float* out, int64_t rows, int64_t ch, int64_t n_class,
                bool threshold) override {
    cpu::Classify(p, out, rows, ch, n_class, threshold);
  }
  void CountBinaryErrors(const float* p, const float* t, int64_t n, int64_t* wrong,
                         int64_t* labelled) override {
    cpu::CountBinaryErrors(p, t, n, wrong, labelled);
  }
  void CountErrors(const float* p, const float* t, int64_t rows, int64_t ch, int64_t n_class,
                   bool sparse, int64_t* wrong, int64_t* labelled) override {
    const int64_t n_indep = ch / n_class;
    int64_t w = 0, l = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t gi = 0; gi < n_indep; ++gi) {
        const float* g = p + r * ch + gi * n_class;
        int64_t am = std::max_element(g, g + n_class) - g;
        int64_t truth = -1;
        if (sparse) {
          float id = t[r * n_indep + gi];
          if (id >= 0.f && id < n_class) truth = static_cast<int64_t>(id);
        } else {
          const float* tg = t + r * ch + gi * n_class;
          if (std::any_of(tg, tg + n_class, [](float v) { return v != 0.f; }))
            truth = std::max_element(tg, tg + n_class) - tg;
        }
        if (truth < 0) continue;
        ++l;
        w += (am != truth);
      }
    *wrong = w;
    *labelled = l;
  }

  double Sum(const float* src, int64_t n) override {
    double s = 0;
    if (n > kMinParallelIterations) {  // not an `if` clause: see ParallelFor
#pragma omp parallel for reduction(+ : s) schedule(static)
      for (int64_t i = 0; i < n; ++i) s += src[i];
    } else {
      for (int64_t i = 0; i < n; ++i) s += src[i];
    }
    return s;
  }
  void Scale(const float* x, float a, float* dst, int64_t n, bool acc) override {
    ParallelForSimd(n, [&](int64_t i) { dst[i] = acc ? dst[i] + a * x[i] : a * x[i]; });
  }
  void Add(const float* a, const float* b, float* dst, int64_t n) override {
    ParallelForSimd(n, [&](int64_t i) { dst[i] = a[i] + b[i]; });
  }
  void CopyBox(const BoxCopy& box, const float* src, float* dst, bool acc) override {
    const size_t rank = box.extent.size();
    auto step = [](const std::vector<int64_t>& s, size_t a) { return s.empty() ? 1 : s[a]; };
    // Rows of the innermost axis are contiguous unless a step says otherwise; iterate over all
    // outer index tuples.
    int64_t outer = 1;
    for (size_t i = 0; i + 1 < rank; ++i) outer *= box.extent[i];
    const int64_t inner = box.extent[rank - 1];
    const int64_t s_in = step(box.src_step, rank - 1), d_in = step(box.dst_step, rank - 1);
    ParallelFor(outer, [&](int64_t o) {
      int64_t rem = o, so = 0, dof = 0, sstride = 1, dstride = 1;
      for (int64_t a = static_cast<int64_t>(rank) - 1; a >= 0; --a) {
        int64_t idx = 0;
        if (a < static_cast<int64_t>(rank) - 1) {
          idx = rem % box.extent[a];
          rem /= box.extent[a];
        }
        so += (idx * step(box.src_step, a) + box.src_origin[a]) * sstride;
        dof += (idx * step(box.dst_step, a) + box.dst_origin[a]) * dstride;
        sstride *= box.src_shape[a];
        dstride *= box.dst_shape[a];
      }
      const float* s = src + so;
      float* d = dst + dof;
      if (s_in != 1 || d_in != 1) {
        for (int64_t i = 0; i < inner; ++i) {
          d[i * d_in] = acc ? d[i * d_in] + s[i * s_in] : s[i * s_in];
        }
      } else if (acc) {
        for (int64_t i = 0; i < inner; ++i) d[i] += s[i];
      } else {
        std::memcpy(d, s, inner * sizeof(float));
      }
    });
  }
  void Dropout(const float* src, float* dst, int64_t n, float rate, uint64_t seed,
               uint64_t step) override {
    const float scale = 1.f / (1.f - rate);
    ParallelFor(n, [&](int64_t i) { dst[i] = Keep(seed, step, i, rate) ? src[i] * scale : 0.f; });
  }
  void DropoutBackward(const float* dd, float* ds, int64_t n, float rate, uint64_t seed,
                       uint64_t step, bool acc) override {
    const float scale = 1.f / (1.f - rate);
    ParallelFor(n, [&](int64_t i) {
      float g = Keep(seed, step, i, rate) ? dd[i] * scale : 0.f;
      ds[i] = acc ? ds[i] + g : g;
    });
  }

  // Structural family (issue 11): thin calls into kernels/cpu/structural.cc.
  void Multiply(const float* a, const float* b, float* dst, int64_t n, bool acc) override {
    ParallelForSimd(n, [&](int64_t i) { dst[i] = acc ? dst[i] + a[i] * b[i] : a[i] * b[i]; });
  }
  void Transpose(const std::vector<int64_t>& dims, const std::vector<int>& perm, const float* src,
                 float* dst, bool acc) override {
    cpu::Transpose(dims, perm, src, dst, acc);
  }
  void ScalarFunctionForward(ScalarFunction f, float a, float b, const float* src, float* dst,
                             int64_t n) override {
    cpu::ScalarFunctionForward(f, a, b, src, dst, n);
  }
  void ScalarFunctionBackward(ScalarFunction f, float a, float b, const float* src, const float* dd,
                              float* ds, int64_t n, bool acc) override {
    cpu::ScalarFunctionBackward(f, a, b, src, dd, ds, n, acc);
  }
  void MaxoutForward(const float* src, float* dst, int64_t rows, int64_t ch, int64_t k) override {
    cpu::MaxoutForward(src, dst, rows, ch, k);
  }
  void MaxoutBackward(const float* src, const float* dd, float* ds, int64_t rows, int64_t ch,
                      int64_t k, bool acc) override {
    cpu::MaxoutBackward(src, dd, ds, rows, ch, k, acc);
  }
  void LrnForward(const LrnDesc& d, const float* src, float* dst, float* ws) override {
    cpu::LrnForward(d, src, dst, ws);
  }
  void LrnBackward(const LrnDesc& d, const float* src, const float* dd, float* ds, float* ws,
                   bool acc) override {
    cpu::LrnBackward(d, src, dd, ds, ws, acc);
  }
  void GaussianSample(const float* mu, const float* ls, float* dst, int64_t outer, int64_t samples,
                      int64_t inner, uint64_t seed, uint64_t step) override {
    cpu::GaussianSample(mu, ls, dst, outer, samples, inner, seed, step);
  }
  void GaussianSampleBackward(const float* mu, const float* dst, const float* dd, float* dmu,
                              bool acc_mu, float* dls, bool acc_ls, int64_t outer, int64_t samples,
                              int64_t inner) override {
    cpu::GaussianSampleBackward(mu, dst, dd, dmu, acc_mu, dls, acc_ls, outer, samples, inner);
  }
  void GaussianPriorForward(const float* mu, const float* ls, float* dst, int64_t n) override {
    ParallelForSimd(n, [&](int64_t i) {
      dst[i] = 0.5f * (mu[i] * mu[i] + std::exp(2.f * ls[i]) - 1.f - 2.f * ls[i]);
    });
  }
  void GaussianPriorBackward(const float* mu, const float* ls, const float* dd, float* dmu,
                             bool acc_mu, float* dls, bool acc_ls, int64_t n) override {
    if (dmu) {
      ParallelForSimd(n, [&](int64_t i) {
        const float g = dd[i] * mu[i];
        dmu[i] = acc_mu ? dmu[i] + g : g;
      });
    }
    if (dls) {
      ParallelForSimd(n, [&](int64_t i) {
        const float g = dd[i] * (std::exp(2.f * ls[i]) - 1.f);
        dls[i] = acc_ls ? dls[i] + g : g;
      });
    }
  }

  // p <- p - lr * (direction + wd*m*p), reference §4.
  // Batch normalisation (batch_norm family): kernels/cpu/batch_norm.cc.
  void BatchNormStatistics(const float* src, float* mean, float* std, int64_t rows, int64_t ch,
                           float eps) override {
    cpu::BatchNormStatistics(src, mean, std, rows, ch, eps);
  }
  void BatchNormForward(const float* src, const float* mean, const float* std, const float* gamma,
                        const float* beta, float* dst, int64_t rows, int64_t ch,
                        Eltwise act) override {
    cpu::BatchNormForward(src, mean, std, gamma, beta, dst, rows, ch, act);
  }
  void BatchNormFade(const float* mean, const float* std, const float* gamma, float rate, float* fm,
                     float* fs, float* fg, int64_t ch) override {
    cpu::BatchNormFade(mean, std, gamma, rate, fm, fs, fg, ch);
  }
  void BatchNormBackward(const float* src, const float* mean, const float* std, const float* gamma,
                         const float* dd, float* ds, float* dgamma, float* dbeta, int64_t rows,
                         int64_t ch, float eps, bool batch_statistics, float rate,
                         bool acc) override {
    cpu::BatchNormBackward(src, mean, std, gamma, dd, ds, dgamma, dbeta, rows, ch, eps,
                           batch_statistics, rate, acc);
  }
  void BatchNormUpdateRunning(const float* bm, const float* bs, float* rm, float* rs, int64_t ch,
                              float decay) override {
    cpu::BatchNormUpdateRunning(bm, bs, rm, rs, ch, decay);
  }

  void SgdUpdate(const OptimiserStep& s, const float* g, float* p, float* v, int64_t n) override {
    const float wdm = s.wd * s.wd_multiplier;
    ParallelForSimd(n, [&](int64_t i) {
      v[i] = g[i] + s.mom * v[i];
      p[i] -= s.lr * (v[i] + wdm * p[i]);
    });
  }
  void AdamUpdate(const OptimiserStep& s, const float* g, float* p, float* m, float* v,
                  int64_t n) override {
    const float b1 = s.mom, b2 = s.beta2, wdm = s.wd * s.wd_multiplier;
    const float corr = static_cast<float>(std::sqrt(1.0 - std::pow(static_cast<double>(b2), s.t)) /
                                          (1.0 - std::pow(static_cast<double>(b1), s.t)));
    ParallelForSimd(n, [&](int64_t i) {
      m[i] = b1 * m[i] + (1.f - b1) * g[i];
      v[i] = b2 * v[i] + (1.f - b2) * g[i] * g[i];
      float dir = corr * m[i] / std::sqrt(v[i] + s.eps);
      p[i] -= s.lr * (dir + wdm * p[i]);
    });
  }
  void AdaGradUpdate(const OptimiserStep& s, const float* g, float* p, float* h, bool first,
                     int64_t n) override {
    // ELEKTRONN2 accumulates g^2 once more before the first step; no epsilon; wd unscaled by
    // the regularisation multiplier and divided by sqrt(h) together with g.
    const float wd = s.wd_multiplier > 0.f ? s.wd : 0.f;
    ParallelForSimd(n, [&](int64_t i) {
      if (first) h[i] += g[i] * g[i];
      h[i] += g[i] * g[i];
      p[i] -= s.lr / std::sqrt(h[i]) * (g[i] + wd * p[i]);
    });
  }
  void AdaDeltaUpdate(const OptimiserStep& s, const float* g, float* p, float* sq, float* d,
                      int64_t n) override {
    const float rho = s.mom, wdm = s.wd * s.wd_multiplier;
    ParallelForSimd(n, [&](int64_t i) {
      float s_new = rho * sq[i] + (1.f - rho) * g[i] * g[i];
      float dir = g[i] * std::sqrt(d[i] + s.eps) / std::sqrt(sq[i] + s.eps);  // old s (QUIRK kept)
      d[i] = rho * d[i] + (1.f - rho) * dir * dir;
      sq[i] = s_new;
      p[i] -= s.lr * (dir + wdm * p[i]);
    });
  }

 private:
  cpu::DnnlContext ctx_;
};

}  // namespace
}  // namespace cpu

std::unique_ptr<Backend> CreateCpuBackend() { return std::make_unique<cpu::CpuBackend>(); }

}  // namespace elektronn::kernels
