// The Jobs service: CreateJob (validated fully), Get/List, Pause/Resume/Cancel, WatchJob.
#pragma once

#include <string>
#include <utility>

#include "elektronn/v1/jobs.grpc.pb.h"
#include "server/auth.h"
#include "server/gpu_inventory.h"
#include "server/job_manager.h"

namespace elektronn {

// INVALID_ARGUMENT (reason INVALID_JOB_SPEC) naming the field when `spec` is not exactly one
// kind of job (training: model + training; prediction: prediction only), cannot be trained or
// predicted, or when one of its data paths leaves `data_dir` (see engine/io/data_path.h). A
// prediction's output may not lie among the daemon's own files in `state_dir` (its jobs and
// token); its input and model file must exist. A model "jobs/N" is checked by JobManager.
absl::Status ValidateJobSpec(const v1::JobSpec& spec, const std::string& data_dir,
                             const std::string& state_dir = "");

class JobsService final : public v1::Jobs::Service {
 public:
  // `reservations` (may be null) answers which GPUs a CreateJob's reservation holds; with
  // `fake_gpus` (--fake-gpus) a reserved job's device stays "cpu", as there is no real GPU.
  JobsService(JobManager* manager, const TokenChecker* auth, std::string data_dir,
              std::string state_dir = "", ReservationBook* reservations = nullptr,
              const GpuSource* gpus = nullptr)
      : manager_(manager),
        auth_(auth),
        data_dir_(std::move(data_dir)),
        state_dir_(std::move(state_dir)),
        reservations_(reservations),
        gpus_(gpus) {}

  grpc::Status CreateJob(grpc::ServerContext* context, const v1::CreateJobRequest* request,
                         v1::Job* response) override;
  grpc::Status GetJob(grpc::ServerContext* context, const v1::GetJobRequest* request,
                      v1::Job* response) override;
  grpc::Status ListJobs(grpc::ServerContext* context, const v1::ListJobsRequest* request,
                        v1::ListJobsResponse* response) override;
  grpc::Status PauseJob(grpc::ServerContext* context, const v1::PauseJobRequest* request,
                        v1::Job* response) override;
  grpc::Status ResumeJob(grpc::ServerContext* context, const v1::ResumeJobRequest* request,
                         v1::Job* response) override;
  grpc::Status CancelJob(grpc::ServerContext* context, const v1::CancelJobRequest* request,
                         v1::Job* response) override;
  grpc::Status WatchJob(grpc::ServerContext* context, const v1::WatchJobRequest* request,
                        grpc::ServerWriter<v1::JobEvent>* writer) override;

 private:
  JobManager* manager_;
  const TokenChecker* auth_;
  const std::string data_dir_;   // job data paths must stay inside it
  const std::string state_dir_;  // predictions may not write into the daemon's own files
  ReservationBook* const reservations_;
  const GpuSource* gpus_;  // null: no GPU checks (tests without an inventory)
};

}  // namespace elektronn
