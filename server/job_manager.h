// Supervises elektronnd's jobs: a queue bounded by the host's capacity, one worker process per
// running job (`elektronn-worker train`, or `predict` for a prediction job; fork/exec, stderr
// captured line by line into a bounded event log; step and loss persisted at each checkpoint it
// reports, a prediction's progress every few seconds), exit codes turned into states, and
// recovery of the jobs of a daemon that was stopped or killed.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "elektronn/v1/jobs.pb.h"
#include "elektronn/v1/worker.pb.h"
#include "server/gpu_inventory.h"
#include "server/job_store.h"
#include "server/options.h"
#include "server/reservation_book.h"

namespace elektronn {

bool IsFinal(v1::JobState state);

// A job's resources on reservation `r`: the reserved CPU threads and memory where `res` leaves
// them 0; INVALID_ARGUMENT when it asks for more than was reserved.
absl::Status ApplyReservation(const v1::Reservation& r, v1::JobResources* res);

class JobManager {
 public:
  // `reservations` (may be null: no reservations) must outlive the manager.
  JobManager(DaemonOptions options, JobStore* store, ReservationBook* reservations = nullptr);
  ~JobManager();  // Shutdown() if not done

  // Loads the stored jobs, waits for workers of a killed daemon to checkpoint, requeues the jobs
  // that were running, and releases reservations whose job ended or is gone. StartScheduling()
  // then starts workers (once the server listens).
  absl::Status Start();
  void StartScheduling();

  // `spec` is validated (ValidateJobSpec); the daemon rewrites a training's save_path/save_name
  // to the job's directory. A prediction whose model is "jobs/N" gets a copy of that training
  // job's model (final, else latest checkpoint) in its own directory, fixed for its lifetime;
  // INVALID_ARGUMENT when there is no such training job or it has no model yet, or when a
  // prediction that has not ended writes the same output.
  // With a `reservation`, the job consumes it (see CreateJobRequest.reservation): it gets the
  // reserved GPUs, and the reserved CPU threads and memory where the spec leaves them 0 (more
  // than reserved is INVALID_ARGUMENT); it starts without waiting for a job slot (the
  // reservation holds one) and frees the reservation when it ends.
  // With `start_paused` the job is created PAUSED (it starts on Resume); with a `resume_by` too
  // (nonzero), the job is CANCELLED if no Resume comes by then.
  // Without a reservation, a job on device cuda:N whose GPU (by `gpus`, if given) a
  // reservation holds is RESOURCE_EXHAUSTED: it would share the GPU with the reserved job.
  absl::StatusOr<v1::Job> Create(const v1::JobSpec& spec, const std::string& request_id,
                                 const std::string& reservation = "", bool start_paused = false,
                                 const google::protobuf::Timestamp& resume_by = {},
                                 const GpuInventory* gpus = nullptr);
  absl::StatusOr<v1::Job> Get(const std::string& name) const;
  // Jobs ordered by name after `page_token` (a name; empty = from the start).
  std::pair<std::vector<v1::Job>, std::string> List(int page_size,
                                                    const std::string& after_name) const;
  absl::StatusOr<v1::Job> Pause(const std::string& name);
  // A PAUSED job on cuda:N without a reservation is refused (RESOURCE_EXHAUSTED) while a
  // reservation holds that GPU (by `gpus`, if given).
  absl::StatusOr<v1::Job> Resume(const std::string& name, const GpuInventory* gpus = nullptr);
  absl::StatusOr<v1::Job> Cancel(const std::string& name);

  // Appends the job's events with sequence >= from_sequence to `out`, waiting up to `timeout_ms`
  // for new ones when there are none. `*final` = the job is in a final state (or the daemon is
  // stopping) and every event has been handed out.
  absl::Status WaitEvents(const std::string& name, int64_t from_sequence, int timeout_ms,
                          std::vector<v1::JobEvent>* out, bool* final) const;

  std::vector<std::string> RunningJobs() const;
  std::vector<int> WorkerPids() const;
  int capacity() const { return options_.capacity; }
  // Workers, GPUs of jobs without a reservation and job slots in use (CPU and memory are left
  // for the caller to fill in).
  HostOccupancy Occupancy() const;
  // ReservationBook::Reserve with the occupancy as of this instant: no worker starts meanwhile.
  absl::StatusOr<v1::Reservation> Reserve(const v1::ReserveRequest& request,
                                          const GpuInventory& gpus, int cpu_count,
                                          int64_t memory_total_bytes);

  // SIGTERMs every worker (they checkpoint and exit; their jobs resume on the next start) and
  // wakes every watcher. Shutdown() then waits for the workers.
  void BeginShutdown();
  void Shutdown();

 private:
  enum class Intent { kNone, kPause, kCancel, kShutdown };
  struct Entry {
    v1::Job job;
    std::unique_ptr<JobEventLog> events;  // bounded: see EventLogLimits
    std::string id;
    pid_t pid = 0;
    bool active = false;  // a worker process exists (until its reader thread reaped it)
    bool term_sent = false;
    Intent intent = Intent::kNone;
    double kill_at = 0;  // monotonic seconds; SIGKILL the worker then (cancel grace)
    std::string last_error;
    double progress_persisted_at = 0;  // monotonic seconds of the last persisted progress
  };

  absl::StatusOr<Entry*> FindLocked(const std::string& name) const;
  // Create() once the reservation (if any) is consumed; the job is jobs/<id>.
  absl::StatusOr<v1::Job> CreateLocked(const v1::JobSpec& spec, const std::string& request_id,
                                       const std::string& id, const v1::Reservation& reservation,
                                       bool start_paused,
                                       const google::protobuf::Timestamp& resume_by);
  void CancelUnresumedLocked();
  absl::Status PlainGpuFreeLocked(const v1::JobSpec& spec, const GpuInventory* gpus);
  void AddEventLocked(Entry* e, v1::JobEvent event, bool sync);
  void SetStateLocked(Entry* e, v1::JobState state);
  void PersistLocked(Entry* e);
  void SignalLocked(Entry* e, int sig);
  void SchedulerLoop();
  void SpawnLocked(Entry* e);
  // The worker's command line for the job.
  std::vector<std::string> WorkerArgsLocked(const Entry& e, bool resume) const;
  // A prediction's "jobs/N" model, copied into its job directory (before the job is stored).
  absl::Status CopyTrainedModelLocked(const v1::PredictionSpec& p, const std::string& id);
  // A prediction job that has not ended and writes the same output as `p`, if any.
  const Entry* SameOutputLocked(const v1::PredictionSpec& p) const;
  // Reads the worker's log (`log_fd`: stdout and stderr, kept as log lines only) and its typed
  // channel (`event_fd`: WorkerEvent messages, the only source of state) until both close.
  void ReadWorker(Entry* e, int log_fd, int event_fd, pid_t pid);
  void HandleLineLocked(Entry* e, const std::string& line);
  void HandleEventLocked(Entry* e, const v1::WorkerEvent& event);
  // The worker reported a checkpoint at `step`: persist where the job is.
  void CheckpointedLocked(Entry* e, int64_t step);
  void OnExitLocked(Entry* e, int wait_status);
  void WaitForStaleWorker(const std::string& id);
  HostOccupancy OccupancyLocked() const;

  const DaemonOptions options_;
  JobStore* const store_;
  ReservationBook* const reservations_;  // called with mu_ held, never the other way round
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::map<std::string, std::unique_ptr<Entry>> jobs_;  // by name
  std::map<std::string, std::string> by_request_id_;
  int64_t next_id_ = 1;
  bool stopping_ = false;
  bool started_ = false;
  bool shut_down_ = false;
  std::thread scheduler_;
  std::vector<std::thread> readers_;
};

}  // namespace elektronn
