// Handlers of the Jobs service; state lives in JobManager.
#include "server/jobs_service.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/graph/graph.h"
#include "engine/io/data_path.h"
#include "kernels/backend.h"
#include "rpc/status.h"

namespace elektronn {
namespace {

absl::Status Invalid(const std::string& message) {
  return WithReason(absl::InvalidArgumentError(message), "INVALID_JOB_SPEC");
}

}  // namespace

absl::Status ValidateJobSpec(const v1::JobSpec& spec, const std::string& data_dir) {
  if (!spec.has_model()) return Invalid("job.model is missing");
  if (!spec.has_training()) return Invalid("job.training is missing");
  const v1::TrainingSpec& t = spec.training();
  if (t.n_steps() <= 0) {
    return Invalid(absl::StrCat("job.training.n_steps must be positive; got ", t.n_steps()));
  }
  if (t.max_runtime() < 0) {
    return Invalid(
        absl::StrCat("job.training.max_runtime must be >= 0 seconds; got ", t.max_runtime()));
  }
  if (t.batch_size() < 0) {
    return Invalid(absl::StrCat("job.training.batch_size must be positive; got ", t.batch_size()));
  }
  if (t.history_freq() < 0) {
    return Invalid(absl::StrCat("job.training.history_freq must be >= 0; got ", t.history_freq()));
  }
  if (t.data_class() == "BatchCreatorImage") {
    if (!t.has_batch_creator_image()) {
      return Invalid("job.training.batch_creator_image is missing (data_class BatchCreatorImage)");
    }
    const auto& b = t.batch_creator_image();
    if (b.d_files_size() == 0 || b.d_files_size() != b.l_files_size()) {
      return Invalid(absl::StrCat("job.training.batch_creator_image.d_files has ", b.d_files_size(),
                                  " entries and l_files ", b.l_files_size(),
                                  "; both need the same number, at least 1"));
    }
  } else if (t.data_class() != "MNISTData") {
    return Invalid(absl::StrCat("job.training.data_class is '", t.data_class(),
                                "'; valid: BatchCreatorImage, MNISTData"));
  }
  const v1::JobResources& r = spec.resources();
  if (!r.device().empty() && r.device() != "cpu") {
    // Only devices this build offers; a CUDA device joins with the CUDA backend.
    const auto devices = kernels::AvailableDevices();
    if (std::find(devices.begin(), devices.end(), r.device()) == devices.end()) {
      return Invalid(absl::StrCat("job.resources.device is '", r.device(),
                                  "'; this daemon offers: ", absl::StrJoin(devices, ", ")));
    }
  }
  if (r.cpu_threads() < 0 || r.cpu_threads() > 4096) {
    return Invalid(
        absl::StrCat("job.resources.cpu_threads must be 0..4096; got ", r.cpu_threads()));
  }
  if (r.memory_bytes() < 0 || (r.memory_bytes() > 0 && r.memory_bytes() < (int64_t{256} << 20))) {
    return Invalid(
        absl::StrCat("job.resources.memory_bytes must be 0 (no limit) or at least 256 "
                     "MiB; got ",
                     r.memory_bytes()));
  }
  v1::JobSpec confined = spec;
  if (auto s = ConfineJobDataPaths(&confined, data_dir); !s.ok()) {
    return s.code() == absl::StatusCode::kInvalidArgument ? Invalid(std::string(s.message())) : s;
  }
  auto graph = Graph::Create(spec.model());
  if (!graph.ok()) {
    return Invalid(absl::StrCat("job.model: ", graph.status().message()));
  }
  return absl::OkStatus();
}

#define ELK_CHECK_AUTH(context)                                             \
  do {                                                                      \
    if (auto s = auth_->Check(*(context)); !s.ok()) return ToGrpcStatus(s); \
  } while (0)

namespace {
grpc::Status Answer(const absl::StatusOr<v1::Job>& job, v1::Job* response) {
  if (!job.ok()) return ToGrpcStatus(job.status());
  *response = *job;
  return grpc::Status::OK;
}
}  // namespace

grpc::Status JobsService::CreateJob(grpc::ServerContext* context,
                                    const v1::CreateJobRequest* request, v1::Job* response) {
  ELK_CHECK_AUTH(context);
  if (auto s = ValidateJobSpec(request->job(), data_dir_); !s.ok()) return ToGrpcStatus(s);
  return Answer(manager_->Create(request->job(), request->request_id()), response);
}

grpc::Status JobsService::GetJob(grpc::ServerContext* context, const v1::GetJobRequest* request,
                                 v1::Job* response) {
  ELK_CHECK_AUTH(context);
  return Answer(manager_->Get(request->name()), response);
}

grpc::Status JobsService::ListJobs(grpc::ServerContext* context, const v1::ListJobsRequest* request,
                                   v1::ListJobsResponse* response) {
  ELK_CHECK_AUTH(context);
  if (request->page_size() < 0 || request->page_size() > 1000) {
    return ToGrpcStatus(
        WithReason(absl::InvalidArgumentError(absl::StrCat("page_size is ", request->page_size(),
                                                           "; valid: 0 (default 50) to 1000")),
                   "INVALID_PAGE_SIZE"));
  }
  std::string after;
  if (!request->page_token().empty()) {
    if (!absl::WebSafeBase64Unescape(request->page_token(), &after) ||
        !absl::StartsWith(after, "jobs/")) {
      return ToGrpcStatus(
          WithReason(absl::InvalidArgumentError(absl::StrCat("page_token '", request->page_token(),
                                                             "' was not returned by ListJobs")),
                     "INVALID_PAGE_TOKEN"));
    }
  }
  auto [jobs, next] = manager_->List(request->page_size() == 0 ? 50 : request->page_size(), after);
  for (auto& j : jobs) *response->add_jobs() = std::move(j);
  if (!next.empty()) response->set_next_page_token(absl::WebSafeBase64Escape(next));
  return grpc::Status::OK;
}

grpc::Status JobsService::PauseJob(grpc::ServerContext* context, const v1::PauseJobRequest* request,
                                   v1::Job* response) {
  ELK_CHECK_AUTH(context);
  return Answer(manager_->Pause(request->name()), response);
}

grpc::Status JobsService::ResumeJob(grpc::ServerContext* context,
                                    const v1::ResumeJobRequest* request, v1::Job* response) {
  ELK_CHECK_AUTH(context);
  return Answer(manager_->Resume(request->name()), response);
}

grpc::Status JobsService::CancelJob(grpc::ServerContext* context,
                                    const v1::CancelJobRequest* request, v1::Job* response) {
  ELK_CHECK_AUTH(context);
  return Answer(manager_->Cancel(request->name()), response);
}

grpc::Status JobsService::WatchJob(grpc::ServerContext* context, const v1::WatchJobRequest* request,
                                   grpc::ServerWriter<v1::JobEvent>* writer) {
  ELK_CHECK_AUTH(context);
  int64_t next = std::max<int64_t>(1, request->from_sequence());
  while (!context->IsCancelled()) {
    std::vector<v1::JobEvent> events;
    bool final = false;
    absl::Status s =
        manager_->WaitEvents(request->name(), next, request->follow() ? 250 : 0, &events, &final);
    if (!s.ok()) return ToGrpcStatus(s);
    for (const auto& e : events) {
      if (!writer->Write(e)) return grpc::Status::CANCELLED;  // the client went away
      next = e.sequence() + 1;
    }
    if (!request->follow() || (events.empty() && final)) return grpc::Status::OK;
  }
  return grpc::Status::CANCELLED;
}

}  // namespace elektronn
