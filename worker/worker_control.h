// The control endpoint of a training process: serves the Trainer and Model services for the
// Trainer it wraps on a Unix socket, so elektronnd can forward a job's calls to its worker.
// Every call acts at a step boundary through Trainer::AtStepBoundary.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "elektronn/v1/control.pb.h"
#include "engine/trainer/trainer.h"

namespace grpc {
class Server;
}

namespace elektronn {

// The live hyper-parameters of `t` as the Trainer service and the daemon's Job show them: every
// entry of the table in engine/config/hyperparams.h, the active schedules and the step. Call
// on the training thread or at a step boundary.
void FillHyperparameters(const Trainer& t, v1::Hyperparameters* h);

class WorkerControl {
 public:
  // Listens on "unix:<socket_path>" (the file is created with mode 0600).
  static absl::StatusOr<std::unique_ptr<WorkerControl>> Start(Trainer* trainer,
                                                              const std::string& socket_path);
  ~WorkerControl();
  void Shutdown();

 private:
  WorkerControl() = default;
  struct Services;
  std::unique_ptr<Services> services_;
  std::unique_ptr<grpc::Server> server_;
  std::string socket_path_;
};

}  // namespace elektronn
