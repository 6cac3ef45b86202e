// On-disk state of elektronnd's jobs: <state>/jobs/<id>/{job.pb, events.log, spec.pb, train/}.
// job.pb is replaced atomically (tmp + fsync + rename); events.log is append-only with
// length-prefixed JobEvent records, fsync'ed at state changes; a torn last record is dropped.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "elektronn/v1/jobs.pb.h"

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
  std::string TrainingDir(const std::string& id) const;     // <job dir>/train
  std::string CheckpointPath(const std::string& id) const;  // <training dir>/train-LAST.h5
  std::string PidPath(const std::string& id) const;         // worker.pid of the running worker

  absl::Status CreateJobDir(const std::string& id);
  absl::Status WriteJob(const std::string& id, const v1::Job& job);
  absl::Status WriteSpec(const std::string& id, const v1::JobSpec& spec);
  absl::Status AppendEvent(const std::string& id, const v1::JobEvent& event, bool sync);
  // Every job found under <state>/jobs, sorted by id; unreadable ones are skipped with a warning.
  std::vector<StoredJob> LoadAll() const;

 private:
  std::string jobs_dir_;
};

}  // namespace elektronn
