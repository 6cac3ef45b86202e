// Kernel parity: every op is described once (shape, seeded inputs, reference) and run on every
// backend present, each compared with tests/kernels/reference.h by normalised error.
//
// Test names read `Parity/<Case>.<Backend>`, e.g. `Parity/Conv3dValidBackwardWeights.Cpu`.
// A new backend joins by adding one entry to Backends(); cases need no change.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "kernels/backend.h"
#include "tests/kernels/reference.h"

namespace elektronn::testing {
namespace {

using kernels::Backend;
using kernels::ConvDesc;
using kernels::Eltwise;
using kernels::MatmulDesc;
using kernels::PoolDesc;
using kernels::PoolMode;

// fp32 against a double-accumulating reference (normalised error, see NormalisedError).
constexpr double kFp32Tolerance = 1e-4;
// Fills outputs that a kernel must overwrite, so a kernel that reads them instead shows up.
constexpr float kStale = std::numeric_limits<float>::quiet_NaN();

// ---------------------------------------------------------------------------------------------
// Backends

// A backend this build can construct. `create` fails (and the tests skip) when the backend is
// compiled in but has no device at run time.
struct BackendEntry {
  std::string name;  // a test name, so letters and digits only
  std::function<absl::StatusOr<std::unique_ptr<Backend>>()> create;
};

std::vector<BackendEntry> Backends() {
  std::vector<BackendEntry> b;
  b.push_back({"Cpu", []() -> absl::StatusOr<std::unique_ptr<Backend>> {
                 return kernels::CreateCpuBackend();
               }});
  // The CUDA backend joins here once it exists, e.g. {"Cuda", kernels::CreateCudaBackend}.
  return b;
}

// ---------------------------------------------------------------------------------------------
// Inputs and buffers

// Deterministic uniform inputs (SplitMix64), the same on every platform and standard library.
// Continuous values keep max-pooling windows free of ties.
class InputRng {
 public:
  explicit InputRng(uint64_t seed) : state_(seed) {}
  std::vector<float> Uniform(int64_t n, float lo = -1.f, float hi = 1.f) {
    std::vector<float> v(n);
    for (float& x : v) x = lo + (hi - lo) * static_cast<float>((Next() >> 40) * 0x1p-24);
    return v;
  }

 private:
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t state_;
};

// Seeds each case from its name, so adding a case does not change another case's inputs.
uint64_t SeedOf(const std::string& name) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (char c : name) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h;
}

// Backend memory holding a copy of host data.
class DeviceBuffer {
 public:
  DeviceBuffer(Backend& b, const std::vector<float>& host)
      : b_(&b), n_(static_cast<int64_t>(host.size())), p_(b.Allocate(n_)) {
    b_->Upload(host.data(), p_, n_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { b_->Free(p_); }

  float* data() { return p_; }
  std::vector<float> Download() const {
    std::vector<float> host(n_);
    b_->Download(p_, host.data(), n_);
    return host;
  }

 private:
  Backend* b_;
  int64_t n_;
  float* p_;
};

std::vector<float> Plus(const std::vector<float>& a, const std::vector<float>& b) {
  std::vector<float> s(a.size());
  for (size_t i = 0; i < a.size(); ++i) s[i] = a[i] + b[i];
  return s;
}

// ---------------------------------------------------------------------------------------------
// Cases

// One output of an op on a backend next to the reference's.
struct Comparison {
  std::string what;
  std::vector<float> got, want;
};

struct Outcome {
  std::string impl;  // the implementation the backend picked, where it says
  std::vector<Comparison> outputs;
};

// max |got - want| / (max |want| + 1e-6); infinite on NaN or a size mismatch.
double NormalisedError(const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size()) return std::numeric_limits<double>::infinity();
  double diff = 0, scale = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (std::isnan(d)) return std::numeric_limits<double>::infinity();
    diff = std::max(diff, d);
    scale = std::max(scale, std::fabs(static_cast<double>(want[i])));
  }
  return diff / (scale + 1e-6);
}

// One op, described once: `run` draws its inputs from the rng, runs the op on the backend and
// returns the backend's outputs beside the reference's.
struct ParityCase {
  std::string name;
  std::function<absl::StatusOr<Outcome>(Backend&, InputRng&)> run;
  double tolerance = kFp32Tolerance;
};

std::string Dims(const std::vector<int64_t>& v) { return "(" + absl::StrJoin(v, ",") + ")"; }

absl::Status CheckOutSpatial(const std::vector<int64_t>& got, const std::vector<int64_t>& want) {
  if (got == want) return absl::OkStatus();
  return absl::InternalError(
      absl::StrFormat("kernel reports out_spatial %s, reference %s", Dims(got), Dims(want)));
}

// --- convolution ---

enum class Padding { kValid, kSame, kFull };
enum class ConvOp {
  kForward,
  kBackwardData,
  kBackwardDataAccumulate,
  kBackwardWeights,
  kWeightRoundTrip
};

ConvDesc MakeConv(int64_t batch, int64_t in_c, int64_t out_c, std::vector<int64_t> spatial,
                  std::vector<int64_t> kernel, Padding padding, Eltwise act = Eltwise::kLinear) {
  ConvDesc d;
  d.batch = batch;
  d.in_channels = in_c;
  d.out_channels = out_c;
  d.in_spatial = std::move(spatial);
  d.kernel = std::move(kernel);
  for (int64_t k : d.kernel) {
    d.pad.push_back(padding == Padding::kValid  ? 0
                    : padding == Padding::kSame ? (k - 1) / 2
                                                : k - 1);
  }
  d.fused_activation = act;
  return d;
}

absl::StatusOr<Outcome> RunConv(const ConvDesc& d, ConvOp op, Backend& b, InputRng& rng) {
  auto created = b.CreateConv(d);
  if (!created.ok()) return created.status();
  kernels::ConvKernel& k = **created;
  if (absl::Status s = CheckOutSpatial(k.out_spatial(), ConvOutSpatial(d)); !s.ok()) return s;
  if (k.weight_size() < ConvWeightSize(d)) {
    return absl::InternalError(absl::StrFormat("weight_size %d is below the %d canonical weights",
                                               k.weight_size(), ConvWeightSize(d)));
  }
  const std::vector<float> src = rng.Uniform(ConvSrcSize(d)), w = rng.Uniform(ConvWeightSize(d)),
                           bias = rng.Uniform(d.out_channels),
                           diff_dst = rng.Uniform(ConvDstSize(d));
  // Native weights start zeroed, as the engine's do (blocked layouts may carry padding).
  std::vector<float> native(k.weight_size(), 0.f);
  k.ImportWeights(w.data(), native.data());

  Outcome out{k.impl_name(), {}};
  switch (op) {
    case ConvOp::kForward: {
      DeviceBuffer s(b, src), wn(b, native), bb(b, bias),
          dst(b, std::vector<float>(ConvDstSize(d), kStale));
      if (absl::Status st = k.Forward(s.data(), wn.data(), bb.data(), dst.data()); !st.ok())
        return st;
      out.outputs.push_back({"dst", dst.Download(), ConvForward(d, src, w, bias)});
      break;
    }
    case ConvOp::kBackwardData:
    case ConvOp::kBackwardDataAccumulate: {
      const bool acc = op == ConvOp::kBackwardDataAccumulate;
      const std::vector<float> prior =
          acc ? rng.Uniform(ConvSrcSize(d)) : std::vector<float>(ConvSrcSize(d), kStale);
      DeviceBuffer dd(b, diff_dst), wn(b, native), ds(b, prior);
      if (absl::Status st = k.BackwardData(dd.data(), wn.data(), ds.data(), acc); !st.ok())
        return st;
      std::vector<float> want = ConvBackwardData(d, diff_dst, w);
      out.outputs.push_back({"diff_src", ds.Download(), acc ? Plus(prior, want) : want});
      break;
    }
    case ConvOp::kBackwardWeights: {
      DeviceBuffer s(b, src), dd(b, diff_dst), dw(b, std::vector<float>(k.weight_size(), kStale)),
          db(b, std::vector<float>(d.out_channels, kStale));
      if (absl::Status st = k.BackwardWeights(s.data(), dd.data(), dw.data(), db.data());
          !st.ok()) {
        return st;
      }
      const std::vector<float> dw_native = dw.Download();
      std::vector<float> dw_canonical(ConvWeightSize(d));
      k.ExportWeights(dw_native.data(), dw_canonical.data());
      const WeightGrads want = ConvBackwardWeights(d, src, diff_dst);
      out.outputs.push_back({"diff_w", dw_canonical, want.w});
      out.outputs.push_back({"diff_b", db.Download(), want.bias});
      // Optimisers update the whole native buffer, so any layout padding must come back finite.
      int64_t non_finite = 0;
      for (float v : dw_native) non_finite += !std::isfinite(v);
      out.outputs.push_back(
          {"diff_w native entries not finite", {static_cast<float>(non_finite)}, {0.f}});
      break;
    }
    case ConvOp::kWeightRoundTrip: {
      std::vector<float> back(ConvWeightSize(d), kStale);
      k.ExportWeights(native.data(), back.data());
      out.outputs.push_back({"Export(Import(w))", back, w});
      break;
    }
  }
  return out;
}

// --- pooling ---

enum class PoolOp { kForward, kBackward, kBackwardAccumulate };

PoolDesc MakePool(int64_t batch, int64_t channels, std::vector<int64_t> spatial,
                  std::vector<int64_t> kernel, std::vector<int64_t> stride, PoolMode mode) {
  return PoolDesc{batch, channels, std::move(spatial), std::move(kernel), std::move(stride), mode};
}

absl::StatusOr<Outcome> RunPool(const PoolDesc& d, PoolOp op, Backend& b, InputRng& rng) {
  auto created = b.CreatePool(d);
  if (!created.ok()) return created.status();
  kernels::PoolKernel& k = **created;
  if (absl::Status s = CheckOutSpatial(k.out_spatial(), PoolOutSpatial(d)); !s.ok()) return s;
  const std::vector<float> src = rng.Uniform(PoolSrcSize(d)),
                           diff_dst = rng.Uniform(PoolDstSize(d));
  Outcome out;
  DeviceBuffer s(b, src), dst(b, std::vector<float>(PoolDstSize(d), kStale));
  // Backward needs the forward's workspace (argmax), so forward always runs first.
  if (absl::Status st = k.Forward(s.data(), dst.data()); !st.ok()) return st;
  if (op == PoolOp::kForward) {
    out.outputs.push_back({"dst", dst.Download(), PoolForward(d, src)});
    return out;
  }
  const bool acc = op == PoolOp::kBackwardAccumulate;
  const std::vector<float> prior =
      acc ? rng.Uniform(PoolSrcSize(d)) : std::vector<float>(PoolSrcSize(d), kStale);
  DeviceBuffer dd(b, diff_dst), ds(b, prior);
  if (absl::Status st = k.Backward(dd.data(), ds.data(), acc); !st.ok()) return st;
  std::vector<float> want = PoolBackward(d, src, diff_dst);
  out.outputs.push_back({"diff_src", ds.Download(), acc ? Plus(prior, want) : want});
  return out;
}

// --- inner product ---

enum class MatmulOp { kForward, kBackwardData, kBackwardDataAccumulate, kBackwardWeights };

absl::StatusOr<Outcome> RunMatmul(const MatmulDesc& d, MatmulOp op, Backend& b, InputRng& rng) {
  auto created = b.CreateMatmul(d);
  if (!created.ok()) return created.status();
  kernels::MatmulKernel& k = **created;
  const std::vector<float> src = rng.Uniform(d.m * d.k), w = rng.Uniform(d.k * d.n),
                           bias = rng.Uniform(d.n), diff_dst = rng.Uniform(d.m * d.n);
  Outcome out;
  switch (op) {
    case MatmulOp::kForward: {
      DeviceBuffer s(b, src), wb(b, w), bb(b, bias), dst(b, std::vector<float>(d.m * d.n, kStale));
      if (absl::Status st = k.Forward(s.data(), wb.data(), bb.data(), dst.data()); !st.ok())
        return st;
      out.outputs.push_back({"dst", dst.Download(), MatmulForward(d, src, w, bias)});
      break;
    }
    case MatmulOp::kBackwardData:
    case MatmulOp::kBackwardDataAccumulate: {
      const bool acc = op == MatmulOp::kBackwardDataAccumulate;
      const std::vector<float> prior =
          acc ? rng.Uniform(d.m * d.k) : std::vector<float>(d.m * d.k, kStale);
      DeviceBuffer dd(b, diff_dst), wb(b, w), ds(b, prior);
      if (absl::Status st = k.BackwardData(dd.data(), wb.data(), ds.data(), acc); !st.ok())
        return st;
      std::vector<float> want = MatmulBackwardData(d, diff_dst, w);
      out.outputs.push_back({"diff_src", ds.Download(), acc ? Plus(prior, want) : want});
      break;
    }
    case MatmulOp::kBackwardWeights: {
      DeviceBuffer s(b, src), dd(b, diff_dst), dw(b, std::vector<float>(d.k * d.n, kStale)),
          db(b, std::vector<float>(d.n, kStale));
      if (absl::Status st = k.BackwardWeights(s.data(), dd.data(), dw.data(), db.data());
          !st.ok()) {
        return st;
      }
      const WeightGrads want = MatmulBackwardWeights(d, src, diff_dst);
      out.outputs.push_back({"diff_w", dw.Download(), want.w});
      out.outputs.push_back({"diff_b", db.Download(), want.bias});
      break;
    }
  }
  return out;
}

// --- softmax ---

enum class SoftmaxOp { kForward, kBackward, kBackwardAccumulate };

absl::StatusOr<Outcome> RunSoftmax(int64_t rows, int64_t n_class, int64_t n_indep, SoftmaxOp op,
                                   Backend& b, InputRng& rng) {
  const int64_t ch = n_class * n_indep, n = rows * ch;
  // A wide input range gives probabilities from nearly 0 to nearly 1.
  const std::vector<float> src = rng.Uniform(n, -4.f, 4.f), diff_dst = rng.Uniform(n);
  const std::vector<float> y = SoftmaxForward(src, rows, ch, n_class);
  Outcome out;
  if (op == SoftmaxOp::kForward) {
    DeviceBuffer s(b, src), dst(b, std::vector<float>(n, kStale));
    b.SoftmaxForward(s.data(), dst.data(), rows, ch, n_class);
    out.outputs.push_back({"dst", dst.Download(), y});
    return out;
  }
  const bool acc = op == SoftmaxOp::kBackwardAccumulate;
  const std::vector<float> prior = acc ? rng.Uniform(n) : std::vector<float>(n, kStale);
  DeviceBuffer yb(b, y), dd(b, diff_dst), ds(b, prior);
  b.SoftmaxBackward(yb.data(), dd.data(), ds.data(), rows, ch, n_class, acc);
  std::vector<float> want = SoftmaxBackward(y, diff_dst, rows, ch, n_class);
  out.outputs.push_back({"diff_src", ds.Download(), acc ? Plus(prior, want) : want});
  return out;
}

// ---------------------------------------------------------------------------------------------
// The table

struct NamedConv {
  std::string name;
  ConvDesc desc;
};

// Geometries chosen to reach each path of the CPU backend: general oneDNN 1/2/3-D, 3-D with
// kz=1 (folded into 2-D), all-1 kernels (matrix product); odd channel counts; batch 2.
std::vector<NamedConv> ConvGeometries() {
  const Eltwise lin = Eltwise::kLinear, relu = Eltwise::kRelu;
  return {
      {"Conv1dValid", MakeConv(2, 3, 4, {11}, {3}, Padding::kValid)},
      {"Conv1dSame", MakeConv(1, 20, 3, {10}, {5}, Padding::kSame)},
      {"Conv1dFull", MakeConv(2, 3, 30, {6}, {3}, Padding::kFull)},
      {"Conv2dValid", MakeConv(2, 3, 20, {7, 6}, {3, 2}, Padding::kValid)},
      {"Conv2dSame", MakeConv(1, 4, 5, {6, 5}, {3, 3}, Padding::kSame)},
      {"Conv2dFull", MakeConv(2, 3, 4, {5, 4}, {3, 2}, Padding::kFull)},
      {"Conv3dValid", MakeConv(2, 3, 4, {5, 9, 8}, {3, 2, 3}, Padding::kValid)},
      {"Conv3dSame", MakeConv(1, 3, 30, {4, 6, 5}, {3, 3, 3}, Padding::kSame)},
      {"Conv3dFull", MakeConv(1, 20, 3, {3, 5, 4}, {2, 3, 2}, Padding::kFull)},
      {"Conv3dKz1Valid", MakeConv(2, 3, 4, {3, 7, 6}, {1, 3, 3}, Padding::kValid)},
      {"Conv3dKz1Same", MakeConv(1, 30, 20, {2, 6, 5}, {1, 3, 3}, Padding::kSame)},
      {"Conv3dKz1Full", MakeConv(2, 3, 5, {2, 4, 5}, {1, 2, 3}, Padding::kFull)},
      {"Conv1dPointwise", MakeConv(2, 30, 20, {7}, {1}, Padding::kValid)},
      {"Conv2dPointwise", MakeConv(2, 3, 5, {4, 5}, {1, 1}, Padding::kValid)},
      {"Conv3dPointwise", MakeConv(2, 20, 3, {3, 4, 5}, {1, 1, 1}, Padding::kSame)},
      {"Conv2dSameRelu", MakeConv(2, 3, 20, {6, 5}, {3, 3}, Padding::kSame, relu)},
      {"Conv3dValidRelu", MakeConv(2, 3, 4, {5, 9, 8}, {3, 2, 3}, Padding::kValid, relu)},
      {"Conv3dKz1ValidRelu", MakeConv(2, 3, 4, {3, 7, 6}, {1, 3, 3}, Padding::kValid, relu)},
      {"Conv3dPointwiseRelu", MakeConv(2, 20, 3, {3, 4, 5}, {1, 1, 1}, Padding::kValid, relu)},
      {"Conv1dSingleChannel", MakeConv(1, 1, 1, {5}, {2}, Padding::kValid, lin)},
  };
}

// The other activations the engine may fuse into a convolution (forward only: the backward
// kernels never see the activation).
std::vector<NamedConv> FusedActivationGeometries() {
  std::vector<NamedConv> v;
  for (auto [name, act] : {std::pair{"Tanh", Eltwise::kTanh},
                           {"Sigmoid", Eltwise::kSigmoid},
                           {"Softplus", Eltwise::kSoftplus},
                           {"Elu", Eltwise::kElu},
                           {"Abs", Eltwise::kAbs}}) {
    v.push_back(
        {std::string("Conv2dSame") + name, MakeConv(2, 3, 4, {6, 5}, {3, 3}, Padding::kSame, act)});
    v.push_back({std::string("Conv3dPointwise") + name,
                 MakeConv(1, 5, 3, {2, 3, 4}, {1, 1, 1}, Padding::kValid, act)});
  }
  return v;
}

struct NamedPool {
  std::string name;
  PoolDesc desc;
};

std::vector<NamedPool> PoolGeometries() {
  std::vector<NamedPool> v;
  for (auto [mode_name, mode] : {std::pair{"Max", PoolMode::kMax}, {"Avg", PoolMode::kAverage}}) {
    const std::string m = mode_name;
    v.push_back({"Pool1d" + m, MakePool(2, 3, {12}, {2}, {2}, mode)});
    v.push_back({"Pool2d" + m, MakePool(1, 20, {8, 6}, {2, 2}, {2, 2}, mode)});
    v.push_back({"Pool3d" + m, MakePool(2, 3, {4, 6, 6}, {2, 2, 2}, {2, 2, 2}, mode)});
    v.push_back({"Pool3d" + m + "Xy", MakePool(1, 30, {3, 6, 4}, {1, 2, 2}, {1, 2, 2}, mode)});
    v.push_back({"Pool1d" + m + "Overlap", MakePool(2, 5, {9}, {3}, {2}, mode)});
    v.push_back({"Pool2d" + m + "Overlap", MakePool(2, 3, {7, 9}, {3, 3}, {2, 2}, mode)});
    v.push_back({"Pool3d" + m + "Overlap", MakePool(1, 4, {5, 7, 5}, {3, 3, 3}, {2, 2, 2}, mode)});
  }
  return v;
}

std::vector<ParityCase> AllCases() {
  std::vector<ParityCase> cases;
  auto add_conv = [&](const NamedConv& g, ConvOp op, const char* suffix) {
    cases.push_back({g.name + suffix,
                     [d = g.desc, op](Backend& b, InputRng& r) { return RunConv(d, op, b, r); }});
  };
  for (const NamedConv& g : ConvGeometries()) {
    add_conv(g, ConvOp::kForward, "Forward");
    add_conv(g, ConvOp::kBackwardData, "BackwardData");
    add_conv(g, ConvOp::kBackwardDataAccumulate, "BackwardDataAccumulate");
    add_conv(g, ConvOp::kBackwardWeights, "BackwardWeights");
    add_conv(g, ConvOp::kWeightRoundTrip, "WeightRoundTrip");
  }
  for (const NamedConv& g : FusedActivationGeometries()) add_conv(g, ConvOp::kForward, "Forward");

  for (const NamedPool& g : PoolGeometries()) {
    for (auto [op, suffix] : {std::pair{PoolOp::kForward, "Forward"},
                              {PoolOp::kBackward, "Backward"},
                              {PoolOp::kBackwardAccumulate, "BackwardAccumulate"}}) {
      cases.push_back({g.name + suffix,
                       [d = g.desc, op](Backend& b, InputRng& r) { return RunPool(d, op, b, r); }});
    }
  }

  const std::vector<std::pair<std::string, MatmulDesc>> matmuls = {
      {"Matmul", MatmulDesc{7, 30, 20, Eltwise::kLinear}},
      {"MatmulSingleRow", MatmulDesc{1, 3, 5, Eltwise::kLinear}},
      {"MatmulRelu", MatmulDesc{6, 20, 3, Eltwise::kRelu}},
  };
  for (const auto& [name, d] : matmuls) {
    for (auto [op, suffix] : {std::pair{MatmulOp::kForward, "Forward"},
                              {MatmulOp::kBackwardData, "BackwardData"},
                              {MatmulOp::kBackwardDataAccumulate, "BackwardDataAccumulate"},
                              {MatmulOp::kBackwardWeights, "BackwardWeights"}}) {
      cases.push_back(
          {name + suffix, [d = d, op](Backend& b, InputRng& r) { return RunMatmul(d, op, b, r); }});
    }
  }

  struct SoftmaxShape {
    std::string name;
    int64_t rows, n_class, n_indep;
  };
  for (const SoftmaxShape& s : {SoftmaxShape{"Softmax2Class3Indep", 10, 2, 3},
                                SoftmaxShape{"Softmax5Class1Indep", 7, 5, 1}}) {
    for (auto [op, suffix] : {std::pair{SoftmaxOp::kForward, "Forward"},
                              {SoftmaxOp::kBackward, "Backward"},
                              {SoftmaxOp::kBackwardAccumulate, "BackwardAccumulate"}}) {
      cases.push_back({s.name + suffix, [s, op](Backend& b, InputRng& r) {
                         return RunSoftmax(s.rows, s.n_class, s.n_indep, op, b, r);
                       }});
    }
  }
  return cases;
}

// ---------------------------------------------------------------------------------------------
// The harness

class ParityTest : public ::testing::Test {
 public:
  ParityTest(ParityCase c, BackendEntry b) : case_(std::move(c)), backend_(std::move(b)) {}

  void TestBody() override {
    auto backend = backend_.create();
    if (!backend.ok()) GTEST_SKIP() << backend_.name << " backend absent: " << backend.status();
    InputRng rng(SeedOf(case_.name));
    absl::StatusOr<Outcome> outcome = case_.run(**backend, rng);
    ASSERT_TRUE(outcome.ok()) << outcome.status();
    for (const Comparison& c : outcome->outputs) {
      const double err = NormalisedError(c.got, c.want);
      std::printf("[ parity   ] %-40s %-4s %-10s err %.2e%s\n", case_.name.c_str(),
                  backend_.name.c_str(), c.what.c_str(), err,
                  outcome->impl.empty() ? "" : ("  [" + outcome->impl + "]").c_str());
      EXPECT_LT(err, case_.tolerance)
          << c.what << " of " << case_.name << " on " << backend_.name << " (" << outcome->impl
          << ") differs from the reference: " << FirstMismatch(c);
    }
  }

 private:
  // Where the largest difference is, to tell a layout slip from rounding.
  static std::string FirstMismatch(const Comparison& c) {
    if (c.got.size() != c.want.size()) {
      return absl::StrFormat("%d values, reference has %d", c.got.size(), c.want.size());
    }
    size_t worst = 0;
    double worst_d = -1;
    for (size_t i = 0; i < c.got.size(); ++i) {
      double d = std::fabs(static_cast<double>(c.got[i]) - c.want[i]);
      if (std::isnan(d)) d = std::numeric_limits<double>::infinity();
      if (d > worst_d) worst_d = d, worst = i;
    }
    return absl::StrFormat("largest difference at flat index %d of %d: got %g, want %g", worst,
                           c.got.size(), c.got.empty() ? 0.f : c.got[worst],
                           c.want.empty() ? 0.f : c.want[worst]);
  }

  ParityCase case_;
  BackendEntry backend_;
};

// gtest_main supplies main(), so the table registers itself during static initialisation.
[[maybe_unused]] const bool kRegistered = [] {
  for (const ParityCase& c : AllCases()) {
    for (const BackendEntry& b : Backends()) {
      ::testing::RegisterTest(("Parity/" + c.name).c_str(), b.name.c_str(), nullptr, nullptr,
                              __FILE__, __LINE__,
                              [c, b]() -> ::testing::Test* { return new ParityTest(c, b); });
    }
  }
  return true;
}();

// ---------------------------------------------------------------------------------------------
// The reference checked against itself: adjoint identities and hand-computed values.

double Dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

TEST(Reference, ConvIsCrossCorrelation) {
  const ConvDesc d = MakeConv(1, 1, 1, {3}, {3}, Padding::kValid);
  // No kernel flip: 1*1 + 2*0 + 3*(-1) = -2 (a true convolution would give +2).
  EXPECT_EQ(ConvForward(d, {1, 2, 3}, {1, 0, -1}, {0.5f}), std::vector<float>{-1.5f});
  const ConvDesc same = MakeConv(1, 1, 1, {3}, {3}, Padding::kSame);
  EXPECT_EQ(ConvForward(same, {1, 2, 3}, {1, 0, -1}, {0}), (std::vector<float>{-2, -2, 2}));
}

TEST(Reference, ConvBackwardIsAdjointOfForward) {
  for (const NamedConv& g : ConvGeometries()) {
    ConvDesc d = g.desc;
    d.fused_activation = Eltwise::kLinear;
    InputRng rng(SeedOf(g.name));
    const auto x = rng.Uniform(ConvSrcSize(d)), w = rng.Uniform(ConvWeightSize(d)),
               y = rng.Uniform(ConvDstSize(d));
    const std::vector<float> zero(d.out_channels, 0.f);
    const double fwd = Dot(ConvForward(d, x, w, zero), y);
    EXPECT_NEAR(fwd, Dot(x, ConvBackwardData(d, y, w)), 1e-4 * (1 + std::fabs(fwd))) << g.name;
    const WeightGrads gw = ConvBackwardWeights(d, x, y);
    EXPECT_NEAR(fwd, Dot(w, gw.w), 1e-4 * (1 + std::fabs(fwd))) << g.name;
    const std::vector<float> ones(d.out_channels, 1.f);
    double ysum = 0;
    for (float v : y) ysum += v;
    EXPECT_NEAR(Dot(gw.bias, ones), ysum, 1e-4 * (1 + std::fabs(ysum))) << g.name;
  }
}

TEST(Reference, PoolBackwardIsAdjointOfForward) {
  for (const NamedPool& g : PoolGeometries()) {
    InputRng rng(SeedOf(g.name));
    const auto x = rng.Uniform(PoolSrcSize(g.desc)), y = rng.Uniform(PoolDstSize(g.desc));
    // Max pooling is linear in x around a tie-free point, with the argmax as its selection.
    const double fwd = Dot(PoolForward(g.desc, x), y);
    EXPECT_NEAR(fwd, Dot(x, PoolBackward(g.desc, x, y)), 1e-5 * (1 + std::fabs(fwd))) << g.name;
  }
}

TEST(Reference, MaxPoolRoutesToFirstMaximum) {
  const PoolDesc d = MakePool(1, 1, {4}, {2}, {2}, PoolMode::kMax);
  EXPECT_EQ(PoolForward(d, {1, 3, 3, 3}), (std::vector<float>{3, 3}));
  EXPECT_EQ(PoolBackward(d, {1, 3, 3, 3}, {5, 7}), (std::vector<float>{0, 5, 7, 0}));
}

TEST(Reference, MatmulBackwardIsAdjointOfForward) {
  const MatmulDesc d{4, 3, 5, Eltwise::kLinear};
  InputRng rng(7);
  const auto x = rng.Uniform(d.m * d.k), w = rng.Uniform(d.k * d.n), y = rng.Uniform(d.m * d.n);
  const double fwd = Dot(MatmulForward(d, x, w, std::vector<float>(d.n, 0.f)), y);
  EXPECT_NEAR(fwd, Dot(x, MatmulBackwardData(d, y, w)), 1e-5);
  EXPECT_NEAR(fwd, Dot(w, MatmulBackwardWeights(d, x, y).w), 1e-5);
}

TEST(Reference, SoftmaxBackwardMatchesFiniteDifferences) {
  const int64_t rows = 2, n_class = 3, ch = 6;
  InputRng rng(11);
  const auto x = rng.Uniform(rows * ch, -2, 2), g = rng.Uniform(rows * ch);
  const auto analytic = SoftmaxBackward(SoftmaxForward(x, rows, ch, n_class), g, rows, ch, n_class);
  for (size_t i = 0; i < x.size(); ++i) {
    const float h = 1e-2f;
    auto xp = x, xm = x;
    xp[i] += h;
    xm[i] -= h;
    const double numeric = (Dot(SoftmaxForward(xp, rows, ch, n_class), g) -
                            Dot(SoftmaxForward(xm, rows, ch, n_class), g)) /
                           (2.0 * h);
    EXPECT_NEAR(analytic[i], numeric, 1e-3) << "input " << i;
  }
}

}  // namespace
}  // namespace elektronn::testing
