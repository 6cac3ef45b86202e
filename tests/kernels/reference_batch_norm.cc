#include "tests/kernels/reference_batch_norm.h"

#include <cmath>

#include "tests/kernels/reference.h"

namespace elektronn::testing {

BnStatistics BatchNormStatistics(const std::vector<float>& src, int64_t rows, int64_t channels,
                                 double eps) {
  BnStatistics s;
  for (int64_t c = 0; c < channels; ++c) {
    double m = 0;
    for (int64_t r = 0; r < rows; ++r) m += src[r * channels + c];
    m /= rows;
    double v = 0;
    for (int64_t r = 0; r < rows; ++r)
      v += (src[r * channels + c] - m) * (src[r * channels + c] - m);
    s.mean.push_back(static_cast<float>(m));
    s.std.push_back(static_cast<float>(std::sqrt(v / rows) + eps));
  }
  return s;
}

std::vector<float> BatchNormForward(const std::vector<float>& src, const std::vector<float>& mean,
                                    const std::vector<float>& std, const std::vector<float>& gamma,
                                    const std::vector<float>& beta, int64_t rows, int64_t channels,
                                    kernels::Eltwise act) {
  std::vector<float> dst(src.size());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < channels; ++c) {
      const double y =
          static_cast<double>(gamma[c]) / std[c] * (src[r * channels + c] - mean[c]) + beta[c];
      dst[r * channels + c] = static_cast<float>(Activate(act, y));
    }
  }
  return dst;
}

BnFaded BatchNormFade(const std::vector<float>& mean, const std::vector<float>& std,
                      const std::vector<float>& gamma, double rate) {
  BnFaded f;
  for (size_t c = 0; c < mean.size(); ++c) {
    f.mean.push_back(static_cast<float>(rate * mean[c]));
    f.std.push_back(static_cast<float>(rate * std[c] + (1 - rate)));
    f.gamma.push_back(static_cast<float>(rate * gamma[c]));
  }
  return f;
}

BnGrads BatchNormBackward(const std::vector<float>& src, const std::vector<float>& mean,
                          const std::vector<float>& std, const std::vector<float>& gamma,
                          const std::vector<float>& diff_dst, int64_t rows, int64_t channels,
                          double eps, bool batch_statistics, double rate) {
  BnGrads g;
  g.src.assign(src.size(), 0.f);
  for (int64_t c = 0; c < channels; ++c) {
    auto x = [&](int64_t r) { return static_cast<double>(src[r * channels + c]); };
    auto dy = [&](int64_t r) { return static_cast<double>(diff_dst[r * channels + c]); };
    const double m = mean[c], s = std[c];
    // What the forward normalised with (without batch statistics rate is 1: no fade).
    const double rf = batch_statistics ? rate : 1.0;
    const double mf = rf * m, sf = rf * s + (1 - rf), gf = rf * gamma[c];
    double dgamma = 0, dbeta = 0;
    for (int64_t r = 0; r < rows; ++r) {
      dgamma += dy(r) * rf * (x(r) - mf) / sf;  // d gamma' / d gamma = rate
      dbeta += dy(r);
    }
    g.gamma.push_back(static_cast<float>(dgamma));
    g.beta.push_back(static_cast<float>(dbeta));
    if (!batch_statistics) {
      for (int64_t r = 0; r < rows; ++r) {
        g.src[r * channels + c] = static_cast<float>(gamma[c] / s * dy(r));
      }
      continue;
    }
    // Chain rule through xhat_i = (x_i - m') / s', m' = rate mean(x), s' = rate (sigma + eps) +
    // 1 - rate, sigma = sqrt(mean((x - m)^2)): dL/ds' = -sum_j dy_j gamma' (x_j - m') / s'^2,
    // dL/dm' = -sum_j dy_j gamma' / s', ds'/dx_i = rate (x_i - m) / (n sigma) (the
    // sigma-through-m term vanishes, sum_j (x_j - m) = 0), dm'/dx_i = rate / n.
    const double sigma = s - eps;
    double dl_ds = 0, dl_dm = 0;
    for (int64_t r = 0; r < rows; ++r) {
      dl_ds -= dy(r) * gf * (x(r) - mf) / (sf * sf);
      dl_dm -= dy(r) * gf / sf;
    }
    for (int64_t r = 0; r < rows; ++r) {
      const double ds_dx = sigma > 0 ? rf * (x(r) - m) / (rows * sigma) : 0.0;
      g.src[r * channels + c] =
          static_cast<float>(dy(r) * gf / sf + dl_ds * ds_dx + dl_dm * rf / rows);
    }
  }
  return g;
}

std::vector<float> BatchNormRunning(const std::vector<float>& running,
                                    const std::vector<float>& batch, double decay) {
  std::vector<float> out(running.size());
  for (size_t i = 0; i < running.size(); ++i) {
    out[i] = static_cast<float>(decay * running[i] + (1 - decay) * batch[i]);
  }
  return out;
}

}  // namespace elektronn::testing
