// Trainer: runs a job (model + training settings) in a training directory, as ELEKTRONN2's
// Trainer does (reference §5): batches from a background queue, forward/backward/update,
// schedules, monitoring on training and validation data, status lines, log, history, plots,
// TensorBoard events and atomic checkpoints; stops at n_steps or max_runtime, on request
// (Ctrl-C) or on a NaN loss (after saving the last good state).
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "elektronn/v1/training.pb.h"
#include "engine/config/hyperparams.h"
#include "engine/config/schedule.h"
#include "engine/data/batch_source.h"
#include "engine/graph/network.h"
#include "engine/optim/optimiser.h"

namespace spdlog {
class logger;
}

namespace elektronn {

class BatchQueue;
class EventWriter;
class PreviewPredictor;

// What the trainer reports as it goes, for whoever runs it (elektronn-worker turns these into
// the protobuf events the daemon reads); logs stay human-readable text.
struct TrainerEvent {
  enum class Kind {
    kStatus,           // progress: at most every status_interval_s, and at each monitor
    kCheckpoint,       // a checkpoint file was written (path)
    kHyperparameters,  // a hyper-parameter was changed (read the new values from the trainer)
    kEnded,            // training ended (reason), after the last checkpoint
  };
  Kind kind = Kind::kStatus;
  int64_t step = 0;
  double loss = 0, smoothed_loss = 0, errors = 0, learning_rate = 0, steps_per_second = 0;
  std::string path = {};
  std::string reason = {};
};

struct TrainerOptions {
  std::string job_dir = ".";           // relative paths in the job resolve against it
  bool overwrite = false;              // replace an existing training directory
  bool resume = false;                 // continue from <dir>/<name>-LAST.h5
  double status_interval_s = 1.0;      // at most one progress line per interval (0: every step)
  bool console = true;                 // log to stderr as well as the log file
  std::string console_pattern = "%v";  // spdlog pattern of the console lines (nobody parses them)
  // Called on the training thread (or the thread of a step-boundary command); must not block.
  std::function<void(const TrainerEvent&)> on_event;
  // A group's common start (elektronn-sched, JobSpec.start_at), in Unix seconds: Run waits for
  // it before its first step, running step-boundary commands and honouring RequestStop; 0, a
  // time that has passed, or a job that resumes past step 0 does not wait.
  double start_at_unix_s = 0;
};

// One monitoring record (reference §5.4, step 7).
struct HistoryRecord {
  int64_t step = 0;
  double time_s = 0;
  double train_loss = 0, valid_loss = 0, loss_gain = 0, train_err = 0, valid_err = 0;
  double lr = 0, mom = 0;
};

enum class StopReason { kSteps, kRuntime, kRequested, kNanLoss };

class Trainer : public HyperparameterTarget {
 public:
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(const v1::JobSpec& job,
                                                         kernels::Backend* backend,
                                                         TrainerOptions options);
  ~Trainer();

  // Trains until a stop condition; returns why it stopped (an error for a NaN loss).
  absl::StatusOr<StopReason> Run();
  // Asks the loop to stop at the next step boundary (async-signal-safe).
  void RequestStop() { stop_requested_.store(true); }

  // Runs `fn` on the training thread at the next step boundary and returns its status; the
  // shell and the control services change the live job only this way. Thread-safe. When no
  // training loop is running, `fn` runs at once on the caller's thread.
  absl::Status AtStepBoundary(std::function<absl::Status(Trainer&)> fn);

  // Live hyper-parameters by name, proto field or alias (the table in hyperparams.h). A set value
  // is checked against the range and logged as "lr changed from A to B at step N (who)". Call at
  // a step boundary.
  absl::StatusOr<double> GetHyperparameter(const std::string& name) const;
  absl::Status SetHyperparameter(const std::string& name, double value, const std::string& who);
  // The active schedules by hyper-parameter name. SetSchedule adds or replaces the schedule of
  // `name` (nullptr removes it); it fires from the next step on. Call at a step boundary.
  std::map<std::string, v1::Schedule> ScheduleSpecs() const;
  absl::Status SetSchedule(const std::string& name, const v1::Schedule* spec,
                           const std::string& who);
  // Raw accessors behind the table's history_freq entry (no check, no log line).
  int64_t history_freq() const override { return spec_.history_freq(); }
  void set_history_freq(int64_t steps) override { spec_.set_history_freq(steps); }
  HyperParams& optimiser_hyper() override { return opt_->hyper(); }
  const HyperParams& optimiser_hyper() const override { return opt_->hyper(); }
  Graph& model_graph() override { return net_->graph(); }
  const Graph& model_graph() const override { return net_->graph(); }

  // Writes a line to the job's log (INFO).
  void Log(const std::string& line);

  // The shell's tools (reference §6, trainer_tools.cc); call at a step boundary.
  // <dir>/Batch_test_image.png from a fresh training batch (also written at the first start).
  absl::StatusOr<std::string> WriteDebugBatch();
  // The preview predictions now (FAILED_PRECONDITION when the job has no preview_data_path).
  absl::Status PreviewNow();
  // The parameter values of a model file (relative to the training directory, and inside it:
  // a checkpoint of this job, e.g. "Backup/train-1k.h5") into the live model; the optimiser's
  // state stays. Errors name the mismatching parameter; nothing changes on error.
  absl::Status LoadParameters(const std::string& file);
  // <dir>/filters_<node>.png of the node's weights `w`; no node: the first node with a
  // convolution's `w`, to <dir>/filters.png. Returns the file written.
  absl::StatusOr<std::string> SaveFilters(const std::string& node);

  const std::string& dir() const { return dir_; }
  const std::string& name() const { return name_; }
  Network& network() { return *net_; }
  const Network& network() const { return *net_; }
  Optimiser& optimiser() { return *opt_; }
  const Optimiser& optimiser() const { return *opt_; }
  int64_t step() const { return step_; }
  const std::vector<HistoryRecord>& history() const { return history_; }
  std::string CheckpointPath(const std::string& suffix) const;  // <dir>/<name>-<suffix>.h5

 private:
  Trainer() = default;
  absl::Status Setup(const v1::JobSpec& job, kernels::Backend* backend);
  absl::Status Resume();
  absl::Status TrainStep(double* loss);
  absl::Status Monitor(double loss_before);
  absl::StatusOr<std::pair<double, double>> Evaluate(Split split);
  absl::Status SaveCheckpoint(const std::string& path);
  absl::Status ApplySchedules();
  absl::Status WriteHistoryAndPlots();
  void SnapshotGoodState();
  void RestoreGoodState();
  void StatusLine(double loss);
  void Emit(const TrainerEvent& event) const {
    if (options_.on_event) options_.on_event(event);
  }
  // Accuracy on a data set's whole test split, when it has one (MNIST).
  absl::Status EvaluateTestSet();
  double TrainingSeconds() const;

  v1::JobSpec job_;
  v1::TrainingSpec spec_;
  TrainerOptions options_;
  std::string dir_, name_;
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<Network> net_;
  std::unique_ptr<Optimiser> opt_;
  std::shared_ptr<const BatchSource> source_;
  std::unique_ptr<BatchQueue> queue_;
  std::unique_ptr<EventWriter> events_;
  std::unique_ptr<PreviewPredictor> preview_;
  double next_preview_h_ = 0;
  std::vector<Schedule> schedules_;
  uint64_t seed_ = 0;
  std::mt19937_64 rng_;  // monitoring batches; reseeded from (seed, step) at each Monitor()
  std::atomic<bool> stop_requested_{false};
  void RunPendingCommands();
  // The start barrier (TrainerOptions::start_at_unix_s); false when a stop was requested.
  bool WaitForStart();
  void DrainCommandsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(commands_mu_);
  struct PendingCommand {
    std::function<absl::Status(Trainer&)> fn;
    absl::Status result;
    bool done = false;
  };
  absl::Mutex commands_mu_;
  absl::CondVar commands_cv_;
  std::deque<PendingCommand*> commands_ ABSL_GUARDED_BY(commands_mu_);
  bool loop_running_ ABSL_GUARDED_BY(commands_mu_) = false;

  std::string input_name_, target_name_, loss_name_, error_name_;
  std::vector<std::string> extra_names_;  // further inputs the data fills (lazy-label masks)
  int64_t step_ = 0;
  double time_offset_s_ = 0;  // training time of earlier runs (resume)
  double run_start_s_ = 0;
  double last_status_s_ = -1e9;
  double t_per_step_ = 0;
  std::deque<double> recent_losses_;
  std::vector<HistoryRecord> history_;
  struct TimelinePointRec {
    double time_s, loss, batch_char;
  };
  std::vector<TimelinePointRec> timeline_;
  double last_batch_char_ = 0;
  double last_err_ = 0;
  // Last good state for NaN recovery: parameters and optimiser slots before the last update.
  // The last good state, in backend memory: per parameter its value, then its optimiser slots.
  std::vector<float*> good_;
  int64_t good_step_ = -1;
  int64_t good_t_ = 0;
};

const char* StopReasonName(StopReason r);

}  // namespace elektronn
