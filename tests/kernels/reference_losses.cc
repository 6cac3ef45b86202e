// Naive references of the losses family (see reference_losses.h).
#include "tests/kernels/reference_losses.h"

#include <cmath>
#include <functional>

namespace elektronn::testing::losses {
namespace {

constexpr double kEps = 1e-5;

bool Ignored(double t) { return std::fabs(t + 666.0) <= 1e-8 + 1e-5 * 666.0; }

double XLogY(double x, double y) { return x == 0 ? 0 : x * std::log(y); }

// The (masked, weakened) target of element (r, f) and the per-element weights.
struct Element {
  double target, not_present, weight, weak;
};

// The hard target per element after the class-labelled mask.
std::vector<double> HardTargets(const NllExt& p, const Vec& target) {
  const int64_t n_indep = p.channels / p.n_class;
  const int64_t per_batch = p.rows / p.batch;
  std::vector<double> t(p.rows * p.channels, 0.0);
  for (int64_t r = 0; r < p.rows; ++r)
    for (int64_t f = 0; f < p.channels; ++f) {
      const int64_t g = f / p.n_class, c = f % p.n_class;
      double v;
      if (p.sparse) {
        const double id = target[r * n_indep + g];
        v = id == static_cast<double>(c) ? 1.0 : 0.0;
      } else {
        v = target[r * p.channels + f];
      }
      if (!p.mask_labeled.empty()) v *= p.mask_labeled[(r / per_batch) * p.channels + f];
      t[r * p.channels + f] = v;
    }
  return t;
}

std::vector<Element> Elements(const NllExt& p, const Vec& probs, const Vec& target) {
  const std::vector<double> hard = HardTargets(p, target);
  const int64_t per_batch = p.rows / p.batch;
  std::vector<Element> e(p.rows * p.channels);
  for (int64_t r = 0; r < p.rows; ++r)
    for (int64_t f = 0; f < p.channels; ++f) {
      const int64_t i = r * p.channels + f;
      const int64_t g0 = r * p.channels + (f / p.n_class) * p.n_class;
      bool labelled = false;
      for (int64_t c = 0; c < p.n_class; ++c) labelled = labelled || hard[g0 + c] != 0;
      double t = hard[i];
      if (p.weakness > 0 && labelled) t = (1 - p.weakness) * t + p.weakness * probs[i];
      const double cw = p.class_weights.empty() ? 1.0 : p.class_weights[f % p.n_class];
      const double ew = p.example_weights.empty() ? 1.0 : p.example_weights[r];
      const double m =
          p.mask_not_present.empty() ? 0.0 : p.mask_not_present[(r / per_batch) * p.channels + f];
      e[i] = {t, m, cw * ew, p.weakness > 0 && labelled ? p.weakness : 0.0};
    }
  return e;
}

double NTotal(const NllExt& p, const Vec& target) {
  double n = 0;
  for (double v : HardTargets(p, target)) n += v;
  for (double m : p.mask_not_present) n += m * (p.rows / p.batch);
  return n;
}

double Scale(const NllExt& p, double n_total) {
  return static_cast<double>(p.rows * p.channels) / (n_total + 1e-5) / (p.channels / p.n_class) /
         p.n_class;
}

// Central difference of a scalar function of one variable, in double.
double Derivative(const std::function<double(double)>& f, double x) {
  const double h = 1e-6 * std::max(1.0, std::fabs(x));
  return (f(x + h) - f(x - h)) / (2 * h);
}

double GaussianTerm(bool sig_is_log, double mu, double sig, double t) {
  const double s = sig_is_log ? std::exp(sig) : sig;
  const double log_s = sig_is_log ? sig : std::log(sig);
  return 0.5 * std::log(2 * M_PI) + log_s + 0.5 * ((t - mu) / s) * ((t - mu) / s);
}

double BetaTerm(double m, double c, double x) {
  const double a = m * (c - 2) + 1, b = (1 - m) * (c - 2) + 1;
  const double log_pdf = std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) +
                         (a - 1) * std::log(x + kEps) + (b - 1) * std::log(1 - x + kEps);
  return -log_pdf + std::log1p(std::exp(-c));
}

}  // namespace

NllExtResult NllExtForward(const NllExt& p, const Vec& probs, const Vec& target) {
  const std::vector<Element> e = Elements(p, probs, target);
  NllExtResult res{Vec(p.rows), NTotal(p, target)};
  const double scale = Scale(p, res.n_total);
  for (int64_t r = 0; r < p.rows; ++r) {
    double s = 0;
    for (int64_t f = 0; f < p.channels; ++f) {
      const int64_t i = r * p.channels + f;
      s -= XLogY(e[i].target * e[i].weight, probs[i] + kEps);
      s -= XLogY(e[i].not_present * e[i].weight, 1 - probs[i] + kEps);
    }
    res.loss[r] = static_cast<float>(scale * s);
  }
  return res;
}

Vec NllExtBackward(const NllExt& p, const Vec& probs, const Vec& target, const Vec& diff_loss,
                   double n_total) {
  const std::vector<Element> e = Elements(p, probs, target);
  const double scale = Scale(p, n_total);
  Vec d(p.rows * p.channels);
  for (int64_t r = 0; r < p.rows; ++r)
    for (int64_t f = 0; f < p.channels; ++f) {
      const int64_t i = r * p.channels + f;
      // -(t_eff w) log(p + eps) with t_eff = a + weak p, and -(m w) log(1 - p + eps).
      const double g = -e[i].target * e[i].weight / (probs[i] + kEps) -
                       e[i].weak * e[i].weight * std::log(probs[i] + kEps) +
                       e[i].not_present * e[i].weight / (1 - probs[i] + kEps);
      d[i] = static_cast<float>(diff_loss[r] * scale * g);
    }
  return d;
}

// By central differences of the forward loss in each weight (the loss is linear in them, so
// this is exact up to rounding), independent of the kernel's closed form.
Vec NllExtClassWeightsBackward(const NllExt& p, const Vec& probs, const Vec& target,
                               const Vec& diff_loss, double n_total) {
  Vec d(p.n_class);
  for (int64_t c = 0; c < p.n_class; ++c) {
    auto weighted_loss = [&](double w) {
      NllExt q = p;
      q.class_weights[c] = static_cast<float>(w);
      const std::vector<Element> e = Elements(q, probs, target);
      const double scale = Scale(q, n_total);
      double s = 0;
      for (int64_t r = 0; r < p.rows; ++r)
        for (int64_t f = 0; f < p.channels; ++f) {
          const int64_t i = r * p.channels + f;
          s -= diff_loss[r] * scale *
               (XLogY(e[i].target * e[i].weight, probs[i] + kEps) +
                XLogY(e[i].not_present * e[i].weight, 1 - probs[i] + kEps));
        }
      return s;
    };
    // Steps of 0.25 are exactly representable, so the float weight sees the intended shift.
    const double w = p.class_weights[c];
    d[c] = static_cast<float>((weighted_loss(w + 0.25) - weighted_loss(w - 0.25)) / 0.5);
  }
  return d;
}

Vec RegressionForward(const Regression& p, const Vec& pred, const Vec& target,
                      int64_t* n_labelled) {
  int64_t n_lab = 0;
  for (float t : target) n_lab += !Ignored(t);
  *n_labelled = n_lab;
  const double scale = static_cast<double>(pred.size()) / (n_lab + 1);
  Vec out(p.rows);
  for (int64_t r = 0; r < p.rows; ++r) {
    double s = 0;
    for (int64_t c = 0; c < p.channels; ++c) {
      const int64_t i = r * p.channels + c;
      if (Ignored(target[i])) continue;
      const double d = static_cast<double>(target[i]) - pred[i];
      double v = p.squared ? scale * 0.5 * d * d : scale * std::fabs(d);
      if (p.margin != 0 && std::fabs(d) < p.margin) v = 0;
      if (p.scale_correction != 0) {
        const double c_ = p.scale_correction;
        v *= p.squared ? c_ / (std::fabs(target[i]) + c_) : c_ * std::fabs(target[i]) + 1;
      }
      s += v;
    }
    out[r] = static_cast<float>(s / p.channels);
  }
  return out;
}

Vec RegressionBackward(const Regression& p, const Vec& pred, const Vec& target,
                       const Vec& diff_loss) {
  int64_t n_lab = 0;
  for (float t : target) n_lab += !Ignored(t);
  const double scale = static_cast<double>(pred.size()) / (n_lab + 1);
  Vec g(pred.size());
  for (int64_t r = 0; r < p.rows; ++r)
    for (int64_t c = 0; c < p.channels; ++c) {
      const int64_t i = r * p.channels + c;
      const double d = static_cast<double>(target[i]) - pred[i];
      double v = 0;
      if (!Ignored(target[i]) && !(p.margin != 0 && std::fabs(d) < p.margin)) {
        v = p.squared ? -d : (d > 0 ? -1.0 : d < 0 ? 1.0 : 0.0);
        if (p.scale_correction != 0) {
          const double c_ = p.scale_correction;
          v *= p.squared ? c_ / (std::fabs(target[i]) + c_) : c_ * std::fabs(target[i]) + 1;
        }
      }
      g[i] = static_cast<float>(diff_loss[r] * scale * v / p.channels);
    }
  return g;
}

Vec BinaryNllForward(bool label_entropy, const Vec& pred, const Vec& target, int64_t* n_labelled) {
  int64_t n_lab = 0;
  for (float t : target) n_lab += !Ignored(t);
  *n_labelled = n_lab;
  const double scale = static_cast<double>(pred.size()) / (n_lab + 1);
  Vec out(pred.size());
  for (size_t i = 0; i < pred.size(); ++i) {
    const double t = target[i], p = pred[i];
    if (Ignored(t)) continue;
    double v = -XLogY(t, p + kEps) - XLogY(1 - t, 1 - p + kEps);
    if (label_entropy) v -= -XLogY(t, t + kEps) - XLogY(1 - t, 1 - t + kEps);  // minus H(t)
    out[i] = static_cast<float>(scale * v);
  }
  return out;
}

Vec BinaryNllBackward(const Vec& pred, const Vec& target, const Vec& diff_loss) {
  int64_t n_lab = 0;
  for (float t : target) n_lab += !Ignored(t);
  const double scale = static_cast<double>(pred.size()) / (n_lab + 1);
  Vec g(pred.size());
  for (size_t i = 0; i < pred.size(); ++i) {
    const double t = target[i], p = pred[i];
    if (Ignored(t)) continue;
    g[i] = static_cast<float>(diff_loss[i] * scale * (-t / (p + kEps) + (1 - t) / (1 - p + kEps)));
  }
  return g;
}

Vec GaussianNllForward(bool sig_is_log, const Vec& mu, const Vec& sig, const Vec& target) {
  Vec out(mu.size());
  for (size_t i = 0; i < mu.size(); ++i)
    out[i] = static_cast<float>(GaussianTerm(sig_is_log, mu[i], sig[i], target[i]));
  return out;
}

void GaussianNllBackward(bool sig_is_log, const Vec& mu, const Vec& sig, const Vec& target,
                         const Vec& diff_loss, Vec* diff_mu, Vec* diff_sig) {
  diff_mu->resize(mu.size());
  diff_sig->resize(mu.size());
  for (size_t i = 0; i < mu.size(); ++i) {
    (*diff_mu)[i] = static_cast<float>(
        diff_loss[i] *
        Derivative([&](double m) { return GaussianTerm(sig_is_log, m, sig[i], target[i]); },
                   mu[i]));
    (*diff_sig)[i] = static_cast<float>(
        diff_loss[i] *
        Derivative([&](double s) { return GaussianTerm(sig_is_log, mu[i], s, target[i]); },
                   sig[i]));
  }
}

Vec BetaNllForward(const Vec& mode, const Vec& conc, const Vec& target) {
  Vec out(mode.size());
  for (size_t i = 0; i < mode.size(); ++i)
    out[i] = static_cast<float>(BetaTerm(mode[i], conc[i], target[i]));
  return out;
}

void BetaNllBackward(const Vec& mode, const Vec& conc, const Vec& target, const Vec& diff_loss,
                     Vec* diff_mode, Vec* diff_conc) {
  diff_mode->resize(mode.size());
  diff_conc->resize(mode.size());
  for (size_t i = 0; i < mode.size(); ++i) {
    (*diff_mode)[i] = static_cast<float>(
        diff_loss[i] *
        Derivative([&](double m) { return BetaTerm(m, conc[i], target[i]); }, mode[i]));
    (*diff_conc)[i] = static_cast<float>(
        diff_loss[i] *
        Derivative([&](double c) { return BetaTerm(mode[i], c, target[i]); }, conc[i]));
  }
}

Vec EuclideanForward(const Vec& a, const Vec& b, int64_t rows, int64_t channels) {
  Vec out(rows);
  for (int64_t r = 0; r < rows; ++r) {
    double s = 0;
    for (int64_t c = 0; c < channels; ++c) {
      const double d = static_cast<double>(b[r * channels + c]) - a[r * channels + c];
      s += d * d;
    }
    out[r] = static_cast<float>(std::sqrt(s));
  }
  return out;
}

void EuclideanBackward(const Vec& a, const Vec& b, const Vec& diff_out, int64_t rows,
                       int64_t channels, Vec* diff_a, Vec* diff_b) {
  const Vec d = EuclideanForward(a, b, rows, channels);
  diff_a->assign(a.size(), 0.f);
  diff_b->assign(a.size(), 0.f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t i = r * channels + c;
      const double g = d[r] > 0 ? diff_out[r] * (static_cast<double>(a[i]) - b[i]) / d[r] : 0;
      (*diff_a)[i] = static_cast<float>(g);
      (*diff_b)[i] = static_cast<float>(-g);
    }
}

Vec RampForward(const Vec& low, const Vec& big, double margin, int64_t rows, int64_t channels) {
  Vec out(rows);
  for (int64_t r = 0; r < rows; ++r) {
    double s = 0;
    for (int64_t c = 0; c < channels; ++c)
      s += std::max(0.0,
                    static_cast<double>(low[r * channels + c]) - big[r * channels + c] + margin);
    out[r] = static_cast<float>(s / channels);
  }
  return out;
}

void RampBackward(const Vec& low, const Vec& big, double margin, const Vec& diff_out, int64_t rows,
                  int64_t channels, Vec* diff_low, Vec* diff_big) {
  diff_low->assign(low.size(), 0.f);
  diff_big->assign(low.size(), 0.f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t i = r * channels + c;
      if (static_cast<double>(low[i]) - big[i] + margin > 0) {
        (*diff_low)[i] = static_cast<float>(diff_out[r] / channels);
        (*diff_big)[i] = static_cast<float>(-diff_out[r] / channels);
      }
    }
}

Vec SobelWeights(int ndim, int64_t f) {
  const double v[3] = {1, 0, -1}, n[3] = {0.3, 0.4, 0.3};
  // base[k] as a flat 3^ndim array (C order), built like the numpy code.
  std::vector<std::vector<double>> base;
  if (ndim == 1) {
    base.push_back({v[0], v[1], v[2]});
  } else if (ndim == 2) {
    std::vector<double> B(9), BT(9);  // B = tile(v, [3, 1]) * n[:, None]
    for (int a = 0; a < 3; ++a)
      for (int b = 0; b < 3; ++b) B[a * 3 + b] = v[b] * n[a];
    for (int a = 0; a < 3; ++a)
      for (int b = 0; b < 3; ++b) BT[a * 3 + b] = B[b * 3 + a];
    base = {B, BT};
  } else {
    std::vector<double> C(27), T210(27), T120(27);  // C = tile(B, [3,1,1]) * n[:, None, None]
    for (int a = 0; a < 3; ++a)
      for (int b = 0; b < 3; ++b)
        for (int c = 0; c < 3; ++c) C[(a * 3 + b) * 3 + c] = v[c] * n[b] * n[a];
    // np.transpose(C, axes)[i0, i1, i2] = C[j] with j[axes[m]] = i_m.
    for (int i0 = 0; i0 < 3; ++i0)
      for (int i1 = 0; i1 < 3; ++i1)
        for (int i2 = 0; i2 < 3; ++i2) {
          const int i[3] = {i0, i1, i2};
          int j[3];
          const int ax1[3] = {2, 1, 0}, ax2[3] = {1, 2, 0};
          for (int m = 0; m < 3; ++m) j[ax1[m]] = i[m];
          T210[(i0 * 3 + i1) * 3 + i2] = C[(j[0] * 3 + j[1]) * 3 + j[2]];
          for (int m = 0; m < 3; ++m) j[ax2[m]] = i[m];
          T120[(i0 * 3 + i1) * 3 + i2] = C[(j[0] * 3 + j[1]) * 3 + j[2]];
        }
    base = {T210, C, T120};
  }
  const int64_t taps = static_cast<int64_t>(base[0].size());
  Vec w(f * ndim * f * taps, 0.f);  // (out = k*f + i, in = i, taps)
  for (int64_t i = 0; i < f; ++i)
    for (int k = 0; k < ndim; ++k)
      for (int64_t t = 0; t < taps; ++t)
        w[((k * f + i) * f + i) * taps + t] = static_cast<float>(base[k][t]);
  return w;
}

namespace {

// Calls body(src_index, dst_index, weight) for every nonzero product of the Sobel operator.
void ForSobel(int64_t batch, const std::vector<int64_t>& spatial, int64_t f,
              const std::function<void(int64_t, int64_t, double)>& body) {
  const int nd = static_cast<int>(spatial.size());
  const Vec w = SobelWeights(nd, f);
  int64_t taps = 1, vox = 1;
  for (int a = 0; a < nd; ++a) {
    taps *= 3;
    vox *= spatial[a];
  }
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t p = 0; p < vox; ++p) {
      std::vector<int64_t> pos(nd);
      for (int a = nd - 1, rest = static_cast<int>(p); a >= 0; --a) {
        pos[a] = rest % spatial[a];
        rest /= static_cast<int>(spatial[a]);
      }
      for (int64_t t = 0; t < taps; ++t) {
        int64_t q = 0;
        bool inside = true;
        for (int a = 0, rest = static_cast<int>(t), div = static_cast<int>(taps / 3); a < nd; ++a) {
          const int o = rest / div;
          rest %= div;
          div = std::max(1, div / 3);
          const int64_t x = pos[a] + o - 1;
          inside = inside && x >= 0 && x < spatial[a];
          q = q * spatial[a] + x;
        }
        if (!inside) continue;
        for (int64_t o = 0; o < f * nd; ++o)
          for (int64_t i = 0; i < f; ++i) {
            const double wv = w[(o * f + i) * taps + t];
            if (wv != 0) body((b * vox + q) * f + i, (b * vox + p) * f * nd + o, wv);
          }
      }
    }
}

}  // namespace

Vec SobelForward(const Vec& src, int64_t batch, const std::vector<int64_t>& spatial, int64_t f) {
  int64_t vox = batch;
  for (int64_t s : spatial) vox *= s;
  std::vector<double> acc(vox * f * spatial.size(), 0.0);
  ForSobel(batch, spatial, f, [&](int64_t si, int64_t di, double w) { acc[di] += w * src[si]; });
  return Vec(acc.begin(), acc.end());
}

Vec SobelBackward(const Vec& diff_dst, int64_t batch, const std::vector<int64_t>& spatial,
                  int64_t f) {
  int64_t vox = batch;
  for (int64_t s : spatial) vox *= s;
  std::vector<double> acc(vox * f, 0.0);
  ForSobel(batch, spatial, f,
           [&](int64_t si, int64_t di, double w) { acc[si] += w * diff_dst[di]; });
  return Vec(acc.begin(), acc.end());
}

Vec OneHot(const Vec& labels, int64_t n_class) {
  Vec out(labels.size() * n_class, 0.f);
  for (size_t r = 0; r < labels.size(); ++r)
    for (int64_t c = 0; c < n_class; ++c)
      if (labels[r] == static_cast<float>(c)) out[r * n_class + c] = 1.f;
  return out;
}

Vec Classify(const Vec& probs, int64_t rows, int64_t channels, int64_t n_class, bool threshold) {
  if (threshold) {
    Vec out(probs.size());
    for (size_t i = 0; i < probs.size(); ++i) out[i] = probs[i] > 0.5f ? 1.f : 0.f;
    return out;
  }
  const int64_t groups = channels / n_class;
  Vec out(rows * groups);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < groups; ++g) {
      int64_t best = 0;
      for (int64_t c = 1; c < n_class; ++c)
        if (probs[r * channels + g * n_class + c] > probs[r * channels + g * n_class + best])
          best = c;
      out[r * groups + g] = static_cast<float>(best);
    }
  return out;
}

void CountBinaryErrors(const Vec& probs, const Vec& target, int64_t* wrong, int64_t* labelled) {
  *wrong = *labelled = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (target[i] < 0) continue;
    ++*labelled;
    *wrong += (probs[i] > 0.5f) != (target[i] > 0.5f);
  }
}

}  // namespace elektronn::testing::losses
