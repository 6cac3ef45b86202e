// Job queue, worker processes and their supervision (see job_manager.h).
#include "server/job_manager.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "engine/config/hyperparams.h"
#include "engine/io/data_path.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/util/message_differencer.h"
#include "rpc/status.h"
#include "server/gpu_assignment.h"
#include "spdlog/spdlog.h"

extern char** environ;

namespace elektronn {

// The descriptor of the typed channel in a worker (--event-fd), and the largest event accepted.
constexpr int kWorkerEventFd = 3;
constexpr uint32_t kMaxWorkerEventBytes = 1 << 20;
namespace {

namespace fs = std::filesystem;

double MonotonicSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void SetNow(google::protobuf::Timestamp* t) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  t->set_seconds(ns / 1'000'000'000);
  t->set_nanos(static_cast<int32_t>(ns % 1'000'000'000));
}

absl::Status BadState(const v1::Job& job, const std::string& method, const std::string& valid) {
  return WithReason(absl::FailedPreconditionError(absl::StrCat(
                        method, ": job ", job.name(), " is ", v1::JobState_Name(job.state()), "; ",
                        method, " needs a job that is ", valid)),
                    "BAD_STATE");
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

bool IsFinal(v1::JobState state) {
  return state == v1::SUCCEEDED || state == v1::FAILED || state == v1::CANCELLED;
}

JobManager::JobManager(DaemonOptions options, JobStore* store, ReservationBook* reservations)
    : options_(std::move(options)), store_(store), reservations_(reservations) {}

JobManager::~JobManager() { Shutdown(); }

absl::Status JobManager::Start() {
  std::vector<StoredJob> stored = store_->LoadAll();
  std::unique_lock lock(mu_);
  for (StoredJob& s : stored) {
    auto e = std::make_unique<Entry>();
    e->id = std::string(absl::StripPrefix(s.job.name(), "jobs/"));
    e->job = std::move(s.job);
    e->events = std::make_unique<JobEventLog>(store_, e->id);
    e->events->Restore(std::move(s.events));
    int64_t n = 0;
    if (absl::SimpleAtoi(e->id, &n)) next_id_ = std::max(next_id_, n + 1);
    if (!e->job.request_id().empty()) by_request_id_[e->job.request_id()] = e->job.name();
    jobs_[e->job.name()] = std::move(e);
  }
  for (auto& [name, e] : jobs_) {
    const v1::JobState st = e->job.state();
    if (st != v1::RUNNING && st != v1::PAUSING && st != v1::QUEUED) continue;
    lock.unlock();
    WaitForStaleWorker(e->id);
    lock.lock();
    if (st == v1::PAUSING) {
      SetStateLocked(e.get(), v1::PAUSED);
    } else if (st == v1::RUNNING) {
      e->job.set_restarts(e->job.restarts() + 1);
      v1::JobEvent ev;
      ev.set_log_line(e->job.spec().has_prediction()
                          ? "elektronnd restarted: continuing the output from its done chunks"
                      : fs::exists(store_->CheckpointPath(e->id))
                          ? "elektronnd restarted: resuming from the last checkpoint"
                          : "elektronnd restarted: no checkpoint yet, starting again");
      AddEventLocked(e.get(), ev, false);
      SetStateLocked(e.get(), v1::QUEUED);
    }
    spdlog::info("recovered {} ({} -> {})", name, v1::JobState_Name(st),
                 v1::JobState_Name(e->job.state()));
  }
  if (reservations_ != nullptr) {
    reservations_->Reconcile([&](const std::string& job) {
      auto it = jobs_.find(job);
      return it != jobs_.end() && !IsFinal(it->second->job.state());
    });
  }
  return absl::OkStatus();
}

void JobManager::StartScheduling() {
  std::lock_guard lock(mu_);
  if (started_ || stopping_) return;
  started_ = true;
  scheduler_ = std::thread(&JobManager::SchedulerLoop, this);
}

void JobManager::WaitForStaleWorker(const std::string& id) {
  int pid = 0;
  {
    std::ifstream in(store_->PidPath(id));
    if (!(in >> pid) || pid <= 0) return;
  }
  const std::string spec = store_->SpecPath(id);
  auto alive = [&] {
    const std::string cmdline = ReadFile(absl::StrCat("/proc/", pid, "/cmdline"));
    if (cmdline.find(spec) == std::string::npos) return false;
    const std::string stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
    return stat.find(") Z") == std::string::npos;  // a zombie has finished
  };
  if (!alive()) return;
  spdlog::info("job {}: waiting for worker {} of the previous daemon to checkpoint", id, pid);
  // It got SIGTERM from PR_SET_PDEATHSIG (or exited at once if its parent died before that was
  // set up); another SIGTERM would make it abort without saving.
  const double deadline = MonotonicSeconds() + options_.stale_worker_wait_s;
  while (alive() && MonotonicSeconds() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (alive()) {
    spdlog::warn("job {}: worker {} did not stop in {} s; killing it", id, pid,
                 options_.stale_worker_wait_s);
    kill(pid, SIGKILL);
    while (alive()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

absl::StatusOr<v1::Job> JobManager::Create(const v1::JobSpec& spec, const std::string& request_id,
                                           const std::string& reservation, bool start_paused,
                                           const google::protobuf::Timestamp& resume_by,
                                           const GpuInventory* gpus) {
  std::unique_lock lock(mu_);
  if (stopping_) return absl::UnavailableError("elektronnd is shutting down");
  if (!request_id.empty()) {
    auto it = by_request_id_.find(request_id);
    if (it != by_request_id_.end()) return jobs_.at(it->second)->job;
  }
  const std::string id = absl::StrFormat("%06d", next_id_);
  v1::JobSpec with_resources = spec;
  v1::Reservation taken;
  if (reservation.empty()) {
    if (absl::Status free = PlainGpuFreeLocked(spec, gpus); !free.ok()) return free;
  }
  if (!reservation.empty()) {
    if (reservations_ == nullptr) {
      return absl::FailedPreconditionError("this daemon keeps no reservations");
    }
    auto r = reservations_->Consume(reservation, "jobs/" + id);
    if (!r.ok()) return r.status();
    taken = *std::move(r);
    absl::Status fits = ApplyReservation(taken, with_resources.mutable_resources());
    if (!fits.ok()) {
      reservations_->Unconsume(reservation);
      return fits;
    }
  }
  absl::StatusOr<v1::Job> made =
      CreateLocked(with_resources, request_id, id, taken, start_paused, resume_by);
  if (!made.ok() && !reservation.empty()) reservations_->Unconsume(reservation);
  return made;
}

absl::Status ApplyReservation(const v1::Reservation& r, v1::JobResources* res) {
  auto too_much = [&](const std::string& field, int64_t asked, int64_t reserved) {
    return WithReason(absl::InvalidArgumentError(absl::StrCat(
                          "job.resources.", field, " is ", asked, " but ", r.name(), " reserved ",
                          reserved, "; ask for at most that (0: all of it)")),
                      "INVALID_JOB_SPEC");
  };
  if (r.cpu_threads() > 0) {
    if (res->cpu_threads() > r.cpu_threads()) {
      return too_much("cpu_threads", res->cpu_threads(), r.cpu_threads());
    }
    if (res->cpu_threads() == 0) res->set_cpu_threads(r.cpu_threads());
  }
  if (r.memory_bytes() > 0) {
    if (res->memory_bytes() > r.memory_bytes()) {
      return too_much("memory_bytes", res->memory_bytes(), r.memory_bytes());
    }
    if (res->memory_bytes() == 0) res->set_memory_bytes(r.memory_bytes());
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Job> JobManager::CreateLocked(const v1::JobSpec& spec,
                                                 const std::string& request_id,
                                                 const std::string& id,
                                                 const v1::Reservation& reservation,
                                                 bool start_paused,
                                                 const google::protobuf::Timestamp& resume_by) {
  const bool predict = spec.has_prediction();
  if (predict) {
    if (const Entry* other = SameOutputLocked(spec.prediction())) {
      return WithReason(
          absl::InvalidArgumentError(absl::StrCat(
              "job.prediction.output '", spec.prediction().output(), "' is the output of ",
              other->job.name(), " (", v1::JobState_Name(other->job.state()),
              "); wait until it ends, cancel it, or choose another output")),
          "INVALID_JOB_SPEC");
    }
  }
  auto e = std::make_unique<Entry>();
  e->id = id;
  e->events = std::make_unique<JobEventLog>(store_, e->id);
  e->job.set_name("jobs/" + e->id);
  *e->job.mutable_spec() = spec;
  e->job.set_reservation(reservation.name());
  *e->job.mutable_gpu_uuids() = reservation.gpu_uuids();
  if (!predict) {
    // The values the job starts with, until its worker reports live ones.
    WriteStartValues(spec.training(), e->job.mutable_hyperparameters());
    *e->job.mutable_hyperparameters()->mutable_schedules() = spec.training().schedules();
    e->job.mutable_spec()->mutable_training()->set_save_path(store_->JobDir(e->id));
    e->job.mutable_spec()->mutable_training()->set_save_name("train");
    e->job.set_training_dir(store_->TrainingDir(e->id));
  }
  e->job.set_request_id(request_id);
  if (start_paused && (resume_by.seconds() != 0 || resume_by.nanos() != 0)) {
    *e->job.mutable_resume_by() = resume_by;
  }
  SetNow(e->job.mutable_create_time());
  absl::Status s = store_->CreateJobDir(e->id);
  if (s.ok() && predict && IsJobModelReference(spec.prediction().model())) {
    s = CopyTrainedModelLocked(spec.prediction(), e->id);
  }
  if (s.ok()) s = store_->WriteSpec(e->id, e->job.spec());
  if (!s.ok()) {
    std::error_code ec;
    fs::remove_all(store_->JobDir(e->id), ec);  // no half-made job for the next start to find
    return s;
  }
  ++next_id_;
  Entry* raw = e.get();
  jobs_[raw->job.name()] = std::move(e);
  if (!request_id.empty()) by_request_id_[request_id] = raw->job.name();
  SetStateLocked(raw, start_paused ? v1::PAUSED : v1::QUEUED);
  spdlog::info("created {} (request_id '{}'{})", raw->job.name(), request_id,
               reservation.name().empty() ? "" : ", on " + reservation.name());
  return raw->job;
}

absl::Status JobManager::CopyTrainedModelLocked(const v1::PredictionSpec& p,
                                                const std::string& id) {
  auto invalid = [&](const std::string& why) {
    return WithReason(absl::InvalidArgumentError(
                          absl::StrCat("job.prediction.model is '", p.model(), "': ", why)),
                      "INVALID_JOB_SPEC");
  };
  // Digits only (IsJobModelReference), so the name cannot leave <state>/jobs.
  int64_t n = 0;
  if (!absl::SimpleAtoi(absl::StripPrefix(p.model(), "jobs/"), &n) || n <= 0) {
    return invalid("no such job");
  }
  const std::string source_id = absl::StrFormat("%06d", n);
  auto it = jobs_.find("jobs/" + source_id);
  if (it == jobs_.end()) return invalid("no such job (see `elektronn ls`)");
  if (it->second->job.spec().has_prediction()) {
    return invalid(absl::StrCat(it->first, " is a prediction job; name a training job"));
  }
  const std::string model = store_->TrainedModelPath(source_id);
  if (model.empty()) {
    return invalid(absl::StrCat(it->first, " (", v1::JobState_Name(it->second->job.state()),
                                ") has no model yet: neither train-FINAL.h5 nor a checkpoint "
                                "train-LAST.h5; wait for its first checkpoint"));
  }
  // A copy, so that pausing, resuming or a restart use the very model the job started with
  // while the training job goes on writing checkpoints.
  const std::string target = store_->ModelCopyPath(id);
  const std::string tmp = target + ".tmp";
  std::error_code ec;
  fs::copy_file(model, tmp, fs::copy_options::overwrite_existing, ec);
  if (!ec) fs::rename(tmp, target, ec);
  if (ec) {
    fs::remove(tmp, ec);
    return absl::UnavailableError(
        absl::StrCat("cannot copy the model '", model, "' into the job: ", ec.message()));
  }
  spdlog::info("jobs/{}: model {} copied from {}", id, p.model(), model);
  return absl::OkStatus();
}

const JobManager::Entry* JobManager::SameOutputLocked(const v1::PredictionSpec& p) const {
  auto resolved = [&](const std::string& output) {
    auto r = ConfineVolumeSpec("output", output, options_.data_dir);
    return r.ok() ? VolumeSpecPath(*r, options_.data_dir) : output;
  };
  const std::string mine = resolved(p.output());
  for (const auto& [name, e] : jobs_) {
    if (!e->job.spec().has_prediction() || IsFinal(e->job.state())) continue;
    if (resolved(e->job.spec().prediction().output()) == mine) return e.get();
  }
  return nullptr;
}

absl::StatusOr<JobManager::Entry*> JobManager::FindLocked(const std::string& name) const {
  auto it = jobs_.find(name);
  if (it == jobs_.end()) {
    return WithReason(absl::NotFoundError(absl::StrCat(
                          "job '", name, "' does not exist (names look like 'jobs/000001')")),
                      "JOB_NOT_FOUND");
  }
  return it->second.get();
}

absl::StatusOr<v1::Job> JobManager::Get(const std::string& name) const {
  std::lock_guard lock(mu_);
  auto e = FindLocked(name);
  if (!e.ok()) return e.status();
  return (*e)->job;
}

std::pair<std::vector<v1::Job>, std::string> JobManager::List(int page_size,
                                                              const std::string& after_name) const {
  std::lock_guard lock(mu_);
  std::vector<v1::Job> out;
  auto it = after_name.empty() ? jobs_.begin() : jobs_.upper_bound(after_name);
  for (; it != jobs_.end() && static_cast<int>(out.size()) < page_size; ++it) {
    out.push_back(it->second->job);
  }
  std::string next = it != jobs_.end() && !out.empty() ? out.back().name() : "";
  return {std::move(out), next};
}

absl::StatusOr<v1::Job> JobManager::Pause(const std::string& name) {
  std::lock_guard lock(mu_);
  auto found = FindLocked(name);
  if (!found.ok()) return found.status();
  Entry* e = *found;
  switch (e->job.state()) {
    case v1::RUNNING:
      e->intent = Intent::kPause;
      SignalLocked(e, SIGTERM);
      SetStateLocked(e, v1::PAUSING);
      break;
    case v1::QUEUED:
      SetStateLocked(e, v1::PAUSED);
      break;
    case v1::PAUSING:
    case v1::PAUSED:
      break;  // already pausing or paused
    default:
      return BadState(e->job, "PauseJob", "QUEUED or RUNNING");
  }
  return e->job;
}

// A job without a reservation on device cuda:N may not take a GPU a reservation holds.
absl::Status JobManager::PlainGpuFreeLocked(const v1::JobSpec& spec, const GpuInventory* gpus) {
  const std::string& device = spec.resources().device();
  if (gpus == nullptr || reservations_ == nullptr || !absl::StartsWith(device, "cuda")) {
    return absl::OkStatus();
  }
  int index = 0;
  if (absl::StartsWith(device, "cuda:")) (void)absl::SimpleAtoi(device.substr(5), &index);
  for (const GpuSample& g : gpus->gpus) {
    if (g.index == index) return reservations_->CheckGpuFree(g.uuid, device);
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Job> JobManager::Resume(const std::string& name, const GpuInventory* gpus) {
  std::lock_guard lock(mu_);
  auto found = FindLocked(name);
  if (!found.ok()) return found.status();
  Entry* e = *found;
  // Paused, a plain cuda:N job held no GPU: a reservation may have taken it meanwhile.
  if (e->job.state() == v1::PAUSED && e->job.reservation().empty()) {
    if (absl::Status free = PlainGpuFreeLocked(e->job.spec(), gpus); !free.ok()) return free;
  }
  switch (e->job.state()) {
    case v1::PAUSED:
      e->job.clear_resume_by();
      SetStateLocked(e, v1::QUEUED);
      break;
    case v1::QUEUED:
    case v1::RUNNING:
      break;  // already going
    default:
      return BadState(e->job, "ResumeJob", "PAUSED");
  }
  return e->job;
}

absl::StatusOr<v1::Job> JobManager::Cancel(const std::string& name) {
  std::lock_guard lock(mu_);
  auto found = FindLocked(name);
  if (!found.ok()) return found.status();
  Entry* e = *found;
  switch (e->job.state()) {
    case v1::QUEUED:
    case v1::PAUSED:
      SetStateLocked(e, v1::CANCELLED);
      break;
    case v1::RUNNING:
    case v1::PAUSING:
      e->intent = Intent::kCancel;
      SignalLocked(e, SIGTERM);
      e->kill_at = MonotonicSeconds() + options_.cancel_grace_s;
      break;
    case v1::CANCELLED:
      break;
    default:
      return BadState(e->job, "CancelJob", "QUEUED, RUNNING, PAUSING or PAUSED");
  }
  return e->job;
}

absl::Status JobManager::WaitEvents(const std::string& name, int64_t from_sequence, int timeout_ms,
                                    std::vector<v1::JobEvent>* out, bool* final) const {
  std::unique_lock lock(mu_);
  auto found = FindLocked(name);
  if (!found.ok()) return found.status();
  const Entry* e = *found;
  // Compaction may have dropped events: a watcher behind it gets the oldest retained ones.
  const int64_t from = std::max<int64_t>(1, from_sequence);
  auto ready = [&] { return e->events->HasFrom(from) || IsFinal(e->job.state()) || stopping_; };
  if (!ready()) cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), ready);
  e->events->CopyFrom(from, out);
  *final = IsFinal(e->job.state()) || stopping_;
  return absl::OkStatus();
}

std::vector<std::string> JobManager::RunningJobs() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (const auto& [name, e] : jobs_) {
    if (e->active) out.push_back(name);
  }
  return out;
}

std::vector<int> JobManager::WorkerPids() const {
  std::lock_guard lock(mu_);
  std::vector<int> out;
  for (const auto& [name, e] : jobs_) {
    if (e->active) out.push_back(e->pid);
  }
  return out;
}

HostOccupancy JobManager::Occupancy() const {
  std::lock_guard lock(mu_);
  return OccupancyLocked();
}

HostOccupancy JobManager::OccupancyLocked() const {
  HostOccupancy h;
  h.capacity = options_.capacity;
  for (const auto& [name, e] : jobs_) {
    if (e->active && e->pid > 0) h.worker_pids[e->pid] = name;
    if (!e->job.reservation().empty()) continue;
    if (e->active) ++h.plain_active_jobs;
    const v1::JobState st = e->job.state();
    const std::string& device = e->job.spec().resources().device();
    if ((e->active || st == v1::QUEUED) && absl::StartsWith(device, "cuda")) {
      int index = 0;
      if (absl::StartsWith(device, "cuda:") && !absl::SimpleAtoi(device.substr(5), &index)) {
        continue;
      }
      // A running job shows as the GPU's user, not a job queued behind it.
      if (e->active || !h.gpu_index_jobs.contains(index)) h.gpu_index_jobs[index] = name;
    }
  }
  return h;
}

absl::StatusOr<v1::Reservation> JobManager::Reserve(const v1::ReserveRequest& request,
                                                    const GpuInventory& gpus, int cpu_count,
                                                    int64_t memory_total_bytes) {
  if (reservations_ == nullptr) {
    return absl::FailedPreconditionError("this daemon keeps no reservations");
  }
  std::lock_guard lock(mu_);
  if (stopping_) return absl::UnavailableError("elektronnd is shutting down");
  HostOccupancy host = OccupancyLocked();
  host.cpu_count = cpu_count;
  host.memory_total_bytes = memory_total_bytes;
  return reservations_->Reserve(request, gpus, host);
}

void JobManager::AddEventLocked(Entry* e, v1::JobEvent event, bool sync) {
  SetNow(event.mutable_time());
  e->events->Append(std::move(event), sync);
  cv_.notify_all();
}

void JobManager::CheckpointedLocked(Entry* e, int64_t step) {
  e->job.set_step(step);
  PersistLocked(e);  // job.pb: step, loss and update time, atomically
}

void JobManager::PersistLocked(Entry* e) {
  SetNow(e->job.mutable_update_time());
  absl::Status s = store_->WriteJob(e->id, e->job);
  if (!s.ok()) spdlog::error("{}", s.ToString());
}

void JobManager::SetStateLocked(Entry* e, v1::JobState state) {
  e->job.set_state(state);
  PersistLocked(e);
  if (IsFinal(state) && reservations_ != nullptr && !e->job.reservation().empty()) {
    reservations_->JobEnded(e->job.reservation(), e->job.name());
  }
  v1::JobEvent ev;
  ev.set_state(state);
  AddEventLocked(e, ev, /*sync=*/true);
  spdlog::info("{} -> {}", e->job.name(), v1::JobState_Name(state));
}

// Jobs created paused with a resume_by that passed: their scheduler gave up or died before
// starting them, so they end and their reservations are released (nothing leaks).
void JobManager::CancelUnresumedLocked() {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  const int64_t now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now).count();
  const int64_t now_s = now_ns / 1'000'000'000, now_frac = now_ns % 1'000'000'000;
  for (auto& [name, e] : jobs_) {
    if (e->job.state() != v1::PAUSED || !e->job.has_resume_by()) continue;
    const google::protobuf::Timestamp& by = e->job.resume_by();
    // In seconds, then nanoseconds: a far-future deadline must not overflow.
    if (by.seconds() > now_s || (by.seconds() == now_s && by.nanos() > now_frac)) continue;
    e->job.set_error(absl::StrCat(
        "not resumed by ",
        absl::FormatTime(absl::FromUnixSeconds(by.seconds()), absl::UTCTimeZone()),
        " UTC (CreateJobRequest.resume_by): whoever created it paused gave up on starting it"));
    spdlog::warn("{}: {}", name, e->job.error());
    SetStateLocked(e.get(), v1::CANCELLED);
  }
}

void JobManager::SignalLocked(Entry* e, int sig) {
  if (!e->active || e->pid <= 0) return;
  if (sig == SIGTERM) {
    if (e->term_sent) return;  // a second SIGTERM makes the worker abort without saving
    e->term_sent = true;
  }
  kill(e->pid, sig);
}

void JobManager::SchedulerLoop() {
  std::unique_lock lock(mu_);
  while (true) {
    int active = 0, plain_active = 0;
    for (auto& [name, e] : jobs_) {
      active += e->active ? 1 : 0;
      plain_active += e->active && e->job.reservation().empty() ? 1 : 0;
    }
    if (stopping_ && active == 0) break;
    if (!stopping_) {
      // A job slot each: running jobs without a reservation, and reservations (whose jobs start
      // at once: the slot is theirs already).
      int used = plain_active + (reservations_ != nullptr ? reservations_->HeldSlots() : 0);
      // One GPU never runs two jobs: a plain job on a cuda:N that a running plain job holds
      // stays QUEUED (with the reason in waiting_for) until that job ends. Reserved jobs see only
      // their reservation's GPUs, which the reservation book keeps exclusive.
      GpuAssignment gpus;
      for (auto& [name, e] : jobs_) {
        if (e->active && e->job.reservation().empty()) {
          gpus.Hold(name, e->job.spec().resources().device());
        }
      }
      for (auto& [name, e] : jobs_) {
        if (e->job.state() != v1::QUEUED || e->active) continue;
        const bool reserved = !e->job.reservation().empty();
        if (!reserved && used >= options_.capacity) continue;
        const std::string& device = e->job.spec().resources().device();
        if (!reserved) {
          const std::string wait = gpus.WhyWait(device);
          if (wait != e->job.waiting_for()) e->job.set_waiting_for(wait);
          if (!wait.empty()) continue;
          gpus.Hold(name, device);
        }
        e->job.clear_waiting_for();
        SpawnLocked(e.get());
        if (!reserved) ++used;
      }
    }
    CancelUnresumedLocked();
    const double now = MonotonicSeconds();
    for (auto& [name, e] : jobs_) {
      if (e->active && e->kill_at > 0 && now >= e->kill_at) {
        spdlog::warn("{}: worker {} ignored SIGTERM; killing it", name, e->pid);
        kill(e->pid, SIGKILL);
        e->kill_at = 0;
      }
    }
    cv_.wait_for(lock, std::chrono::milliseconds(200));
  }
}

// The spec a resumed worker runs: the submitted one with the hyper-parameters and schedules the
// job last reported laid over it, so what `elektronn set`, the shell or a client changed survives
// pause/resume, worker crashes and daemon restarts (the checkpoint restores only the optimiser's
// values). Job.spec stays as submitted. Dropout rates are not laid over: a rate of 0 in the spec
// would build the layer without dropout (the checkpoint's model keeps the live rate anyway).
namespace {
v1::JobSpec ResumeSpec(const v1::Job& job) {
  v1::JobSpec spec = job.spec();
  const v1::Hyperparameters& live = job.hyperparameters();
  v1::TrainingSpec* t = spec.mutable_training();
  for (const HyperparameterDef& d : Hyperparameters()) {
    absl::StatusOr<double> v = GetProtoValue(d, live);
    if (!v.ok() || !CheckHyperparameterValue(d, *v).ok()) continue;
    if (d.job_file == JobFileKey::kOptimiserParams) {
      (void)SetProtoValue(d, *v, t->mutable_optimiser_params());
    } else if (d.job_file == JobFileKey::kTopLevel) {
      (void)SetProtoValue(d, *v, t);
    }
  }
  *t->mutable_schedules() = live.schedules();
  return spec;
}
}  // namespace

std::vector<std::string> JobManager::WorkerArgsLocked(const Entry& e, bool resume) const {
  if (e.job.spec().has_prediction()) {
    // No control socket: a prediction has nothing to steer. It continues its own output
    // (done chunks) whenever it starts again.
    std::vector<std::string> args = {
        options_.worker_binary, "predict",
        "--job-spec",           store_->SpecPath(e.id),
        "--data-dir",           options_.data_dir,
        "--status-interval",    absl::StrCat(options_.status_interval_s),
        "--event-fd",           absl::StrCat(kWorkerEventFd)};
    if (IsJobModelReference(e.job.spec().prediction().model())) {
      // The daemon's own copy (Create): the only path the worker takes unconfined.
      args.push_back("--model-file");
      args.push_back(store_->ModelCopyPath(e.id));
    }
    return args;
  }
  return {options_.worker_binary,
          "train",
          "--job-spec",
          store_->SpecPath(e.id),
          "--data-dir",
          options_.data_dir,
          "--status-interval",
          absl::StrCat(options_.status_interval_s),
          "--control-socket",
          store_->ControlSocketPath(e.id),
          "--event-fd",
          absl::StrCat(kWorkerEventFd),
          resume ? "--resume" : "--overwrite"};
}

void JobManager::SpawnLocked(Entry* e) {
  const bool predict = e->job.spec().has_prediction();
  const bool resume = predict ? e->job.prediction_progress().chunks_done() > 0
                              : fs::exists(store_->CheckpointPath(e->id));
  if (resume && !predict) {
    if (absl::Status s = store_->WriteSpec(e->id, ResumeSpec(e->job)); !s.ok()) {
      e->job.set_error(absl::StrCat("cannot write the job's spec for its worker: ", s.message()));
      SetStateLocked(e, v1::FAILED);
      return;
    }
  }
  std::vector<std::string> args = WorkerArgsLocked(*e, resume);
  // The job's resources: its CPU threads (else the daemon's --worker-threads) and memory limit.
  const v1::JobResources& res = e->job.spec().resources();
  const int threads = res.cpu_threads() > 0 ? res.cpu_threads() : options_.worker_omp_threads;
  const rlim_t memory = res.memory_bytes() > 0 ? static_cast<rlim_t>(res.memory_bytes()) : 0;
  std::vector<std::string> env;
  const bool own_gpus = e->job.gpu_uuids_size() > 0;
  for (char** p = environ; *p; ++p) {
    if (threads > 0 && std::strncmp(*p, "OMP_NUM_THREADS=", 16) == 0) continue;
    if (own_gpus && std::strncmp(*p, "CUDA_VISIBLE_DEVICES=", 21) == 0) continue;
    if (std::strncmp(*p, "CUDA_DEVICE_ORDER=", 18) == 0) continue;
    env.emplace_back(*p);
  }
  if (threads > 0) env.push_back(absl::StrCat("OMP_NUM_THREADS=", threads));
  // A reserved job sees its GPUs only (by UUID, so cuda:0 is the first of them); otherwise
  // cuda:N is NVML's index N, which is what reservations and GetResources count by.
  if (own_gpus) {
    env.push_back(absl::StrCat("CUDA_VISIBLE_DEVICES=", absl::StrJoin(e->job.gpu_uuids(), ",")));
  }
  env.push_back("CUDA_DEVICE_ORDER=PCI_BUS_ID");
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& v : env) envp.push_back(v.data());
  envp.push_back(nullptr);
  const std::string dir = store_->JobDir(e->id);
  const pid_t parent = getpid();

  int fds[2], evfds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    e->job.set_error(absl::StrCat("cannot create a pipe for the worker: ", std::strerror(errno)));
    SetStateLocked(e, v1::FAILED);
    return;
  }
  if (pipe2(evfds, O_CLOEXEC) != 0) {
    close(fds[0]);
    close(fds[1]);
    e->job.set_error(absl::StrCat("cannot create a pipe for the worker: ", std::strerror(errno)));
    SetStateLocked(e, v1::FAILED);
    return;
  }
  const pid_t pid = fork();
  if (pid == 0) {
    // Child: async-signal-safe calls only until execve.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction ign {};
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, nullptr);  // an orphaned worker must still reach its checkpoint
    prctl(PR_SET_PDEATHSIG, SIGTERM);   // daemon killed: checkpoint and stop
    if (getppid() != parent) _exit(1);
    setpgid(0, 0);  // a terminal's Ctrl-C goes to the daemon, which stops workers in order
    const int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    // The typed channel at a fixed descriptor; dup2 clears close-on-exec (and when it is
    // already that descriptor, fcntl does).
    if (evfds[1] == kWorkerEventFd) {
      fcntl(kWorkerEventFd, F_SETFD, 0);
    } else {
      dup2(evfds[1], kWorkerEventFd);
    }
    if (memory > 0) {
      const rlimit limit{memory, memory};
      if (setrlimit(RLIMIT_AS, &limit) != 0) _exit(126);
    }
    if (chdir(dir.c_str()) != 0) _exit(126);
    execve(argv[0], argv.data(), envp.data());
    static const char msg[] = "error: cannot execute the worker binary\n";
    (void)!write(2, msg, sizeof(msg) - 1);
    _exit(127);
  }
  close(fds[1]);
  close(evfds[1]);
  if (pid < 0) {
    close(fds[0]);
    close(evfds[0]);
    e->job.set_error(absl::StrCat("cannot fork a worker: ", std::strerror(errno)));
    SetStateLocked(e, v1::FAILED);
    return;
  }
  e->pid = pid;
  e->active = true;
  e->term_sent = false;
  e->intent = Intent::kNone;
  e->kill_at = 0;
  e->last_error.clear();
  { std::ofstream(store_->PidPath(e->id)) << pid << "\n"; }
  spdlog::info("{}: worker {} started ({})", e->job.name(), pid, resume ? "resume" : "fresh");
  SetStateLocked(e, v1::RUNNING);
  readers_.emplace_back(&JobManager::ReadWorker, this, e, fds[0], evfds[0], pid);
}

void JobManager::ReadWorker(Entry* e, int log_fd, int event_fd, pid_t pid) {
  std::string log_buffer, event_buffer;
  bool channel_broken = false;
  char chunk[16384];
  pollfd fds[2] = {{log_fd, POLLIN, 0}, {event_fd, POLLIN, 0}};
  while (fds[0].fd >= 0 || fds[1].fd >= 0) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (pollfd& p : fds) {
      if (p.fd < 0 || p.revents == 0) continue;
      const ssize_t n = read(p.fd, chunk, sizeof(chunk));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        close(p.fd);
        p.fd = -1;
        continue;
      }
      if (&p == &fds[0]) {
        log_buffer.append(chunk, static_cast<size_t>(n));
        size_t start = 0, nl;
        std::vector<std::string> lines;
        while ((nl = log_buffer.find('\n', start)) != std::string::npos) {
          lines.push_back(log_buffer.substr(start, nl - start));
          start = nl + 1;
        }
        log_buffer.erase(0, start);
        if (lines.empty()) continue;
        std::lock_guard lock(mu_);
        for (const auto& line : lines) HandleLineLocked(e, line);
        continue;
      }
      if (channel_broken) continue;  // drain, ignore
      event_buffer.append(chunk, static_cast<size_t>(n));
      std::vector<v1::WorkerEvent> events;
      size_t used = 0;
      while (true) {
        // Each message: a varint length, then that many bytes of WorkerEvent.
        google::protobuf::io::CodedInputStream in(
            reinterpret_cast<const uint8_t*>(event_buffer.data() + used),
            static_cast<int>(event_buffer.size() - used));
        uint32_t size = 0;
        if (!in.ReadVarint32(&size)) {
          if (event_buffer.size() - used >= 5) channel_broken = true;  // not a varint at all
          break;
        }
        const size_t header = static_cast<size_t>(in.CurrentPosition());
        if (size > kMaxWorkerEventBytes) {
          channel_broken = true;
          break;
        }
        if (event_buffer.size() - used - header < size) break;  // the rest is still coming
        v1::WorkerEvent ev;
        if (!ev.ParseFromArray(event_buffer.data() + used + header, static_cast<int>(size))) {
          channel_broken = true;
          break;
        }
        events.push_back(std::move(ev));
        used += header + size;
      }
      event_buffer.erase(0, used);
      std::lock_guard lock(mu_);
      if (channel_broken) {
        spdlog::error("{}: the worker's event channel carries garbage; ignoring it from now on",
                      e->job.name());
        e->last_error = "the worker's event channel broke";
      }
      for (const auto& ev : events) HandleEventLocked(e, ev);
    }
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  std::lock_guard lock(mu_);
  if (!log_buffer.empty()) HandleLineLocked(e, log_buffer);
  OnExitLocked(e, status);
  cv_.notify_all();
}

// The worker's console output: kept as log lines, never parsed (state comes as WorkerEvents).
void JobManager::HandleLineLocked(Entry* e, const std::string& raw) {
  std::string line = raw;
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
  if (line.empty()) return;
  v1::JobEvent ev;
  ev.set_log_line(line);
  AddEventLocked(e, std::move(ev), false);
}

void JobManager::HandleEventLocked(Entry* e, const v1::WorkerEvent& w) {
  if (w.has_hyperparameters()) {
    // Persisted when they changed (not on every status report), so a resumed worker gets them.
    v1::Hyperparameters before = e->job.hyperparameters(), after = w.hyperparameters();
    before.clear_step();
    after.clear_step();
    const bool changed = !google::protobuf::util::MessageDifferencer::Equals(before, after);
    *e->job.mutable_hyperparameters() = w.hyperparameters();
    if (changed) PersistLocked(e);
  }
  if (w.has_status()) {
    v1::JobEvent ev;
    *ev.mutable_status() = w.status();
    ev.mutable_status()->set_n_steps(e->job.spec().training().n_steps());
    e->job.set_step(w.status().step());
    e->job.set_loss(w.status().loss());
    AddEventLocked(e, std::move(ev), false);
  }
  if (w.has_checkpoint()) {
    if (w.checkpoint().loss() != 0) e->job.set_loss(w.checkpoint().loss());
    CheckpointedLocked(e, w.checkpoint().step());  // persists step, loss and update time
  }
  if (w.has_prediction()) {
    *e->job.mutable_prediction_progress() = w.prediction();
    v1::JobEvent ev;
    *ev.mutable_prediction() = w.prediction();
    AddEventLocked(e, std::move(ev), false);
    // job.pb is rewritten atomically: every few seconds, not per chunk (state changes persist
    // it too, so a paused or finished job shows its last progress).
    const double now = MonotonicSeconds();
    if (now - e->progress_persisted_at >= 2.0) {
      PersistLocked(e);
      e->progress_persisted_at = now;
    }
  }
  if (w.has_error()) e->last_error = w.error().message();
}

void JobManager::OnExitLocked(Entry* e, int wait_status) {
  const Intent intent = e->intent;
  e->active = false;
  e->pid = 0;
  e->intent = Intent::kNone;
  e->kill_at = 0;
  std::error_code ec;
  fs::remove(store_->PidPath(e->id), ec);
  std::string how;
  if (WIFEXITED(wait_status)) {
    how = absl::StrCat("worker exited with code ", WEXITSTATUS(wait_status));
  } else if (WIFSIGNALED(wait_status)) {
    how = absl::StrCat("worker killed by signal ", WTERMSIG(wait_status));
  }
  spdlog::info("{}: {}", e->job.name(), how);
  if (intent == Intent::kShutdown) {
    PersistLocked(e);  // keeps RUNNING/PAUSING: the next start resumes it
    return;
  }
  const bool exited = WIFEXITED(wait_status);
  const int code = exited ? WEXITSTATUS(wait_status) : -1;
  if (exited && code == 0) {
    SetStateLocked(e, v1::SUCCEEDED);
    return;
  }
  if (intent == Intent::kCancel) {
    SetStateLocked(e, v1::CANCELLED);
    return;
  }
  if ((exited && code == 130) || (!exited && intent == Intent::kPause)) {
    SetStateLocked(e, v1::PAUSED);  // stopped on request (PauseJob or a SIGTERM from outside)
    return;
  }
  std::string reason = how;
  if (exited && !e->last_error.empty()) absl::StrAppend(&reason, ": ", e->last_error);
  e->job.set_error(reason);
  if (e->job.restarts() < options_.max_restarts) {
    e->job.set_restarts(e->job.restarts() + 1);
    v1::JobEvent ev;
    ev.set_log_line(absl::StrCat(reason, "; restarting (", e->job.restarts(), " of ",
                                 options_.max_restarts, ")"));
    AddEventLocked(e, ev, false);
    SetStateLocked(e, v1::QUEUED);
    return;
  }
  SetStateLocked(e, v1::FAILED);
}

void JobManager::BeginShutdown() {
  std::lock_guard lock(mu_);
  if (stopping_) return;
  stopping_ = true;
  for (auto& [name, e] : jobs_) {
    if (!e->active) continue;
    e->intent = Intent::kShutdown;
    SignalLocked(e.get(), SIGTERM);
    e->kill_at = MonotonicSeconds() + 60;  // a worker that does not stop is killed
    spdlog::info("{}: asked worker {} to checkpoint and stop", name, e->pid);
  }
  cv_.notify_all();
}

void JobManager::Shutdown() {
  BeginShutdown();
  if (shut_down_) return;
  shut_down_ = true;
  if (scheduler_.joinable()) scheduler_.join();  // returns once no worker is left
  std::vector<std::thread> readers;
  {
    std::lock_guard lock(mu_);
    readers.swap(readers_);
  }
  for (auto& t : readers) t.join();
}

}  // namespace elektronn
