// Reservations: granting (no GPU, CPU thread, memory or job slot given twice), leases, consumption
// by jobs, and their file in the state directory.
#include "server/reservation_book.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "engine/core/status.h"
#include "google/protobuf/util/message_differencer.h"
#include "rpc/status.h"
#include "server/job_store.h"
#include "spdlog/spdlog.h"

namespace elektronn {
namespace {

constexpr absl::Duration kMinTtl = absl::Milliseconds(100);
constexpr absl::Duration kMaxTtl = absl::Hours(24);

void SetTime(absl::Time t, google::protobuf::Timestamp* out) {
  const int64_t ns = absl::ToUnixNanos(t);
  out->set_seconds(ns / 1'000'000'000);
  out->set_nanos(static_cast<int32_t>(ns % 1'000'000'000));
}

absl::Time TimeOf(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

bool Holds(const v1::Reservation& r) {
  return r.state() == v1::ACTIVE || r.state() == v1::CONSUMED;
}

absl::Status Exhausted(const std::string& message, const std::string& reason) {
  return WithReason(absl::ResourceExhaustedError(message), reason);
}

absl::Status Invalid(const std::string& message) {
  return WithReason(absl::InvalidArgumentError(message), "INVALID_RESERVATION");
}

std::string Gib(int64_t bytes) {
  return absl::StrFormat("%.1f GiB", static_cast<double>(bytes) / (1 << 30));
}

absl::Status CheckTtl(absl::Duration ttl) {
  if (ttl < kMinTtl || ttl > kMaxTtl) {
    return Invalid(absl::StrCat("ttl is ", absl::FormatDuration(ttl), "; valid: 100ms to 24h"));
  }
  return absl::OkStatus();
}

}  // namespace

ReservationBook::ReservationBook(std::string state_dir, Clock now)
    : path_((std::filesystem::path(state_dir) / "reservations.pb").string()),
      now_(std::move(now)) {}

absl::Status ReservationBook::Load() {
  std::lock_guard lock(mu_);
  std::error_code ec;
  if (!std::filesystem::exists(path_, ec)) return absl::OkStatus();
  std::ifstream in(path_, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  v1::ListReservationsResponse stored;
  if (!stored.ParseFromString(ss.str())) {
    return absl::DataLossError(
        absl::StrCat("cannot parse '", path_,
                     "' (the daemon's reservations); move it away to start without reservations"));
  }
  for (v1::Reservation& r : *stored.mutable_reservations()) {
    int64_t id = 0;
    if (absl::SimpleAtoi(absl::StripPrefix(r.name(), "reservations/"), &id)) {
      next_id_ = std::max(next_id_, id + 1);
    }
    if (!r.request_id().empty()) by_request_id_[r.request_id()] = r.name();
    reservations_[r.name()] = std::move(r);
  }
  ExpireLocked();
  int held = 0;
  for (const auto& [name, r] : reservations_) held += Holds(r) ? 1 : 0;
  spdlog::info("reservations: {} loaded from {}, {} hold resources", reservations_.size(), path_,
               held);
  return absl::OkStatus();
}

void ReservationBook::Reconcile(const std::function<bool(const std::string& job)>& job_holds_it) {
  std::lock_guard lock(mu_);
  bool changed = false;
  for (auto& [name, r] : reservations_) {
    if (r.state() != v1::CONSUMED || job_holds_it(r.job())) continue;
    spdlog::info("{}: its job {} has ended or is gone; releasing it", name, r.job());
    EndLocked(&r, v1::RELEASED);
    changed = true;
  }
  if (changed) (void)PersistLocked();
}

absl::Status ReservationBook::PersistLocked() {
  v1::ListReservationsResponse all;
  for (const auto& [name, r] : reservations_) *all.add_reservations() = r;
  absl::Status s = WriteAtomically(path_, all.SerializeAsString());
  if (!s.ok()) spdlog::error("reservations: {}", s.ToString());
  return s;
}

void ReservationBook::EndLocked(v1::Reservation* r, v1::ReservationState state) {
  r->set_state(state);
  if (state == v1::RELEASED) SetTime(now_(), r->mutable_expire_time());
}

void ReservationBook::ExpireLocked() {
  const absl::Time now = now_();
  bool changed = false;
  for (auto& [name, r] : reservations_) {
    if (r.state() != v1::ACTIVE || TimeOf(r.expire_time()) > now) continue;
    EndLocked(&r, v1::EXPIRED);  // expire_time stays: when the lease ended
    spdlog::info("{} (owner '{}') expired: its lease was not renewed", name, r.owner());
    changed = true;
  }
  if (changed) {
    TrimEndedLocked();
    (void)PersistLocked();
  }
}

void ReservationBook::TrimEndedLocked() {
  std::vector<std::string> ended;  // names sort by id: oldest first
  for (const auto& [name, r] : reservations_) {
    if (!Holds(r)) ended.push_back(name);
  }
  for (size_t i = 0; i + kKeepEnded < ended.size(); ++i) {
    by_request_id_.erase(reservations_[ended[i]].request_id());
    reservations_.erase(ended[i]);
  }
}

v1::Reservation* ReservationBook::FindLocked(const std::string& name) {
  auto it = reservations_.find(name);
  return it == reservations_.end() ? nullptr : &it->second;
}

absl::StatusOr<v1::Reservation*> ReservationBook::FindOrErrorLocked(const std::string& name) {
  if (v1::Reservation* r = FindLocked(name)) return r;
  return WithReason(
      absl::NotFoundError(absl::StrCat("reservation '", name,
                                       "' does not exist on this daemon (names look like "
                                       "'reservations/000001'; see ListReservations)")),
      "RESERVATION_NOT_FOUND");
}

ReservationBook::GpuState ReservationBook::GpuStateLocked(const GpuSample& gpu,
                                                          const HostOccupancy& host) const {
  GpuState st;
  std::vector<std::string> reasons;
  for (const auto& [name, r] : reservations_) {
    if (!Holds(r)) continue;
    if (std::find(r.gpu_uuids().begin(), r.gpu_uuids().end(), gpu.uuid) == r.gpu_uuids().end()) {
      continue;
    }
    st.held_by = name;
    reasons.push_back(r.state() == v1::CONSUMED
                          ? absl::StrCat("held by ", name, " (consumed by ", r.job(), ")")
                          : absl::StrCat("held by ", name, " (owner '", r.owner(), "')"));
  }
  if (auto it = host.gpu_index_jobs.find(gpu.index); it != host.gpu_index_jobs.end()) {
    if (st.held_by.empty()) st.held_by = it->second;
    reasons.push_back(absl::StrCat("used by ", it->second, " (device cuda:", gpu.index, ")"));
  }
  std::vector<std::string> foreign;
  for (const GpuProcessSample& p : gpu.processes) {
    auto own = host.worker_pids.find(p.pid);
    if (own == host.worker_pids.end()) {
      foreign.push_back(absl::StrCat(p.pid));
    } else if (st.held_by.empty()) {
      st.held_by = own->second;
      reasons.push_back(absl::StrCat("used by ", own->second, " (worker ", p.pid, ")"));
    }
  }
  if (!foreign.empty()) {
    reasons.push_back(absl::StrCat(foreign.size() == 1 ? "foreign process " : "foreign processes ",
                                   absl::StrJoin(foreign, ", ")));
  }
  st.busy_reason = absl::StrJoin(reasons, "; ");
  return st;
}

absl::Status ReservationBook::CheckGpuFree(const std::string& uuid, const std::string& device) {
  std::lock_guard lock(mu_);
  ExpireLocked();
  for (const auto& [name, r] : reservations_) {
    if (!Holds(r) ||
        std::find(r.gpu_uuids().begin(), r.gpu_uuids().end(), uuid) == r.gpu_uuids().end()) {
      continue;
    }
    return Exhausted(
        absl::StrCat("job.resources.device is '", device, "' but that GPU (", uuid, ") is held by ",
                     name,
                     r.state() == v1::CONSUMED ? absl::StrCat(" (its job ", r.job(), ")")
                                               : absl::StrCat(" (owner '", r.owner(), "')"),
                     "; choose another GPU (`elektronn hosts` shows which are free) or wait"),
        "GPU_BUSY");
  }
  return absl::OkStatus();
}

void ReservationBook::DescribeGpus(const GpuInventory& gpus, const HostOccupancy& host,
                                   v1::Resources* out) {
  std::lock_guard lock(mu_);
  ExpireLocked();
  out->set_gpu_status(gpus.status);
  for (const GpuSample& g : gpus.gpus) {
    v1::GpuInfo* info = out->add_gpus();
    info->set_index(g.index);
    info->set_uuid(g.uuid);
    info->set_name(g.name);
    info->set_memory_used_bytes(g.memory_used_bytes);
    info->set_memory_total_bytes(g.memory_total_bytes);
    info->set_utilization_percent(g.utilization_percent);
    for (const GpuProcessSample& p : g.processes) {
      v1::GpuProcess* proc = info->add_processes();
      proc->set_pid(p.pid);
      proc->set_used_memory_bytes(p.used_memory_bytes);
      if (auto own = host.worker_pids.find(p.pid); own != host.worker_pids.end()) {
        proc->set_job(own->second);
      } else {
        info->add_foreign_pids(p.pid);
      }
    }
    const GpuState st = GpuStateLocked(g, host);
    info->set_held_by(st.held_by);
    info->set_busy(!st.busy_reason.empty());
    info->set_busy_reason(st.busy_reason);
  }
  for (const auto& [name, r] : reservations_) {
    if (Holds(r)) *out->add_reservations() = r;
  }
}

absl::StatusOr<v1::Reservation> ReservationBook::Reserve(const v1::ReserveRequest& req,
                                                         const GpuInventory& gpus,
                                                         const HostOccupancy& host) {
  if (req.request_id().empty()) {
    return Invalid("request_id is empty; Reserve needs one so that a retry cannot reserve twice");
  }
  const absl::Duration ttl =
      absl::Seconds(req.ttl().seconds()) + absl::Nanoseconds(req.ttl().nanos());
  if (auto s = CheckTtl(ttl); !s.ok()) return s;
  const v1::ReservationResources& want = req.resources();
  if (want.gpu_count() < 0 || want.cpu_threads() < 0 || want.memory_bytes() < 0) {
    return Invalid(absl::StrCat("resources must be >= 0; got gpu_count ", want.gpu_count(),
                                ", cpu_threads ", want.cpu_threads(), ", memory_bytes ",
                                want.memory_bytes()));
  }
  if (want.gpu_count() > 0 && want.gpu_uuids_size() > 0) {
    return Invalid("resources sets both gpu_count and gpu_uuids; give one");
  }
  if (std::set<std::string>(want.gpu_uuids().begin(), want.gpu_uuids().end()).size() !=
      static_cast<size_t>(want.gpu_uuids_size())) {
    return Invalid("resources.gpu_uuids names a GPU twice");
  }

  std::lock_guard lock(mu_);
  ExpireLocked();
  if (auto it = by_request_id_.find(req.request_id()); it != by_request_id_.end()) {
    const v1::Reservation& r = reservations_.at(it->second);
    if (r.owner() != req.owner() ||
        !google::protobuf::util::MessageDifferencer::Equals(r.requested(), want)) {
      return Invalid(absl::StrCat("request_id '", req.request_id(), "' made ", r.name(),
                                  " with other resources or owner; use a new request_id"));
    }
    return r;  // a retry: the same reservation, in whatever state it is now
  }

  // A job slot, CPU threads and memory: what is left after the other holders.
  int held = 0, held_threads = 0;
  int64_t held_memory = 0;
  for (const auto& [name, r] : reservations_) {
    if (!Holds(r)) continue;
    ++held;
    held_threads += r.cpu_threads();
    held_memory += r.memory_bytes();
  }
  if (held + host.plain_active_jobs >= host.capacity) {
    return Exhausted(absl::StrCat("all ", host.capacity, " job slot(s) of this daemon are taken (",
                                  host.plain_active_jobs, " running job(s) without a reservation, ",
                                  held, " reservation(s)); see elektronnd --capacity"),
                     "CAPACITY");
  }
  if (want.cpu_threads() > host.cpu_count - held_threads) {
    return Exhausted(absl::StrCat("cpu_threads ", want.cpu_threads(), " requested; this host has ",
                                  host.cpu_count, " CPUs of which reservations hold ", held_threads,
                                  ": ", std::max(0, host.cpu_count - held_threads), " left"),
                     "CPU_THREADS");
  }
  if (want.memory_bytes() > host.memory_total_bytes - held_memory) {
    return Exhausted(
        absl::StrCat("memory_bytes ", want.memory_bytes(), " (", Gib(want.memory_bytes()),
                     ") requested; this host has ", Gib(host.memory_total_bytes),
                     " of which reservations hold ", Gib(held_memory)),
        "MEMORY");
  }

  // GPUs: named ones must all be free; by count, the free ones with the lowest index.
  std::vector<std::string> granted, busy;
  for (const GpuSample& g : gpus.gpus) {
    const GpuState st = GpuStateLocked(g, host);
    const bool named = std::find(want.gpu_uuids().begin(), want.gpu_uuids().end(), g.uuid) !=
                       want.gpu_uuids().end();
    if (want.gpu_uuids_size() > 0 && !named) continue;
    if (!st.busy_reason.empty()) {
      busy.push_back(
          absl::StrCat("GPU ", g.uuid, " (index ", g.index, ") is busy: ", st.busy_reason));
    } else if (static_cast<int>(granted.size()) <
               std::max(want.gpu_count(), want.gpu_uuids_size())) {
      granted.push_back(g.uuid);
    }
  }
  for (const std::string& uuid : want.gpu_uuids()) {
    const bool known = std::any_of(gpus.gpus.begin(), gpus.gpus.end(),
                                   [&](const GpuSample& g) { return g.uuid == uuid; });
    if (!known) {
      std::vector<std::string> here;
      for (const GpuSample& g : gpus.gpus) here.push_back(g.uuid);
      return WithReason(
          absl::NotFoundError(absl::StrCat(
              "no GPU ", uuid, " on this host; its GPUs: ",
              here.empty() ? "none (" + gpus.status + ")" : absl::StrJoin(here, ", "))),
          "GPU_NOT_FOUND");
    }
  }
  if (want.gpu_uuids_size() > 0 && !busy.empty()) {
    return Exhausted(absl::StrJoin(busy, "; "), "GPU_BUSY");
  }
  if (want.gpu_count() > static_cast<int>(granted.size())) {
    std::string why = absl::StrCat(want.gpu_count(), " GPU(s) requested, ", granted.size(),
                                   " free of ", gpus.gpus.size());
    if (gpus.gpus.empty()) absl::StrAppend(&why, " (", gpus.status, ")");
    if (!busy.empty()) absl::StrAppend(&why, ": ", absl::StrJoin(busy, "; "));
    return Exhausted(why, "GPU_BUSY");
  }

  v1::Reservation r;
  r.set_name(absl::StrFormat("reservations/%06d", next_id_++));
  r.set_owner(req.owner());
  r.set_request_id(req.request_id());
  *r.mutable_requested() = want;
  for (const std::string& uuid : granted) r.add_gpu_uuids(uuid);
  r.set_cpu_threads(want.cpu_threads());
  r.set_memory_bytes(want.memory_bytes());
  r.set_state(v1::ACTIVE);
  const absl::Time now = now_();
  SetTime(now, r.mutable_create_time());
  SetTime(now + ttl, r.mutable_expire_time());
  reservations_[r.name()] = r;
  by_request_id_[r.request_id()] = r.name();
  if (absl::Status s = PersistLocked(); !s.ok()) {
    reservations_.erase(r.name());
    by_request_id_.erase(r.request_id());
    return s;
  }
  spdlog::info("{} for '{}': GPUs [{}], {} CPU threads, {} bytes, lease {}", r.name(), r.owner(),
               absl::StrJoin(r.gpu_uuids(), ", "), r.cpu_threads(), r.memory_bytes(),
               absl::FormatDuration(ttl));
  return r;
}

absl::StatusOr<v1::Reservation> ReservationBook::Renew(const std::string& name,
                                                       absl::Duration ttl) {
  if (auto s = CheckTtl(ttl); !s.ok()) return s;
  std::lock_guard lock(mu_);
  ExpireLocked();
  auto found = FindOrErrorLocked(name);
  if (!found.ok()) return found.status();
  v1::Reservation* r = *found;
  if (r->state() == v1::CONSUMED) return *r;  // its job holds it; no lease to renew
  if (r->state() != v1::ACTIVE) {
    return WithReason(absl::FailedPreconditionError(absl::StrCat(
                          name, " is ", v1::ReservationState_Name(r->state()),
                          r->state() == v1::EXPIRED ? " (its lease was not renewed in time)" : "",
                          "; Reserve again with a new request_id")),
                      "RESERVATION_ENDED");
  }
  SetTime(now_() + ttl, r->mutable_expire_time());
  RETURN_IF_ERROR(PersistLocked());
  return *r;
}

absl::StatusOr<v1::Reservation> ReservationBook::Release(const std::string& name) {
  std::lock_guard lock(mu_);
  ExpireLocked();
  auto found = FindOrErrorLocked(name);
  if (!found.ok()) return found.status();
  v1::Reservation* r = *found;
  if (r->state() == v1::CONSUMED) {
    return WithReason(absl::FailedPreconditionError(absl::StrCat(
                          name, " is CONSUMED by ", r->job(),
                          "; it is released when that job ends (cancel the job to end it now)")),
                      "RESERVATION_CONSUMED");
  }
  if (r->state() != v1::ACTIVE) return *r;  // released or expired already
  EndLocked(r, v1::RELEASED);
  const v1::Reservation released = *r;  // trimming may drop it from the book
  TrimEndedLocked();
  RETURN_IF_ERROR(PersistLocked());
  spdlog::info("{} released by its owner '{}'", name, released.owner());
  return released;
}

absl::StatusOr<v1::Reservation> ReservationBook::Get(const std::string& name) {
  std::lock_guard lock(mu_);
  ExpireLocked();
  auto found = FindOrErrorLocked(name);
  if (!found.ok()) return found.status();
  return **found;
}

std::vector<v1::Reservation> ReservationBook::List(bool include_ended) {
  std::lock_guard lock(mu_);
  ExpireLocked();
  std::vector<v1::Reservation> out;
  for (const auto& [name, r] : reservations_) {
    if (include_ended || Holds(r)) out.push_back(r);
  }
  return out;
}

absl::StatusOr<v1::Reservation> ReservationBook::Consume(const std::string& name,
                                                         const std::string& job) {
  std::lock_guard lock(mu_);
  ExpireLocked();
  auto found = FindOrErrorLocked(name);
  if (!found.ok()) return found.status();
  v1::Reservation* r = *found;
  if (r->state() != v1::ACTIVE) {
    std::string why = v1::ReservationState_Name(r->state());
    if (r->state() == v1::CONSUMED) absl::StrAppend(&why, " by ", r->job());
    if (r->state() == v1::EXPIRED) absl::StrAppend(&why, " (its lease was not renewed in time)");
    return WithReason(absl::FailedPreconditionError(absl::StrCat(
                          "reservation ", name, " is ", why,
                          "; a job can only be created against an ACTIVE reservation")),
                      "RESERVATION_NOT_ACTIVE");
  }
  r->set_state(v1::CONSUMED);
  r->set_job(job);
  if (absl::Status s = PersistLocked(); !s.ok()) {
    r->set_state(v1::ACTIVE);
    r->clear_job();
    return s;
  }
  spdlog::info("{} consumed by {}", name, job);
  return *r;
}

void ReservationBook::Unconsume(const std::string& name) {
  std::lock_guard lock(mu_);
  v1::Reservation* r = FindLocked(name);
  if (r == nullptr || r->state() != v1::CONSUMED) return;
  r->set_state(v1::ACTIVE);
  r->clear_job();
  (void)PersistLocked();
}

void ReservationBook::JobEnded(const std::string& name, const std::string& job) {
  std::lock_guard lock(mu_);
  v1::Reservation* r = FindLocked(name);
  if (r == nullptr || r->state() != v1::CONSUMED || r->job() != job) return;
  EndLocked(r, v1::RELEASED);
  TrimEndedLocked();
  (void)PersistLocked();
  spdlog::info("{} released: its job {} ended", name, job);
}

int ReservationBook::HeldSlots() {
  std::lock_guard lock(mu_);
  ExpireLocked();
  int n = 0;
  for (const auto& [name, r] : reservations_) n += Holds(r) ? 1 : 0;
  return n;
}

}  // namespace elektronn
