// Naive reference kernels: one loop nest per definition, every sum in double precision.
#include "tests/kernels/reference.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <numeric>

namespace elektronn::testing {
namespace {

using kernels::ConvDesc;
using kernels::Eltwise;
using kernels::MatmulDesc;
using kernels::PoolDesc;
using kernels::PoolMode;

// Spatial extents padded in front to three axes, so one loop nest serves 1-, 2- and 3-D;
// the canonical weight layout (out, in, k...) is unchanged by leading kernel sizes of 1.
using Ext3 = std::array<int64_t, 3>;

Ext3 To3(const std::vector<int64_t>& v, int64_t fill) {
  Ext3 a{fill, fill, fill};
  const size_t off = 3 - v.size();
  for (size_t i = 0; i < v.size(); ++i) a[off + i] = v[i];
  return a;
}

int64_t Prod(const std::vector<int64_t>& v) {
  return std::accumulate(v.begin(), v.end(), int64_t{1}, std::multiplies<>());
}

// Offset of (n, z, y, x, c) in a channels-last tensor with spatial extent `s` and `ch` channels.
int64_t At(const Ext3& s, int64_t ch, int64_t n, int64_t z, int64_t y, int64_t x, int64_t c) {
  return (((n * s[0] + z) * s[1] + y) * s[2] + x) * ch + c;
}

// Offset of (o, i, kz, ky, kx) in canonical weights.
int64_t WAt(const Ext3& k, int64_t in, int64_t o, int64_t i, int64_t kz, int64_t ky, int64_t kx) {
  return (((o * in + i) * k[0] + kz) * k[1] + ky) * k[2] + kx;
}

bool Inside(const Ext3& s, int64_t z, int64_t y, int64_t x) {
  return z >= 0 && z < s[0] && y >= 0 && y < s[1] && x >= 0 && x < s[2];
}

std::vector<float> ToFloat(const std::vector<double>& v) { return {v.begin(), v.end()}; }

}  // namespace

double Activate(Eltwise e, double x) {
  switch (e) {
    case Eltwise::kLinear:
      return x;
    case Eltwise::kRelu:
      return x > 0 ? x : 0;
    case Eltwise::kTanh:
      return std::tanh(x);
    case Eltwise::kSigmoid:
      return 1 / (1 + std::exp(-x));
    case Eltwise::kAbs:
      return std::fabs(x);
    case Eltwise::kSoftplus:
      return std::log1p(std::exp(x));
    case Eltwise::kElu:
      return x > 0 ? x : std::expm1(x);
    // Structural family (issue 11): ELEKTRONN2's selu, concentration and radius (§2.3).
    case Eltwise::kSelu:
      return 1.0507009873554805 * (x > 0 ? x : 1.6732632423543772 * std::expm1(x));
    case Eltwise::kConcentration:
      return 7 * std::log1p(std::exp(x)) + 2;
    case Eltwise::kRadius:
      return 3 + 15 * std::exp(0.15 * x);
  }
  return x;
}

std::vector<int64_t> ConvOutSpatial(const ConvDesc& d) {
  std::vector<int64_t> o;
  for (size_t i = 0; i < d.in_spatial.size(); ++i) {
    o.push_back(d.in_spatial[i] + 2 * d.pad[i] - d.kernel[i] + 1);
  }
  return o;
}

int64_t ConvSrcSize(const ConvDesc& d) { return d.batch * Prod(d.in_spatial) * d.in_channels; }
int64_t ConvDstSize(const ConvDesc& d) {
  return d.batch * Prod(ConvOutSpatial(d)) * d.out_channels;
}
int64_t ConvWeightSize(const ConvDesc& d) {
  return d.out_channels * d.in_channels * Prod(d.kernel);
}

std::vector<float> ConvForward(const ConvDesc& d, const std::vector<float>& src,
                               const std::vector<float>& w, const std::vector<float>& bias) {
  const Ext3 in = To3(d.in_spatial, 1), k = To3(d.kernel, 1), p = To3(d.pad, 0),
             out = To3(ConvOutSpatial(d), 1);
  const int64_t ci = d.in_channels, co = d.out_channels;
  std::vector<float> dst(ConvDstSize(d));
  for (int64_t n = 0; n < d.batch; ++n)
    for (int64_t oz = 0; oz < out[0]; ++oz)
      for (int64_t oy = 0; oy < out[1]; ++oy)
        for (int64_t ox = 0; ox < out[2]; ++ox)
          for (int64_t oc = 0; oc < co; ++oc) {
            double s = bias[oc];
            for (int64_t kz = 0; kz < k[0]; ++kz)
              for (int64_t ky = 0; ky < k[1]; ++ky)
                for (int64_t kx = 0; kx < k[2]; ++kx) {
                  const int64_t z = oz + kz - p[0], y = oy + ky - p[1], x = ox + kx - p[2];
                  if (!Inside(in, z, y, x)) continue;
                  for (int64_t ic = 0; ic < ci; ++ic) {
                    s += static_cast<double>(src[At(in, ci, n, z, y, x, ic)]) *
                         w[WAt(k, ci, oc, ic, kz, ky, kx)];
                  }
                }
            dst[At(out, co, n, oz, oy, ox, oc)] =
                static_cast<float>(Activate(d.fused_activation, s));
          }
  return dst;
}

std::vector<float> ConvBackwardData(const ConvDesc& d, const std::vector<float>& diff_dst,
                                    const std::vector<float>& w) {
  const Ext3 in = To3(d.in_spatial, 1), k = To3(d.kernel, 1), p = To3(d.pad, 0),
             out = To3(ConvOutSpatial(d), 1);
  const int64_t ci = d.in_channels, co = d.out_channels;
  std::vector<double> acc(ConvSrcSize(d), 0.0);
  for (int64_t n = 0; n < d.batch; ++n)
    for (int64_t oz = 0; oz < out[0]; ++oz)
      for (int64_t oy = 0; oy < out[1]; ++oy)
        for (int64_t ox = 0; ox < out[2]; ++ox)
          for (int64_t oc = 0; oc < co; ++oc) {
            const double g = diff_dst[At(out, co, n, oz, oy, ox, oc)];
            for (int64_t kz = 0; kz < k[0]; ++kz)
              for (int64_t ky = 0; ky < k[1]; ++ky)
                for (int64_t kx = 0; kx < k[2]; ++kx) {
                  const int64_t z = oz + kz - p[0], y = oy + ky - p[1], x = ox + kx - p[2];
                  if (!Inside(in, z, y, x)) continue;
                  for (int64_t ic = 0; ic < ci; ++ic) {
                    acc[At(in, ci, n, z, y, x, ic)] += g * w[WAt(k, ci, oc, ic, kz, ky, kx)];
                  }
                }
          }
  return ToFloat(acc);
}

WeightGrads ConvBackwardWeights(const ConvDesc& d, const std::vector<float>& src,
                                const std::vector<float>& diff_dst) {
  const Ext3 in = To3(d.in_spatial, 1), k = To3(d.kernel, 1), p = To3(d.pad, 0),
             out = To3(ConvOutSpatial(d), 1);
  const int64_t ci = d.in_channels, co = d.out_channels;
  std::vector<double> dw(ConvWeightSize(d), 0.0), db(co, 0.0);
  for (int64_t n = 0; n < d.batch; ++n)
    for (int64_t oz = 0; oz < out[0]; ++oz)
      for (int64_t oy = 0; oy < out[1]; ++oy)
        for (int64_t ox = 0; ox < out[2]; ++ox)
          for (int64_t oc = 0; oc < co; ++oc) {
            const double g = diff_dst[At(out, co, n, oz, oy, ox, oc)];
            db[oc] += g;
            for (int64_t kz = 0; kz < k[0]; ++kz)
              for (int64_t ky = 0; ky < k[1]; ++ky)
                for (int64_t kx = 0; kx < k[2]; ++kx) {
                  const int64_t z = oz + kz - p[0], y = oy + ky - p[1], x = ox + kx - p[2];
                  if (!Inside(in, z, y, x)) continue;
                  for (int64_t ic = 0; ic < ci; ++ic) {
                    dw[WAt(k, ci, oc, ic, kz, ky, kx)] += g * src[At(in, ci, n, z, y, x, ic)];
                  }
                }
          }
  return {ToFloat(dw), ToFloat(db)};
}

std::vector<int64_t> PoolOutSpatial(const PoolDesc& d) {
  std::vector<int64_t> o;
  for (size_t i = 0; i < d.in_spatial.size(); ++i) {
    o.push_back((d.in_spatial[i] - d.kernel[i]) / d.stride[i] + 1);
  }
  return o;
}

int64_t PoolSrcSize(const PoolDesc& d) { return d.batch * Prod(d.in_spatial) * d.channels; }
int64_t PoolDstSize(const PoolDesc& d) { return d.batch * Prod(PoolOutSpatial(d)) * d.channels; }

namespace {

// Calls visit(src_offset, dst_offset, first_in_window) for every (window, element) pair
// in scan order (z, y, x within each window).
template <typename Visit>
void ForEachWindowElement(const PoolDesc& d, Visit visit) {
  const Ext3 in = To3(d.in_spatial, 1), k = To3(d.kernel, 1), s = To3(d.stride, 1),
             out = To3(PoolOutSpatial(d), 1);
  const int64_t ch = d.channels;
  for (int64_t n = 0; n < d.batch; ++n)
    for (int64_t oz = 0; oz < out[0]; ++oz)
      for (int64_t oy = 0; oy < out[1]; ++oy)
        for (int64_t ox = 0; ox < out[2]; ++ox)
          for (int64_t c = 0; c < ch; ++c) {
            const int64_t o = At(out, ch, n, oz, oy, ox, c);
            bool first = true;
            for (int64_t kz = 0; kz < k[0]; ++kz)
              for (int64_t ky = 0; ky < k[1]; ++ky)
                for (int64_t kx = 0; kx < k[2]; ++kx) {
                  visit(At(in, ch, n, oz * s[0] + kz, oy * s[1] + ky, ox * s[2] + kx, c), o, first);
                  first = false;
                }
          }
}

// Source offset of each window's first maximum, indexed by destination offset.
std::vector<int64_t> ArgMax(const PoolDesc& d, const std::vector<float>& src) {
  std::vector<int64_t> arg(PoolDstSize(d), -1);
  ForEachWindowElement(d, [&](int64_t i, int64_t o, bool first) {
    if (first || src[i] > src[arg[o]]) arg[o] = i;
  });
  return arg;
}

}  // namespace

std::vector<float> PoolForward(const PoolDesc& d, const std::vector<float>& src) {
  std::vector<float> dst(PoolDstSize(d));
  if (d.mode == PoolMode::kMax) {
    const std::vector<int64_t> arg = ArgMax(d, src);
    for (size_t o = 0; o < dst.size(); ++o) dst[o] = src[arg[o]];
    return dst;
  }
  std::vector<double> sum(dst.size(), 0.0);
  ForEachWindowElement(d, [&](int64_t i, int64_t o, bool) { sum[o] += src[i]; });
  const double window = static_cast<double>(Prod(d.kernel));
  for (size_t o = 0; o < dst.size(); ++o) dst[o] = static_cast<float>(sum[o] / window);
  return dst;
}

std::vector<float> PoolBackward(const PoolDesc& d, const std::vector<float>& src,
                                const std::vector<float>& diff_dst) {
  std::vector<double> acc(PoolSrcSize(d), 0.0);
  if (d.mode == PoolMode::kMax) {
    const std::vector<int64_t> arg = ArgMax(d, src);
    for (size_t o = 0; o < arg.size(); ++o) acc[arg[o]] += diff_dst[o];
  } else {
    const double window = static_cast<double>(Prod(d.kernel));
    ForEachWindowElement(d, [&](int64_t i, int64_t o, bool) { acc[i] += diff_dst[o] / window; });
  }
  return ToFloat(acc);
}

std::vector<float> MatmulForward(const MatmulDesc& d, const std::vector<float>& src,
                                 const std::vector<float>& w, const std::vector<float>& bias) {
  std::vector<float> dst(d.m * d.n);
  for (int64_t i = 0; i < d.m; ++i)
    for (int64_t j = 0; j < d.n; ++j) {
      double s = bias[j];
      for (int64_t l = 0; l < d.k; ++l) s += static_cast<double>(src[i * d.k + l]) * w[l * d.n + j];
      dst[i * d.n + j] = static_cast<float>(Activate(d.fused_activation, s));
    }
  return dst;
}

std::vector<float> MatmulBackwardData(const MatmulDesc& d, const std::vector<float>& diff_dst,
                                      const std::vector<float>& w) {
  std::vector<float> diff_src(d.m * d.k);
  for (int64_t i = 0; i < d.m; ++i)
    for (int64_t l = 0; l < d.k; ++l) {
      double s = 0;
      for (int64_t j = 0; j < d.n; ++j) {
        s += static_cast<double>(diff_dst[i * d.n + j]) * w[l * d.n + j];
      }
      diff_src[i * d.k + l] = static_cast<float>(s);
    }
  return diff_src;
}

WeightGrads MatmulBackwardWeights(const MatmulDesc& d, const std::vector<float>& src,
                                  const std::vector<float>& diff_dst) {
  std::vector<double> dw(d.k * d.n, 0.0), db(d.n, 0.0);
  for (int64_t i = 0; i < d.m; ++i)
    for (int64_t j = 0; j < d.n; ++j) {
      const double g = diff_dst[i * d.n + j];
      db[j] += g;
      for (int64_t l = 0; l < d.k; ++l) dw[l * d.n + j] += g * src[i * d.k + l];
    }
  return {ToFloat(dw), ToFloat(db)};
}

std::vector<float> SoftmaxForward(const std::vector<float>& src, int64_t rows, int64_t channels,
                                  int64_t n_class) {
  std::vector<float> dst(rows * channels);
  for (int64_t g = 0; g < rows * channels / n_class; ++g) {
    const int64_t o = g * n_class;
    double mx = src[o];
    for (int64_t c = 1; c < n_class; ++c) mx = std::max<double>(mx, src[o + c]);
    double sum = 0;
    for (int64_t c = 0; c < n_class; ++c) sum += std::exp(src[o + c] - mx);
    for (int64_t c = 0; c < n_class; ++c) {
      dst[o + c] = static_cast<float>(std::exp(src[o + c] - mx) / sum);
    }
  }
  return dst;
}

std::vector<float> SoftmaxBackward(const std::vector<float>& dst,
                                   const std::vector<float>& diff_dst, int64_t rows,
                                   int64_t channels, int64_t n_class) {
  std::vector<float> diff_src(rows * channels);
  for (int64_t g = 0; g < rows * channels / n_class; ++g) {
    const int64_t o = g * n_class;
    double dot = 0;
    for (int64_t c = 0; c < n_class; ++c) dot += static_cast<double>(dst[o + c]) * diff_dst[o + c];
    for (int64_t c = 0; c < n_class; ++c) {
      diff_src[o + c] = static_cast<float>(dst[o + c] * (diff_dst[o + c] - dot));
    }
  }
  return diff_src;
}

double ActivateDerivative(Eltwise e, double x) {
  switch (e) {
    case Eltwise::kLinear:
      return 1;
    case Eltwise::kRelu:
      return x > 0 ? 1 : 0;
    case Eltwise::kTanh:
      return 1 - std::tanh(x) * std::tanh(x);
    case Eltwise::kSigmoid:
      return std::exp(-x) / ((1 + std::exp(-x)) * (1 + std::exp(-x)));
    case Eltwise::kAbs:
      return x > 0 ? 1 : (x < 0 ? -1 : 0);
    case Eltwise::kSoftplus:
      return 1 / (1 + std::exp(-x));
    case Eltwise::kElu:
      return x > 0 ? 1 : std::exp(x);
    // Structural family (issue 11).
    case Eltwise::kSelu:
      return 1.0507009873554805 * (x > 0 ? 1 : 1.6732632423543772 * std::exp(x));
    case Eltwise::kConcentration:
      return 7 / (1 + std::exp(-x));
    case Eltwise::kRadius:
      return 15 * 0.15 * std::exp(0.15 * x);
  }
  return 1;
}

std::vector<float> EltwiseForward(Eltwise e, const std::vector<float>& src) {
  std::vector<float> dst(src.size());
  for (size_t i = 0; i < src.size(); ++i) dst[i] = static_cast<float>(Activate(e, src[i]));
  return dst;
}

std::vector<float> EltwiseBackward(Eltwise e, const std::vector<float>& src,
                                   const std::vector<float>& diff_dst) {
  std::vector<float> diff_src(src.size());
  for (size_t i = 0; i < src.size(); ++i) {
    diff_src[i] = static_cast<float>(ActivateDerivative(e, src[i]) * diff_dst[i]);
  }
  return diff_src;
}

std::vector<float> PreluForward(const std::vector<float>& src, const std::vector<float>& slope,
                                int64_t rows, int64_t channels) {
  std::vector<float> dst(rows * channels);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < channels; ++c) {
      const double x = src[r * channels + c];
      dst[r * channels + c] = static_cast<float>(x > 0 ? x : slope[c] * x);
    }
  return dst;
}

PreluGrads PreluBackward(const std::vector<float>& src, const std::vector<float>& slope,
                         const std::vector<float>& diff_dst, int64_t rows, int64_t channels) {
  std::vector<float> diff_src(rows * channels);
  std::vector<double> diff_slope(channels, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t i = r * channels + c;
      const double x = src[i], g = diff_dst[i];
      diff_src[i] = static_cast<float>(x > 0 ? g : slope[c] * g);
      if (x <= 0) diff_slope[c] += x * g;
    }
  return {diff_src, ToFloat(diff_slope)};
}

std::vector<float> AddBias(const std::vector<float>& dst, const std::vector<float>& bias,
                           int64_t rows, int64_t channels) {
  std::vector<float> out(rows * channels);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < channels; ++c) {
      out[r * channels + c] =
          static_cast<float>(static_cast<double>(dst[r * channels + c]) + bias[c]);
    }
  return out;
}

std::vector<float> BiasGradient(const std::vector<float>& diff, int64_t rows, int64_t channels) {
  std::vector<double> sum(channels, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < channels; ++c) sum[c] += diff[r * channels + c];
  return ToFloat(sum);
}

std::vector<double> NllDenseTarget(const NllProblem& p, const std::vector<float>& target) {
  if (!p.sparse) return {target.begin(), target.end()};
  const int64_t n_indep = p.channels / p.n_class;
  std::vector<double> t(p.rows * p.channels, 0.0);
  for (int64_t r = 0; r < p.rows; ++r)
    for (int64_t g = 0; g < n_indep; ++g)
      for (int64_t c = 0; c < p.n_class; ++c) {
        // T.eq(id, c): exact equality, so ids < 0, >= n_class or fractional match no class.
        if (static_cast<double>(target[r * n_indep + g]) == static_cast<double>(c)) {
          t[r * p.channels + g * p.n_class + c] = 1.0;
        }
      }
  return t;
}

namespace {

double ClassWeight(const NllProblem& p, int64_t c) {
  return p.class_weights.empty() ? 1.0 : p.class_weights[c];
}

double NllScale(const NllProblem& p, double n_labelled) {
  const int64_t n_indep = p.channels / p.n_class;
  return static_cast<double>(p.rows * p.channels) / (n_labelled + 1e-5) / n_indep / p.n_class;
}

}  // namespace

NllResult NllForward(const NllProblem& p, const std::vector<float>& probs,
                     const std::vector<float>& target) {
  const std::vector<double> t = NllDenseTarget(p, target);
  double n_labelled = 0;
  for (double v : t) n_labelled += v;
  const double scale = NllScale(p, n_labelled);
  NllResult res{std::vector<float>(p.rows), n_labelled};
  for (int64_t r = 0; r < p.rows; ++r) {
    double s = 0;
    for (int64_t f = 0; f < p.channels; ++f) {
      const int64_t i = r * p.channels + f;
      const double weighted = t[i] * ClassWeight(p, f % p.n_class);
      if (weighted != 0) s -= weighted * std::log(probs[i] + 1e-5);  // xlogy0
    }
    res.loss[r] = static_cast<float>(scale * s);
  }
  return res;
}

std::vector<float> NllBackward(const NllProblem& p, const std::vector<float>& probs,
                               const std::vector<float>& target,
                               const std::vector<float>& diff_loss, double n_labelled) {
  const std::vector<double> t = NllDenseTarget(p, target);
  const double scale = NllScale(p, n_labelled);
  std::vector<float> diff(p.rows * p.channels);
  for (int64_t r = 0; r < p.rows; ++r)
    for (int64_t f = 0; f < p.channels; ++f) {
      const int64_t i = r * p.channels + f;
      const double weighted = t[i] * ClassWeight(p, f % p.n_class);
      diff[i] = static_cast<float>(-diff_loss[r] * scale * weighted / (probs[i] + 1e-5));
    }
  return diff;
}

ErrorCount CountErrors(const std::vector<float>& probs, const std::vector<float>& target,
                       int64_t rows, int64_t channels, int64_t n_class, bool sparse) {
  const int64_t n_indep = channels / n_class;
  ErrorCount n;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < n_indep; ++g) {
      const int64_t o = r * channels + g * n_class;
      int64_t predicted = 0;
      for (int64_t c = 1; c < n_class; ++c) {
        if (probs[o + c] > probs[o + predicted]) predicted = c;
      }
      int64_t truth = -1;
      if (sparse) {
        const double id = target[r * n_indep + g];
        for (int64_t c = 0; c < n_class; ++c) {
          if (id == static_cast<double>(c)) truth = c;
        }
      } else {
        for (int64_t c = 0; c < n_class; ++c) {
          if (target[o + c] != 0 && (truth < 0 || target[o + c] > target[o + truth])) truth = c;
        }
      }
      if (truth < 0) continue;
      ++n.labelled;
      if (predicted != truth) ++n.wrong;
    }
  return n;
}

double Sum(const std::vector<float>& src) {
  double s = 0;
  for (float v : src) s += v;
  return s;
}

std::vector<float> Scale(const std::vector<float>& x, float a, const std::vector<float>& prior,
                         bool accumulate) {
  std::vector<float> dst(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    dst[i] = static_cast<float>(static_cast<double>(a) * x[i] + (accumulate ? prior[i] : 0.0));
  }
  return dst;
}

std::vector<float> Add(const std::vector<float>& a, const std::vector<float>& b) {
  std::vector<float> dst(a.size());
  for (size_t i = 0; i < a.size(); ++i)
    dst[i] = static_cast<float>(static_cast<double>(a[i]) + b[i]);
  return dst;
}

std::vector<float> CopyBox(const kernels::BoxCopy& box, const std::vector<float>& src,
                           const std::vector<float>& prior, bool accumulate) {
  const size_t rank = box.extent.size();
  // Row-major offset of `origin + index * step` in a tensor shaped `shape` (no step: 1).
  auto offset = [rank](const std::vector<int64_t>& shape, const std::vector<int64_t>& origin,
                       const std::vector<int64_t>& step, const std::vector<int64_t>& index) {
    int64_t o = 0;
    for (size_t a = 0; a < rank; ++a) {
      o = o * shape[a] + origin[a] + index[a] * (step.empty() ? 1 : step[a]);
    }
    return o;
  };
  std::vector<float> dst = prior;
  std::vector<int64_t> index(rank, 0);
  for (int64_t k = 0; k < Prod(box.extent); ++k) {
    // Odometer over the extent, last axis fastest.
    int64_t rem = k;
    for (size_t a = rank; a-- > 0;) {
      index[a] = rem % box.extent[a];
      rem /= box.extent[a];
    }
    const float v = src[offset(box.src_shape, box.src_origin, box.src_step, index)];
    float& d = dst[offset(box.dst_shape, box.dst_origin, box.dst_step, index)];
    d = accumulate ? static_cast<float>(static_cast<double>(d) + v) : v;
  }
  return dst;
}

namespace {

std::vector<double> ToDouble(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// p <- p - lr * (direction + wd * m * p), m = wd_multiplier (0: not regularised).
std::vector<float> DecayedStep(const kernels::Backend::OptimiserStep& s,
                               const std::vector<double>& p, const std::vector<double>& dir) {
  std::vector<double> out(p.size());
  for (size_t i = 0; i < p.size(); ++i) {
    const double decay =
        s.wd_multiplier > 0 ? static_cast<double>(s.wd) * s.wd_multiplier * p[i] : 0.0;
    out[i] = p[i] - static_cast<double>(s.lr) * (dir[i] + decay);
  }
  return ToFloat(out);
}

}  // namespace

OptimiserState SgdStep(const kernels::Backend::OptimiserStep& s, const std::vector<float>& g,
                       OptimiserState st) {
  std::vector<double> v = ToDouble(st.slot0);
  for (size_t i = 0; i < g.size(); ++i) v[i] = g[i] + static_cast<double>(s.mom) * v[i];
  return {DecayedStep(s, ToDouble(st.p), v), ToFloat(v), {}};
}

OptimiserState AdamStep(const kernels::Backend::OptimiserStep& s, const std::vector<float>& g,
                        OptimiserState st) {
  const double b1 = s.mom, b2 = s.beta2, eps = s.eps;
  const double factor = std::sqrt(1 - std::pow(b2, s.t)) / (1 - std::pow(b1, s.t));
  std::vector<double> m = ToDouble(st.slot0), v = ToDouble(st.slot1), dir(g.size());
  for (size_t i = 0; i < g.size(); ++i) {
    m[i] = b1 * m[i] + (1 - b1) * g[i];
    v[i] = b2 * v[i] + (1 - b2) * static_cast<double>(g[i]) * g[i];
    dir[i] = factor * m[i] / std::sqrt(v[i] + eps);  // eps inside the root
  }
  return {DecayedStep(s, ToDouble(st.p), dir), ToFloat(m), ToFloat(v)};
}

OptimiserState AdaGradStep(const kernels::Backend::OptimiserStep& s, const std::vector<float>& g,
                           bool first_step, OptimiserState st) {
  std::vector<double> h = ToDouble(st.slot0), p = ToDouble(st.p);
  // ELEKTRONN2's AdaGrad applies weight decay to every regularised parameter without the
  // multiplier, inside the division by sqrt(h), and has no epsilon.
  const double wd = s.wd_multiplier > 0 ? s.wd : 0.0;
  for (size_t i = 0; i < g.size(); ++i) {
    const double g2 = static_cast<double>(g[i]) * g[i];
    if (first_step) h[i] += g2;
    h[i] += g2;
    p[i] -= static_cast<double>(s.lr) / std::sqrt(h[i]) * (g[i] + wd * p[i]);
  }
  return {ToFloat(p), ToFloat(h), {}};
}

OptimiserState AdaDeltaStep(const kernels::Backend::OptimiserStep& s, const std::vector<float>& g,
                            OptimiserState st) {
  const double rho = s.mom, eps = s.eps;
  std::vector<double> sq = ToDouble(st.slot0), d = ToDouble(st.slot1), dir(g.size());
  for (size_t i = 0; i < g.size(); ++i) {
    const double g2 = static_cast<double>(g[i]) * g[i];
    // The direction uses the squared-gradient average from before this step (QUIRK in §4).
    dir[i] = g[i] * std::sqrt(d[i] + eps) / std::sqrt(sq[i] + eps);
    sq[i] = rho * sq[i] + (1 - rho) * g2;
    d[i] = rho * d[i] + (1 - rho) * dir[i] * dir[i];
  }
  return {DecayedStep(s, ToDouble(st.p), dir), ToFloat(sq), ToFloat(d)};
}

}  // namespace elektronn::testing
