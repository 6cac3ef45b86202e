// elektronn-train-demo: trains neuro3d_lite (reference §9.2) on an EM-like volume generated in
// memory (cells as 3-D Voronoi regions, membranes between them, texture and noise), printing a
// status line as it goes. It exercises the engine end to end until `elektronn train` with Lua
// job files arrives; it writes nothing to disk.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <random>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "engine/graph/model_builder.h"
#include "engine/graph/network.h"
#include "engine/optim/optimiser.h"

namespace elektronn {
namespace {

struct Volume {
  int64_t z, x, y;
  std::vector<float> raw;    // grey values in [0, 1]
  std::vector<uint8_t> lab;  // 1 = membrane (barrier), 0 = cell interior
  int64_t at(int64_t a, int64_t b, int64_t c) const { return (a * x + b) * y + c; }
};

// Voronoi cells on anisotropic voxels (z spacing 2): a voxel is membrane when its two nearest
// seeds are almost equally far away.
Volume MakeVolume(int64_t z, int64_t x, int64_t y, uint64_t seed) {
  Volume v{z, x, y, std::vector<float>(z * x * y), std::vector<uint8_t>(z * x * y)};
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  const int n_seeds = static_cast<int>(z * x * y / 6000) + 8;
  std::vector<std::array<double, 3>> seeds(n_seeds);
  std::vector<double> tone(n_seeds);
  for (int s = 0; s < n_seeds; ++s) {
    seeds[s] = {u(rng) * z * 2.0, u(rng) * x, u(rng) * y};
    tone[s] = 0.55 + 0.3 * u(rng);
  }
  std::normal_distribution<double> noise(0, 0.08);
  for (int64_t a = 0; a < z; ++a)
    for (int64_t b = 0; b < x; ++b)
      for (int64_t c = 0; c < y; ++c) {
        double d1 = 1e30, d2 = 1e30;
        int n1 = 0;
        for (int s = 0; s < n_seeds; ++s) {
          const double dz = a * 2.0 - seeds[s][0], dx = b - seeds[s][1], dy = c - seeds[s][2];
          const double d = std::sqrt(dz * dz + dx * dx + dy * dy);
          if (d < d1) {
            d2 = d1;
            d1 = d;
            n1 = s;
          } else if (d < d2) {
            d2 = d;
          }
        }
        const bool membrane = d2 - d1 < 2.0;
        const double texture = 0.05 * std::sin(0.7 * b + 3 * n1) * std::cos(0.5 * c + n1);
        double g = membrane ? 0.15 : tone[n1] + texture;
        v.raw[v.at(a, b, c)] = static_cast<float>(std::clamp(g + noise(rng), 0.0, 1.0));
        v.lab[v.at(a, b, c)] = membrane ? 1 : 0;
      }
  return v;
}

}  // namespace
}  // namespace elektronn

int main(int argc, char** argv) {
  using namespace elektronn;
  CLI::App app{"Train neuro3d_lite on a generated EM-like volume and print progress."};
  int steps = 300, status_every = 10;
  float lr = 5e-4f;
  uint64_t seed = 1;
  app.add_option("--steps", steps, "training steps")->capture_default_str();
  app.add_option("--lr", lr, "Adam learning rate")->capture_default_str();
  app.add_option("--status-every", status_every, "steps between status lines")
      ->capture_default_str();
  app.add_option("--seed", seed, "seed for data and initialisation")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  std::printf("generating a 40x240x240 EM-like volume...\n");
  const Volume vol = MakeVolume(40, 240, 240, seed);
  auto backend = kernels::CreateCpuBackend();
  auto net_or =
      Network::Create(Neuro3dSpec({11, 155, 155}, /*lite=*/true), backend.get(), {1, seed});
  if (!net_or.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(net_or.status().message()).c_str());
    return 1;
  }
  Network& net = **net_or;
  std::printf("%s", net.graph().Summary().ToString().c_str());
  Optimiser adam(OptimiserKind::kAdam, backend.get(), net.params());
  adam.hyper().lr = lr;
  adam.hyper().wd = 5e-5f;

  Node* raw = net.graph().Find("raw");
  Node* target = net.graph().Find("target");
  const auto in = raw->shape().spatial_shape();
  const auto out = target->shape().spatial_shape();
  const auto off = target->shape().offsets();
  const auto str = target->shape().strides();
  std::vector<float> x(raw->numel()), t(target->numel());
  std::mt19937_64 rng(seed + 1);
  std::deque<double> recent;
  double smooth = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int step = 1; step <= steps; ++step) {
    // A random patch and its labels at the output neurons' centres.
    const int64_t a0 = std::uniform_int_distribution<int64_t>(0, vol.z - in[0])(rng);
    const int64_t b0 = std::uniform_int_distribution<int64_t>(0, vol.x - in[1])(rng);
    const int64_t c0 = std::uniform_int_distribution<int64_t>(0, vol.y - in[2])(rng);
    for (int64_t a = 0; a < in[0]; ++a)
      for (int64_t b = 0; b < in[1]; ++b)
        for (int64_t c = 0; c < in[2]; ++c)
          x[(a * in[1] + b) * in[2] + c] = vol.raw[vol.at(a0 + a, b0 + b, c0 + c)];
    for (int64_t a = 0; a < out[0]; ++a)
      for (int64_t b = 0; b < out[1]; ++b)
        for (int64_t c = 0; c < out[2]; ++c)
          t[(a * out[1] + b) * out[2] + c] = vol.lab[vol.at(
              a0 + off[0] + a * str[0], b0 + off[1] + b * str[1], c0 + off[2] + c * str[2])];
    absl::Status s = net.SetInput("raw", x);
    if (s.ok()) s = net.SetInput("target", t);
    if (s.ok()) s = net.Forward();
    if (s.ok()) s = net.Backward();
    if (!s.ok()) {
      std::fprintf(stderr, "error at step %d: %s\n", step, std::string(s.message()).c_str());
      return 1;
    }
    adam.Step();
    net.set_step(step);
    const float loss = *net.Scalar("loss");
    if (!std::isfinite(loss)) {
      std::fprintf(stderr, "error: the loss became %f at step %d; lower --lr\n", loss, step);
      return 1;
    }
    recent.push_back(loss);
    if (recent.size() > 50) recent.pop_front();
    smooth = 0;
    for (double l : recent) smooth += l;
    smooth /= recent.size();
    if (step % status_every == 0 || step == 1 || step == steps) {
      const double sec =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::printf(
          "step %5d  loss %.4f  smooth %.4f  errors %5.1f%%  lr %.1e  %.2f it/s  "
          "%.2f MVx/s  %.0f s\n",
          step, loss, smooth, 100 * *net.Scalar("errors"), adam.hyper().lr, step / sec,
          step * static_cast<double>(target->numel()) / sec / 1e6, sec);
      std::fflush(stdout);
    }
  }
  return 0;
}
