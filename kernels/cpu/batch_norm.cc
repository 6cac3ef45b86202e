// Batch normalisation on the CPU: OpenMP over rows, per-thread double partial sums per channel
// (grown once, so steady-state calls do not allocate), two passes for the statistics (mean, then
// the centred second moment) to keep the variance accurate for large offsets.
#include "kernels/cpu/batch_norm.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/activation.h"

namespace elektronn::kernels::cpu {
namespace {

// Below this many rows one thread does the work (see ParallelFor in cpu_backend.cc).
constexpr int64_t kMinParallelRows = 4096;

// Per-channel sums over rows of f(r, c, acc) into `width` doubles per channel: `body(row,
// local)` adds row `row` into `local` (width * channels doubles); the result lands in `out`.
template <typename Body>
void ReduceRows(int64_t rows, int64_t channels, int width, double* out, const Body& body) {
  const int64_t k = channels * width;
  thread_local std::vector<double> partial;  // grows on first use only
  const int nt = rows > kMinParallelRows ? omp_get_max_threads() : 1;
  if (partial.size() < static_cast<size_t>(nt * k)) partial.resize(nt * k);
  double* part = partial.data();
  std::fill(part, part + nt * k, 0.0);
  if (nt > 1) {
#pragma omp parallel num_threads(nt)
    {
      double* local = part + omp_get_thread_num() * k;
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; ++r) body(r, local);
    }
  } else {
    for (int64_t r = 0; r < rows; ++r) body(r, part);
  }
  for (int64_t i = 0; i < k; ++i) {
    double s = 0;
    for (int t = 0; t < nt; ++t) s += part[t * k + i];
    out[i] = s;
  }
}

template <typename Body>
void ForRows(int64_t rows, const Body& body) {
  if (rows > kMinParallelRows) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) body(r);
  } else {
    for (int64_t r = 0; r < rows; ++r) body(r);
  }
}

// Scratch for per-channel sums, grown once.
double* Sums(int64_t n) {
  thread_local std::vector<double> sums;
  if (sums.size() < static_cast<size_t>(n)) sums.resize(n);
  return sums.data();
}

}  // namespace

void BatchNormStatistics(const float* src, float* mean, float* std, int64_t rows, int64_t channels,
                         float eps) {
  double* s = Sums(2 * channels);
  double* m = s;
  double* v = s + channels;
  ReduceRows(rows, channels, 1, m, [&](int64_t r, double* local) {
    const float* row = src + r * channels;
    for (int64_t c = 0; c < channels; ++c) local[c] += row[c];
  });
  for (int64_t c = 0; c < channels; ++c) m[c] /= static_cast<double>(std::max<int64_t>(rows, 1));
  ReduceRows(rows, channels, 1, v, [&](int64_t r, double* local) {
    const float* row = src + r * channels;
    for (int64_t c = 0; c < channels; ++c) {
      const double d = row[c] - m[c];
      local[c] += d * d;
    }
  });
  for (int64_t c = 0; c < channels; ++c) {
    mean[c] = static_cast<float>(m[c]);
    std[c] = static_cast<float>(std::sqrt(v[c] / std::max<int64_t>(rows, 1)) + eps);
  }
}

void BatchNormForward(const float* src, const float* mean, const float* std, const float* gamma,
                      const float* beta, float* dst, int64_t rows, int64_t channels, Eltwise act) {
  ForRows(rows, [&](int64_t r) {
    const float* x = src + r * channels;
    float* y = dst + r * channels;
    for (int64_t c = 0; c < channels; ++c) {
      y[c] = Act(act, gamma[c] / std[c] * (x[c] - mean[c]) + beta[c]);
    }
  });
}

void BatchNormFade(const float* mean, const float* std, const float* gamma, float rate,
                   float* faded_mean, float* faded_std, float* faded_gamma, int64_t channels) {
  for (int64_t c = 0; c < channels; ++c) {
    const float m = mean[c], s = std[c], g = gamma[c];  // read first: outputs may be inputs
    faded_mean[c] = rate * m;
    faded_std[c] = rate * s + (1.f - rate);
    faded_gamma[c] = rate * g;
  }
}

void BatchNormBackward(const float* src, const float* mean, const float* std, const float* gamma,
                       const float* diff_dst, float* diff_src, float* diff_gamma, float* diff_beta,
                       int64_t rows, int64_t channels, float eps, bool batch_statistics, float rate,
                       bool accumulate) {
  // sums[0..C): sum g; sums[C..2C): sum g * (x - mean), around the unfaded batch mean.
  double* sums = Sums(2 * channels);
  ReduceRows(rows, channels, 2, sums, [&](int64_t r, double* local) {
    const float* x = src + r * channels;
    const float* g = diff_dst + r * channels;
    for (int64_t c = 0; c < channels; ++c) {
      local[c] += g[c];
      local[channels + c] += static_cast<double>(g[c]) * (x[c] - mean[c]);
    }
  });
  const double n = static_cast<double>(std::max<int64_t>(rows, 1));
  // dx = a * g + b * (x - mean) + k per channel, computed in double and applied in float.
  thread_local std::vector<float> coef;
  if (coef.size() < static_cast<size_t>(3 * channels)) coef.resize(3 * channels);
  float* a = coef.data();
  float* b = a + channels;
  float* k = b + channels;
  for (int64_t c = 0; c < channels; ++c) {
    const double sg = sums[c], sgx = sums[channels + c];
    diff_beta[c] = static_cast<float>(sg);
    if (!batch_statistics) {
      const double s = std[c];
      diff_gamma[c] = static_cast<float>(sgx / s);
      a[c] = static_cast<float>(gamma[c] / s);
      b[c] = 0.f;
      k[c] = 0.f;
      continue;
    }
    // The forward normalised with the fade of the statistics (BatchNormFade, the same float
    // expressions): m' = r m, s' = r s + (1 - r), gamma' = r gamma, where s = sigma + eps and
    // sigma = sqrt(mean((x - m)^2)). Then d m'/d x_i = r / n, d s'/d x_i = r (x_i - m) / (n
    // sigma) (the mean's own derivative cancels in sigma's), and sum g (x - m') = sgx +
    // (m - m') sg. With r = 1 every term below is 'train''s, bit for bit.
    const double r = rate;
    const float faded_mean = rate * mean[c];
    const double s = rate * std[c] + (1.f - rate);
    const double gs = static_cast<double>(rate * gamma[c]) / s;
    const double sgx_faded = sgx + (mean[c] - faded_mean) * sg;
    diff_gamma[c] = static_cast<float>(r * sgx_faded / s);
    a[c] = static_cast<float>(gs);
    const double sigma = static_cast<double>(std[c]) - eps;
    b[c] = sigma > 0 ? static_cast<float>(-gs * r * sgx_faded / (s * n * sigma)) : 0.f;
    k[c] = static_cast<float>(-gs * r * sg / n);
  }
  ForRows(rows, [&](int64_t r) {
    const float* x = src + r * channels;
    const float* g = diff_dst + r * channels;
    float* d = diff_src + r * channels;
    for (int64_t c = 0; c < channels; ++c) {
      const float v = a[c] * g[c] + b[c] * (x[c] - mean[c]) + k[c];
      d[c] = accumulate ? d[c] + v : v;
    }
  });
}

void BatchNormUpdateRunning(const float* batch_mean, const float* batch_std, float* running_mean,
                            float* running_std, int64_t channels, float decay) {
  for (int64_t c = 0; c < channels; ++c) {
    running_mean[c] = decay * running_mean[c] + (1.f - decay) * batch_mean[c];
    running_std[c] = decay * running_std[c] + (1.f - decay) * batch_std[c];
  }
}

}  // namespace elektronn::kernels::cpu
