// Times a neuro3d training step (forward, backward, Adam) and a forward pass with this engine.
// Prints one JSON line per case; bench/compare-pytorch puts it beside PyTorch.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "engine/graph/model_builder.h"
#include "engine/graph/network.h"
#include "engine/lua/job_file.h"
#include "engine/optim/optimiser.h"

namespace {

using Clock = std::chrono::steady_clock;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

// Forward GFLOP of the convolutions (2 per multiply-add), as the PyTorch script counts them.
double ConvGflop(elektronn::Network& net) {
  double gflop = 0;
  for (const auto& n : net.graph().nodes())
    if (n->op() == "Conv") gflop += 2 * n->cost() / 1e9;
  // UpConv family: a transposed convolution's true work, 2 * n_f * n_in * prod(pool) per input
  // voxel (ELEKTRONN2's cost formula counts the output positions instead).
  for (const auto& n : net.graph().nodes())
    if (n->op() == "UpConv") {
      const elektronn::TaggedShape& in = n->parents()[0]->shape();
      gflop += 2.0 * n->shape().SizeOf('f') * in.stripnone_prod() *
               (n->shape().stripnone_prod() / n->shape().SizeOf('f')) /
               (in.stripnone_prod() / in.SizeOf('f')) / 1e9;
    }
  return gflop;
}

// UpConv family: the network of an example job file (examples/<name>.lua), found upwards from
// the working directory or the binary.
absl::StatusOr<elektronn::v1::ModelSpec> ExampleSpec(const std::string& name) {
  for (std::filesystem::path start :
       {std::filesystem::current_path(), std::filesystem::read_symlink("/proc/self/exe")}) {
    for (auto p = start; !p.empty() && p != p.root_path(); p = p.parent_path()) {
      const auto file = p / "examples" / (name + ".lua");
      if (!std::filesystem::exists(file)) continue;
      ASSIGN_OR_RETURN(elektronn::v1::JobSpec job, elektronn::LoadJobFile(file.string()));
      return job.model();
    }
  }
  return absl::NotFoundError("examples/" + name + ".lua not found");
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "neuro3d_bench: %s\n", std::string(s.message()).c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  int warmup = 2, repeats = 5;
  std::string which = "all";
  std::vector<int64_t> zxy = {23, 185, 185};
  bool lite = false;
  std::string net_name = "neuro3d";  // or an example job file: --net unet3d_lite (UpConv family)
  elektronn::kernels::BackendOptions backend_options;  // --device cpu|cuda:N, --tf32
  std::string precision = "fp32";  // --precision bf16: cases named <net>_<case>_bf16
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* flag) -> const char* {
      return (a == flag && i + 1 < argc) ? argv[++i] : nullptr;
    };
    if (const char* v = value("--warmup")) {
      warmup = std::atoi(v);
    } else if (const char* v = value("--repeats")) {
      repeats = std::atoi(v);
    } else if (const char* v = value("--case")) {
      which = v;
    } else if (const char* v = value("--net")) {
      net_name = v;
    } else if (const char* v = value("--device")) {
      backend_options.device = v;
    } else if (a == "--tf32") {
      backend_options.allow_tf32 = true;
    } else if (const char* v = value("--precision")) {
      precision = v;
    } else if (a == "--lite") {
      lite = true;
      if (zxy == std::vector<int64_t>{23, 185, 185}) zxy = {11, 155, 155};
    } else if (const char* v = value("--input")) {
      zxy.clear();
      for (auto p : absl::StrSplit(v, ',')) {
        int64_t x = 0;
        if (!absl::SimpleAtoi(p, &x)) return Fail(absl::InvalidArgumentError("bad --input"));
        zxy.push_back(x);
      }
    } else {
      std::fprintf(
          stderr,
          "usage: neuro3d_bench [--warmup N] [--repeats N] [--case train|forward|all|profile] "
          "[--input z,x,y] [--lite] [--net neuro3d|unet3d_lite] [--device cpu|cuda:N] [--tf32] "
          "[--precision fp32|bf16]\n"
          "Threads: set OMP_NUM_THREADS.\n");
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  auto backend_or = elektronn::kernels::CreateBackend(backend_options);
  if (!backend_or.ok()) return Fail(backend_or.status());
  std::unique_ptr<elektronn::kernels::Backend> backend = *std::move(backend_or);
  absl::StatusOr<elektronn::v1::ModelSpec> spec = elektronn::Neuro3dSpec(zxy, lite);
  if (net_name != "neuro3d") spec = ExampleSpec(net_name);  // UpConv family
  if (!spec.ok()) return Fail(spec.status());
  auto dtype = elektronn::kernels::ParseDataType("--precision", precision);
  if (!dtype.ok()) return Fail(dtype.status());
  elektronn::NetworkOptions options{1, 1};
  options.precision = *dtype;
  const std::string suffix = *dtype == elektronn::kernels::DataType::kBf16 ? "_bf16" : "";
  auto net_or = elektronn::Network::Create(*spec, backend.get(), options);
  if (!net_or.ok()) return Fail(net_or.status());
  elektronn::Network& net = **net_or;
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  auto* raw = net.graph().Find("raw");
  auto* target = net.graph().Find("target");
  std::vector<float> x(raw->numel()), t(target->numel());
  for (float& v : x) v = u(rng);
  for (float& v : t) v = u(rng) < 0.5f ? 0.f : 1.f;
  if (auto s = net.SetInput("raw", x); !s.ok()) return Fail(s);
  if (auto s = net.SetInput("target", t); !s.ok()) return Fail(s);
  elektronn::Optimiser adam(elektronn::OptimiserKind::kAdam, backend.get(), net.params());
  adam.hyper().lr = 5e-4f;
  adam.hyper().wd = 5e-5f;
  const double gflop = ConvGflop(net);

  auto run = [&](const char* name, double work, auto step) -> int {
    for (int i = 0; i < warmup; ++i)
      if (auto s = step(); !s.ok()) return Fail(s);
    if (auto s = backend->Synchronize(); !s.ok()) return Fail(s);  // CUDA: an idle stream
    std::vector<double> ms;
    for (int i = 0; i < repeats; ++i) {
      auto t0 = Clock::now();
      if (auto s = step(); !s.ok()) return Fail(s);
      if (auto s = backend->Synchronize(); !s.ok()) return Fail(s);
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    const double med = Median(ms);
    std::printf(
        "{\"case\": \"%s\", \"device\": \"%s\", \"tf32\": %s, \"elektronn_ms\": %.2f, "
        "\"gflop\": %.2f, \"gflops\": %.1f}\n",
        name, backend->name().c_str(), backend_options.allow_tf32 ? "true" : "false", med, work,
        work / med * 1e3);
    std::fflush(stdout);
    return 0;
  };
  if (which == "profile") {
    auto t = net.Profile(repeats);
    if (!t.ok()) return Fail(t.status());
    double f = 0, b = 0;
    for (const auto& n : *t) {
      std::printf("%-10s %-14s forward %8.2f ms  backward %8.2f ms\n", n.name.c_str(), n.op.c_str(),
                  n.forward_ms, n.backward_ms);
      f += n.forward_ms;
      b += n.backward_ms;
    }
    std::printf("total forward %.1f ms, backward %.1f ms\n", f, b);
    return 0;
  }
  if (which == "train" || which == "all") {
    net.set_training(true);
    // Training: forward + backward-data (all but the first layer) + backward-weights.
    const double first = 2 * net.graph().Find("conv")->cost() / 1e9;
    int rc = run((net_name + "_train" + suffix).c_str(), 3 * gflop - first, [&]() -> absl::Status {
      RETURN_IF_ERROR(net.Forward());
      RETURN_IF_ERROR(net.Backward());
      adam.Step();
      net.set_step(net.step() + 1);
      return absl::OkStatus();
    });
    if (rc) return rc;
  }
  if (which == "forward" || which == "all") {
    net.set_training(false);
    int rc = run((net_name + "_forward" + suffix).c_str(), gflop, [&]() { return net.Forward(); });
    if (rc) return rc;
  }
  return 0;
}
