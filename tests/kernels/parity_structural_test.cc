// Parity cases of the structural, element-wise and probabilistic family (issue 11): selu,
// concentration and radius (alone and fused into convolution and matmul), Multiply, Transpose,
// ApplyFunc's scalar functions, Maxout, LRN, the Gaussian sample and the AEVB prior term.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "engine/core/status.h"
#include "tests/kernels/parity_harness.h"
#include "tests/kernels/reference.h"
#include "tests/kernels/reference_structural.h"

namespace elektronn::testing {
namespace {

using kernels::Eltwise;
using kernels::LrnDesc;
using kernels::ScalarFunction;

std::vector<float> Stale(int64_t n) { return std::vector<float>(n, kStale); }

// Forward, backward into a fresh buffer, and backward accumulating onto a prior gradient.
enum class Mode { kForward, kBackward, kAccumulate };
constexpr std::pair<Mode, const char*> kModes[] = {
    {Mode::kForward, "Forward"}, {Mode::kBackward, "Backward"}, {Mode::kAccumulate, "Accumulate"}};

// The gradient buffer the kernel writes and what it should hold afterwards.
struct GradOut {
  std::vector<float> prior;
  bool acc;
  std::vector<float> Want(const std::vector<float>& g) const { return acc ? Plus(prior, g) : g; }
};
GradOut Prior(Mode m, int64_t n, InputRng& rng) {
  const bool acc = m == Mode::kAccumulate;
  return {acc ? rng.Uniform(n) : Stale(n), acc};
}

void AddModes(std::vector<ParityCase>& cases, const std::string& name,
              const std::function<absl::StatusOr<Outcome>(Mode, Backend&, InputRng&)>& run) {
  for (auto [mode, suffix] : kModes) {
    cases.push_back(
        {name + suffix, [run, mode = mode](Backend& b, InputRng& r) { return run(mode, b, r); }});
  }
}

// --- the new activations ---------------------------------------------------------------------

absl::StatusOr<Outcome> RunActivation(Eltwise e, Mode m, Backend& b, InputRng& rng) {
  const int64_t n = 5003;
  const std::vector<float> src = rng.Uniform(n, -6.f, 6.f), dd = rng.Uniform(n);
  Outcome out;
  if (m == Mode::kForward) {
    DeviceBuffer s(b, src), dst(b, Stale(n));
    b.EltwiseForward(e, s.data(), dst.data(), n);
    out.outputs.push_back({"dst", dst.Download(), EltwiseForward(e, src)});
    return out;
  }
  const GradOut g = Prior(m, n, rng);
  // The engine's fused paths pass no src: the derivative must come from dst alone.
  DeviceBuffer y(b, EltwiseForward(e, src)), d(b, dd), ds(b, g.prior);
  b.EltwiseBackward(e, nullptr, y.data(), d.data(), ds.data(), n, g.acc);
  out.outputs.push_back({"diff_src", ds.Download(), g.Want(EltwiseBackward(e, src, dd))});
  return out;
}

absl::StatusOr<Outcome> RunFusedConv(Eltwise e, Backend& b, InputRng& rng) {
  kernels::ConvDesc d;
  d.batch = 2;
  d.in_channels = 3;
  d.out_channels = 4;
  d.in_spatial = {5, 6};
  d.kernel = {3, 2};
  d.pad = {0, 0};
  d.fused_activation = e;
  ASSIGN_OR_RETURN(auto k, b.CreateConv(d));
  const std::vector<float> src = rng.Uniform(ConvSrcSize(d)), w = rng.Uniform(ConvWeightSize(d)),
                           bias = rng.Uniform(d.out_channels);
  std::vector<float> native(k->weight_size(), 0.f);
  k->ImportWeights(w.data(), native.data());
  DeviceBuffer s(b, src), wn(b, native), bb(b, bias), dst(b, Stale(ConvDstSize(d)));
  RETURN_IF_ERROR(k->Forward(s.data(), wn.data(), bb.data(), dst.data()));
  Outcome out{k->impl_name(), {}};
  out.outputs.push_back({"dst", dst.Download(), ConvForward(d, src, w, bias)});
  return out;
}

absl::StatusOr<Outcome> RunFusedMatmul(Eltwise e, Backend& b, InputRng& rng) {
  const kernels::MatmulDesc d{7, 5, 3, e};
  ASSIGN_OR_RETURN(auto k, b.CreateMatmul(d));
  const std::vector<float> src = rng.Uniform(d.m * d.k), w = rng.Uniform(d.k * d.n),
                           bias = rng.Uniform(d.n);
  DeviceBuffer s(b, src), wb(b, w), bb(b, bias), dst(b, Stale(d.m * d.n));
  RETURN_IF_ERROR(k->Forward(s.data(), wb.data(), bb.data(), dst.data()));
  Outcome out;
  out.outputs.push_back({"dst", dst.Download(), MatmulForward(d, src, w, bias)});
  return out;
}

// --- Multiply and Transpose ------------------------------------------------------------------

absl::StatusOr<Outcome> RunMultiply(bool acc, Backend& b, InputRng& rng) {
  const int64_t n = 20011;
  const std::vector<float> x = rng.Uniform(n), y = rng.Uniform(n);
  const GradOut g = Prior(acc ? Mode::kAccumulate : Mode::kBackward, n, rng);
  DeviceBuffer xb(b, x), yb(b, y), dst(b, g.prior);
  b.Multiply(xb.data(), yb.data(), dst.data(), n, acc);
  Outcome out;
  out.outputs.push_back({"dst", dst.Download(), g.Want(Multiply(x, y))});
  return out;
}

absl::StatusOr<Outcome> RunTranspose(std::vector<int64_t> dims, std::vector<int> perm, bool acc,
                                     Backend& b, InputRng& rng) {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  const std::vector<float> src = rng.Uniform(n);
  const GradOut g = Prior(acc ? Mode::kAccumulate : Mode::kBackward, n, rng);
  DeviceBuffer s(b, src), dst(b, g.prior);
  b.Transpose(dims, perm, s.data(), dst.data(), acc);
  Outcome out;
  out.outputs.push_back({"dst", dst.Download(), g.Want(Transpose(dims, perm, src))});
  return out;
}

// --- ApplyFunc's functions -------------------------------------------------------------------

absl::StatusOr<Outcome> RunScalar(ScalarFunction f, float a, float c, float lo, float hi, Mode m,
                                  Backend& b, InputRng& rng) {
  const int64_t n = 4099;
  const std::vector<float> src = rng.Uniform(n, lo, hi), dd = rng.Uniform(n);
  std::vector<float> fwd(n), bwd(n);
  for (int64_t i = 0; i < n; ++i) {
    fwd[i] = static_cast<float>(ApplyScalar(f, a, c, src[i]));
    bwd[i] = static_cast<float>(ApplyScalarDerivative(f, a, c, src[i]) * dd[i]);
  }
  Outcome out;
  DeviceBuffer s(b, src);
  if (m == Mode::kForward) {
    DeviceBuffer dst(b, Stale(n));
    b.ScalarFunctionForward(f, a, c, s.data(), dst.data(), n);
    out.outputs.push_back({"dst", dst.Download(), fwd});
    return out;
  }
  const GradOut g = Prior(m, n, rng);
  DeviceBuffer d(b, dd), ds(b, g.prior);
  b.ScalarFunctionBackward(f, a, c, s.data(), d.data(), ds.data(), n, g.acc);
  out.outputs.push_back({"diff_src", ds.Download(), g.Want(bwd)});
  return out;
}

// --- Maxout ----------------------------------------------------------------------------------

absl::StatusOr<Outcome> RunMaxout(int64_t rows, int64_t ch, int64_t k, Mode m, Backend& b,
                                  InputRng& rng) {
  const std::vector<float> src = rng.Uniform(rows * ch), dd = rng.Uniform(rows * ch / k);
  Outcome out;
  DeviceBuffer s(b, src);
  if (m == Mode::kForward) {
    DeviceBuffer dst(b, Stale(rows * ch / k));
    b.MaxoutForward(s.data(), dst.data(), rows, ch, k);
    out.outputs.push_back({"dst", dst.Download(), MaxoutForward(src, rows, ch, k)});
    return out;
  }
  const GradOut g = Prior(m, rows * ch, rng);
  DeviceBuffer d(b, dd), ds(b, g.prior);
  b.MaxoutBackward(s.data(), d.data(), ds.data(), rows, ch, k, g.acc);
  out.outputs.push_back({"diff_src", ds.Download(), g.Want(MaxoutBackward(src, dd, rows, ch, k))});
  return out;
}

// --- LRN -------------------------------------------------------------------------------------

absl::StatusOr<Outcome> RunLrn(const LrnDesc& d, Mode m, Backend& b, InputRng& rng) {
  int64_t n = d.batch * d.channels;
  for (int64_t s : d.spatial) n *= s;
  const std::vector<float> src = rng.Uniform(n, -2.f, 2.f), dd = rng.Uniform(n);
  Outcome out;
  DeviceBuffer s(b, src), ws(b, Stale(2 * n));
  DeviceBuffer dst(b, Stale(n));
  b.LrnForward(d, s.data(), dst.data(), ws.data());
  if (m == Mode::kForward) {
    out.outputs.push_back({"dst", dst.Download(), LrnForward(d, src)});
    return out;
  }
  const GradOut g = Prior(m, n, rng);
  DeviceBuffer dbuf(b, dd), ds(b, g.prior);
  b.LrnBackward(d, s.data(), dbuf.data(), ds.data(), ws.data(), g.acc);
  out.outputs.push_back({"diff_src", ds.Download(), g.Want(LrnBackward(d, src, dd))});
  return out;
}

LrnDesc Lrn(int64_t batch, std::vector<int64_t> spatial, int64_t channels, bool channel_mode,
            std::vector<int64_t> window) {
  LrnDesc d;
  d.batch = batch;
  d.spatial = std::move(spatial);
  d.channels = channels;
  d.channel_mode = channel_mode;
  d.window = std::move(window);
  d.alpha = 0.7f;  // large enough that the normalisation matters
  d.k = 1.3f;
  d.beta = 0.75f;
  return d;
}

// --- Gaussian sample and prior ---------------------------------------------------------------

absl::StatusOr<Outcome> RunGaussian(int64_t outer, int64_t samples, int64_t inner, Mode m,
                                    Backend& b, InputRng& rng) {
  const uint64_t seed = 99, step = 12;
  const int64_t n = outer * inner, ns = outer * samples * inner;
  const std::vector<float> mu = rng.Uniform(n), ls = rng.Uniform(n, -1.f, 0.5f),
                           dd = rng.Uniform(ns);
  Outcome out;
  DeviceBuffer mb(b, mu), lb(b, ls), dst(b, Stale(ns));
  b.GaussianSample(mb.data(), lb.data(), dst.data(), outer, samples, inner, seed, step);
  if (m == Mode::kForward) {
    out.outputs.push_back(
        {"dst", dst.Download(), GaussianSample(mu, ls, outer, samples, inner, seed, step)});
    return out;
  }
  const GaussianGrads want = GaussianSampleBackward(mu, ls, dd, outer, samples, inner, seed, step);
  const GradOut gm = Prior(m, n, rng), gl = Prior(m, n, rng);
  DeviceBuffer d(b, dd), dmu(b, gm.prior), dls(b, gl.prior);
  b.GaussianSampleBackward(mb.data(), dst.data(), d.data(), dmu.data(), gm.acc, dls.data(), gl.acc,
                           outer, samples, inner);
  out.outputs.push_back({"diff_mu", dmu.Download(), gm.Want(want.mu)});
  out.outputs.push_back({"diff_log_sig", dls.Download(), gl.Want(want.log_sig)});
  return out;
}

absl::StatusOr<Outcome> RunPrior(Mode m, Backend& b, InputRng& rng) {
  const int64_t n = 3001;
  const std::vector<float> mu = rng.Uniform(n, -2.f, 2.f), ls = rng.Uniform(n, -1.5f, 1.f),
                           dd = rng.Uniform(n);
  Outcome out;
  DeviceBuffer mb(b, mu), lb(b, ls);
  if (m == Mode::kForward) {
    DeviceBuffer dst(b, Stale(n));
    b.GaussianPriorForward(mb.data(), lb.data(), dst.data(), n);
    out.outputs.push_back({"dst", dst.Download(), GaussianPriorForward(mu, ls)});
    return out;
  }
  const GaussianGrads want = GaussianPriorBackward(mu, ls, dd);
  const GradOut gm = Prior(m, n, rng), gl = Prior(m, n, rng);
  DeviceBuffer d(b, dd), dmu(b, gm.prior), dls(b, gl.prior);
  b.GaussianPriorBackward(mb.data(), lb.data(), d.data(), dmu.data(), gm.acc, dls.data(), gl.acc,
                          n);
  out.outputs.push_back({"diff_mu", dmu.Download(), gm.Want(want.mu)});
  out.outputs.push_back({"diff_log_sig", dls.Download(), gl.Want(want.log_sig)});
  return out;
}

std::vector<ParityCase> StructuralCases() {
  std::vector<ParityCase> cases;
  for (auto [name, e] : {std::pair{"Selu", Eltwise::kSelu},
                         {"Concentration", Eltwise::kConcentration},
                         {"Radius", Eltwise::kRadius}}) {
    AddModes(cases, std::string("Eltwise") + name,
             [e = e](Mode m, Backend& b, InputRng& r) { return RunActivation(e, m, b, r); });
    cases.push_back({std::string("ConvFused") + name,
                     [e = e](Backend& b, InputRng& r) { return RunFusedConv(e, b, r); }});
    cases.push_back({std::string("MatmulFused") + name,
                     [e = e](Backend& b, InputRng& r) { return RunFusedMatmul(e, b, r); }});
  }
  cases.push_back({"Multiply", [](Backend& b, InputRng& r) { return RunMultiply(false, b, r); }});
  cases.push_back(
      {"MultiplyAccumulate", [](Backend& b, InputRng& r) { return RunMultiply(true, b, r); }});
  struct T {
    const char* name;
    std::vector<int64_t> dims;
    std::vector<int> perm;
  };
  for (const T& t : {T{"TransposeChannelsToLogical", {2, 3, 4, 5}, {0, 3, 1, 2}},
                     T{"TransposeLogicalToChannels", {2, 5, 3, 4}, {0, 2, 3, 1}},
                     T{"TransposeReverse3d", {3, 4, 5}, {2, 1, 0}},
                     T{"TransposeLarge", {4, 40, 33, 7}, {0, 3, 1, 2}}}) {
    for (bool acc : {false, true}) {
      cases.push_back(
          {std::string(t.name) + (acc ? "Accumulate" : ""),
           [t, acc](Backend& b, InputRng& r) { return RunTranspose(t.dims, t.perm, acc, b, r); }});
    }
  }
  struct S {
    const char* name;
    ScalarFunction f;
    float a, c, lo, hi;
  };
  for (const S& s : {S{"Affine", ScalarFunction::kAffine, -1.7f, 0.4f, -3.f, 3.f},
                     S{"Pow", ScalarFunction::kPow, 2.5f, 0.f, 0.1f, 3.f},
                     S{"PowSquare", ScalarFunction::kPow, 2.f, 0.f, -3.f, 3.f},
                     S{"Clip", ScalarFunction::kClip, -0.5f, 0.8f, -2.f, 2.f},
                     S{"Exp", ScalarFunction::kExp, 0.f, 0.f, -3.f, 3.f},
                     S{"Log", ScalarFunction::kLog, 0.f, 0.f, 0.05f, 5.f}}) {
    AddModes(cases, std::string("ApplyFunc") + s.name, [s](Mode m, Backend& b, InputRng& r) {
      return RunScalar(s.f, s.a, s.c, s.lo, s.hi, m, b, r);
    });
  }
  for (auto [name, rows, ch, k] : {std::tuple{"Maxout2", int64_t{37}, int64_t{6}, int64_t{2}},
                                   {"Maxout3", int64_t{11}, int64_t{9}, int64_t{3}},
                                   {"Maxout1", int64_t{5}, int64_t{4}, int64_t{1}},
                                   {"MaxoutLong", int64_t{20000}, int64_t{4}, int64_t{4}}}) {
    AddModes(cases, name, [rows = rows, ch = ch, k = k](Mode m, Backend& b, InputRng& r) {
      return RunMaxout(rows, ch, k, m, b, r);
    });
  }
  struct L {
    const char* name;
    LrnDesc d;
  };
  for (const L& l : {L{"LrnSpatial1d", Lrn(2, {9}, 3, false, {3})},
                     L{"LrnSpatial2d", Lrn(1, {5, 6}, 2, false, {3, 5})},
                     L{"LrnSpatial3d", Lrn(2, {3, 4, 5}, 2, false, {3, 1, 3})},
                     L{"LrnChannel5", Lrn(2, {4, 3}, 7, true, {5})},
                     L{"LrnChannelWiderThanChannels", Lrn(1, {6}, 2, true, {5})},
                     L{"LrnChannelOneChannel", Lrn(3, {4}, 1, true, {3})}}) {
    AddModes(cases, l.name,
             [d = l.d](Mode m, Backend& b, InputRng& r) { return RunLrn(d, m, b, r); });
  }
  AddModes(cases, "GaussianSample",
           [](Mode m, Backend& b, InputRng& r) { return RunGaussian(1, 1, 513, m, b, r); });
  AddModes(cases, "GaussianSampleSamples",
           [](Mode m, Backend& b, InputRng& r) { return RunGaussian(3, 4, 71, m, b, r); });
  AddModes(cases, "GaussianPrior", RunPrior);
  return cases;
}

[[maybe_unused]] const bool kRegistered = RegisterParityCases(StructuralCases());

// The reference's derivatives of the new activations and scalar functions are themselves checked
// against central differences, so parity cannot agree on a wrong formula.
TEST(StructuralReference, DerivativesMatchFiniteDifferences) {
  for (Eltwise e : {Eltwise::kSelu, Eltwise::kConcentration, Eltwise::kRadius}) {
    for (double x : {-5.3, -2.1, -0.7, -0.05, 0.05, 0.4, 1.9, 4.6}) {
      const double h = 1e-6;
      const double numeric = (Activate(e, x + h) - Activate(e, x - h)) / (2 * h);
      EXPECT_NEAR(ActivateDerivative(e, x), numeric, 1e-5) << kernels::EltwiseName(e) << " " << x;
    }
  }
  for (ScalarFunction f : {ScalarFunction::kAffine, ScalarFunction::kPow, ScalarFunction::kClip,
                           ScalarFunction::kExp, ScalarFunction::kLog}) {
    for (double x : {0.13, 0.7, 1.9, 2.6}) {
      const double h = 1e-6, a = 1.7, c = 2.2;
      const double numeric = (ApplyScalar(f, a, c, x + h) - ApplyScalar(f, a, c, x - h)) / (2 * h);
      EXPECT_NEAR(ApplyScalarDerivative(f, a, c, x), numeric, 1e-5) << static_cast<int>(f);
    }
  }
}

TEST(StructuralReference, LrnBackwardMatchesFiniteDifferences) {
  for (const LrnDesc& d : {Lrn(1, {4, 3}, 2, false, {3, 3}), Lrn(2, {3}, 3, true, {5})}) {
    int64_t n = d.batch * d.channels;
    for (int64_t s : d.spatial) n *= s;
    InputRng rng(5);
    std::vector<float> x = rng.Uniform(n, -2.f, 2.f);
    const std::vector<float> g = rng.Uniform(n);
    const std::vector<float> analytic = LrnBackward(d, x, g);
    for (int64_t i = 0; i < n; ++i) {
      const float keep = x[i], h = 1e-2f;
      auto dot = [&](float v) {
        x[i] = v;
        const std::vector<float> y = LrnForward(d, x);
        double s = 0;
        for (int64_t j = 0; j < n; ++j) s += double{y[j]} * g[j];
        return s;
      };
      const double numeric = (dot(keep + h) - dot(keep - h)) / (2.0 * h);
      x[i] = keep;
      EXPECT_NEAR(analytic[i], numeric, 2e-3) << "input " << i;
    }
  }
}

}  // namespace
}  // namespace elektronn::testing
