// On-disk state of elektronnd's jobs: <state>/jobs/<id>/{job.pb, events.log, spec.pb, train/}
// (a prediction job whose model is "jobs/N" has model.h5, the daemon's copy of that model).
// job.pb is replaced atomically (tmp + fsync + rename); events.log holds length-prefixed JobEvent
// records, appended (fsync'ed at state changes) and compacted by atomic rewrite; a torn last
// record is dropped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "elektronn/v1/jobs.pb.h"
#include "rpc/atomic_file.h"

namespace elektronn {

struct StoredJob {
  v1::Job job;
  std::vector<v1::JobEvent> events;
};

class JobStore {
 public:
  explicit JobStore(std::string state_dir);

  absl::Status Init();  // creates <state>/jobs
  std::string JobDir(const std::string& id) const;
  std::string SpecPath(const std::string& id) const;
  std::string TrainingDir(const std::string& id) const;        // <job dir>/train
  std::string CheckpointPath(const std::string& id) const;     // <training dir>/train-LAST.h5
  std::string PidPath(const std::string& id) const;            // worker.pid of the running worker
  std::string ControlSocketPath(const std::string& id) const;  // the worker's control.sock
  std::string ModelCopyPath(const std::string& id) const;      // model.h5 of a prediction job
  // The training job's model a prediction may use: train-FINAL.h5, else train-LAST.h5; empty
  // when it has neither yet.
  std::string TrainedModelPath(const std::string& id) const;
  const std::string& jobs_dir() const { return jobs_dir_; }

  absl::Status CreateJobDir(const std::string& id);
  absl::Status WriteJob(const std::string& id, const v1::Job& job);
  absl::Status WriteSpec(const std::string& id, const v1::JobSpec& spec);
  absl::Status AppendEvent(const std::string& id, const v1::JobEvent& event, bool sync);
  // Replaces events.log by `events` atomically (tmp + fsync + rename).
  absl::Status RewriteEvents(const std::string& id, const std::vector<v1::JobEvent>& events);
  std::string EventsPath(const std::string& id) const;
  // Every job found under <state>/jobs, sorted by id; unreadable ones are skipped with a warning.
  std::vector<StoredJob> LoadAll() const;

 private:
  std::string jobs_dir_;
};

// How much of a job's event history is kept. Every state change is kept; of the error lines
// ("error: ..." or "[error]"), the status updates and the other log lines only the newest
// `keep` of each. A kind is compacted back to `keep` once it holds 2 * keep events, so memory and
// events.log stay below (states + 6 * keep) events, and the rewrite costs O(1) per event.
struct EventLogLimits {
  size_t keep = 1000;
};

// One job's events, in memory and in its events.log. Sequence numbers start at 1 and grow by one
// per event; they survive compaction and daemon restarts, so after a compaction they have gaps
// where events were dropped, and a watcher that resumes from a dropped sequence number gets the
// oldest retained event after it. Not thread-safe (JobManager holds its lock).
class JobEventLog {
 public:
  JobEventLog(JobStore* store, std::string id, EventLogLimits limits = {});

  // Takes the events read back by JobStore::LoadAll (sequence numbers made increasing if a file
  // was damaged), compacting them (and the file) when they exceed the limits.
  void Restore(std::vector<v1::JobEvent> events);
  // Gives `event` the next sequence number, appends it in memory and on disk (fsync'ed when
  // `sync`), and compacts when a kind outgrew its limit. Returns the sequence number; disk
  // errors are logged, the event is kept in memory.
  int64_t Append(v1::JobEvent event, bool sync);
  // Appends the events with sequence >= from_sequence to `out`.
  void CopyFrom(int64_t from_sequence, std::vector<v1::JobEvent>* out) const;
  bool HasFrom(int64_t from_sequence) const {
    return !events_.empty() && events_.back().sequence() >= from_sequence;
  }
  const std::vector<v1::JobEvent>& events() const { return events_; }
  int64_t next_sequence() const { return next_sequence_; }

 private:
  enum Kind { kState, kError, kStatus, kLog, kKinds };
  static Kind KindOf(const v1::JobEvent& e);
  bool OverLimit() const;
  void Compact();

  JobStore* store_;
  std::string id_;
  EventLogLimits limits_;
  std::vector<v1::JobEvent> events_;
  size_t count_[kKinds] = {};
  int64_t next_sequence_ = 1;
};

}  // namespace elektronn
