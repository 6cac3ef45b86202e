// Parity cases of the backward functions with two gradient targets, each with its own
// `accumulate` flag and either one possibly null (Gaussian sample and prior, GaussianNLL, BetaNLL,
// Euclidean distance, ramp loss): the family files run both targets with one flag, so a backend
// that mixes the flags up, or writes through a null target, passes there and fails here.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "tests/kernels/parity_harness.h"
#include "tests/kernels/reference_losses.h"
#include "tests/kernels/reference_structural.h"

namespace elektronn::testing {
namespace {

using Vec = std::vector<float>;

// Which target accumulates and which is absent.
enum class Mix { kFirstAccumulates, kSecondAccumulates, kFirstNull, kSecondNull };
constexpr std::pair<Mix, const char*> kMixes[] = {{Mix::kFirstAccumulates, "FirstAcc"},
                                                  {Mix::kSecondAccumulates, "SecondAcc"},
                                                  {Mix::kFirstNull, "FirstNull"},
                                                  {Mix::kSecondNull, "SecondNull"}};

using Call = std::function<void(float* first, bool acc_first, float* second, bool acc_second)>;

// Runs `call` with the targets and flags of `mix` and compares each target with the reference
// gradient (plus its prior where it accumulates); a null target's buffer must stay as it was.
Outcome RunMix(Mix mix, Backend& b, InputRng& rng, const Vec& want1, const Vec& want2,
               const Call& call) {
  const bool null1 = mix == Mix::kFirstNull, null2 = mix == Mix::kSecondNull;
  const bool acc1 = mix == Mix::kFirstAccumulates || mix == Mix::kSecondNull;
  const bool acc2 = mix == Mix::kSecondAccumulates;
  const int64_t n1 = static_cast<int64_t>(want1.size()), n2 = static_cast<int64_t>(want2.size());
  const Vec p1 = acc1 || null1 ? rng.Uniform(n1) : Vec(n1, kStale);
  const Vec p2 = acc2 || null2 ? rng.Uniform(n2) : Vec(n2, kStale);
  DeviceBuffer g1(b, p1), g2(b, p2);
  call(null1 ? nullptr : g1.data(), acc1, null2 ? nullptr : g2.data(), acc2);
  Outcome out;
  out.outputs.push_back({null1 ? "first (null: untouched)" : "first", g1.Download(),
                         null1 ? p1 : (acc1 ? Plus(p1, want1) : want1)});
  out.outputs.push_back({null2 ? "second (null: untouched)" : "second", g2.Download(),
                         null2 ? p2 : (acc2 ? Plus(p2, want2) : want2)});
  return out;
}

absl::StatusOr<Outcome> RunGaussianSample(Mix mix, Backend& b, InputRng& rng) {
  const int64_t outer = 3, samples = 4, inner = 29, n = outer * inner;
  const uint64_t seed = 11, step = 3;
  const Vec mu = rng.Uniform(n), ls = rng.Uniform(n, -1.f, 0.5f), dd = rng.Uniform(n * samples);
  const Vec dst = GaussianSample(mu, ls, outer, samples, inner, seed, step);
  const GaussianGrads want = GaussianSampleBackward(mu, ls, dd, outer, samples, inner, seed, step);
  DeviceBuffer mb(b, mu), db(b, dst), ddb(b, dd);
  return RunMix(mix, b, rng, want.mu, want.log_sig, [&](float* g1, bool a1, float* g2, bool a2) {
    b.GaussianSampleBackward(mb.data(), db.data(), ddb.data(), g1, a1, g2, a2, outer, samples,
                             inner);
  });
}

absl::StatusOr<Outcome> RunGaussianPrior(Mix mix, Backend& b, InputRng& rng) {
  const int64_t n = 301;
  const Vec mu = rng.Uniform(n, -2.f, 2.f), ls = rng.Uniform(n, -1.5f, 1.f), dd = rng.Uniform(n);
  const GaussianGrads want = GaussianPriorBackward(mu, ls, dd);
  DeviceBuffer mb(b, mu), lb(b, ls), ddb(b, dd);
  return RunMix(mix, b, rng, want.mu, want.log_sig, [&](float* g1, bool a1, float* g2, bool a2) {
    b.GaussianPriorBackward(mb.data(), lb.data(), ddb.data(), g1, a1, g2, a2, n);
  });
}

absl::StatusOr<Outcome> RunGaussianNll(Mix mix, Backend& b, InputRng& rng) {
  const int64_t n = 257;
  const Vec mu = rng.Uniform(n), sig = rng.Uniform(n, 0.3f, 2.f), t = rng.Uniform(n),
            dl = rng.Uniform(n);
  Vec w1, w2;
  losses::GaussianNllBackward(false, mu, sig, t, dl, &w1, &w2);
  DeviceBuffer mb(b, mu), sb(b, sig), tb(b, t), lb(b, dl);
  return RunMix(mix, b, rng, w1, w2, [&](float* g1, bool a1, float* g2, bool a2) {
    b.GaussianNllBackward(n, {}, false, mb.data(), sb.data(), tb.data(), lb.data(), g1, a1, g2, a2);
  });
}

absl::StatusOr<Outcome> RunBetaNll(Mix mix, Backend& b, InputRng& rng) {
  const int64_t n = 257;
  const Vec mode = rng.Uniform(n, 0.1f, 0.9f), conc = rng.Uniform(n, 2.5f, 12.f),
            t = rng.Uniform(n, 0.02f, 0.98f), dl = rng.Uniform(n);
  Vec w1, w2;
  losses::BetaNllBackward(mode, conc, t, dl, &w1, &w2);
  DeviceBuffer mb(b, mode), cb(b, conc), tb(b, t), lb(b, dl);
  return RunMix(mix, b, rng, w1, w2, [&](float* g1, bool a1, float* g2, bool a2) {
    b.BetaNllBackward(n, {}, mb.data(), cb.data(), tb.data(), lb.data(), g1, a1, g2, a2);
  });
}

absl::StatusOr<Outcome> RunPair(bool ramp, Mix mix, Backend& b, InputRng& rng) {
  const int64_t rows = 9, ch = 4, n = rows * ch;
  const float margin = 0.3f;
  const Vec x = rng.Uniform(n), y = rng.Uniform(n), dl = rng.Uniform(rows);
  const Vec dist = losses::EuclideanForward(x, y, rows, ch);
  Vec w1, w2;
  if (ramp) {
    losses::RampBackward(x, y, margin, dl, rows, ch, &w1, &w2);
  } else {
    losses::EuclideanBackward(x, y, dl, rows, ch, &w1, &w2);
  }
  DeviceBuffer xb(b, x), yb(b, y), db(b, dist), lb(b, dl);
  return RunMix(mix, b, rng, w1, w2, [&](float* g1, bool a1, float* g2, bool a2) {
    if (ramp) {
      b.RampLossBackward(xb.data(), yb.data(), margin, lb.data(), g1, a1, g2, a2, rows, ch);
    } else {
      b.EuclideanDistanceBackward(xb.data(), yb.data(), db.data(), lb.data(), g1, a1, g2, a2, rows,
                                  ch);
    }
  });
}

std::vector<ParityCase> TwoTargetCases() {
  using Run = std::function<absl::StatusOr<Outcome>(Mix, Backend&, InputRng&)>;
  const std::pair<const char*, Run> runs[] = {
      {"GaussianSampleBackward", RunGaussianSample},
      {"GaussianPriorBackward", RunGaussianPrior},
      {"GaussianNllBackward", RunGaussianNll},
      {"BetaNllBackward", RunBetaNll},
      {"EuclideanDistanceBackward",
       [](Mix m, Backend& b, InputRng& r) { return RunPair(false, m, b, r); }},
      {"RampLossBackward", [](Mix m, Backend& b, InputRng& r) { return RunPair(true, m, b, r); }},
  };
  std::vector<ParityCase> cases;
  for (const auto& [name, run] : runs) {
    for (auto [mix, suffix] : kMixes) {
      cases.push_back({std::string(name) + suffix,
                       [run = run, mix = mix](Backend& b, InputRng& r) { return run(mix, b, r); }});
    }
  }
  return cases;
}

[[maybe_unused]] const bool kRegistered = RegisterParityCases(TwoTargetCases());

}  // namespace
}  // namespace elektronn::testing
