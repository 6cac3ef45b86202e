// Schedules of the hyper-parameters marked schedulable in hyperparams.h (lr, mom, wd, beta2,
// dropout_rates, history_freq), with ELEKTRONN2's semantics (reference §5.5): values change only
// at multiples of a granularity (1000 steps by default) or at explicitly listed steps.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "elektronn/v1/training.pb.h"

namespace elektronn {

class Schedule {
 public:
  // `name` is what it drives: a schedulable hyper-parameter's name, proto field or alias (name()
  // is then its name); `spec` is validated here.
  static absl::StatusOr<Schedule> Create(const std::string& name, const v1::Schedule& spec);

  // The value after step `step` given the value before it, or nullopt when nothing changes.
  // Called once per step in increasing order (a resumed run may start at any step).
  std::optional<double> Apply(int64_t step, double current) const;
  const std::string& name() const { return name_; }
  const v1::Schedule& spec() const { return spec_; }
  std::string Describe() const;  // "lr: mode=mult, decay-factor=0.995, every 1000 steps"

 private:
  std::string name_;
  v1::Schedule spec_;
  int64_t granularity_ = 1000;
};

}  // namespace elektronn
