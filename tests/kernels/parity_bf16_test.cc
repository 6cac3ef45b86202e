// bf16 mixed precision (DataType::kBf16): each kernel against the fp32 naive reference with a
// per-output bound derived from bf16's 8-bit significand.
//
// The bound. Rounding to bf16 (8 significant bits, round to nearest) changes a value by at most
// 2^-8 of it, so a product a*b of two rounded operands is off by at most (2^-7 + 2^-16) |a b|.
// Summing K products in fp32 adds at most about K 2^-24 sum |a b| (we allow twice that). Per
// output o:
//   |got_o - want_o| <= (2^-7 + 2^-16 + K 2^-23) * S_o + 1e-6,   S_o = sum_i |a_i b_i|,
// S_o computed by the same reference on |a| and |b|. The fused activations used here (linear,
// relu, tanh) are 1-Lipschitz, so the bound carries through them; bias stays fp32. The bias
// gradient sums the rounded diff_dst: S_o = sum |diff_dst|, within the same formula.
// An fp32 kernel would pass these bounds too, so each test also asserts the implementation
// names say bf16 (oneDNN's avx512_core_bf16 kernels), and the staleness tests guard the bf16
// copies a kernel keeps between calls.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "kernels/backend.h"
#include "tests/kernels/parity_harness.h"
#include "tests/kernels/reference.h"
#include "tests/kernels/reference_deconv.h"

namespace elektronn::testing {
namespace {

using kernels::ConvDesc;
using kernels::DataType;
using kernels::DeconvDesc;
using kernels::Eltwise;
using kernels::MatmulDesc;
using kernels::PoolDesc;

std::vector<float> Abs(std::vector<float> v) {
  for (float& x : v) x = std::fabs(x);
  return v;
}

// New values in the same buffer (the kernels' bf16 copies are keyed by pointer).
void RefillInPlace(std::vector<float>& v, InputRng& rng) {
  const std::vector<float> fresh = rng.Uniform(static_cast<int64_t>(v.size()));
  std::copy(fresh.begin(), fresh.end(), v.begin());
}

// Every output within the bound above; reports the worst one relative to its bound.
void ExpectWithinBf16Bound(const std::string& what, const std::vector<float>& got,
                           const std::vector<float>& want, const std::vector<float>& abs_sum,
                           int64_t k) {
  ASSERT_EQ(got.size(), want.size()) << what;
  ASSERT_EQ(abs_sum.size(), want.size()) << what;
  const double rel = std::ldexp(1.0, -7) + std::ldexp(1.0, -16) + k * std::ldexp(1.0, -23);
  int64_t bad = 0, worst = 0;
  double worst_ratio = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double bound = rel * abs_sum[i] + 1e-6;
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    const double ratio = std::isnan(err) ? INFINITY : err / bound;
    if (ratio > 1) ++bad;
    if (ratio > worst_ratio || std::isnan(err))
      worst_ratio = ratio, worst = static_cast<int64_t>(i);
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << got.size()
                    << " outputs beyond the bf16 bound; worst at " << worst << ": got "
                    << got[worst] << ", want " << want[worst] << ", bound "
                    << rel * abs_sum[worst] + 1e-6;
  std::printf("  %-28s worst error / bound = %.3f (K = %lld)\n", what.c_str(), worst_ratio,
              static_cast<long long>(k));
}

// Each '/'-separated implementation name mentions bf16.
void ExpectBf16Impl(const std::string& impl) {
  std::printf("  impl: %s\n", impl.c_str());
  size_t start = 0;
  while (start <= impl.size()) {
    size_t end = impl.find('/', start);
    if (end == std::string::npos) end = impl.size();
    const std::string part = impl.substr(start, end - start);
    EXPECT_NE(part.find("bf16"), std::string::npos) << "'" << part << "' in '" << impl << "'";
    start = end + 1;
  }
}

class Bf16Parity : public ::testing::Test {
 protected:
  void SetUp() override {
    // Needs the hardware, as GPU suites need a GPU: ctest label `bf16` (ctest -LE bf16 on CPUs
    // without AVX512_BF16, where bf16_refusal_test checks that bf16 is refused instead).
    ASSERT_TRUE(kernels::CpuHasBf16())
        << "this CPU has no AVX512_BF16; exclude the bf16 label here (ctest -LE bf16)";
    backend_ = kernels::CreateCpuBackend();
  }
  std::unique_ptr<kernels::Backend> backend_;
};

// A convolution-like layer (Conv or Deconv) with its references.
struct LayerRef {
  int64_t src_size, dst_size, weight_size, out_channels;
  int64_t k_fwd, k_bwd_data, k_bwd_weights;  // products summed per output
  std::function<std::vector<float>(const std::vector<float>&, const std::vector<float>&,
                                   const std::vector<float>&, bool abs)>
      fwd;  // (src, w, bias); abs: |src|, |w|, linear activation, no bias
  std::function<std::vector<float>(const std::vector<float>&, const std::vector<float>&)> bwd_data;
  std::function<WeightGrads(const std::vector<float>&, const std::vector<float>&)> bwd_weights;
};

LayerRef ConvRef(ConvDesc d) {
  int64_t kvol = 1, ovol = 1;
  for (int64_t k : d.kernel) kvol *= k;
  for (int64_t o : ConvOutSpatial(d)) ovol *= o;
  ConvDesc lin = d;
  lin.fused_activation = Eltwise::kLinear;
  return {ConvSrcSize(d),
          ConvDstSize(d),
          ConvWeightSize(d),
          d.out_channels,
          d.in_channels * kvol,
          d.out_channels * kvol,
          d.batch * ovol,
          [d, lin](const auto& s, const auto& w, const auto& b, bool abs) {
            return abs ? ConvForward(lin, Abs(s), Abs(w), std::vector<float>(b.size(), 0.f))
                       : ConvForward(d, s, w, b);
          },
          [d](const auto& dd, const auto& w) { return ConvBackwardData(d, dd, w); },
          [d](const auto& s, const auto& dd) { return ConvBackwardWeights(d, s, dd); }};
}

LayerRef DeconvRef(DeconvDesc d) {
  int64_t kvol = 1, ivol = 1, ovol = 1;
  for (int64_t k : d.kernel) kvol *= k;
  for (int64_t i : d.in_spatial) ivol *= i;
  for (int64_t o : DeconvOutSpatial(d)) ovol *= o;
  DeconvDesc lin = d;
  lin.fused_activation = Eltwise::kLinear;
  // Each output gets at most in_channels * ceil(kernel / stride) per axis contributions; bound
  // K by in_channels * kvol (loose is safe: K only scales the small fp32 term).
  return {DeconvSrcSize(d),
          DeconvDstSize(d),
          DeconvWeightSize(d),
          d.out_channels,
          d.in_channels * kvol,
          d.out_channels * kvol,
          d.batch * ivol,
          [d, lin](const auto& s, const auto& w, const auto& b, bool abs) {
            return abs ? DeconvForward(lin, Abs(s), Abs(w), std::vector<float>(b.size(), 0.f))
                       : DeconvForward(d, s, w, b);
          },
          [d](const auto& dd, const auto& w) { return DeconvBackwardData(d, dd, w); },
          [d](const auto& s, const auto& dd) { return DeconvBackwardWeights(d, s, dd); }};
}

// Forward, backward-data (overwrite and accumulate) and backward-weights of `k` against `r`,
// then the same after the weights and src change in place (the bf16 copies must follow).
void CheckLayer(kernels::ConvKernel& k, const LayerRef& r, uint64_t seed) {
  ExpectBf16Impl(k.impl_name());
  InputRng rng(seed);
  std::vector<float> src = rng.Uniform(r.src_size), w = rng.Uniform(r.weight_size),
                     bias = rng.Uniform(r.out_channels), dd = rng.Uniform(r.dst_size);
  std::vector<float> native(k.weight_size(), 0.f);
  std::vector<float> dst(r.dst_size), ds(r.src_size), dw(k.weight_size()), db(r.out_channels);
  std::vector<float> dw_canonical(r.weight_size);
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE(round == 0 ? "first step" : "second step, weights and src changed in place");
    k.ImportWeights(w.data(), native.data());
    std::fill(dst.begin(), dst.end(), kStale);
    ASSERT_TRUE(k.Forward(src.data(), native.data(), bias.data(), dst.data()).ok());
    ExpectWithinBf16Bound("forward", dst, r.fwd(src, w, bias, false), r.fwd(src, w, bias, true),
                          r.k_fwd);

    std::fill(ds.begin(), ds.end(), kStale);
    ASSERT_TRUE(k.BackwardData(dd.data(), native.data(), ds.data(), false).ok());
    const std::vector<float> want_ds = r.bwd_data(dd, w), abs_ds = r.bwd_data(Abs(dd), Abs(w));
    ExpectWithinBf16Bound("backward data", ds, want_ds, abs_ds, r.k_bwd_data);
    std::vector<float> prior = rng.Uniform(r.src_size);
    ds = prior;
    ASSERT_TRUE(k.BackwardData(dd.data(), native.data(), ds.data(), true).ok());
    ExpectWithinBf16Bound("backward data, accumulate", ds, Plus(prior, want_ds), abs_ds,
                          r.k_bwd_data);

    std::fill(dw.begin(), dw.end(), kStale);
    std::fill(db.begin(), db.end(), kStale);
    ASSERT_TRUE(k.BackwardWeights(src.data(), dd.data(), dw.data(), db.data()).ok());
    k.ExportWeights(dw.data(), dw_canonical.data());
    const WeightGrads want = r.bwd_weights(src, dd), abs = r.bwd_weights(Abs(src), Abs(dd));
    ExpectWithinBf16Bound("backward weights", dw_canonical, want.w, abs.w, r.k_bwd_weights);
    ExpectWithinBf16Bound("backward bias", db, want.bias, abs.bias, r.k_bwd_weights);

    // The next step: an optimiser changes the weights in place, new data arrive in the same
    // input buffer, and the gradient flowing back changes too.
    RefillInPlace(w, rng);
    RefillInPlace(src, rng);
    RefillInPlace(dd, rng);
  }
}

TEST_F(Bf16Parity, Conv2dRelu) {
  ConvDesc d{2, 16, 32, {12, 11}, {3, 2}, {1, 0}, Eltwise::kRelu, true, DataType::kBf16};
  auto k = backend_->CreateConv(d);
  ASSERT_TRUE(k.ok()) << k.status();
  CheckLayer(**k, ConvRef(d), SeedOf("Conv2dRelu"));
}

TEST_F(Bf16Parity, Conv3dTanh) {
  ConvDesc d{1, 16, 32, {5, 8, 7}, {2, 3, 3}, {0, 1, 0}, Eltwise::kTanh, true, DataType::kBf16};
  auto k = backend_->CreateConv(d);
  ASSERT_TRUE(k.ok()) << k.status();
  CheckLayer(**k, ConvRef(d), SeedOf("Conv3dTanh"));
}

// kz = 1: the 2-D path with z folded into the batch.
TEST_F(Bf16Parity, Conv3dFoldedZ) {
  ConvDesc d{1, 32, 16, {3, 9, 8}, {1, 3, 3}, {0, 0, 0}, Eltwise::kLinear, true, DataType::kBf16};
  auto k = backend_->CreateConv(d);
  ASSERT_TRUE(k.ok()) << k.status();
  CheckLayer(**k, ConvRef(d), SeedOf("Conv3dFoldedZ"));
}

// All-1 kernels: the matrix-product path.
TEST_F(Bf16Parity, Conv1x1) {
  ConvDesc d{2, 24, 8, {4, 5, 3}, {1, 1, 1}, {0, 0, 0}, Eltwise::kRelu, true, DataType::kBf16};
  auto k = backend_->CreateConv(d);
  ASSERT_TRUE(k.ok()) << k.status();
  CheckLayer(**k, ConvRef(d), SeedOf("Conv1x1"));
}

TEST_F(Bf16Parity, Deconv3d) {
  DeconvDesc d{1, 16, 16, {3, 4, 5}, {2, 2, 2}, {2, 2, 2}, Eltwise::kRelu, true, DataType::kBf16};
  auto k = backend_->CreateDeconv(d);
  ASSERT_TRUE(k.ok()) << k.status();
  CheckLayer(**k, DeconvRef(d), SeedOf("Deconv3d"));
}

TEST_F(Bf16Parity, Matmul) {
  MatmulDesc d{37, 48, 20, Eltwise::kTanh, DataType::kBf16};
  auto created = backend_->CreateMatmul(d);
  ASSERT_TRUE(created.ok()) << created.status();
  kernels::MatmulKernel& k = **created;
  ExpectBf16Impl(k.impl_name());
  MatmulDesc lin = d;
  lin.fused_activation = Eltwise::kLinear;
  InputRng rng(SeedOf("Matmul"));
  std::vector<float> src = rng.Uniform(d.m * d.k), w = rng.Uniform(d.k * d.n),
                     bias = rng.Uniform(d.n), dd = rng.Uniform(d.m * d.n);
  const std::vector<float> zero(d.n, 0.f);
  std::vector<float> dst(d.m * d.n), ds(d.m * d.k), dw(d.k * d.n), db(d.n);
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE(round == 0 ? "first step" : "second step, weights and src changed in place");
    ASSERT_TRUE(k.Forward(src.data(), w.data(), bias.data(), dst.data()).ok());
    ExpectWithinBf16Bound("forward", dst, MatmulForward(d, src, w, bias),
                          MatmulForward(lin, Abs(src), Abs(w), zero), d.k);
    ASSERT_TRUE(k.BackwardData(dd.data(), w.data(), ds.data(), false).ok());
    const std::vector<float> want_ds = MatmulBackwardData(d, dd, w),
                             abs_ds = MatmulBackwardData(d, Abs(dd), Abs(w));
    ExpectWithinBf16Bound("backward data", ds, want_ds, abs_ds, d.n);
    const std::vector<float> prior = rng.Uniform(d.m * d.k);
    ds = prior;
    ASSERT_TRUE(k.BackwardData(dd.data(), w.data(), ds.data(), true).ok());
    ExpectWithinBf16Bound("backward data, accumulate", ds, Plus(prior, want_ds), abs_ds, d.n);
    ASSERT_TRUE(k.BackwardWeights(src.data(), dd.data(), dw.data(), db.data()).ok());
    const WeightGrads want = MatmulBackwardWeights(d, src, dd),
                      abs = MatmulBackwardWeights(d, Abs(src), Abs(dd));
    ExpectWithinBf16Bound("backward weights", dw, want.w, abs.w, d.m);
    ExpectWithinBf16Bound("backward bias", db, want.bias, abs.bias, d.m);
    RefillInPlace(w, rng);
    RefillInPlace(src, rng);
    RefillInPlace(dd, rng);
  }
}

// Pooling keeps fp32 activations in fp32 (PoolDesc::dtype): exactly the reference's results.
TEST_F(Bf16Parity, PoolIsExact) {
  for (auto mode : {kernels::PoolMode::kMax, kernels::PoolMode::kAverage}) {
    PoolDesc d{2, 8, {4, 6, 6}, {2, 2, 2}, {2, 2, 2}, mode, DataType::kBf16};
    auto created = backend_->CreatePool(d);
    ASSERT_TRUE(created.ok()) << created.status();
    InputRng rng(SeedOf("Pool"));
    const std::vector<float> src = rng.Uniform(PoolSrcSize(d)), dd = rng.Uniform(PoolDstSize(d));
    std::vector<float> dst(PoolDstSize(d), kStale), ds(PoolSrcSize(d), kStale);
    ASSERT_TRUE((*created)->Forward(src.data(), dst.data()).ok());
    ASSERT_TRUE((*created)->Backward(dd.data(), ds.data(), false).ok());
    EXPECT_LE(NormalisedError(dst, PoolForward(d, src)), kFp32Tolerance);
    EXPECT_LE(NormalisedError(ds, PoolBackward(d, src, dd)), kFp32Tolerance);
  }
}

}  // namespace
}  // namespace elektronn::testing
