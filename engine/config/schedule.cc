// Schedule semantics of ELEKTRONN2 (reference §5.5), with QUIRK 9's lindec fixed: the value
// reaches exactly 0 at step n even when n is not a multiple of the granularity.
#include "engine/config/schedule.h"

#include "absl/strings/str_format.h"
#include "engine/config/hyperparams.h"

namespace elektronn {

absl::StatusOr<Schedule> Schedule::Create(const std::string& name, const v1::Schedule& spec) {
  const HyperparameterDef* d = FindHyperparameter(name);
  if (d == nullptr || !d->schedulable) {
    return absl::InvalidArgumentError(
        absl::StrFormat("schedule '%s' drives nothing; schedulable are %s", name,
                        HyperparameterNameList(/*schedulable_only=*/true)));
  }
  Schedule s;
  s.name_ = d->name;
  s.spec_ = spec;
  if (spec.granularity() < 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "schedule '%s': granularity %d must be positive", name, spec.granularity()));
  }
  if (spec.granularity() > 0) s.granularity_ = spec.granularity();
  switch (spec.kind_case()) {
    case v1::Schedule::kDec:
      if (!(spec.dec() > 0)) {
        return absl::InvalidArgumentError(
            absl::StrFormat("schedule '%s': dec=%g must be a positive factor", name, spec.dec()));
      }
      break;
    case v1::Schedule::kLindec:
      if (spec.lindec().n() <= 0) {
        return absl::InvalidArgumentError(
            absl::StrFormat("schedule '%s': lindec needs {n, v0} with n > 0 steps, got n=%d", name,
                            spec.lindec().n()));
      }
      break;
    case v1::Schedule::kUpdates: {
      int64_t last = -1;
      for (const auto& u : spec.updates().updates()) {
        if (u.step() <= last) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "schedule '%s': update steps must increase, got %d after %d", name, u.step(), last));
        }
        if (absl::Status v = CheckHyperparameterValue(*d, u.value()); !v.ok()) {
          return absl::InvalidArgumentError(
              absl::StrFormat("schedule '%s': update at step %d: %s", name, u.step(), v.message()));
        }
        last = u.step();
      }
      break;
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrFormat("schedule '%s' needs one of dec, lindec or updates", name));
  }
  return s;
}

std::optional<double> Schedule::Apply(int64_t step, double current) const {
  switch (spec_.kind_case()) {
    case v1::Schedule::kDec:
      if (step > 0 && step % granularity_ == 0) return current * spec_.dec();
      return std::nullopt;
    case v1::Schedule::kLindec: {
      const int64_t n = spec_.lindec().n();
      if (step == n) return 0.0;
      if (step > 0 && step < n && step % granularity_ == 0) {
        return std::max(0.0, current - spec_.lindec().v0() * granularity_ / n);
      }
      return std::nullopt;
    }
    case v1::Schedule::kUpdates:
      for (const auto& u : spec_.updates().updates())
        if (u.step() == step) return u.value();
      return std::nullopt;
    default:
      return std::nullopt;
  }
}

std::string Schedule::Describe() const {
  switch (spec_.kind_case()) {
    case v1::Schedule::kDec:
      return absl::StrFormat("%s: mode=mult, decay-factor=%g, every %d steps", name_, spec_.dec(),
                             granularity_);
    case v1::Schedule::kLindec:
      return absl::StrFormat("%s: mode=lindec, from %g to 0 at step %d, every %d steps", name_,
                             spec_.lindec().v0(), spec_.lindec().n(), granularity_);
    case v1::Schedule::kUpdates:
      return absl::StrFormat("%s: mode=updates, %d fixed steps", name_,
                             spec_.updates().updates_size());
    default:
      return name_;
  }
}

}  // namespace elektronn
