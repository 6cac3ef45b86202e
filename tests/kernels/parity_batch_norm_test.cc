// Parity cases of the batch-normalisation kernels (batch_norm family) against
// tests/kernels/reference_batch_norm.h: statistics, the affine map with and without a fused
// activation, the gradient with batch statistics (train), with faded batch statistics (fadeout)
// and with stored ones (predict), in place and accumulating, the fade itself, and the
// running-estimate update. Long cases cross the kernels' threshold for running on the OpenMP
// team.
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "kernels/backend.h"
#include "tests/kernels/parity_harness.h"
#include "tests/kernels/reference_batch_norm.h"

namespace elektronn::testing {
namespace {

using kernels::Eltwise;

constexpr float kEps = 1e-6f;

std::vector<float> Stale(int64_t n) { return std::vector<float>(n, kStale); }

// Inputs with a per-channel offset, so a one-pass variance would lose precision.
std::vector<float> Activations(InputRng& rng, int64_t rows, int64_t ch, float offset) {
  std::vector<float> x = rng.Uniform(rows * ch);
  for (int64_t i = 0; i < rows * ch; ++i) x[i] += offset * static_cast<float>(i % ch + 1);
  return x;
}

absl::StatusOr<Outcome> RunStatistics(int64_t rows, int64_t ch, float offset, Backend& b,
                                      InputRng& rng) {
  const std::vector<float> src = Activations(rng, rows, ch, offset);
  DeviceBuffer s(b, src), m(b, Stale(ch)), sd(b, Stale(ch));
  b.BatchNormStatistics(s.data(), m.data(), sd.data(), rows, ch, kEps);
  const BnStatistics want = BatchNormStatistics(src, rows, ch, kEps);
  Outcome out;
  out.outputs.push_back({"mean", m.Download(), want.mean});
  out.outputs.push_back({"std", sd.Download(), want.std});
  return out;
}

absl::StatusOr<Outcome> RunForward(int64_t rows, int64_t ch, Eltwise act, bool in_place, Backend& b,
                                   InputRng& rng) {
  const std::vector<float> src = Activations(rng, rows, ch, 0.5f), mean = rng.Uniform(ch),
                           std = rng.Uniform(ch, 0.2f, 2.f), gamma = rng.Uniform(ch, -2.f, 2.f),
                           beta = rng.Uniform(ch);
  DeviceBuffer s(b, src), m(b, mean), sd(b, std), g(b, gamma), be(b, beta), d(b, Stale(rows * ch));
  float* dst = in_place ? s.data() : d.data();
  b.BatchNormForward(s.data(), m.data(), sd.data(), g.data(), be.data(), dst, rows, ch, act);
  Outcome out;
  out.outputs.push_back({"dst", in_place ? s.Download() : d.Download(),
                         BatchNormForward(src, mean, std, gamma, beta, rows, ch, act)});
  return out;
}

enum class Mode { kOverwrite, kInPlace, kAccumulate };

// `rate` < 1: 'fadeout', the gradient through the faded batch statistics (batch_statistics).
absl::StatusOr<Outcome> RunBackward(int64_t rows, int64_t ch, bool batch_statistics, Mode mode,
                                    Backend& b, InputRng& rng, float rate = 1.f) {
  const std::vector<float> src = Activations(rng, rows, ch, 0.5f);
  std::vector<float> mean = rng.Uniform(ch), std = rng.Uniform(ch, 0.2f, 2.f);
  if (batch_statistics) {
    const BnStatistics st = BatchNormStatistics(src, rows, ch, kEps);
    mean = st.mean;
    std = st.std;
  }
  const std::vector<float> gamma = rng.Uniform(ch, -2.f, 2.f), diff_dst = rng.Uniform(rows * ch);
  const std::vector<float> prior =
      mode == Mode::kAccumulate ? rng.Uniform(rows * ch) : Stale(rows * ch);
  const BnGrads want =
      BatchNormBackward(src, mean, std, gamma, diff_dst, rows, ch, kEps, batch_statistics, rate);
  DeviceBuffer s(b, src), m(b, mean), sd(b, std), g(b, gamma), dd(b, diff_dst), ds(b, prior),
      dg(b, Stale(ch)), db(b, Stale(ch));
  float* diff_src = mode == Mode::kInPlace ? dd.data() : ds.data();
  b.BatchNormBackward(s.data(), m.data(), sd.data(), g.data(), dd.data(), diff_src, dg.data(),
                      db.data(), rows, ch, kEps, batch_statistics, rate, mode == Mode::kAccumulate);
  Outcome out;
  out.outputs.push_back({"diff_src", mode == Mode::kInPlace ? dd.Download() : ds.Download(),
                         mode == Mode::kAccumulate ? Plus(prior, want.src) : want.src});
  out.outputs.push_back({"diff_gamma", dg.Download(), want.gamma});
  out.outputs.push_back({"diff_beta", db.Download(), want.beta});
  return out;
}

absl::StatusOr<Outcome> RunFade(int64_t ch, float rate, bool in_place, Backend& b, InputRng& rng) {
  const std::vector<float> mean = rng.Uniform(ch), std = rng.Uniform(ch, 0.2f, 2.f),
                           gamma = rng.Uniform(ch, -2.f, 2.f);
  DeviceBuffer m(b, mean), sd(b, std), g(b, gamma), fm(b, Stale(ch)), fs(b, Stale(ch)),
      fg(b, Stale(ch));
  DeviceBuffer& om = in_place ? m : fm;
  DeviceBuffer& os = in_place ? sd : fs;
  DeviceBuffer& og = in_place ? g : fg;
  b.BatchNormFade(m.data(), sd.data(), g.data(), rate, om.data(), os.data(), og.data(), ch);
  const BnFaded want = BatchNormFade(mean, std, gamma, rate);
  Outcome out;
  out.outputs.push_back({"faded_mean", om.Download(), want.mean});
  out.outputs.push_back({"faded_std", os.Download(), want.std});
  out.outputs.push_back({"faded_gamma", og.Download(), want.gamma});
  return out;
}

absl::StatusOr<Outcome> RunUpdateRunning(int64_t ch, Backend& b, InputRng& rng) {
  const std::vector<float> bm = rng.Uniform(ch), bs = rng.Uniform(ch, 0.1f, 3.f),
                           rm = rng.Uniform(ch), rs = rng.Uniform(ch, 0.1f, 3.f);
  DeviceBuffer dbm(b, bm), dbs(b, bs), drm(b, rm), drs(b, rs);
  b.BatchNormUpdateRunning(dbm.data(), dbs.data(), drm.data(), drs.data(), ch, 0.9995f);
  Outcome out;
  out.outputs.push_back({"running_mean", drm.Download(), BatchNormRunning(rm, bm, 0.9995)});
  out.outputs.push_back({"running_std", drs.Download(), BatchNormRunning(rs, bs, 0.9995)});
  return out;
}

std::vector<ParityCase> BatchNormCases() {
  std::vector<ParityCase> cases;
  constexpr int64_t kLong = 9000;  // above the kernels' single-thread threshold
  for (auto [name, rows, ch] : {std::tuple{"", int64_t{37}, int64_t{5}},
                                {"Long", kLong, int64_t{3}},
                                {"Wide", int64_t{12}, int64_t{64}}}) {
    const std::string n = name;
    cases.push_back({"BatchNormStatistics" + n, [rows = rows, ch = ch](Backend& b, InputRng& r) {
                       return RunStatistics(rows, ch, 0.f, b, r);
                     }});
    cases.push_back(
        {"BatchNormStatisticsOffset" + n, [rows = rows, ch = ch](Backend& b, InputRng& r) {
           return RunStatistics(rows, ch, 100.f, b, r);
         }});
    for (auto [act_name, act] : {std::pair{"Linear", Eltwise::kLinear},
                                 {"Relu", Eltwise::kRelu},
                                 {"Tanh", Eltwise::kTanh},
                                 {"Sigmoid", Eltwise::kSigmoid},
                                 {"Abs", Eltwise::kAbs},
                                 {"Softplus", Eltwise::kSoftplus},
                                 {"Elu", Eltwise::kElu},
                                 {"Selu", Eltwise::kSelu},
                                 {"Concentration", Eltwise::kConcentration},
                                 {"Radius", Eltwise::kRadius}}) {
      cases.push_back({"BatchNormForward" + std::string(act_name) + n,
                       [rows = rows, ch = ch, act = act](Backend& b, InputRng& r) {
                         return RunForward(rows, ch, act, false, b, r);
                       }});
    }
    cases.push_back(
        {"BatchNormForwardInPlace" + n, [rows = rows, ch = ch](Backend& b, InputRng& r) {
           return RunForward(rows, ch, Eltwise::kRelu, true, b, r);
         }});
    for (auto [mode_name, mode] : {std::pair{"", Mode::kOverwrite},
                                   {"InPlace", Mode::kInPlace},
                                   {"Accumulate", Mode::kAccumulate}}) {
      for (auto [stat_name, batch] : {std::pair{"Train", true}, {"Predict", false}}) {
        cases.push_back(
            {"BatchNormBackward" + std::string(stat_name) + mode_name + n,
             [rows = rows, ch = ch, batch = batch, mode = mode](Backend& b, InputRng& r) {
               return RunBackward(rows, ch, batch, mode, b, r);
             }});
      }
    }
    // 'fadeout' (gradnet_rate r): r = 0 leaves only the bias, r = 1 is 'train'.
    for (auto [rate_name, rate] : {std::pair{"R0", 0.f}, {"R03", 0.3f}, {"R1", 1.f}}) {
      cases.push_back({"BatchNormBackwardFadeout" + std::string(rate_name) + n,
                       [rows = rows, ch = ch, rate = rate](Backend& b, InputRng& r) {
                         return RunBackward(rows, ch, true, Mode::kOverwrite, b, r, rate);
                       }});
    }
    cases.push_back(
        {"BatchNormBackwardFadeoutAccumulate" + n, [rows = rows, ch = ch](Backend& b, InputRng& r) {
           return RunBackward(rows, ch, true, Mode::kAccumulate, b, r, 0.6f);
         }});
  }
  for (auto [rate_name, rate] : {std::pair{"R0", 0.f}, {"R03", 0.3f}, {"R1", 1.f}}) {
    cases.push_back(
        {"BatchNormFade" + std::string(rate_name),
         [rate = rate](Backend& b, InputRng& r) { return RunFade(7, rate, false, b, r); }});
  }
  cases.push_back({"BatchNormFadeInPlace",
                   [](Backend& b, InputRng& r) { return RunFade(7, 0.3f, true, b, r); }});
  cases.push_back({"BatchNormUpdateRunning",
                   [](Backend& b, InputRng& r) { return RunUpdateRunning(7, b, r); }});
  return cases;
}

[[maybe_unused]] const bool kRegistered = RegisterParityCases(BatchNormCases());

}  // namespace
}  // namespace elektronn::testing
