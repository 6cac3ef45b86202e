// The worker's end of the typed channel to elektronnd: length-delimited WorkerEvent protobuf
// messages written to a pipe (--event-fd). The daemon reads the job's state only from here.
#pragma once

#include <memory>

#include "absl/synchronization/mutex.h"
#include "elektronn/v1/worker.pb.h"
#include "engine/trainer/trainer.h"

namespace elektronn {

class EventChannel {
 public:
  // Writes to `fd` (owned, closed on destruction); a negative fd makes every Send a no-op.
  explicit EventChannel(int fd);
  ~EventChannel();
  EventChannel(const EventChannel&) = delete;
  EventChannel& operator=(const EventChannel&) = delete;

  // Thread-safe. After a write error (the daemon is gone) events are dropped: an orphaned
  // worker must still reach its checkpoint.
  void Send(const v1::WorkerEvent& event);

  // The TrainerOptions::on_event callback for `*trainer`: status updates and hyper-parameter
  // changes carry the live hyper-parameters, read from the trainer on its own thread.
  std::function<void(const TrainerEvent&)> TrainerCallback(Trainer* const* trainer);

 private:
  absl::Mutex mu_;
  int fd_;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace elektronn
