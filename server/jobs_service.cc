// Handlers of the Jobs service and the validation of submitted JobSpecs; state lives in
// JobManager.
#include "server/jobs_service.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/core/status.h"
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

namespace {

absl::Status ValidateResources(const v1::JobResources& r) {
  if (!r.device().empty() && r.device() != "cpu") {
    // Only devices this build offers; a CUDA device joins with the CUDA backend.
    const auto devices = kernels::AvailableDevices();
    if (std::find(devices.begin(), devices.end(), r.device()) == devices.end()) {
      return Invalid(absl::StrCat("job.resources.device is '", r.device(),
                                  "'; this daemon offers: ", absl::StrJoin(devices, ", ")));
    }
  }
  if (auto p = kernels::ParseDataType("job.resources.precision", r.precision()); !p.ok()) {
    return Invalid(std::string(p.status().message()));
  }
  if (r.precision() == "bf16" && (r.device().empty() || r.device() == "cpu") &&
      !kernels::CpuHasBf16()) {
    return Invalid(
        "job.resources.precision is 'bf16' but this host's CPU has no AVX512_BF16; use 'fp32'");
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
  return absl::OkStatus();
}

absl::Status ValidateTraining(const v1::JobSpec& spec) {
  // batch_norm family: a fine-tuning job's model is the file at job.training.model_load_path.
  const bool fine_tuning = !spec.training().model_load_path().empty();
  if (!spec.has_model() && !fine_tuning) {
    return Invalid("job.model is missing (a training job needs it)");
  }
  if (!spec.has_training()) return Invalid("job.training is missing (a training job needs it)");
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
  } else if (t.data_class() != "MNISTData" && t.data_class() != "PianoRollData") {
    return Invalid(absl::StrCat("job.training.data_class is '", t.data_class(),
                                "'; valid: BatchCreatorImage, MNISTData, PianoRollData"));
  }
  return absl::OkStatus();
}

// `values` has one of the counts in `valid`, each >= min.
absl::Status CheckList(const std::string& field,
                       const google::protobuf::RepeatedField<int64_t>& values,
                       std::initializer_list<int> valid, int64_t min, const std::string& meaning) {
  if (std::find(valid.begin(), valid.end(), values.size()) == valid.end()) {
    return Invalid(absl::StrCat(field, " has ", values.size(), " values; expected ", meaning));
  }
  for (int i = 0; i < values.size(); ++i) {
    if (values[i] < min) {
      return Invalid(absl::StrCat(field, "[", i, "] is ", values[i], "; expected ", meaning));
    }
  }
  return absl::OkStatus();
}

// True when `path` (resolved) is `root` or lies below it.
bool Within(const std::filesystem::path& path, const std::filesystem::path& root) {
  const std::string p = path.lexically_normal().string(), r = root.lexically_normal().string();
  return p == r || absl::StartsWith(p, absl::StrCat(r, r.back() == '/' ? "" : "/"));
}

// The daemon's own files a prediction may not write into: the jobs (specs, events, checkpoints)
// and the token. When the data directory is the state directory (elektronnd's default) other
// files there stay writable; a state directory inside the data directory is off limits whole.
absl::Status CheckNotDaemonState(const std::string& output_file, const std::string& data_dir,
                                 const std::string& state_dir) {
  if (state_dir.empty()) return absl::OkStatus();
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path state = fs::weakly_canonical(state_dir, ec);
  const fs::path data = fs::weakly_canonical(data_dir, ec);
  const fs::path out = fs::weakly_canonical(output_file, ec);
  std::vector<fs::path> forbidden = {state / "jobs", state / "token"};
  if (state != data) forbidden = {state};
  for (const fs::path& f : forbidden) {
    if (Within(out, f)) {
      return Invalid(absl::StrCat("job.prediction.output is '", output_file, "', inside '",
                                  f.string(),
                                  "', which holds elektronnd's own state; choose an output "
                                  "elsewhere in the data directory"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidatePrediction(const v1::JobSpec& spec, const std::string& data_dir,
                                const std::string& state_dir) {
  const v1::PredictionSpec& p = spec.prediction();
  if (p.model().empty()) {
    return Invalid(
        "job.prediction.model is empty; expected a model file in the data directory, or "
        "jobs/ID: that training job's model");
  }
  if (p.input().empty()) return Invalid("job.prediction.input is empty; expected e.g. raw.h5:/raw");
  if (p.output().empty()) {
    return Invalid("job.prediction.output is empty; expected e.g. pred.zarr or pred.h5:/prob");
  }
  RETURN_IF_ERROR(CheckList("job.prediction.patch", p.patch(), {0, 3}, 1,
                            "none (the largest that fits) or z,x,y >= 1"));
  RETURN_IF_ERROR(CheckList("job.prediction.chunk", p.chunk(), {0, 3}, 1,
                            "none (aligned to tiles) or z,x,y >= 1"));
  RETURN_IF_ERROR(CheckList("job.prediction.roi", p.roi(), {0, 6}, 0,
                            "none (the whole input) or z0,x0,y0,dz,dx,dy >= 0"));
  if (p.roi_size() == 6 && (p.roi(3) < 1 || p.roi(4) < 1 || p.roi(5) < 1)) {
    return Invalid(absl::StrCat("job.prediction.roi has size (", p.roi(3), ",", p.roi(4), ",",
                                p.roi(5), "); each of dz,dx,dy must be >= 1"));
  }
  for (int i = 0; i < p.channels_size(); ++i) {
    if (p.channels(i) < 0) {
      return Invalid(absl::StrCat("job.prediction.channels[", i, "] is ", p.channels(i),
                                  "; channels are numbered from 0"));
    }
  }
  if (!v1::PredictionSpec::Mfp_IsValid(p.mfp())) {
    return Invalid(absl::StrCat("job.prediction.mfp is ", p.mfp(),
                                "; valid: MFP_AUTO, MFP_ON, "
                                "MFP_OFF"));
  }
  if (!v1::PredictionSpec::Pad_IsValid(p.pad())) {
    return Invalid(
        absl::StrCat("job.prediction.pad is ", p.pad(), "; valid: PAD_MIRROR, PAD_ZERO, PAD_NONE"));
  }
  if (p.memory_limit() < 0) {
    return Invalid(absl::StrCat("job.prediction.memory_limit is ", p.memory_limit(),
                                "; expected bytes >= 0 (0: the default)"));
  }
  if (!p.compression().empty() && p.compression() != "none" && p.compression() != "zlib" &&
      p.compression() != "blosc") {
    return Invalid(absl::StrCat("job.prediction.compression is '", p.compression(),
                                "'; valid: none, zlib, blosc"));
  }
  v1::JobSpec confined = spec;
  if (auto s = ConfineJobDataPaths(&confined, data_dir); !s.ok()) {
    return s.code() == absl::StatusCode::kInvalidArgument ? Invalid(std::string(s.message())) : s;
  }
  const v1::PredictionSpec& c = confined.prediction();
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::string output_file = VolumeSpecPath(c.output(), data_dir);
  // A KNOSSOS input ("knossos:a,b") names one directory per channel; each must exist.
  std::vector<std::string> input_files = {VolumeSpecPath(c.input(), data_dir)};
  if (absl::StartsWith(c.input(), "knossos:")) {
    input_files = absl::StrSplit(absl::string_view(c.input()).substr(8), ',');
  }
  for (const std::string& input_file : input_files) {
    if (!fs::exists(input_file, ec)) {
      return Invalid(absl::StrCat("job.prediction.input is '", p.input(), "': '", input_file,
                                  "' does not exist"));
    }
  }
  if (!IsJobModelReference(c.model())) {
    if (!fs::is_regular_file(c.model(), ec)) {
      return Invalid(absl::StrCat("job.prediction.model is '", p.model(), "': '", c.model(),
                                  "' is not a file (give a model file, or jobs/ID)"));
    }
    if (fs::equivalent(c.model(), output_file, ec)) {
      return Invalid(absl::StrCat("job.prediction.output is the model file '", c.model(), "'"));
    }
  }
  for (const std::string& input_file : input_files) {
    if (fs::equivalent(input_file, output_file, ec) || input_file == output_file) {
      return Invalid(absl::StrCat("job.prediction.output '", p.output(),
                                  "' writes into the input's file '", input_file,
                                  "'; choose another file"));
    }
  }
  return CheckNotDaemonState(output_file, data_dir, state_dir);
}

}  // namespace

absl::Status ValidateJobSpec(const v1::JobSpec& spec, const std::string& data_dir,
                             const std::string& state_dir) {
  const bool training = spec.has_model() || spec.has_training();
  if (training && spec.has_prediction()) {
    return Invalid(
        "the job sets job.prediction and job.model/job.training: a job either trains "
        "(job.model and job.training) or predicts (job.prediction only)");
  }
  if (!training && !spec.has_prediction()) {
    return Invalid(
        "the job is empty: set job.model and job.training to train, or job.prediction to "
        "predict");
  }
  RETURN_IF_ERROR(ValidateResources(spec.resources()));
  if (spec.has_prediction()) return ValidatePrediction(spec, data_dir, state_dir);
  RETURN_IF_ERROR(ValidateTraining(spec));
  v1::JobSpec confined = spec;
  if (auto s = ConfineJobDataPaths(&confined, data_dir); !s.ok()) {
    return s.code() == absl::StatusCode::kInvalidArgument ? Invalid(std::string(s.message())) : s;
  }
  if (const std::string& m = confined.training().model_load_path(); !m.empty()) {
    // batch_norm family: the worker builds the model from this file.
    std::error_code ec;
    if (!std::filesystem::is_regular_file(m, ec)) {
      return Invalid(absl::StrCat("job.training.model_load_path is '",
                                  spec.training().model_load_path(), "': '", m,
                                  "' is not a file in the data directory"));
    }
    if (spec.model().nodes_size() > 0) {
      return Invalid("the job sets both job.model and job.training.model_load_path; keep one");
    }
    return absl::OkStatus();
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
  if (request->has_resume_by() && !request->start_paused()) {
    return ToGrpcStatus(absl::InvalidArgumentError(
        "resume_by is set but start_paused is not: only a job created paused waits for ResumeJob"));
  }
  // Years 1970 to 9999, as protobuf's Timestamp (and no overflow in nanoseconds).
  if (request->has_resume_by() &&
      (request->resume_by().seconds() < 0 || request->resume_by().seconds() > 253402300799 ||
       request->resume_by().nanos() < 0 || request->resume_by().nanos() > 999999999)) {
    return ToGrpcStatus(absl::InvalidArgumentError(
        absl::StrCat("resume_by is not a valid time (seconds ", request->resume_by().seconds(),
                     ", nanos ", request->resume_by().nanos(), ")")));
  }
  if (request->reservation().empty()) {
    if (auto s = ValidateJobSpec(request->job(), data_dir_, state_dir_); !s.ok()) {
      return ToGrpcStatus(s);
    }
    // A job on cuda:N: the job manager checks that no reservation holds that GPU.
    GpuInventory inventory;
    if (gpus_ != nullptr && absl::StartsWith(request->job().resources().device(), "cuda")) {
      inventory = gpus_->Read();
    }
    return Answer(manager_->Create(request->job(), request->request_id(), "",
                                   request->start_paused(), request->resume_by(), &inventory),
                  response);
  }
  // On a reservation the daemon picks the device: cuda:0 is the first reserved GPU (the worker
  // sees only those); jobs on fake GPUs (--fake-gpus, tests) and on reservations without GPUs
  // run on the CPU.
  v1::JobSpec spec = request->job();
  const std::string& device = spec.resources().device();
  if (!device.empty() && device != "cpu") {
    return ToGrpcStatus(WithReason(
        absl::InvalidArgumentError(absl::StrCat(
            "job.resources.device is '", device, "' but the job runs on ", request->reservation(),
            ": leave the device empty (the daemon gives it the reserved GPUs) or set 'cpu'")),
        "INVALID_JOB_SPEC"));
  }
  if (device.empty() && !(gpus_ != nullptr && gpus_->fake()) && reservations_ != nullptr) {
    auto r = reservations_->Get(request->reservation());
    if (r.ok() && r->gpu_uuids_size() > 0) spec.mutable_resources()->set_device("cuda:0");
  }
  if (auto s = ValidateJobSpec(spec, data_dir_, state_dir_); !s.ok()) return ToGrpcStatus(s);
  return Answer(manager_->Create(spec, request->request_id(), request->reservation(),
                                 request->start_paused(), request->resume_by()),
                response);
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
  GpuInventory inventory;
  if (gpus_ != nullptr) inventory = gpus_->Read();
  return Answer(manager_->Resume(request->name(), &inventory), response);
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
