// Parity cases of the losses family (kernels/backend.h, "losses family"): every loss, Sobel,
// one-hot and classification function against tests/kernels/reference_losses.h.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/kernels/parity_harness.h"
#include "tests/kernels/reference_losses.h"

namespace elektronn::testing {
namespace {

namespace ref = losses;
using Vec = std::vector<float>;

Vec Stale(int64_t n) { return Vec(n, kStale); }

enum class Pass { kForward, kBackward, kBackwardAccumulate };
const char* PassName(Pass p) {
  return p == Pass::kForward ? "Forward" : p == Pass::kBackward ? "Backward" : "BackwardAcc";
}

// Labels: class ids with ignored ones (-1, n_class) mixed in, or dense one-hot rows.
Vec Labels(InputRng& rng, int64_t n, int64_t n_class) {
  Vec u = rng.Uniform(n, 0.f, 1.f);
  Vec t(n);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = static_cast<int64_t>(u[i] * (n_class + 2)) - 1;  // -1 .. n_class
    t[i] = static_cast<float>(c);
  }
  return t;
}

// Regression targets in [-2, 2] with every 5th one ignored (-666).
Vec Targets(InputRng& rng, int64_t n, float lo = -2.f, float hi = 2.f) {
  Vec t = rng.Uniform(n, lo, hi);
  for (int64_t i = 0; i < n; i += 5) t[i] = -666.f;
  return t;
}

// --- MultinoulliNLL with every option ---

struct NllCase {
  bool sparse, weights, masks, weak;
  int64_t n_indep;
  // Rows per example; above kernels/cpu/parallel.h's kMinParallelIterations in all (2 examples)
  // the CPU loops run on the OpenMP team.
  int64_t rows_per_example = 7;
};

absl::StatusOr<Outcome> RunNllExt(const NllCase& c, Pass pass, Backend& b, InputRng& rng) {
  ref::NllExt p;
  p.batch = 2;
  p.rows = 2 * c.rows_per_example;
  p.n_class = 3;
  p.channels = 3 * c.n_indep;
  p.sparse = c.sparse;
  p.class_weights = {0.5f, 1.5f, 1.f};
  const int64_t n = p.rows * p.channels;
  Vec probs = rng.Uniform(n, 0.02f, 0.98f);
  Vec target;
  if (c.sparse) {
    target = Labels(rng, p.rows * c.n_indep, p.n_class);
  } else {
    const Vec ids = Labels(rng, p.rows * c.n_indep, p.n_class);
    target.assign(n, 0.f);
    for (int64_t g = 0; g < p.rows * c.n_indep; ++g)
      if (ids[g] >= 0 && ids[g] < p.n_class) target[g * p.n_class + static_cast<int>(ids[g])] = 1;
  }
  if (c.weights) p.example_weights = rng.Uniform(p.rows, 0.2f, 2.f);
  if (c.masks) {
    p.mask_labeled.assign(p.batch * p.channels, 1.f);
    p.mask_not_present.assign(p.batch * p.channels, 0.f);
    p.mask_labeled[1] = 0.f;                 // example 0: class 1 not labelled
    p.mask_not_present[p.channels + 2] = 1;  // example 1: class 2 not present
  }
  if (c.weak) p.weakness = 0.3;
  DeviceBuffer dprobs(b, probs), dtarget(b, target), cw(b, p.class_weights),
      ew(b, c.weights ? p.example_weights : Vec(1, kStale)),
      ml(b, c.masks ? p.mask_labeled : Vec(1, kStale)),
      mn(b, c.masks ? p.mask_not_present : Vec(1, kStale));
  Backend::NllDesc d;
  d.rows = p.rows;
  d.channels = p.channels;
  d.n_class = p.n_class;
  d.sparse = p.sparse;
  d.class_weights = cw.data();
  d.batch = p.batch;
  d.example_weights = c.weights ? ew.data() : nullptr;
  d.mask_class_labeled = c.masks ? ml.data() : nullptr;
  d.mask_class_not_present = c.masks ? mn.data() : nullptr;
  d.weakness = static_cast<float>(p.weakness);
  const ref::NllExtResult want = ref::NllExtForward(p, probs, target);
  Outcome out;
  if (pass == Pass::kForward) {
    DeviceBuffer loss(b, Stale(p.rows));
    const double n_total = b.NllForward(d, dprobs.data(), dtarget.data(), loss.data());
    out.outputs.push_back({"loss", loss.Download(), want.loss});
    out.outputs.push_back(
        {"n_total", {static_cast<float>(n_total)}, {static_cast<float>(want.n_total)}});
    return out;
  }
  const bool acc = pass == Pass::kBackwardAccumulate;
  const Vec dl = rng.Uniform(p.rows), prior = acc ? rng.Uniform(n) : Stale(n);
  DeviceBuffer ddl(b, dl), dp(b, prior);
  b.NllBackward(d, dprobs.data(), dtarget.data(), ddl.data(), want.n_total, dp.data(), acc);
  const Vec g = ref::NllExtBackward(p, probs, target, dl, want.n_total);
  out.outputs.push_back({"diff_probs", dp.Download(), acc ? Plus(prior, g) : g});
  // The class weights' gradient (class_weights given as a node).
  const Vec cw_prior = acc ? rng.Uniform(p.n_class) : Stale(p.n_class);
  DeviceBuffer dcw(b, cw_prior);
  b.NllClassWeightsBackward(d, dprobs.data(), dtarget.data(), ddl.data(), want.n_total, dcw.data(),
                            acc);
  const Vec gcw = ref::NllExtClassWeightsBackward(p, probs, target, dl, want.n_total);
  out.outputs.push_back({"diff_class_weights", dcw.Download(), acc ? Plus(cw_prior, gcw) : gcw});
  return out;
}

// --- SquaredLoss / AbsLoss ---

absl::StatusOr<Outcome> RunRegression(const ref::Regression& p, Pass pass, Backend& b,
                                      InputRng& rng) {
  const int64_t n = p.rows * p.channels;
  const Vec pred = rng.Uniform(n, -2.f, 2.f), target = Targets(rng, n);
  DeviceBuffer dpred(b, pred), dtarget(b, target);
  Backend::RegressionLossDesc d;
  d.rows = p.rows;
  d.channels = p.channels;
  d.kind = p.squared ? Backend::RegressionKind::kSquared : Backend::RegressionKind::kAbs;
  d.margin = static_cast<float>(p.margin);
  d.scale_correction = static_cast<float>(p.scale_correction);
  int64_t n_lab = 0;
  const Vec want = ref::RegressionForward(p, pred, target, &n_lab);
  Outcome out;
  if (pass == Pass::kForward) {
    DeviceBuffer loss(b, Stale(p.rows));
    const int64_t got_lab = b.RegressionLossForward(d, dpred.data(), dtarget.data(), loss.data());
    out.outputs.push_back({"loss", loss.Download(), want});
    out.outputs.push_back(
        {"n_labelled", {static_cast<float>(got_lab)}, {static_cast<float>(n_lab)}});
    return out;
  }
  const bool acc = pass == Pass::kBackwardAccumulate;
  const Vec dl = rng.Uniform(p.rows), prior = acc ? rng.Uniform(n) : Stale(n);
  DeviceBuffer ddl(b, dl), dp(b, prior);
  b.RegressionLossBackward(d, dpred.data(), dtarget.data(), ddl.data(), n_lab, dp.data(), acc);
  const Vec g = ref::RegressionBackward(p, pred, target, dl);
  out.outputs.push_back({"diff_pred", dp.Download(), acc ? Plus(prior, g) : g});
  return out;
}

absl::StatusOr<Outcome> RunBinaryNll(bool entropy, Pass pass, Backend& b, InputRng& rng) {
  const int64_t n = 60;
  const Vec pred = rng.Uniform(n, 0.02f, 0.98f);
  Vec target = Targets(rng, n, 0.f, 1.f);
  target[1] = 0.f;
  target[2] = 1.f;
  DeviceBuffer dpred(b, pred), dtarget(b, target);
  int64_t n_lab = 0;
  const Vec want = ref::BinaryNllForward(entropy, pred, target, &n_lab);
  Outcome out;
  if (pass == Pass::kForward) {
    DeviceBuffer loss(b, Stale(n));
    const int64_t got = b.BinaryNllForward(n, entropy, dpred.data(), dtarget.data(), loss.data());
    out.outputs.push_back({"loss", loss.Download(), want});
    out.outputs.push_back({"n_labelled", {static_cast<float>(got)}, {static_cast<float>(n_lab)}});
    return out;
  }
  const bool acc = pass == Pass::kBackwardAccumulate;
  const Vec dl = rng.Uniform(n), prior = acc ? rng.Uniform(n) : Stale(n);
  DeviceBuffer ddl(b, dl), dp(b, prior);
  b.BinaryNllBackward(n, dpred.data(), dtarget.data(), ddl.data(), n_lab, dp.data(), acc);
  const Vec g = ref::BinaryNllBackward(pred, target, dl);
  out.outputs.push_back({"diff_pred", dp.Download(), acc ? Plus(prior, g) : g});
  return out;
}

// A prediction of (outer, samples, inner) elements whose target has (outer, inner) elements
// (GaussianNLL / BetaNLL with an 's' axis); samples = 1 is the plain case. The reference gets the
// target expanded over the samples by hand.
struct Sampled {
  int64_t outer = 40, samples = 1, inner = 1;
  int64_t n() const { return outer * samples * inner; }
  int64_t n_target() const { return outer * inner; }
  Backend::SampleAxis axis() const { return {samples, inner}; }
  Vec Expand(const Vec& t) const {
    Vec e;
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t s = 0; s < samples; ++s)
        for (int64_t i = 0; i < inner; ++i) e.push_back(t[o * inner + i]);
    return e;
  }
};

absl::StatusOr<Outcome> RunGaussian(bool log_sig, Sampled sh, Pass pass, Backend& b,
                                    InputRng& rng) {
  const int64_t n = sh.n();
  const Vec mu = rng.Uniform(n, -1.f, 1.f), target = rng.Uniform(sh.n_target(), -1.f, 1.f),
            sig = log_sig ? rng.Uniform(n, -1.f, 1.f) : rng.Uniform(n, 0.3f, 2.f);
  const Vec expanded = sh.Expand(target);
  DeviceBuffer dmu(b, mu), dsig(b, sig), dt(b, target);
  Outcome out;
  if (pass == Pass::kForward) {
    DeviceBuffer loss(b, Stale(n));
    b.GaussianNllForward(n, sh.axis(), log_sig, dmu.data(), dsig.data(), dt.data(), loss.data());
    out.outputs.push_back(
        {"loss", loss.Download(), ref::GaussianNllForward(log_sig, mu, sig, expanded)});
    return out;
  }
  const bool acc = pass == Pass::kBackwardAccumulate;
  const Vec dl = rng.Uniform(n), p1 = acc ? rng.Uniform(n) : Stale(n),
            p2 = acc ? rng.Uniform(n) : Stale(n);
  DeviceBuffer ddl(b, dl), gmu(b, p1), gsig(b, p2);
  b.GaussianNllBackward(n, sh.axis(), log_sig, dmu.data(), dsig.data(), dt.data(), ddl.data(),
                        gmu.data(), acc, gsig.data(), acc);
  Vec wmu, wsig;
  ref::GaussianNllBackward(log_sig, mu, sig, expanded, dl, &wmu, &wsig);
  out.outputs.push_back({"diff_mu", gmu.Download(), acc ? Plus(p1, wmu) : wmu});
  out.outputs.push_back({"diff_sig", gsig.Download(), acc ? Plus(p2, wsig) : wsig});
  return out;
}

absl::StatusOr<Outcome> RunBeta(Sampled sh, Pass pass, Backend& b, InputRng& rng) {
  const int64_t n = sh.n();
  const Vec mode = rng.Uniform(n, 0.1f, 0.9f), conc = rng.Uniform(n, 2.5f, 12.f),
            target = rng.Uniform(sh.n_target(), 0.02f, 0.98f);
  const Vec expanded = sh.Expand(target);
  DeviceBuffer dm(b, mode), dc(b, conc), dt(b, target);
  Outcome out;
  if (pass == Pass::kForward) {
    DeviceBuffer loss(b, Stale(n));
    b.BetaNllForward(n, sh.axis(), dm.data(), dc.data(), dt.data(), loss.data());
    out.outputs.push_back({"loss", loss.Download(), ref::BetaNllForward(mode, conc, expanded)});
    return out;
  }
  const bool acc = pass == Pass::kBackwardAccumulate;
  const Vec dl = rng.Uniform(n), p1 = acc ? rng.Uniform(n) : Stale(n),
            p2 = acc ? rng.Uniform(n) : Stale(n);
  DeviceBuffer ddl(b, dl), gm(b, p1), gc(b, p2);
  b.BetaNllBackward(n, sh.axis(), dm.data(), dc.data(), dt.data(), ddl.data(), gm.data(), acc,
                    gc.data(), acc);
  Vec wm, wc;
  ref::BetaNllBackward(mode, conc, expanded, dl, &wm, &wc);
  out.outputs.push_back({"diff_mode", gm.Download(), acc ? Plus(p1, wm) : wm});
  out.outputs.push_back({"diff_conc", gc.Download(), acc ? Plus(p2, wc) : wc});
  return out;
}

// EuclideanDistance (ramp = false) and RampLoss (margin 0.3).
absl::StatusOr<Outcome> RunPair(bool ramp, Pass pass, Backend& b, InputRng& rng) {
  const int64_t rows = 9, ch = 4, n = rows * ch;
  const float margin = 0.3f;
  const Vec a = rng.Uniform(n), c = rng.Uniform(n);
  DeviceBuffer da(b, a), dc(b, c), out_buf(b, Stale(rows));
  const Vec want =
      ramp ? ref::RampForward(a, c, margin, rows, ch) : ref::EuclideanForward(a, c, rows, ch);
  if (ramp) {
    b.RampLossForward(da.data(), dc.data(), margin, out_buf.data(), rows, ch);
  } else {
    b.EuclideanDistanceForward(da.data(), dc.data(), out_buf.data(), rows, ch);
  }
  Outcome out;
  if (pass == Pass::kForward) {
    out.outputs.push_back({"out", out_buf.Download(), want});
    return out;
  }
  const bool acc = pass == Pass::kBackwardAccumulate;
  const Vec dl = rng.Uniform(rows), p1 = acc ? rng.Uniform(n) : Stale(n),
            p2 = acc ? rng.Uniform(n) : Stale(n);
  DeviceBuffer ddl(b, dl), g1(b, p1), g2(b, p2);
  Vec w1, w2;
  if (ramp) {
    b.RampLossBackward(da.data(), dc.data(), margin, ddl.data(), g1.data(), acc, g2.data(), acc,
                       rows, ch);
    ref::RampBackward(a, c, margin, dl, rows, ch, &w1, &w2);
  } else {
    b.EuclideanDistanceBackward(da.data(), dc.data(), out_buf.data(), ddl.data(), g1.data(), acc,
                                g2.data(), acc, rows, ch);
    ref::EuclideanBackward(a, c, dl, rows, ch, &w1, &w2);
  }
  out.outputs.push_back({"diff_a", g1.Download(), acc ? Plus(p1, w1) : w1});
  out.outputs.push_back({"diff_b", g2.Download(), acc ? Plus(p2, w2) : w2});
  return out;
}

absl::StatusOr<Outcome> RunSobel(std::vector<int64_t> spatial, Pass pass, Backend& b,
                                 InputRng& rng) {
  const int64_t batch = 2, f = 2, nd = static_cast<int64_t>(spatial.size());
  int64_t vox = batch;
  for (int64_t s : spatial) vox *= s;
  Backend::SobelDesc d;
  d.batch = batch;
  d.channels = f;
  d.spatial = spatial;
  Outcome out;
  if (pass == Pass::kForward) {
    const Vec src = rng.Uniform(vox * f);
    DeviceBuffer s(b, src), dst(b, Stale(vox * f * nd));
    b.SobelForward(d, s.data(), dst.data());
    out.outputs.push_back({"dst", dst.Download(), ref::SobelForward(src, batch, spatial, f)});
    return out;
  }
  const bool acc = pass == Pass::kBackwardAccumulate;
  const Vec dd = rng.Uniform(vox * f * nd), prior = acc ? rng.Uniform(vox * f) : Stale(vox * f);
  DeviceBuffer ddst(b, dd), ds(b, prior);
  b.SobelBackward(d, ddst.data(), ds.data(), acc);
  const Vec g = ref::SobelBackward(dd, batch, spatial, f);
  out.outputs.push_back({"diff_src", ds.Download(), acc ? Plus(prior, g) : g});
  return out;
}

std::vector<ParityCase> LossCases() {
  std::vector<ParityCase> cases;
  const Pass kPasses[] = {Pass::kForward, Pass::kBackward, Pass::kBackwardAccumulate};
  for (Pass pass : kPasses) {
    const std::string pn = PassName(pass);
    for (auto [name, c] : {std::pair{"Sparse", NllCase{true, false, false, false, 1}},
                           {"Dense", NllCase{false, false, false, false, 1}},
                           {"ExampleWeights", NllCase{true, true, false, false, 1}},
                           {"Masks", NllCase{true, false, true, false, 1}},
                           {"MasksIndep2", NllCase{true, false, true, false, 2}},
                           {"Weakness", NllCase{true, false, false, true, 1}},
                           {"AllDense", NllCase{false, true, true, true, 1}},
                           // 2 x 9000 rows: the threaded path of the CPU backend.
                           {"AllDenseParallel", NllCase{false, true, true, true, 1, 9000}},
                           {"SparseIndep2Parallel", NllCase{true, false, true, false, 2, 9000}}}) {
      cases.push_back({std::string("NllExt") + name + pn,
                       [c, pass](Backend& b, InputRng& r) { return RunNllExt(c, pass, b, r); }});
    }
    for (bool sq : {true, false}) {
      for (auto [name, m, sc] : {std::tuple{"", 0.0, 0.0},
                                 {"Margin", 0.7, 0.0},
                                 {"ScaleCorrection", 0.0, 1.5},
                                 {"MarginScaleCorrection", 0.5, 0.8}}) {
        const ref::Regression p{11, 3, sq, m, sc};
        cases.push_back(
            {std::string(sq ? "SquaredLoss" : "AbsLoss") + name + pn,
             [p, pass](Backend& b, InputRng& r) { return RunRegression(p, pass, b, r); }});
      }
    }
    for (bool e : {false, true}) {
      cases.push_back({std::string("BinaryNll") + (e ? "LabelEntropy" : "") + pn,
                       [e, pass](Backend& b, InputRng& r) { return RunBinaryNll(e, pass, b, r); }});
      for (auto [sname, sh] : {std::pair{"", Sampled{}}, {"Samples", Sampled{3, 4, 5}}}) {
        cases.push_back(
            {std::string("GaussianNll") + (e ? "SigIsLog" : "") + sname + pn,
             [e, sh, pass](Backend& b, InputRng& r) { return RunGaussian(e, sh, pass, b, r); }});
      }
      cases.push_back({std::string(e ? "RampLoss" : "EuclideanDistance") + pn,
                       [e, pass](Backend& b, InputRng& r) { return RunPair(e, pass, b, r); }});
    }
    for (auto [sname, sh] : {std::pair{"", Sampled{}}, {"Samples", Sampled{3, 4, 5}}}) {
      cases.push_back({"BetaNll" + std::string(sname) + pn,
                       [sh, pass](Backend& b, InputRng& r) { return RunBeta(sh, pass, b, r); }});
    }
    for (auto [name, sp] : {std::pair{"1d", std::vector<int64_t>{7}},
                            {"2d", std::vector<int64_t>{4, 5}},
                            {"3d", std::vector<int64_t>{3, 4, 5}}}) {
      cases.push_back({std::string("Sobel") + name + pn,
                       [sp, pass](Backend& b, InputRng& r) { return RunSobel(sp, pass, b, r); }});
    }
  }
  cases.push_back({"OneHot", [](Backend& b, InputRng& r) -> absl::StatusOr<Outcome> {
                     const Vec labels = Labels(r, 23, 4);
                     DeviceBuffer l(b, labels), o(b, Stale(23 * 4));
                     b.OneHot(l.data(), o.data(), 23, 4);
                     Outcome out;
                     out.outputs.push_back({"onehot", o.Download(), ref::OneHot(labels, 4)});
                     return out;
                   }});
  for (bool th : {false, true}) {
    cases.push_back(
        {th ? "ClassifyThreshold" : "ClassifyArgmaxIndep2",
         [th](Backend& b, InputRng& r) -> absl::StatusOr<Outcome> {
           const int64_t rows = 13, ch = 6, n_class = 3;
           const Vec p = r.Uniform(rows * ch, 0.f, 1.f);
           const int64_t n_out = th ? rows * ch : rows * ch / n_class;
           DeviceBuffer dp(b, p), o(b, Stale(n_out));
           b.Classify(dp.data(), o.data(), rows, ch, n_class, th);
           Outcome out;
           out.outputs.push_back({"cls", o.Download(), ref::Classify(p, rows, ch, n_class, th)});
           return out;
         }});
  }
  cases.push_back(
      {"CountBinaryErrors", [](Backend& b, InputRng& r) -> absl::StatusOr<Outcome> {
         const int64_t n = 50;
         const Vec p = r.Uniform(n, 0.f, 1.f);
         Vec t = r.Uniform(n, 0.f, 1.f);
         for (int64_t i = 0; i < n; ++i) t[i] = t[i] > 0.5f ? 1.f : 0.f;
         t[3] = -1.f;
         t[7] = -666.f;
         DeviceBuffer dp(b, p), dt(b, t);
         int64_t w = 0, l = 0, ww = 0, wl = 0;
         b.CountBinaryErrors(dp.data(), dt.data(), n, &w, &l);
         ref::CountBinaryErrors(p, t, &ww, &wl);
         Outcome out;
         out.outputs.push_back({"wrong", {static_cast<float>(w)}, {static_cast<float>(ww)}});
         out.outputs.push_back({"labelled", {static_cast<float>(l)}, {static_cast<float>(wl)}});
         return out;
       }});
  return cases;
}

[[maybe_unused]] const bool kRegistered = RegisterParityCases(LossCases());

// The reference against hand-computed values, so that it cannot drift with the kernel.
TEST(LossReference, HandComputedValues) {
  // BinaryNLL: 4 elements, one ignored: scale = 4 / (3 + 1) = 1.
  int64_t n_lab = 0;
  const Vec bn =
      ref::BinaryNllForward(false, {0.5f, 0.9f, 0.2f, 0.7f}, {1.f, 0.f, 0.f, -666.f}, &n_lab);
  EXPECT_EQ(n_lab, 3);
  EXPECT_NEAR(bn[0], -std::log(0.5 + 1e-5), 1e-6);
  EXPECT_NEAR(bn[1], -std::log(0.1 + 1e-5), 1e-6);
  EXPECT_NEAR(bn[2], -std::log(0.8 + 1e-5), 1e-6);
  EXPECT_EQ(bn[3], 0.f);
  // SquaredLoss, 1 row x 2 channels, nothing ignored: scale = 2/3, mean over f.
  const Vec se = ref::RegressionForward({1, 2, true, 0, 0}, {0.f, 1.f}, {1.f, 3.f}, &n_lab);
  EXPECT_NEAR(se[0], (2.0 / 3) * 0.5 * (1 + 4) / 2, 1e-6);
  // Sobel 1-D of a ramp: (x[i-1] - x[i+1]) in the interior.
  const Vec s = ref::SobelForward({0.f, 1.f, 3.f, 6.f}, 1, {4}, 1);
  EXPECT_EQ(s, (Vec{-1.f, -3.f, -5.f, 3.f}));
}

}  // namespace
}  // namespace elektronn::testing
