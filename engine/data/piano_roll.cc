// Generated piano-roll sequences (see piano_roll.h).
#include "engine/data/piano_roll.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace elektronn {

absl::StatusOr<std::unique_ptr<PianoRollData>> PianoRollData::Create(
    const v1::PianoRollParams& params, const BatchGeometry& g) {
  const TaggedShape& in = g.input;
  if (in.tags() != "rbf") {
    return absl::InvalidArgumentError(absl::StrFormat(
        "PianoRollData needs an input node with tags \"r,b,f\" (steps, batch, channels), got "
        "\"%s\"",
        in.tags_string()));
  }
  auto d = std::unique_ptr<PianoRollData>(new PianoRollData());
  d->geometry_ = g;
  d->steps_ = in.size(0);
  d->batch_ = in.size(1);
  d->channels_ = in.size(2);
  if (d->channels_ < 2) {
    return absl::InvalidArgumentError(
        absl::StrFormat("PianoRollData needs at least 2 channels (f), got %d", d->channels_));
  }
  const TaggedShape& t = g.target;
  const int64_t tf = t.SizeOf('f');
  if (t.tags() != "bf" || t.size(0) != d->batch_ || (tf != 1 && tf != d->channels_)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "PianoRollData needs a target node (b, 1) (the next note's channel) or (b, %d) (0/1 per "
        "channel) with tags \"b,f\" and batch %d, got %s",
        d->channels_, d->batch_, t.ToString()));
  }
  d->per_channel_target_ = tf == d->channels_ && tf != 1;
  d->noise_ = params.has_noise() ? params.noise() : 0.05;
  if (!(d->noise_ >= 0 && d->noise_ <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("data_init_kwargs noise=%g must be in [0, 1]", d->noise_));
  }
  d->max_step_ = params.max_step() == 0 ? 2 : params.max_step();
  if (d->max_step_ < 1 || d->max_step_ >= d->channels_) {
    return absl::InvalidArgumentError(
        absl::StrFormat("data_init_kwargs max_step=%d must be in [1, %d] for %d channels",
                        params.max_step(), d->channels_ - 1, d->channels_));
  }
  return d;
}

absl::Status PianoRollData::GetBatch(Split, std::mt19937_64& rng, float* input,
                                     float* target) const {
  std::uniform_int_distribution<int64_t> note(0, channels_ - 1), step(1, max_step_);
  std::uniform_real_distribution<double> u(0, 1);
  std::fill(input, input + steps_ * batch_ * channels_, 0.f);
  std::fill(target, target + batch_ * (per_channel_target_ ? channels_ : 1), 0.f);
  for (int64_t b = 0; b < batch_; ++b) {
    const int64_t first = note(rng), d = step(rng);
    for (int64_t t = 0; t < steps_; ++t) {
      int64_t n = (first + d * t) % channels_;
      if (u(rng) < noise_) n = note(rng);
      input[(t * batch_ + b) * channels_ + n] = 1.f;
    }
    const int64_t next = (first + d * steps_) % channels_;
    if (per_channel_target_) {
      target[b * channels_ + next] = 1.f;
    } else {
      target[b] = static_cast<float>(next);
    }
  }
  return absl::OkStatus();
}

std::string PianoRollData::Describe() const {
  return absl::StrFormat(
      "generated piano roll: %d channels, %d steps per example, melody steps 1..%d, input noise "
      "%g, target %s",
      channels_, steps_, max_step_, noise_,
      per_channel_target_ ? "0/1 per channel" : "the next note's channel");
}

}  // namespace elektronn
