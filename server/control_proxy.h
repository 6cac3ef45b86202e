// The Trainer and Model services of elektronnd: each call names "jobs/{id}" and is forwarded
// to that job's worker over its control socket (<job dir>/control.sock), so the live trainer
// answers at its next step boundary. Only running jobs have a worker to ask.
#pragma once

#include <memory>
#include <string>

#include "elektronn/v1/control.grpc.pb.h"
#include "elektronn/v1/shell.grpc.pb.h"
#include "server/auth.h"
#include "server/job_manager.h"
#include "server/job_store.h"

namespace elektronn {

// Finds the worker channel of a running job; shared by both services.
class WorkerChannels {
 public:
  WorkerChannels(JobManager* manager, const JobStore* store) : manager_(manager), store_(store) {}
  // FAILED_PRECONDITION (reason BAD_STATE) unless the job is RUNNING; NOT_FOUND for unknown jobs.
  absl::StatusOr<std::shared_ptr<grpc::Channel>> For(const std::string& job_name) const;
  static std::string SocketPath(const JobStore& store, const std::string& id);

 private:
  JobManager* manager_;
  const JobStore* store_;
};

class TrainerProxy final : public v1::Trainer::Service {
 public:
  TrainerProxy(const WorkerChannels* channels, const TokenChecker* auth)
      : channels_(channels), auth_(auth) {}
  grpc::Status GetHyperparameters(grpc::ServerContext* ctx, const v1::GetHyperparametersRequest* r,
                                  v1::Hyperparameters* out) override;
  grpc::Status UpdateHyperparameters(grpc::ServerContext* ctx,
                                     const v1::UpdateHyperparametersRequest* r,
                                     v1::Hyperparameters* out) override;

 private:
  const WorkerChannels* channels_;
  const TokenChecker* auth_;
};

class ModelProxy final : public v1::Model::Service {
 public:
  ModelProxy(const WorkerChannels* channels, const TokenChecker* auth)
      : channels_(channels), auth_(auth) {}
  grpc::Status GetModel(grpc::ServerContext* ctx, const v1::GetModelRequest* r,
                        v1::ModelInfo* out) override;
  grpc::Status ListParameters(grpc::ServerContext* ctx, const v1::ListParametersRequest* r,
                              v1::ListParametersResponse* out) override;
  grpc::Status GetParameter(grpc::ServerContext* ctx, const v1::GetParameterRequest* r,
                            grpc::ServerWriter<v1::TensorChunk>* w) override;
  grpc::Status SetParameter(grpc::ServerContext* ctx, grpc::ServerReader<v1::SetParameterChunk>* r,
                            v1::ParameterInfo* out) override;
  grpc::Status GetStatistics(grpc::ServerContext* ctx, const v1::GetStatisticsRequest* r,
                             v1::Statistics* out) override;
  grpc::Status ExportModel(grpc::ServerContext* ctx, const v1::ExportModelRequest* r,
                           grpc::ServerWriter<v1::FileChunk>* w) override;

 private:
  const WorkerChannels* channels_;
  const TokenChecker* auth_;
};

// The interactive shell of a running job: the first message (attach) names the job; the stream
// is then relayed both ways to the worker's Shell service.
class ShellProxy final : public v1::Shell::Service {
 public:
  ShellProxy(const WorkerChannels* channels, const TokenChecker* auth)
      : channels_(channels), auth_(auth) {}
  grpc::Status Attach(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<v1::ShellResponse, v1::ShellRequest>* stream) override;

 private:
  const WorkerChannels* channels_;
  const TokenChecker* auth_;
};

}  // namespace elektronn
