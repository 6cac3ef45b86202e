// Length-delimited WorkerEvent messages on a pipe, and their translation from TrainerEvents.
#include "worker/event_channel.h"

#include <unistd.h>

#include <cerrno>
#include <string>

#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/util/delimited_message_util.h"
#include "worker/worker_control.h"

namespace elektronn {

EventChannel::EventChannel(int fd) : fd_(fd) {}

EventChannel::~EventChannel() {
  if (fd_ >= 0) close(fd_);
}

void EventChannel::Send(const v1::WorkerEvent& event) {
  if (fd_ < 0) return;
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream out(&bytes);
    if (!google::protobuf::util::SerializeDelimitedToZeroCopyStream(event, &out)) return;
  }
  absl::MutexLock lock(&mu_);
  if (broken_) return;
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = write(fd_, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      broken_ = true;  // EPIPE: the daemon is gone (SIGPIPE is ignored)
      return;
    }
    done += static_cast<size_t>(n);
  }
}

std::function<void(const TrainerEvent&)> EventChannel::TrainerCallback(Trainer* const* trainer) {
  return [this, trainer](const TrainerEvent& e) {
    v1::WorkerEvent ev;
    switch (e.kind) {
      case TrainerEvent::Kind::kStatus: {
        v1::StatusUpdate* s = ev.mutable_status();
        s->set_step(e.step);
        s->set_loss(e.loss);
        s->set_smoothed_loss(e.smoothed_loss);
        s->set_errors(e.errors);
        s->set_learning_rate(e.learning_rate);
        s->set_steps_per_second(e.steps_per_second);
        if (*trainer != nullptr) FillHyperparameters(**trainer, ev.mutable_hyperparameters());
        break;
      }
      case TrainerEvent::Kind::kHyperparameters:
        if (*trainer == nullptr) return;
        FillHyperparameters(**trainer, ev.mutable_hyperparameters());
        break;
      case TrainerEvent::Kind::kCheckpoint:
        ev.mutable_checkpoint()->set_step(e.step);
        ev.mutable_checkpoint()->set_loss(e.loss);
        ev.mutable_checkpoint()->set_path(e.path);
        break;
      case TrainerEvent::Kind::kEnded:
        ev.mutable_ended()->set_step(e.step);
        ev.mutable_ended()->set_reason(e.reason);
        break;
    }
    Send(ev);
  };
}

}  // namespace elektronn
