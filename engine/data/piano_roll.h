// PianoRollData: generated piano-roll sequences for next-step prediction, the task of
// ELEKTRONN2's recurrent examples (gru.py, lstm.py, reference §9.6), whose data were not public.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>

#include "absl/status/statusor.h"
#include "elektronn/v1/training.pb.h"
#include "engine/data/batch_source.h"

namespace elektronn {

// Each example is a melody over C binary channels (one note on per step): a random first note
// and a random step of 1..max_step channels, wrapping around, so note t = (first + step * t)
// mod C. The input (tags r,b,f: R steps, batch, C channels) holds notes 0..R-1 as one-hot rows,
// each replaced by a random note with probability `noise`; the target is note R, clean:
// (b, 1) its channel (one softmax over the channels), or (b, C) 0/1 per channel (C binary
// softmaxes, Softmax n_indep = C). Predicting it needs the step, read from the sequence.
// Training and validation examples are independent draws.
class PianoRollData : public BatchSource {
 public:
  static absl::StatusOr<std::unique_ptr<PianoRollData>> Create(const v1::PianoRollParams& params,
                                                               const BatchGeometry& geometry);

  absl::Status GetBatch(Split split, std::mt19937_64& rng, float* input,
                        float* target) const override;
  bool has_validation() const override { return true; }
  const BatchGeometry& geometry() const override { return geometry_; }
  std::string Describe() const override;

 private:
  PianoRollData() = default;
  BatchGeometry geometry_;
  int64_t steps_ = 0, batch_ = 0, channels_ = 0, max_step_ = 2;
  bool per_channel_target_ = false;
  double noise_ = 0.05;
};

}  // namespace elektronn
