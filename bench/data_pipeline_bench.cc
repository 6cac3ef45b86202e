// Does the batch queue keep up? Prints augmented neuro3d patches/s from the data pipeline alone
// (BatchCreatorImage with neuro3d's augmentation, background threads) next to the training
// steps/s of the same network (batch size 1: one patch per step), measured in one run.
#include <chrono>
#include <cstdio>
#include <string>

#include "CLI/CLI.hpp"
#include "bench/step_rate.h"
#include "engine/data/batch_creator_image.h"
#include "engine/data/batch_queue.h"
#include "engine/data/demo_data.h"
#include "engine/graph/model_builder.h"
#include "engine/graph/network.h"

using namespace elektronn;
using Clock = std::chrono::steady_clock;

static int Fail(const absl::Status& s) {
  std::fprintf(stderr, "data_pipeline_bench: %s\n", std::string(s.message()).c_str());
  return 1;
}

int main(int argc, char** argv) {
  CLI::App app{"Data pipeline throughput vs training speed on neuro3d (see bench/README.md)."};
  std::string data_dir = "/tmp/elektronn-bench-data";
  int threads = 2, batches = 60, steps = 5;
  bool lite = false;
  app.add_option("--data", data_dir, "demo data directory (generated if missing)")
      ->capture_default_str();
  app.add_option("--threads", threads, "background threads of the queue")->capture_default_str();
  app.add_option("--batches", batches, "patches to time")->capture_default_str();
  app.add_option("--steps", steps, "training steps to time")->capture_default_str();
  app.add_flag("--lite", lite, "neuro3d_lite instead of neuro3d");
  CLI11_PARSE(app, argc, argv);

  if (!std::filesystem::exists(data_dir + "/raw_0.h5")) {
    if (auto s = MakeDemoData(data_dir, {}); !s.ok()) return Fail(s);
  }
  auto backend = kernels::CreateCpuBackend();
  v1::ModelSpec spec = lite ? Neuro3dSpec({11, 155, 155}, true) : Neuro3dSpec();
  auto net = Network::Create(spec, backend.get(), {1, 1, false});
  if (!net.ok()) return Fail(net.status());
  BatchGeometry g{(*net)->graph().Find("raw")->shape(), (*net)->graph().Find("target")->shape()};

  // neuro3d's data settings (reference §9.1).
  v1::BatchCreatorImageParams params;
  params.set_d_path(data_dir);
  params.set_l_path(data_dir);
  for (int i = 0; i < 3; ++i) {
    auto* d = params.add_d_files();
    d->set_file("raw_" + std::to_string(i) + ".h5");
    d->set_key("raw");
    auto* l = params.add_l_files();
    l->set_file("barrier_" + std::to_string(i) + ".h5");
    l->set_key("lab");
  }
  params.add_valid_cubes(2);
  params.set_aniso_factor(2);
  v1::DataBatchArgs args;
  args.add_grey_augment_channels(0);
  args.set_warp(0.5);
  args.mutable_warp_args()->set_sample_aniso(true);
  args.mutable_warp_args()->set_perspective(true);
  auto source = BatchCreatorImage::Create(params, args, g, ".");
  if (!source.ok()) return Fail(source.status());
  std::shared_ptr<const BatchSource> shared = std::move(*source);

  double patches_per_s = 0;
  {
    auto q = BatchQueue::Create(shared, threads, 2 * threads, 1);
    if (!q.ok()) return Fail(q.status());
    for (int i = 0; i < 2 * threads; ++i) {  // let the queue fill once, then time a steady flow
      auto b = (*q)->Next();
      if (!b.ok()) return Fail(b.status());
      (*q)->Release(*b);
    }
    auto t0 = Clock::now();
    for (int i = 0; i < batches; ++i) {
      auto b = (*q)->Next();
      if (!b.ok()) return Fail(b.status());
      (*q)->Release(*b);
    }
    patches_per_s = batches / std::chrono::duration<double>(Clock::now() - t0).count();
  }

  auto rate = bench::TrainingStepsPerSecond(**net, backend.get(), *shared, steps);
  if (!rate.ok()) return Fail(rate.status());
  const double steps_per_s = *rate;
  std::printf(
      "%s data_pipeline patches_per_s=%.1f (threads=%d) training steps_per_s=%.2f "
      "(batch 1) ratio=%.1f\n",
      lite ? "neuro3d_lite" : "neuro3d", patches_per_s, threads, steps_per_s,
      patches_per_s / steps_per_s);
  return 0;
}
