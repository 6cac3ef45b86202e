// Naive transposed convolution: every loop follows the definition in reference_deconv.h.
#include "tests/kernels/reference_deconv.h"

#include <array>

namespace elektronn::testing {
namespace {

using kernels::DeconvDesc;
using Ext3 = std::array<int64_t, 3>;

// Pads a 1- to 3-axis extent to three axes with `fill` on the missing trailing ones.
Ext3 To3(const std::vector<int64_t>& v, int64_t fill) {
  Ext3 e = {fill, fill, fill};
  for (size_t i = 0; i < v.size(); ++i) e[i] = v[i];
  return e;
}

int64_t Prod(const std::vector<int64_t>& v) {
  int64_t p = 1;
  for (int64_t x : v) p *= x;
  return p;
}

// Channels-last index of (n, a, b, c, ch) in a tensor of spatial extent `s` with `chans`.
int64_t At(const Ext3& s, int64_t chans, int64_t n, int64_t a, int64_t b, int64_t c, int64_t ch) {
  return (((n * s[0] + a) * s[1] + b) * s[2] + c) * chans + ch;
}

// Canonical weight index of (o, i, ka, kb, kc).
int64_t WAt(const Ext3& k, int64_t ci, int64_t o, int64_t i, int64_t ka, int64_t kb, int64_t kc) {
  return (((o * ci + i) * k[0] + ka) * k[1] + kb) * k[2] + kc;
}

// Calls f(n, input position, kernel offset, output position) for every contribution.
template <typename F>
void ForEachTap(const DeconvDesc& d, F f) {
  const Ext3 in = To3(d.in_spatial, 1), k = To3(d.kernel, 1), st = To3(d.stride, 1);
  for (int64_t n = 0; n < d.batch; ++n)
    for (int64_t a = 0; a < in[0]; ++a)
      for (int64_t b = 0; b < in[1]; ++b)
        for (int64_t c = 0; c < in[2]; ++c)
          for (int64_t ka = 0; ka < k[0]; ++ka)
            for (int64_t kb = 0; kb < k[1]; ++kb)
              for (int64_t kc = 0; kc < k[2]; ++kc)
                f(n, Ext3{a, b, c}, Ext3{ka, kb, kc},
                  Ext3{a * st[0] + ka, b * st[1] + kb, c * st[2] + kc});
}

}  // namespace

std::vector<int64_t> DeconvOutSpatial(const DeconvDesc& d) {
  std::vector<int64_t> o;
  for (size_t i = 0; i < d.in_spatial.size(); ++i)
    o.push_back((d.in_spatial[i] - 1) * d.stride[i] + d.kernel[i]);
  return o;
}
int64_t DeconvSrcSize(const DeconvDesc& d) { return d.batch * d.in_channels * Prod(d.in_spatial); }
int64_t DeconvDstSize(const DeconvDesc& d) {
  return d.batch * d.out_channels * Prod(DeconvOutSpatial(d));
}
int64_t DeconvWeightSize(const DeconvDesc& d) {
  return d.out_channels * d.in_channels * Prod(d.kernel);
}

std::vector<float> DeconvForward(const DeconvDesc& d, const std::vector<float>& src,
                                 const std::vector<float>& w, const std::vector<float>& bias) {
  const Ext3 in = To3(d.in_spatial, 1), k = To3(d.kernel, 1), out = To3(DeconvOutSpatial(d), 1);
  const int64_t ci = d.in_channels, co = d.out_channels;
  std::vector<double> acc(DeconvDstSize(d), 0.0);
  ForEachTap(d, [&](int64_t n, Ext3 i, Ext3 t, Ext3 o) {
    for (int64_t oc = 0; oc < co; ++oc)
      for (int64_t ic = 0; ic < ci; ++ic) {
        acc[At(out, co, n, o[0], o[1], o[2], oc)] +=
            static_cast<double>(w[WAt(k, ci, oc, ic, t[0], t[1], t[2])]) *
            src[At(in, ci, n, i[0], i[1], i[2], ic)];
      }
  });
  std::vector<float> dst(acc.size());
  for (size_t j = 0; j < acc.size(); ++j)
    dst[j] = static_cast<float>(Activate(d.fused_activation, acc[j] + bias[j % co]));
  return dst;
}

std::vector<float> DeconvBackwardData(const DeconvDesc& d, const std::vector<float>& diff_dst,
                                      const std::vector<float>& w) {
  const Ext3 in = To3(d.in_spatial, 1), k = To3(d.kernel, 1), out = To3(DeconvOutSpatial(d), 1);
  const int64_t ci = d.in_channels, co = d.out_channels;
  std::vector<double> acc(DeconvSrcSize(d), 0.0);
  ForEachTap(d, [&](int64_t n, Ext3 i, Ext3 t, Ext3 o) {
    for (int64_t oc = 0; oc < co; ++oc)
      for (int64_t ic = 0; ic < ci; ++ic) {
        acc[At(in, ci, n, i[0], i[1], i[2], ic)] +=
            static_cast<double>(w[WAt(k, ci, oc, ic, t[0], t[1], t[2])]) *
            diff_dst[At(out, co, n, o[0], o[1], o[2], oc)];
      }
  });
  return std::vector<float>(acc.begin(), acc.end());
}

WeightGrads DeconvBackwardWeights(const DeconvDesc& d, const std::vector<float>& src,
                                  const std::vector<float>& diff_dst) {
  const Ext3 in = To3(d.in_spatial, 1), k = To3(d.kernel, 1), out = To3(DeconvOutSpatial(d), 1);
  const int64_t ci = d.in_channels, co = d.out_channels;
  std::vector<double> dw(DeconvWeightSize(d), 0.0), db(co, 0.0);
  ForEachTap(d, [&](int64_t n, Ext3 i, Ext3 t, Ext3 o) {
    for (int64_t oc = 0; oc < co; ++oc)
      for (int64_t ic = 0; ic < ci; ++ic) {
        dw[WAt(k, ci, oc, ic, t[0], t[1], t[2])] +=
            static_cast<double>(src[At(in, ci, n, i[0], i[1], i[2], ic)]) *
            diff_dst[At(out, co, n, o[0], o[1], o[2], oc)];
      }
  });
  for (size_t j = 0; j < diff_dst.size(); ++j) db[j % co] += diff_dst[j];
  return {std::vector<float>(dw.begin(), dw.end()), std::vector<float>(db.begin(), db.end())};
}

}  // namespace elektronn::testing
