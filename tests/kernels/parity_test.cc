// Kernel parity: every op is described once (shape, seeded inputs, reference) and run on every
// backend present, each compared with tests/kernels/reference.h by normalised error.
//
// Test names read `Parity/<Case>.<Backend>`, e.g. `Parity/Conv3dValidBackwardWeights.Cpu`.
// A new backend joins by adding one entry to Backends(); cases need no change.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "kernels/backend.h"
#include "tests/kernels/parity_harness.h"
#include "tests/kernels/reference.h"

namespace elektronn::testing {
namespace {

using kernels::Backend;
using kernels::ConvDesc;
using kernels::Eltwise;
using kernels::MatmulDesc;
using kernels::PoolDesc;
using kernels::PoolMode;

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

// --- element-wise activations and PReLU ---

// Above the CPU backend's threshold (16384) for OpenMP loops, so both its paths run.
constexpr int64_t kLong = 20011;

std::vector<float> Stale(int64_t n) { return std::vector<float>(n, kStale); }

enum class EltwiseOp { kForward, kBackward, kBackwardAccumulate, kBackwardInPlace };

absl::StatusOr<Outcome> RunEltwise(Eltwise e, int64_t n, float range, EltwiseOp op, Backend& b,
                                   InputRng& rng) {
  const std::vector<float> src = rng.Uniform(n, -range, range), diff_dst = rng.Uniform(n);
  Outcome out;
  if (op == EltwiseOp::kForward) {
    DeviceBuffer s(b, src), dst(b, Stale(n));
    b.EltwiseForward(e, s.data(), dst.data(), n);
    out.outputs.push_back({"dst", dst.Download(), EltwiseForward(e, src)});
    return out;
  }
  const bool acc = op == EltwiseOp::kBackwardAccumulate;
  const std::vector<float> prior = acc ? rng.Uniform(n) : Stale(n);
  const std::vector<float> want = EltwiseBackward(e, src, diff_dst);
  DeviceBuffer s(b, src), y(b, EltwiseForward(e, src)), dd(b, diff_dst), ds(b, prior);
  // Backward may read the input for kAbs only (backend.h); the engine's fused paths pass none.
  const float* x = e == Eltwise::kAbs ? s.data() : nullptr;
  if (op == EltwiseOp::kBackwardInPlace) {  // as the engine calls it after a fused activation
    b.EltwiseBackward(e, x, y.data(), dd.data(), dd.data(), n, false);
    out.outputs.push_back({"diff_src", dd.Download(), want});
  } else {
    b.EltwiseBackward(e, x, y.data(), dd.data(), ds.data(), n, acc);
    out.outputs.push_back({"diff_src", ds.Download(), acc ? Plus(prior, want) : want});
  }
  return out;
}

absl::StatusOr<Outcome> RunPrelu(int64_t rows, int64_t ch, EltwiseOp op, Backend& b,
                                 InputRng& rng) {
  const int64_t n = rows * ch;
  const std::vector<float> src = rng.Uniform(n), slope = rng.Uniform(ch, -0.5f, 1.5f),
                           diff_dst = rng.Uniform(n);
  Outcome out;
  DeviceBuffer s(b, src), sl(b, slope);
  if (op == EltwiseOp::kForward) {
    DeviceBuffer dst(b, Stale(n));
    b.PreluForward(s.data(), sl.data(), dst.data(), rows, ch);
    out.outputs.push_back({"dst", dst.Download(), PreluForward(src, slope, rows, ch)});
    return out;
  }
  const bool acc = op == EltwiseOp::kBackwardAccumulate;
  const std::vector<float> prior = acc ? rng.Uniform(n) : Stale(n);
  const PreluGrads want = PreluBackward(src, slope, diff_dst, rows, ch);
  // The slope gradient is a parameter gradient: overwritten whatever `accumulate` says.
  DeviceBuffer dd(b, diff_dst), ds(b, prior), dslope(b, Stale(ch));
  if (op == EltwiseOp::kBackwardInPlace) {  // as the engine calls it after dropout
    b.PreluBackward(s.data(), sl.data(), dd.data(), dd.data(), dslope.data(), rows, ch, false);
    out.outputs.push_back({"diff_src", dd.Download(), want.src});
  } else {
    b.PreluBackward(s.data(), sl.data(), dd.data(), ds.data(), dslope.data(), rows, ch, acc);
    out.outputs.push_back({"diff_src", ds.Download(), acc ? Plus(prior, want.src) : want.src});
  }
  out.outputs.push_back({"diff_slope", dslope.Download(), want.slope});
  return out;
}

// --- bias ---

absl::StatusOr<Outcome> RunAddBias(int64_t rows, int64_t ch, Backend& b, InputRng& rng) {
  const std::vector<float> dst = rng.Uniform(rows * ch), bias = rng.Uniform(ch);
  DeviceBuffer d(b, dst), bb(b, bias);
  b.AddBias(d.data(), bb.data(), rows, ch);
  Outcome out;
  out.outputs.push_back({"dst", d.Download(), AddBias(dst, bias, rows, ch)});
  return out;
}

absl::StatusOr<Outcome> RunBiasGradient(int64_t rows, int64_t ch, Backend& b, InputRng& rng) {
  const std::vector<float> diff = rng.Uniform(rows * ch);
  DeviceBuffer d(b, diff), db(b, Stale(ch));
  b.BiasGradient(d.data(), db.data(), rows, ch);
  Outcome out;
  out.outputs.push_back({"diff_bias", db.Download(), BiasGradient(diff, rows, ch)});
  return out;
}

// --- loss and metric ---

// A labelling problem: probabilities from a softmax, targets with a share of ignored labels.
struct LabelShape {
  int64_t rows, n_class, n_indep;
  bool sparse;
  bool weighted = false;        // class weights (NLL only)
  double ignored_share = 0.25;  // of (row, group) pairs
};

struct LabelProblem {
  NllProblem p;
  std::vector<float> probs, target;
};

LabelProblem MakeLabelProblem(const LabelShape& s, InputRng& rng) {
  LabelProblem lp;
  lp.p = {s.rows, s.n_class * s.n_indep, s.n_class, s.sparse, {}};
  if (s.weighted) lp.p.class_weights = rng.Uniform(s.n_class, 0.5f, 2.f);
  const int64_t ch = lp.p.channels, groups = s.rows * s.n_indep;
  lp.probs = SoftmaxForward(rng.Uniform(s.rows * ch, -4.f, 4.f), s.rows, ch, s.n_class);
  const std::vector<float> which = rng.Uniform(groups, 0.f, 1.f), drop = rng.Uniform(groups, 0, 1);
  // Every way to be ignored: negative ids (ELEKTRONN2's -1 and others) and ids past the last
  // class; dense targets leave a group all zero.
  const float ignored_ids[] = {-1.f, -2.f, static_cast<float>(s.n_class)};
  lp.target.assign(s.sparse ? groups : s.rows * ch, 0.f);
  for (int64_t g = 0; g < groups; ++g) {
    const bool ignored = drop[g] < s.ignored_share;
    const int64_t c = std::min<int64_t>(static_cast<int64_t>(which[g] * s.n_class), s.n_class - 1);
    if (s.sparse) {
      lp.target[g] = ignored ? ignored_ids[std::min<int64_t>(static_cast<int64_t>(which[g] * 3), 2)]
                             : static_cast<float>(c);
    } else if (!ignored) {
      lp.target[g * s.n_class + c] = 1.f;
    }
  }
  return lp;
}

enum class NllOp { kForward, kBackward, kBackwardAccumulate };

absl::StatusOr<Outcome> RunNll(const LabelShape& s, NllOp op, Backend& b, InputRng& rng) {
  const LabelProblem lp = MakeLabelProblem(s, rng);
  const int64_t n = lp.p.rows * lp.p.channels;
  DeviceBuffer probs(b, lp.probs), target(b, lp.target),
      weights(b, s.weighted ? lp.p.class_weights : std::vector<float>(1, kStale));
  Backend::NllDesc d;
  d.rows = lp.p.rows;
  d.channels = lp.p.channels;
  d.n_class = lp.p.n_class;
  d.sparse = lp.p.sparse;
  d.class_weights = s.weighted ? weights.data() : nullptr;
  const NllResult want = NllForward(lp.p, lp.probs, lp.target);
  Outcome out;
  if (op == NllOp::kForward) {
    DeviceBuffer loss(b, Stale(lp.p.rows));
    const int64_t n_labelled = b.NllForward(d, probs.data(), target.data(), loss.data());
    out.outputs.push_back({"loss", loss.Download(), want.loss});
    out.outputs.push_back(
        {"n_labelled", {static_cast<float>(n_labelled)}, {static_cast<float>(want.n_labelled)}});
    return out;
  }
  const bool acc = op == NllOp::kBackwardAccumulate;
  const std::vector<float> diff_loss = rng.Uniform(lp.p.rows),
                           prior = acc ? rng.Uniform(n) : Stale(n);
  DeviceBuffer dl(b, diff_loss), dp(b, prior);
  b.NllBackward(d, probs.data(), target.data(), dl.data(), std::llround(want.n_labelled), dp.data(),
                acc);
  const std::vector<float> grad =
      NllBackward(lp.p, lp.probs, lp.target, diff_loss, std::llround(want.n_labelled));
  out.outputs.push_back({"diff_probs", dp.Download(), acc ? Plus(prior, grad) : grad});
  return out;
}

absl::StatusOr<Outcome> RunCountErrors(const LabelShape& s, Backend& b, InputRng& rng) {
  const LabelProblem lp = MakeLabelProblem(s, rng);
  DeviceBuffer probs(b, lp.probs), target(b, lp.target);
  int64_t wrong = -1, labelled = -1;
  b.CountErrors(probs.data(), target.data(), lp.p.rows, lp.p.channels, lp.p.n_class, s.sparse,
                &wrong, &labelled);
  const ErrorCount want =
      CountErrors(lp.probs, lp.target, lp.p.rows, lp.p.channels, lp.p.n_class, s.sparse);
  Outcome out;
  out.outputs.push_back({"wrong", {static_cast<float>(wrong)}, {static_cast<float>(want.wrong)}});
  out.outputs.push_back(
      {"labelled", {static_cast<float>(labelled)}, {static_cast<float>(want.labelled)}});
  return out;
}

// --- arithmetic, memory and copies ---

absl::StatusOr<Outcome> RunSum(int64_t n, Backend& b, InputRng& rng) {
  // Positive values: a sum near zero would make the normalised error meaningless.
  const std::vector<float> src = rng.Uniform(n, 0.f, 1.f);
  DeviceBuffer s(b, src);
  Outcome out;
  out.outputs.push_back(
      {"sum", {static_cast<float>(b.Sum(s.data(), n))}, {static_cast<float>(Sum(src))}});
  return out;
}

absl::StatusOr<Outcome> RunScale(int64_t n, bool acc, Backend& b, InputRng& rng) {
  const std::vector<float> x = rng.Uniform(n), prior = acc ? rng.Uniform(n) : Stale(n);
  DeviceBuffer xb(b, x), dst(b, prior);
  b.Scale(xb.data(), -0.75f, dst.data(), n, acc);
  Outcome out;
  out.outputs.push_back({"dst", dst.Download(), Scale(x, -0.75f, prior, acc)});
  return out;
}

absl::StatusOr<Outcome> RunAdd(int64_t n, Backend& b, InputRng& rng) {
  const std::vector<float> x = rng.Uniform(n), y = rng.Uniform(n);
  DeviceBuffer xb(b, x), yb(b, y), dst(b, Stale(n));
  b.Add(xb.data(), yb.data(), dst.data(), n);
  Outcome out;
  out.outputs.push_back({"dst", dst.Download(), Add(x, y)});
  return out;
}

absl::StatusOr<Outcome> RunCopyBox(const kernels::BoxCopy& box, bool acc, Backend& b,
                                   InputRng& rng) {
  auto numel = [](const std::vector<int64_t>& s) {
    int64_t n = 1;
    for (int64_t v : s) n *= v;
    return n;
  };
  // Random rather than stale outside the box: what lies outside must come back unchanged.
  const std::vector<float> src = rng.Uniform(numel(box.src_shape)),
                           prior = rng.Uniform(numel(box.dst_shape));
  DeviceBuffer s(b, src), dst(b, prior);
  b.CopyBox(box, s.data(), dst.data(), acc);
  Outcome out;
  out.outputs.push_back({"dst", dst.Download(), CopyBox(box, src, prior, acc)});
  return out;
}

enum class MemoryOp { kFill, kCopy, kUploadDownload };

// Each writes all but the last few elements, which must keep what they held.
absl::StatusOr<Outcome> RunMemory(int64_t n, MemoryOp op, Backend& b, InputRng& rng) {
  const std::vector<float> before = rng.Uniform(n), src = rng.Uniform(n);
  const int64_t head = n - 3;
  std::vector<float> want = before;
  Outcome out;
  switch (op) {
    case MemoryOp::kFill: {
      DeviceBuffer d(b, before);
      b.Fill(d.data(), 0.375f, head);
      std::fill(want.begin(), want.begin() + head, 0.375f);
      out.outputs.push_back({"dst", d.Download(), want});
      break;
    }
    case MemoryOp::kCopy: {
      DeviceBuffer s(b, src), d(b, before);
      b.Copy(s.data(), d.data(), head);
      std::copy(src.begin(), src.begin() + head, want.begin());
      out.outputs.push_back({"dst", d.Download(), want});
      break;
    }
    case MemoryOp::kUploadDownload: {
      float* p = b.Allocate(n);
      b.Upload(before.data(), p, n);
      b.Upload(src.data(), p, head);
      std::vector<float> host(n, 7.f);  // the last element is not downloaded
      b.Download(p, host.data(), n - 1);
      b.Free(p);
      std::copy(src.begin(), src.begin() + head, want.begin());
      want[n - 1] = 7.f;
      out.outputs.push_back({"host", host, want});
      break;
    }
  }
  return out;
}

// --- dropout ---

// The mask is the backend's own (any counter-based generator will do), so these cases check
// what backend.h promises of it instead of comparing with a reference mask.
enum class DropoutOp { kForward, kBackward, kBackwardAccumulate, kRateZero };

// A pass/fail property as a comparison: got 0 when it holds, 1 when not.
Comparison Holds(const std::string& what, bool ok) { return {what, {ok ? 0.f : 1.f}, {0.f}}; }

absl::StatusOr<Outcome> RunDropout(int64_t n, float rate, DropoutOp op, Backend& b, InputRng& rng) {
  // No zeros in the input, so a zero output means a dropped element.
  std::vector<float> src = rng.Uniform(n, 0.25f, 1.25f);
  for (int64_t i = 0; i < n; i += 2) src[i] = -src[i];
  const std::vector<float> diff_dst = rng.Uniform(n, 0.25f, 1.25f);
  const uint64_t seed = 0x5EEDull, step = 42;
  const double keep_scale = 1.0 / (1.0 - rate);
  auto forward = [&](uint64_t sd, uint64_t st) {
    DeviceBuffer s(b, src), dst(b, Stale(n));
    b.Dropout(s.data(), dst.data(), n, rate, sd, st);
    return dst.Download();
  };
  const std::vector<float> y = forward(seed, step);
  std::vector<bool> kept(n);
  for (int64_t i = 0; i < n; ++i) kept[i] = y[i] != 0.f;
  // Kept elements scaled by 1/(1-rate), dropped ones exactly zero.
  std::vector<float> want_y(n);
  for (int64_t i = 0; i < n; ++i) want_y[i] = kept[i] ? static_cast<float>(src[i] * keep_scale) : 0;
  Outcome out;
  switch (op) {
    case DropoutOp::kForward: {
      out.outputs.push_back({"dst", y, want_y});
      // Binomial: the kept share lies within 6 standard deviations of 1 - rate.
      const double share = std::count(kept.begin(), kept.end(), true) / static_cast<double>(n);
      const double sigma = std::sqrt(rate * (1.0 - rate) / n);
      out.outputs.push_back(Holds(absl::StrFormat("kept share %.4f is 1-rate", share),
                                  std::fabs(share - (1.0 - rate)) < 6 * sigma));
      out.outputs.push_back({"dst again (same seed, step)", forward(seed, step), y});
      // Another step or seed draws another mask: about 2 rate (1-rate) of the elements differ.
      for (auto [what, other] : {std::pair{"another step", forward(seed, step + 1)},
                                 {"another seed", forward(seed + 1, step)}}) {
        int64_t differ = 0;
        for (int64_t i = 0; i < n; ++i) differ += kept[i] != (other[i] != 0.f);
        out.outputs.push_back(Holds(absl::StrFormat("%s changes %d of %d", what, differ, n),
                                    differ > rate * (1.0 - rate) * n));
      }
      break;
    }
    case DropoutOp::kBackward:
    case DropoutOp::kBackwardAccumulate: {
      // The backward pass of the same (seed, step) applies the forward's mask and scale.
      const bool acc = op == DropoutOp::kBackwardAccumulate;
      const std::vector<float> prior = acc ? rng.Uniform(n) : Stale(n);
      std::vector<float> want(n);
      for (int64_t i = 0; i < n; ++i) {
        want[i] =
            static_cast<float>((kept[i] ? diff_dst[i] * keep_scale : 0.0) + (acc ? prior[i] : 0.0));
      }
      DeviceBuffer dd(b, diff_dst), ds(b, prior);
      b.DropoutBackward(dd.data(), ds.data(), n, rate, seed, step, acc);
      out.outputs.push_back({"diff_src", ds.Download(), want});
      break;
    }
    case DropoutOp::kRateZero: {
      out.outputs.push_back({"dst", y, src});
      DeviceBuffer dd(b, diff_dst), ds(b, Stale(n));
      b.DropoutBackward(dd.data(), ds.data(), n, rate, seed, step, false);
      out.outputs.push_back({"diff_src", ds.Download(), diff_dst});
      break;
    }
  }
  return out;
}

// --- optimisers ---

enum class OptimiserKind { kSgd, kAdam, kAdaGrad, kAdaDelta };

struct OptimiserCase {
  OptimiserKind kind;
  bool first_step;      // from zero state (Adam t=1, AdaGrad's initialiser pass), else a later one
  float wd_multiplier;  // 0: not regularised, 1: regularised, 3: ELEKTRONN2's BN gamma
};

absl::StatusOr<Outcome> RunOptimiser(const OptimiserCase& c, int64_t n, Backend& b, InputRng& rng) {
  Backend::OptimiserStep s;
  s.lr = 0.1f;
  s.mom = 0.9f;
  s.wd = 0.05f;
  s.beta2 = 0.999f;
  s.eps = 1e-5f;
  s.wd_multiplier = c.wd_multiplier;
  s.t = c.first_step ? 1 : 5;
  const std::vector<float> g = rng.Uniform(n);
  OptimiserState before{rng.Uniform(n), std::vector<float>(n, 0.f), std::vector<float>(n, 0.f)};
  if (!c.first_step) {
    switch (c.kind) {
      case OptimiserKind::kSgd:
        before.slot0 = rng.Uniform(n);
        break;
      case OptimiserKind::kAdam:
        before.slot0 = rng.Uniform(n, -0.3f, 0.3f);
        before.slot1 = rng.Uniform(n, 0.01f, 1.f);
        break;
      case OptimiserKind::kAdaGrad:
        before.slot0 = rng.Uniform(n, 0.1f, 2.f);
        break;
      case OptimiserKind::kAdaDelta:
        before.slot0 = rng.Uniform(n, 0.01f, 1.f);
        before.slot1 = rng.Uniform(n, 0.001f, 0.1f);
        break;
    }
  }
  DeviceBuffer gb(b, g), p(b, before.p), s0(b, before.slot0), s1(b, before.slot1);
  OptimiserState want;
  std::vector<std::string> slots;
  switch (c.kind) {
    case OptimiserKind::kSgd:
      b.SgdUpdate(s, gb.data(), p.data(), s0.data(), n);
      want = SgdStep(s, g, before);
      slots = {"v"};
      break;
    case OptimiserKind::kAdam:
      b.AdamUpdate(s, gb.data(), p.data(), s0.data(), s1.data(), n);
      want = AdamStep(s, g, before);
      slots = {"m", "s"};
      break;
    case OptimiserKind::kAdaGrad:
      b.AdaGradUpdate(s, gb.data(), p.data(), s0.data(), c.first_step, n);
      want = AdaGradStep(s, g, c.first_step, before);
      slots = {"h"};
      break;
    case OptimiserKind::kAdaDelta:
      b.AdaDeltaUpdate(s, gb.data(), p.data(), s0.data(), s1.data(), n);
      want = AdaDeltaStep(s, g, before);
      slots = {"s", "d"};
      break;
  }
  Outcome out;
  const std::vector<float> got_p = p.Download();
  out.outputs.push_back({"p", got_p, want.p});
  // The step alone, so that a small term (weight decay) is not hidden by |p|.
  std::vector<float> got_step(n), want_step(n);
  for (int64_t i = 0; i < n; ++i) {
    got_step[i] = static_cast<float>(static_cast<double>(got_p[i]) - before.p[i]);
    want_step[i] = static_cast<float>(static_cast<double>(want.p[i]) - before.p[i]);
  }
  out.outputs.push_back({"p step", got_step, want_step});
  out.outputs.push_back({slots[0], s0.Download(), want.slot0});
  if (slots.size() > 1) out.outputs.push_back({slots[1], s1.Download(), want.slot1});
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

  const std::pair<const char*, Eltwise> activations[] = {
      {"Linear", Eltwise::kLinear},   {"Relu", Eltwise::kRelu}, {"Tanh", Eltwise::kTanh},
      {"Sigmoid", Eltwise::kSigmoid}, {"Abs", Eltwise::kAbs},   {"Softplus", Eltwise::kSoftplus},
      {"Elu", Eltwise::kElu}};
  const std::pair<EltwiseOp, const char*> eltwise_ops[] = {
      {EltwiseOp::kForward, "Forward"},
      {EltwiseOp::kBackward, "Backward"},
      {EltwiseOp::kBackwardAccumulate, "BackwardAccumulate"},
      {EltwiseOp::kBackwardInPlace, "BackwardInPlace"}};
  for (auto [act_name, e] : activations) {
    for (auto [op, suffix] : eltwise_ops) {
      cases.push_back(
          {std::string("Eltwise") + act_name + suffix, [e = e, op = op](Backend& b, InputRng& r) {
             return RunEltwise(e, kLong, 6.f, op, b, r);
           }});
    }
  }
  // Softplus switches to the identity for large inputs (CPU: above 20).
  for (auto [op, suffix] : eltwise_ops) {
    cases.push_back(
        {std::string("EltwiseSoftplusWide") + suffix, [op = op](Backend& b, InputRng& r) {
           return RunEltwise(Eltwise::kSoftplus, 4001, 40.f, op, b, r);
         }});
  }
  for (auto [name, rows, ch] :
       {std::tuple{"Prelu", int64_t{37}, int64_t{5}}, {"PreluLong", kLong, int64_t{3}}}) {
    for (auto [op, suffix] : eltwise_ops) {
      cases.push_back(
          {std::string(name) + suffix, [rows = rows, ch = ch, op = op](Backend& b, InputRng& r) {
             return RunPrelu(rows, ch, op, b, r);
           }});
    }
  }

  for (auto [name, rows, ch] :
       {std::tuple{"", int64_t{9}, int64_t{20}}, {"Long", kLong, int64_t{3}}}) {
    cases.push_back(
        {std::string("AddBias") + name,
         [rows = rows, ch = ch](Backend& b, InputRng& r) { return RunAddBias(rows, ch, b, r); }});
    cases.push_back(
        {std::string("BiasGradient") + name, [rows = rows, ch = ch](Backend& b, InputRng& r) {
           return RunBiasGradient(rows, ch, b, r);
         }});
  }

  // Ignored labels everywhere: sparse ids -2, -1 and n_class; dense all-zero groups.
  const std::vector<std::pair<std::string, LabelShape>> labellings = {
      {"Sparse3Class", {50, 3, 1, true}},
      {"Sparse2Class2IndepWeighted", {40, 2, 2, true, true}},
      {"Sparse4ClassWeighted", {30, 4, 1, true, true}},
      {"SparseAllIgnored", {20, 3, 1, true, false, 1.0}},
      {"SparseNoneIgnored", {25, 3, 1, true, false, 0.0}},
      {"SparseLong", {kLong, 2, 1, true, true}},
      {"Dense3Class", {50, 3, 1, false}},
      {"Dense2Class3IndepWeighted", {30, 2, 3, false, true}},
  };
  for (const auto& [name, shape] : labellings) {
    for (auto [op, suffix] : {std::pair{NllOp::kForward, "Forward"},
                              {NllOp::kBackward, "Backward"},
                              {NllOp::kBackwardAccumulate, "BackwardAccumulate"}}) {
      cases.push_back({"Nll" + name + suffix, [s = shape, op = op](Backend& b, InputRng& r) {
                         return RunNll(s, op, b, r);
                       }});
    }
    cases.push_back({"CountErrors" + name,
                     [s = shape](Backend& b, InputRng& r) { return RunCountErrors(s, b, r); }});
  }

  for (auto [name, n] : {std::pair{"", int64_t{7}}, {"Long", int64_t{100003}}}) {
    const std::string tail = name;
    cases.push_back({"Sum" + tail, [n = n](Backend& b, InputRng& r) { return RunSum(n, b, r); }});
    cases.push_back(
        {"Scale" + tail, [n = n](Backend& b, InputRng& r) { return RunScale(n, false, b, r); }});
    cases.push_back({"Scale" + tail + "Accumulate",
                     [n = n](Backend& b, InputRng& r) { return RunScale(n, true, b, r); }});
    cases.push_back({"Add" + tail, [n = n](Backend& b, InputRng& r) { return RunAdd(n, b, r); }});
    for (auto [op, op_name] : {std::pair{MemoryOp::kFill, "Fill"},
                               {MemoryOp::kCopy, "Copy"},
                               {MemoryOp::kUploadDownload, "UploadDownload"}}) {
      cases.push_back({op_name + tail, [n = n, op = op](Backend& b, InputRng& r) {
                         return RunMemory(n, op, b, r);
                       }});
    }
  }

  // Boxes as Crop and Concat use them: crop forward, crop backward (into a larger zeroed or
  // accumulating gradient), concat along channels (a part of the innermost axis), and one with
  // enough rows for the CPU backend's parallel loop.
  const std::vector<std::pair<std::string, kernels::BoxCopy>> boxes = {
      {"Crop3d",
       {{2, 5, 6, 7, 3}, {2, 3, 4, 5, 3}, {0, 1, 2, 1, 0}, {0, 0, 0, 0, 0}, {2, 3, 4, 5, 3}}},
      {"CropBackward3d",
       {{2, 3, 4, 5, 3}, {2, 5, 6, 7, 3}, {0, 0, 0, 0, 0}, {0, 1, 2, 1, 0}, {2, 3, 4, 5, 3}}},
      {"ConcatChannels2d", {{1, 4, 5, 2}, {1, 4, 5, 5}, {0, 0, 0, 0}, {0, 0, 0, 3}, {1, 4, 5, 2}}},
      {"ConcatX2d", {{2, 3, 5, 4}, {2, 7, 5, 4}, {0, 0, 0, 0}, {0, 4, 0, 0}, {2, 3, 5, 4}}},
      {"CropLong3d",
       {{1, 42, 32, 22, 2},
        {1, 40, 30, 20, 2},
        {0, 1, 1, 1, 0},
        {0, 0, 0, 0, 0},
        {1, 40, 30, 20, 2}}},
      // Max-fragment-pooling's gather of shift t=(1,0,1), pool (2,1,2), from a sliding max
      // (2, 5, 3, 7, 3) into fragment block 5 of (8*2, 2, 3, 3, 3), and its backward scatter.
      {"MfpGather3d",
       {{2, 5, 3, 7, 3},
        {16, 2, 3, 3, 3},
        {0, 1, 0, 1, 0},
        {10, 0, 0, 0, 0},
        {2, 2, 3, 3, 3},
        {1, 2, 1, 2, 1},
        {}}},
      {"MfpScatter3d",
       {{16, 2, 3, 3, 3},
        {2, 5, 3, 7, 3},
        {10, 0, 0, 0, 0},
        {0, 1, 0, 1, 0},
        {2, 2, 3, 3, 3},
        {},
        {1, 2, 1, 2, 1}}},
      // FragmentsToDense: fragment 3 of 4 at offset (1, 0) into a (1, 10, 8) dense volume
      // with strides (2, 2), and its backward gather; a step on channels for completeness.
      {"FragmentToDense2d",
       {{4, 5, 4, 3}, {1, 10, 8, 3}, {3, 0, 0, 0}, {0, 1, 0, 0}, {1, 5, 4, 3}, {}, {1, 2, 2, 1}}},
      {"DenseToFragment2d",
       {{1, 10, 8, 3}, {4, 5, 4, 3}, {0, 1, 0, 0}, {3, 0, 0, 0}, {1, 5, 4, 3}, {1, 2, 2, 1}, {}}},
      {"StepOnChannels1d", {{1, 4, 6}, {2, 4, 3}, {0, 0, 1}, {1, 0, 0}, {1, 4, 3}, {1, 1, 2}, {}}},
      {"LongStrided3d",
       {{1, 41, 31, 21, 2},
        {4, 20, 15, 10, 2},
        {0, 1, 1, 1, 0},
        {2, 0, 0, 0, 0},
        {1, 20, 15, 10, 2},
        {1, 2, 2, 2, 1},
        {}}},
  };
  for (const auto& [name, box] : boxes) {
    cases.push_back({"CopyBox" + name, [box = box](Backend& b, InputRng& r) {
                       return RunCopyBox(box, false, b, r);
                     }});
    cases.push_back({"CopyBox" + name + "Accumulate",
                     [box = box](Backend& b, InputRng& r) { return RunCopyBox(box, true, b, r); }});
  }

  for (auto [op, suffix] : {std::pair{DropoutOp::kForward, "Forward"},
                            {DropoutOp::kBackward, "Backward"},
                            {DropoutOp::kBackwardAccumulate, "BackwardAccumulate"}}) {
    for (auto [name, rate] : {std::pair{"Dropout", 0.3f}, {"DropoutHalf", 0.5f}}) {
      cases.push_back({std::string(name) + suffix, [rate = rate, op = op](Backend& b, InputRng& r) {
                         return RunDropout(kLong, rate, op, b, r);
                       }});
    }
  }
  cases.push_back({"DropoutRateZeroIsIdentity", [](Backend& b, InputRng& r) {
                     return RunDropout(kLong, 0.f, DropoutOp::kRateZero, b, r);
                   }});

  for (auto [kind, opt_name] : {std::pair{OptimiserKind::kSgd, "Sgd"},
                                {OptimiserKind::kAdam, "Adam"},
                                {OptimiserKind::kAdaGrad, "AdaGrad"},
                                {OptimiserKind::kAdaDelta, "AdaDelta"}}) {
    for (auto [first, step_name] : {std::pair{true, "FirstStep"}, {false, "LaterStep"}}) {
      for (auto [m, decay_name] :
           {std::pair{0.f, "NoDecay"}, {1.f, "Decay"}, {3.f, "DecayTimes3"}}) {
        const OptimiserCase c{kind, first, m};
        cases.push_back({std::string(opt_name) + step_name + decay_name,
                         [c](Backend& b, InputRng& r) { return RunOptimiser(c, kLong, b, r); }});
      }
    }
  }
  return cases;
}

// gtest_main supplies main(), so the table registers itself during static initialisation.
[[maybe_unused]] const bool kRegistered = RegisterParityCases(AllCases());

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

TEST(Reference, ActivationDerivativesMatchFiniteDifferences) {
  for (Eltwise e : {Eltwise::kLinear, Eltwise::kRelu, Eltwise::kTanh, Eltwise::kSigmoid,
                    Eltwise::kAbs, Eltwise::kSoftplus, Eltwise::kElu}) {
    for (double x : {-5.3, -2.1, -0.7, -0.05, 0.05, 0.4, 1.9, 4.6}) {
      const double h = 1e-6;
      const double numeric = (Activate(e, x + h) - Activate(e, x - h)) / (2 * h);
      EXPECT_NEAR(ActivateDerivative(e, x), numeric, 1e-6) << kernels::EltwiseName(e) << " " << x;
    }
  }
}

TEST(Reference, PreluBackwardMatchesFiniteDifferences) {
  const int64_t rows = 4, ch = 3;
  InputRng rng(13);
  const auto x = rng.Uniform(rows * ch), slope = rng.Uniform(ch), g = rng.Uniform(rows * ch);
  const PreluGrads analytic = PreluBackward(x, slope, g, rows, ch);
  const float h = 1e-3f;
  for (size_t i = 0; i < x.size(); ++i) {
    auto xp = x, xm = x;
    xp[i] += h;
    xm[i] -= h;
    const double numeric =
        (Dot(PreluForward(xp, slope, rows, ch), g) - Dot(PreluForward(xm, slope, rows, ch), g)) /
        (2.0 * h);
    EXPECT_NEAR(analytic.src[i], numeric, 1e-3) << "input " << i;
  }
  for (int64_t c = 0; c < ch; ++c) {
    auto sp = slope, sm = slope;
    sp[c] += h;
    sm[c] -= h;
    const double numeric =
        (Dot(PreluForward(x, sp, rows, ch), g) - Dot(PreluForward(x, sm, rows, ch), g)) / (2.0 * h);
    EXPECT_NEAR(analytic.slope[c], numeric, 1e-3) << "slope " << c;
  }
}

// The normalisation of reference §2.13: the mean over voxels of the loss is the mean of
// -cw * log p_true over the labelled voxels alone.
TEST(Reference, NllIgnoresUnlabelledVoxels) {
  const NllProblem p{4, 3, 3, true, {1.f, 2.f, 0.5f}};
  const std::vector<float> probs = {0.2f, 0.5f, 0.3f, 0.6f, 0.3f, 0.1f,
                                    0.1f, 0.1f, 0.8f, 0.3f, 0.3f, 0.4f};
  const std::vector<float> target = {1, -1, 2, 3};  // rows 1 and 3 unlabelled
  const NllResult r = NllForward(p, probs, target);
  EXPECT_EQ(r.n_labelled, 2);
  EXPECT_EQ(r.loss[1], 0.f);
  EXPECT_EQ(r.loss[3], 0.f);
  const double mean = (r.loss[0] + r.loss[1] + r.loss[2] + r.loss[3]) / 4.0;
  EXPECT_NEAR(mean, (-2.0 * std::log(0.5 + 1e-5) - 0.5 * std::log(0.8 + 1e-5)) / 2, 1e-5);
  // The same problem with dense one-hot targets.
  const NllProblem dense{4, 3, 3, false, p.class_weights};
  const std::vector<float> one_hot = {0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0};
  EXPECT_EQ(NllForward(dense, probs, one_hot).loss, r.loss);
  EXPECT_EQ(NllDenseTarget(p, target), std::vector<double>(one_hot.begin(), one_hot.end()));
}

TEST(Reference, NllBackwardMatchesFiniteDifferences) {
  const NllProblem p{5, 4, 2, true, {0.7f, 1.6f}};  // two independent groups
  InputRng rng(17);
  const auto probs = rng.Uniform(p.rows * p.channels, 0.05f, 0.95f), dl = rng.Uniform(p.rows);
  const std::vector<float> target = {0, 1, -1, 1, 1, 2, 0, 0, -2, 1};
  const NllResult r = NllForward(p, probs, target);
  EXPECT_EQ(r.n_labelled, 7);
  const auto analytic = NllBackward(p, probs, target, dl, r.n_labelled);
  for (size_t i = 0; i < probs.size(); ++i) {
    const float h = 1e-3f;
    auto pp = probs, pm = probs;
    pp[i] += h;
    pm[i] -= h;
    const double numeric =
        (Dot(NllForward(p, pp, target).loss, dl) - Dot(NllForward(p, pm, target).loss, dl)) /
        (2.0 * h);
    EXPECT_NEAR(analytic[i], numeric, 1e-2 * (1 + std::fabs(numeric))) << "prob " << i;
  }
}

TEST(Reference, CountErrorsSkipsUnlabelled) {
  const std::vector<float> probs = {0.2f, 0.5f, 0.3f, 0.6f, 0.3f, 0.1f,
                                    0.1f, 0.1f, 0.8f, 0.3f, 0.3f, 0.4f};
  const ErrorCount sparse = CountErrors(probs, {1, -1, 0, 3}, 4, 3, 3, true);
  EXPECT_EQ(sparse.labelled, 2);
  EXPECT_EQ(sparse.wrong, 1);
  const ErrorCount dense = CountErrors(probs, {0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0}, 4, 3, 3, false);
  EXPECT_EQ(dense.labelled, 2);
  EXPECT_EQ(dense.wrong, 1);
}

TEST(Reference, CopyBoxWritesOnlyTheBox) {
  // src (1, 3, 2) rows 1..2 into dst (1, 4, 3) at row 0, channel 1.
  const kernels::BoxCopy box{{1, 3, 2}, {1, 4, 3}, {0, 1, 0}, {0, 0, 1}, {1, 2, 2}};
  const std::vector<float> src = {1, 2, 3, 4, 5, 6}, prior(12, 9.f);
  EXPECT_EQ(CopyBox(box, src, prior, false),
            (std::vector<float>{9, 3, 4, 9, 5, 6, 9, 9, 9, 9, 9, 9}));
  EXPECT_EQ(CopyBox(box, src, prior, true),
            (std::vector<float>{9, 12, 13, 9, 14, 15, 9, 9, 9, 9, 9, 9}));
}

TEST(Reference, CopyBoxSteps) {
  // Every second row of src (1, 4, 2) from row 1 into every third row of dst (1, 5, 2).
  const kernels::BoxCopy box{{1, 4, 2}, {1, 5, 2}, {0, 1, 0}, {0, 0, 0},
                             {1, 2, 2}, {1, 2, 1}, {1, 3, 1}};
  const std::vector<float> src = {1, 2, 3, 4, 5, 6, 7, 8}, prior(10, 0.f);
  EXPECT_EQ(CopyBox(box, src, prior, false), (std::vector<float>{3, 4, 0, 0, 0, 0, 7, 8, 0, 0}));
}

// The values reference §4 quotes for ELEKTRONN2's Adam (eps inside the root) and AdaGrad's
// initialiser pass.
TEST(Reference, FirstOptimiserStepsMatchElektronn2) {
  Backend::OptimiserStep s;
  s.lr = 0.01f;
  s.mom = 0.9f;
  s.beta2 = 0.999f;
  s.eps = 1e-5f;
  s.t = 1;
  const OptimiserState zero{{0.f, 0.f}, {0.f, 0.f}, {0.f, 0.f}};
  const OptimiserState adam = AdamStep(s, {0.1f, 1.f}, zero);
  EXPECT_NEAR(adam.p[0], -0.7071 * s.lr, 1e-4 * s.lr);
  EXPECT_NEAR(adam.p[1], -0.99504 * s.lr, 1e-4 * s.lr);
  const OptimiserState ada = AdaGradStep(s, {0.1f, -4.f}, true, zero);
  EXPECT_NEAR(ada.slot0[1], 32.f, 1e-5);
  EXPECT_NEAR(ada.p[0], -s.lr / std::sqrt(2.0), 1e-7);
  EXPECT_NEAR(ada.p[1], s.lr / std::sqrt(2.0), 1e-7);
  // Weight decay: not applied without a multiplier, scaled by it otherwise (AdaGrad: unscaled).
  s.wd = 0.5f;
  const OptimiserState one{{1.f}, {0.f}, {0.f}};
  EXPECT_FLOAT_EQ(SgdStep(s, {0.f}, one).p[0], 1.f);
  s.wd_multiplier = 3;
  EXPECT_FLOAT_EQ(SgdStep(s, {0.f}, one).p[0], 1.f - 0.01f * 1.5f);
  const OptimiserState h_one{{1.f}, {1.f}, {}};
  EXPECT_FLOAT_EQ(AdaGradStep(s, {0.f}, false, h_one).p[0], 1.f - 0.01f * 0.5f);
}

}  // namespace
}  // namespace elektronn::testing
