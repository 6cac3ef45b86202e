// Training plots (history.png, timeline.png of the training directory), drawn with cairo.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace elektronn {

// One monitored update (every history_freq steps); see the history record of the trainer.
struct HistoryRow {
  int64_t step = 0;
  double time_s = 0;
  double train_loss = 0;
  double valid_loss = 0;  // NaN when there is no validation data.
  double loss_gain = 0;   // Loss after minus before the update, on the same batch.
  double train_err = 0;
  double valid_err = 0;  // NaN when there is no validation data.
  double lr = 0;
  double mom = 0;
};

// One training step.
struct TimelinePoint {
  double time_s = 0;
  double loss = 0;
  double batch_char = 0;  // Prevalence: mean of target channel 0 of the batch.
};

// Writes a three-panel figure (losses; loss gain with LR and momentum; errors with an 8-point
// moving average) to `png_path`, atomically. Errors are labelled in % when `classification`.
// Non-finite values are left out; an empty `rows` is an InvalidArgument error.
// Safe to call from several threads at once.
absl::Status PlotHistory(const std::string& png_path, const std::vector<HistoryRow>& rows,
                         bool classification);

// Writes a two-panel figure (per-step loss over time with its moving average of
// `smoothing_length` steps and the mean +- std of the last 200 losses; loss vs. batch
// prevalence, darker = more recent) to `png_path`, atomically. Non-finite losses are left out;
// an empty `points` or a `smoothing_length` < 1 is an InvalidArgument error.
absl::Status PlotTimeline(const std::string& png_path, const std::vector<TimelinePoint>& points,
                          int smoothing_length = 200);

}  // namespace elektronn
