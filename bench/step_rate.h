// Training steps per second of a network on one fixed batch (Adam, lr 5e-4): the rate a data
// source must keep up with. Shared by data_pipeline_bench and knossos_bench.
#pragma once

#include <chrono>
#include <random>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/core/status.h"
#include "engine/data/batch_source.h"
#include "engine/graph/network.h"
#include "engine/optim/optimiser.h"

namespace elektronn::bench {

// One warm-up step, then `steps` timed ones; the batch is drawn once from `source`.
inline absl::StatusOr<double> TrainingStepsPerSecond(Network& net, kernels::Backend* backend,
                                                     const BatchSource& source, int steps) {
  Optimiser adam(OptimiserKind::kAdam, backend, net.params());
  adam.hyper().lr = 5e-4f;
  const BatchGeometry& g = source.geometry();
  std::vector<float> x(g.input.stripnone_prod()), t(g.target.stripnone_prod());
  std::mt19937_64 rng(3);
  RETURN_IF_ERROR(source.GetBatch(Split::kTrain, rng, x.data(), t.data()));
  auto step = [&]() -> absl::Status {
    RETURN_IF_ERROR(net.SetInput("raw", x));
    RETURN_IF_ERROR(net.SetInput("target", t));
    RETURN_IF_ERROR(net.Forward());
    RETURN_IF_ERROR(net.Backward());
    adam.Step();
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(step());
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) RETURN_IF_ERROR(step());
  return steps / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace elektronn::bench
