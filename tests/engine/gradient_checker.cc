// Central-difference gradient checking through the public Network API.
#include "tests/engine/gradient_checker.h"

#include <cmath>
#include <cstdlib>
#include <random>

#include "absl/strings/str_format.h"
#include "engine/core/status.h"
#include "engine/graph/network.h"

namespace elektronn::testing {
namespace {

double Objective(Network& net, const std::string& out, const std::vector<float>& r) {
  if (!net.Forward().ok()) return NAN;
  auto v = net.Output(out);
  double s = 0;
  for (size_t i = 0; i < r.size(); ++i) s += static_cast<double>((*v)[i]) * r[i];
  return s;
}

double RelError(const std::vector<double>& a, const std::vector<double>& b) {
  double d = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    d += (a[i] - b[i]) * (a[i] - b[i]);
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  const double denom = std::max(std::sqrt(na), std::sqrt(nb));
  return denom < 1e-12 ? 0 : std::sqrt(d) / denom;
}

}  // namespace

absl::Status CheckGradients(const v1::ModelSpec& spec, const GradientCheckOptions& opt,
                            GradientCheckReport* report) {
  // The device: ELK_GRADIENT_DEVICE (e.g. cuda:0: ctest's gradient_cuda_test, label `gpu`,
  // runs the same checks on the CUDA backend), else the CPU. Created once per process.
  static absl::StatusOr<std::unique_ptr<kernels::Backend>> backend_or = [] {
    const char* d = std::getenv("ELK_GRADIENT_DEVICE");
    return kernels::CreateBackend({.device = d != nullptr && *d != '\0' ? d : "cpu"});
  }();
  if (!backend_or.ok()) return backend_or.status();
  kernels::Backend* backend = backend_or->get();
  NetworkOptions no;
  no.batch_size = opt.batch_size;
  no.input_gradients = true;
  ASSIGN_OR_RETURN(auto net, Network::Create(spec, backend, no));
  net->set_training(true);
  std::mt19937_64 rng(opt.seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::map<std::string, std::vector<float>> inputs;
  for (const auto& n : net->graph().nodes()) {
    if (!n->is_source()) continue;
    std::vector<float> v(n->numel());
    const bool integer = std::find(opt.fixed_inputs_integer.begin(), opt.fixed_inputs_integer.end(),
                                   n->name()) != opt.fixed_inputs_integer.end();
    std::uniform_int_distribution<int> cls(0, static_cast<int>(opt.n_classes) - 1);
    std::uniform_real_distribution<double> share(0, 1);
    const float ignored[] = {-1.f, -2.f, static_cast<float>(opt.n_classes)};
    int n_ignored = 0;
    for (float& x : v) {
      if (!integer) {
        x = u(rng);
      } else if (opt.ignored_label_share > 0 && share(rng) < opt.ignored_label_share) {
        x = ignored[n_ignored++ % 3];
      } else {
        x = static_cast<float>(cls(rng));
      }
    }
    if (auto it = opt.input_values.find(n->name()); it != opt.input_values.end()) {
      v = it->second;  // losses family: explicit values
    }
    RETURN_IF_ERROR(net->SetInput(n->name(), v));
    inputs[n->name()] = std::move(v);
  }
  // Parameters are randomised too, so biases and slopes are not at special values.
  for (Parameter* p : net->params()) {
    std::vector<float> v(p->canonical_size());
    for (float& x : v) x = 0.5f * u(rng);
    // batch_norm: statistics (never trainable) stay positive, as a std must be.
    if (p->fixed)
      for (float& x : v) x = 0.75f + x;
    RETURN_IF_ERROR(net->SetParamValue(*p, v));
  }
  ASSIGN_OR_RETURN(Node * out, net->graph().Get(opt.output));
  std::vector<float> r(out->numel());
  for (float& x : r) x = u(rng);
  RETURN_IF_ERROR(net->Forward());
  RETURN_IF_ERROR(net->BackwardFrom(opt.output, r));

  auto check = [&](const std::string& label, std::vector<float> analytic, auto get, auto set) {
    std::vector<double> an, fd;
    std::vector<float> base = get();
    std::uniform_int_distribution<size_t> pick(0, base.size() - 1);
    const int n = std::min<int>(opt.max_checks_per_tensor, static_cast<int>(base.size()));
    for (int k = 0; k < n; ++k) {
      const size_t i = static_cast<int>(base.size()) <= opt.max_checks_per_tensor ? k : pick(rng);
      std::vector<float> v = base;
      const double h = opt.eps * std::max(1.0, std::fabs(static_cast<double>(base[i])));
      v[i] = static_cast<float>(base[i] + h);
      set(v);
      const double lp = Objective(*net, opt.output, r);
      v[i] = static_cast<float>(base[i] - h);
      set(v);
      const double lm = Objective(*net, opt.output, r);
      set(base);
      fd.push_back((lp - lm) / (2 * h));
      an.push_back(analytic[i]);
    }
    const double e = RelError(an, fd);
    report->worst = std::max(report->worst, e);
    report->lines.push_back(
        absl::StrFormat("%s: relative error %.2e over %d entries", label, e, n));
    return e;
  };

  std::string failures;
  for (const std::string& name : opt.wrt_inputs) {
    ASSIGN_OR_RETURN(std::vector<float> g, net->InputGradient(name));
    const double e = check(
        "input " + name, g, [&] { return inputs[name]; },
        [&](const std::vector<float>& v) { (void)net->SetInput(name, v); });
    if (!(e <= opt.tolerance)) failures += absl::StrFormat(" input '%s' (%.2e)", name, e);
  }
  if (opt.check_params) {
    for (Parameter* p : net->params()) {
      if (p->fixed) continue;  // batch_norm: no gradient (BN statistics, gamma in 'predict')
      std::vector<float> g = net->ParamGrad(*p);
      const double e = check(
          "param " + p->key(), g, [&] { return net->ParamValue(*p); },
          [&](const std::vector<float>& v) { (void)net->SetParamValue(*p, v); });
      if (!(e <= opt.tolerance)) failures += absl::StrFormat(" param '%s' (%.2e)", p->key(), e);
    }
  }
  if (!failures.empty()) {
    return absl::InternalError("gradient mismatch:" + failures);
  }
  return absl::OkStatus();
}

}  // namespace elektronn::testing
