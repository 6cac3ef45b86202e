// Is a KNOSSOS dataset larger than its cache fast enough to train from? Prints random augmented
// neuro3d patches/s cut from a generated KNOSSOS dataset (raw and labels, cube cache smaller
// than the dataset, so cubes are evicted and read again) next to the training steps/s of
// neuro3d at batch size 1 (one patch per step), measured in one run.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "bench/step_rate.h"
#include "engine/data/batch_creator_image.h"
#include "engine/data/batch_queue.h"
#include "engine/data/demo_data.h"
#include "engine/graph/model_builder.h"
#include "engine/graph/network.h"
#include "engine/io/knossos.h"

using namespace elektronn;
using Clock = std::chrono::steady_clock;

static int Fail(const absl::Status& s) {
  std::fprintf(stderr, "knossos_bench: %s\n", std::string(s.message()).c_str());
  return 1;
}

// EM-like voxels: dark cell boundaries on a 40-voxel grid (z: 20) over a textured background.
static uint8_t Hash(int64_t x, int64_t y, int64_t z) {
  uint64_t h = static_cast<uint64_t>(x) * 73856093u ^ static_cast<uint64_t>(y) * 19349663u ^
               static_cast<uint64_t>(z) * 83492791u;
  h ^= h >> 13;
  h *= 0x5bd1e995u;
  return static_cast<uint8_t>(h >> 24);
}
static bool Barrier(int64_t x, int64_t y, int64_t z) {
  return (x + z / 3) % 40 < 3 || (y + x / 7) % 40 < 3 || z % 20 == 0;
}

int main(int argc, char** argv) {
  CLI::App app{
      "Training patches/s from a KNOSSOS dataset vs neuro3d's step rate (bench/README.md)."};
  std::string data_dir = "/tmp/elektronn-bench-knossos";
  int threads = 2, batches = 60, steps = 5, n_preload = 0;
  int64_t cubes_xy = 8, cubes_z = 2, max_ram = 64;
  bool lite = false;
  app.add_option("--data", data_dir, "dataset directory (generated if missing)")
      ->capture_default_str();
  app.add_option("--cubes-xy", cubes_xy, "dataset size in 128^3 cubes along x and y")
      ->capture_default_str();
  app.add_option("--cubes-z", cubes_z, "dataset size in cubes along z")->capture_default_str();
  app.add_option("--max-ram", max_ram, "cube cache per dataset, MB (2 MB a cube)")
      ->capture_default_str();
  app.add_option("--n-preload", n_preload, "prefetch reach in cubes (0: none)")
      ->capture_default_str();
  app.add_option("--threads", threads, "background threads of the queue")->capture_default_str();
  app.add_option("--batches", batches, "patches to time")->capture_default_str();
  app.add_option("--steps", steps, "training steps to time")->capture_default_str();
  app.add_flag("--lite", lite, "neuro3d_lite instead of neuro3d");
  CLI11_PARSE(app, argc, argv);

  const std::array<int64_t, 3> boundary{cubes_xy * 128, cubes_xy * 128, cubes_z * 128};
  const std::string tag = absl::StrCat(cubes_xy, "x", cubes_xy, "x", cubes_z);
  const std::string raw_dir = absl::StrCat(data_dir, "/raw_", tag);
  const std::string lab_dir = absl::StrCat(data_dir, "/barrier_", tag);
  if (!std::filesystem::exists(raw_dir + "/mag1/knossos.conf")) {
    std::fprintf(stderr, "knossos_bench: writing %s and %s (%lld cubes each)\n", raw_dir.c_str(),
                 lab_dir.c_str(), static_cast<long long>(cubes_xy * cubes_xy * cubes_z));
    auto raw = [](int64_t x, int64_t y, int64_t z) {
      return static_cast<uint8_t>(Barrier(x, y, z) ? 40 + Hash(x, y, z) / 8
                                                   : 150 + Hash(x, y, z) / 4);
    };
    auto lab = [](int64_t x, int64_t y, int64_t z) { return uint8_t{Barrier(x, y, z)}; };
    if (auto s = WriteKnossosDataset(lab_dir, "barrier", boundary, lab); !s.ok()) return Fail(s);
    if (auto s = WriteKnossosDataset(raw_dir, "raw", boundary, raw); !s.ok()) return Fail(s);
  }

  auto backend = kernels::CreateCpuBackend();
  v1::ModelSpec spec = lite ? Neuro3dSpec({11, 155, 155}, true) : Neuro3dSpec();
  auto net = Network::Create(spec, backend.get(), {1, 1, false});
  if (!net.ok()) return Fail(net.status());
  BatchGeometry g{(*net)->graph().Find("raw")->shape(), (*net)->graph().Find("target")->shape()};

  // neuro3d's data settings (reference §9.1), raw and labels from KNOSSOS.
  v1::BatchCreatorImageParams params;
  params.set_d_path(data_dir);
  params.set_l_path(data_dir);
  auto* d = params.add_d_files();
  d->set_file(absl::StrCat("raw_", tag));
  d->set_key("knossos");
  auto* l = params.add_l_files();
  l->set_file(absl::StrCat("barrier_", tag));
  l->set_key("knossos");
  params.set_aniso_factor(2);
  params.set_max_ram(max_ram);
  params.set_n_preload(n_preload);
  v1::DataBatchArgs args;
  args.add_grey_augment_channels(0);
  args.set_warp(0.5);
  args.mutable_warp_args()->set_sample_aniso(true);
  args.mutable_warp_args()->set_perspective(true);
  auto source = BatchCreatorImage::Create(params, args, g, ".");
  if (!source.ok()) return Fail(source.status());
  const BatchCreatorImage& creator = **source;
  std::shared_ptr<const BatchSource> shared = std::move(*source);

  double patches_per_s = 0;
  KnossosCacheStats before{}, after{};
  {
    auto q = BatchQueue::Create(shared, threads, 2 * threads, 1);
    if (!q.ok()) return Fail(q.status());
    for (int i = 0; i < 2 * threads; ++i) {  // let the queue fill once, then time a steady flow
      auto b = (*q)->Next();
      if (!b.ok()) return Fail(b.status());
      (*q)->Release(*b);
    }
    before = KnossosStats(*creator.cube(0).raw_src)[0];
    auto t0 = Clock::now();
    for (int i = 0; i < batches; ++i) {
      auto b = (*q)->Next();
      if (!b.ok()) return Fail(b.status());
      (*q)->Release(*b);
    }
    patches_per_s = batches / std::chrono::duration<double>(Clock::now() - t0).count();
    after = KnossosStats(*creator.cube(0).raw_src)[0];
  }

  auto rate = bench::TrainingStepsPerSecond(**net, backend.get(), *shared, steps);
  if (!rate.ok()) return Fail(rate.status());
  const double steps_per_s = *rate;
  const int64_t cubes = cubes_xy * cubes_xy * cubes_z;
  std::printf(
      "%s knossos patches_per_s=%.1f (threads=%d, dataset %lld cubes = %lld MB, cache %lld MB = "
      "%lld cubes, n_preload=%d, raw cube loads per patch %.2f) training steps_per_s=%.2f "
      "(batch 1) ratio=%.1f\n",
      lite ? "neuro3d_lite" : "neuro3d", patches_per_s, threads, static_cast<long long>(cubes),
      static_cast<long long>(2 * cubes), static_cast<long long>(max_ram),
      static_cast<long long>(after.capacity), n_preload,
      static_cast<double>(after.loads - before.loads) / batches, steps_per_s,
      patches_per_s / steps_per_s);
  return 0;
}
