// Parity of the transposed convolution (UpConv family): forward, backward data (overwrite and
// accumulate), backward weights and the weight round trip against reference_deconv.h, in 1-D,
// 2-D and 3-D, with isotropic and anisotropic pools (kernel = stride = pool as UpConv uses them)
// and a few kernel != stride geometries. Test names: `Parity/Deconv3dPool122Forward.Cpu`.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "kernels/backend.h"
#include "tests/kernels/parity_harness.h"
#include "tests/kernels/reference_deconv.h"

namespace elektronn::testing {
namespace {

using kernels::DeconvDesc;
using kernels::Eltwise;

enum class DeconvOp {
  kForward,
  kBackwardData,
  kBackwardDataAccumulate,
  kBackwardWeights,
  kWeightRoundTrip
};

DeconvDesc MakeDeconv(int64_t batch, int64_t in_c, int64_t out_c, std::vector<int64_t> spatial,
                      std::vector<int64_t> kernel, std::vector<int64_t> stride,
                      Eltwise act = Eltwise::kLinear) {
  DeconvDesc d;
  d.batch = batch;
  d.in_channels = in_c;
  d.out_channels = out_c;
  d.in_spatial = std::move(spatial);
  d.kernel = std::move(kernel);
  d.stride = std::move(stride);
  d.fused_activation = act;
  return d;
}

absl::StatusOr<Outcome> RunDeconv(const DeconvDesc& d, DeconvOp op, Backend& b, InputRng& rng) {
  auto created = b.CreateDeconv(d);
  if (!created.ok()) return created.status();
  kernels::ConvKernel& k = **created;
  if (absl::Status s = CheckOutSpatial(k.out_spatial(), DeconvOutSpatial(d)); !s.ok()) return s;
  if (k.weight_size() < DeconvWeightSize(d)) {
    return absl::InternalError(absl::StrFormat("weight_size %d is below the %d canonical weights",
                                               k.weight_size(), DeconvWeightSize(d)));
  }
  const std::vector<float> src = rng.Uniform(DeconvSrcSize(d)),
                           w = rng.Uniform(DeconvWeightSize(d)), bias = rng.Uniform(d.out_channels),
                           diff_dst = rng.Uniform(DeconvDstSize(d));
  std::vector<float> native(k.weight_size(), 0.f);
  k.ImportWeights(w.data(), native.data());

  Outcome out{k.impl_name(), {}};
  switch (op) {
    case DeconvOp::kForward: {
      DeviceBuffer s(b, src), wn(b, native), bb(b, bias),
          dst(b, std::vector<float>(DeconvDstSize(d), kStale));
      if (absl::Status st = k.Forward(s.data(), wn.data(), bb.data(), dst.data()); !st.ok())
        return st;
      out.outputs.push_back({"dst", dst.Download(), DeconvForward(d, src, w, bias)});
      break;
    }
    case DeconvOp::kBackwardData:
    case DeconvOp::kBackwardDataAccumulate: {
      const bool acc = op == DeconvOp::kBackwardDataAccumulate;
      const std::vector<float> prior =
          acc ? rng.Uniform(DeconvSrcSize(d)) : std::vector<float>(DeconvSrcSize(d), kStale);
      DeviceBuffer dd(b, diff_dst), wn(b, native), ds(b, prior);
      if (absl::Status st = k.BackwardData(dd.data(), wn.data(), ds.data(), acc); !st.ok())
        return st;
      std::vector<float> want = DeconvBackwardData(d, diff_dst, w);
      out.outputs.push_back({"diff_src", ds.Download(), acc ? Plus(prior, want) : want});
      break;
    }
    case DeconvOp::kBackwardWeights: {
      DeviceBuffer s(b, src), dd(b, diff_dst), dw(b, std::vector<float>(k.weight_size(), kStale)),
          db(b, std::vector<float>(d.out_channels, kStale));
      if (absl::Status st = k.BackwardWeights(s.data(), dd.data(), dw.data(), db.data());
          !st.ok()) {
        return st;
      }
      const std::vector<float> dw_native = dw.Download();
      std::vector<float> dw_canonical(DeconvWeightSize(d));
      k.ExportWeights(dw_native.data(), dw_canonical.data());
      const WeightGrads want = DeconvBackwardWeights(d, src, diff_dst);
      out.outputs.push_back({"diff_w", dw_canonical, want.w});
      out.outputs.push_back({"diff_b", db.Download(), want.bias});
      int64_t non_finite = 0;
      for (float v : dw_native) non_finite += !std::isfinite(v);
      out.outputs.push_back(
          {"diff_w native entries not finite", {static_cast<float>(non_finite)}, {0.f}});
      break;
    }
    case DeconvOp::kWeightRoundTrip: {
      std::vector<float> back(DeconvWeightSize(d), kStale);
      k.ExportWeights(native.data(), back.data());
      out.outputs.push_back({"Export(Import(w))", back, w});
      break;
    }
  }
  return out;
}

struct NamedDeconv {
  std::string name;
  DeconvDesc desc;
};

// UpConv geometries (kernel = stride = pool) reaching the general oneDNN 1/2/3-D paths and the
// folded path for pools (1, p, p); odd channel counts; batch 2; plus kernel != stride.
std::vector<NamedDeconv> DeconvGeometries() {
  const Eltwise relu = Eltwise::kRelu;
  return {
      {"Deconv1dPool2", MakeDeconv(2, 3, 4, {5}, {2}, {2})},
      {"Deconv1dPool3", MakeDeconv(1, 5, 3, {4}, {3}, {3})},
      {"Deconv2dPool22", MakeDeconv(2, 3, 5, {4, 3}, {2, 2}, {2, 2})},
      {"Deconv2dPool32", MakeDeconv(1, 4, 3, {3, 4}, {3, 2}, {3, 2})},
      {"Deconv3dPool222", MakeDeconv(2, 3, 4, {3, 4, 2}, {2, 2, 2}, {2, 2, 2})},
      {"Deconv3dPool122", MakeDeconv(2, 5, 3, {3, 4, 3}, {1, 2, 2}, {1, 2, 2})},
      {"Deconv3dPool144", MakeDeconv(1, 3, 4, {2, 3, 2}, {1, 4, 4}, {1, 4, 4})},
      {"Deconv3dPool211", MakeDeconv(1, 4, 3, {3, 4, 3}, {2, 1, 1}, {2, 1, 1})},
      {"Deconv3dPool111", MakeDeconv(2, 3, 5, {2, 3, 2}, {1, 1, 1}, {1, 1, 1})},
      {"Deconv3dPool122Relu", MakeDeconv(2, 5, 3, {3, 4, 3}, {1, 2, 2}, {1, 2, 2}, relu)},
      {"Deconv3dPool222Relu", MakeDeconv(1, 3, 4, {3, 4, 2}, {2, 2, 2}, {2, 2, 2}, relu)},
      {"Deconv2dKernel3Stride2", MakeDeconv(2, 3, 4, {4, 3}, {3, 3}, {2, 2})},
      {"Deconv1dKernel2Stride3", MakeDeconv(1, 3, 2, {4}, {2}, {3})},
      {"Deconv3dWide", MakeDeconv(1, 20, 30, {2, 3, 3}, {1, 2, 2}, {1, 2, 2})},
      // Activations that oneDNN gets as post-op chains (AppendActivation).
      {"Deconv3dPool122Selu", MakeDeconv(1, 3, 4, {2, 3, 3}, {1, 2, 2}, {1, 2, 2}, Eltwise::kSelu)},
      {"Deconv2dPool22Radius", MakeDeconv(1, 3, 4, {3, 3}, {2, 2}, {2, 2}, Eltwise::kRadius)},
      {"Deconv2dPool22Concentration",
       MakeDeconv(1, 3, 4, {3, 3}, {2, 2}, {2, 2}, Eltwise::kConcentration)},
  };
}

std::vector<ParityCase> DeconvCases() {
  std::vector<ParityCase> cases;
  for (const NamedDeconv& g : DeconvGeometries()) {
    for (auto [op, suffix] : {std::pair{DeconvOp::kForward, "Forward"},
                              {DeconvOp::kBackwardData, "BackwardData"},
                              {DeconvOp::kBackwardDataAccumulate, "BackwardDataAccumulate"},
                              {DeconvOp::kBackwardWeights, "BackwardWeights"},
                              {DeconvOp::kWeightRoundTrip, "WeightRoundTrip"}}) {
      cases.push_back({g.name + suffix, [d = g.desc, op = op](Backend& b, InputRng& r) {
                         return RunDeconv(d, op, b, r);
                       }});
    }
  }
  return cases;
}

[[maybe_unused]] const bool kRegistered = RegisterParityCases(DeconvCases());

// The reference checked against itself.

double Dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

// <deconv(x), y> == <x, deconv^T(y)> and <deconv(x), y> == <w, dW(x, y)> (bias and activation
// off): forward, backward data and backward weights are adjoint.
TEST(DeconvReference, AdjointIdentities) {
  for (const NamedDeconv& g : DeconvGeometries()) {
    DeconvDesc d = g.desc;
    d.fused_activation = Eltwise::kLinear;
    InputRng rng(SeedOf(g.name));
    const auto x = rng.Uniform(DeconvSrcSize(d)), w = rng.Uniform(DeconvWeightSize(d)),
               y = rng.Uniform(DeconvDstSize(d));
    const std::vector<float> zero(d.out_channels, 0.f);
    const double fwd = Dot(DeconvForward(d, x, w, zero), y);
    EXPECT_NEAR(fwd, Dot(x, DeconvBackwardData(d, y, w)), 1e-4 * (1 + std::fabs(fwd))) << g.name;
    EXPECT_NEAR(fwd, Dot(w, DeconvBackwardWeights(d, x, y).w), 1e-4 * (1 + std::fabs(fwd)))
        << g.name;
  }
}

// One input voxel of value 2 spreads into its block [i*p, i*p + p) weighted by the kernel,
// without flipping it (reference §2.8); bias on every output.
TEST(DeconvReference, SpreadsEachVoxelIntoItsBlockUnflipped) {
  const DeconvDesc d = MakeDeconv(1, 1, 1, {2}, {3}, {3});
  const std::vector<float> dst = DeconvForward(d, {0.f, 2.f}, {1.f, 10.f, 100.f}, {0.5f});
  EXPECT_EQ(dst, (std::vector<float>{0.5f, 0.5f, 0.5f, 2.5f, 20.5f, 200.5f}));
}

}  // namespace
}  // namespace elektronn::testing
