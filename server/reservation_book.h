// Reservations on this daemon: leases on GPUs, CPU threads, memory and a job slot, taken by a
// scheduler before a gang start and consumed by the job created against them. Persisted in
// <state>/reservations.pb (rewritten atomically at every change) with absolute expire times, so a
// restarted daemon keeps what it had granted and drops what expired meanwhile. Leases are checked
// lazily: every call first expires the ACTIVE reservations whose expire_time passed (the job
// manager asks several times a second, which makes that a sweep).
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "elektronn/v1/jobs.pb.h"
#include "server/gpu_inventory.h"

namespace elektronn {

// What else occupies the host, from the job manager and the machine.
struct HostOccupancy {
  std::map<int, std::string> worker_pids;     // this daemon's workers: pid -> job
  std::map<int, std::string> gpu_index_jobs;  // device cuda:N of jobs without a reservation
  int plain_active_jobs = 0;                  // running workers of jobs without a reservation
  int capacity = 1;                           // job slots (elektronnd --capacity)
  int cpu_count = 0;
  int64_t memory_total_bytes = 0;
};

class ReservationBook {
 public:
  using Clock = std::function<absl::Time()>;
  // Ended (RELEASED, EXPIRED) reservations kept for idempotent retries and ListReservations.
  static constexpr size_t kKeepEnded = 1000;

  explicit ReservationBook(
      std::string state_dir, Clock now = [] { return absl::Now(); });

  // Reads <state>/reservations.pb if there is one; ACTIVE ones whose lease passed while the
  // daemon was down become EXPIRED.
  absl::Status Load();

  // See service Reservations in jobs.proto for the errors.
  absl::StatusOr<v1::Reservation> Reserve(const v1::ReserveRequest& request,
                                          const GpuInventory& gpus, const HostOccupancy& host);
  absl::StatusOr<v1::Reservation> Renew(const std::string& name, absl::Duration ttl);
  absl::StatusOr<v1::Reservation> Release(const std::string& name);
  absl::StatusOr<v1::Reservation> Get(const std::string& name);
  std::vector<v1::Reservation> List(bool include_ended);

  // A job named `job` takes the ACTIVE reservation `name` (then CONSUMED, no lease).
  absl::StatusOr<v1::Reservation> Consume(const std::string& name, const std::string& job);
  // Undoes Consume for a job that could not be stored.
  void Unconsume(const std::string& name);
  // `job` ended: its CONSUMED reservation `name` is RELEASED.
  void JobEnded(const std::string& name, const std::string& job);
  // After a restart: CONSUMED reservations whose job is gone or ended are RELEASED.
  void Reconcile(const std::function<bool(const std::string& job)>& job_holds_it);

  // Reservations that hold a job slot now (ACTIVE and CONSUMED).
  int HeldSlots();
  // OK when no reservation holds the GPU `uuid`; else RESOURCE_EXHAUSTED (GPU_BUSY) naming the
  // reservation, for a job that asks for that GPU (`device`) without one.
  absl::Status CheckGpuFree(const std::string& uuid, const std::string& device);
  // GpuInfo of every GPU in `gpus`: processes (ours with their job, foreign), holder, busy.
  void DescribeGpus(const GpuInventory& gpus, const HostOccupancy& host, v1::Resources* out);

 private:
  struct GpuState {
    std::string held_by;  // reservation or job
    std::string busy_reason;
  };
  GpuState GpuStateLocked(const GpuSample& gpu, const HostOccupancy& host) const;
  v1::Reservation* FindLocked(const std::string& name);
  absl::StatusOr<v1::Reservation*> FindOrErrorLocked(const std::string& name);
  void ExpireLocked();
  void EndLocked(v1::Reservation* r, v1::ReservationState state);
  absl::Status PersistLocked();
  void TrimEndedLocked();

  const std::string path_;
  const Clock now_;
  std::mutex mu_;
  std::map<std::string, v1::Reservation> reservations_;  // by name
  std::map<std::string, std::string> by_request_id_;
  int64_t next_id_ = 1;
};

}  // namespace elektronn
