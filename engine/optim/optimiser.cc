// Optimiser state and per-step dispatch to the backend's update kernels.
#include "engine/optim/optimiser.h"

#include "absl/strings/str_format.h"

namespace elektronn {

absl::StatusOr<OptimiserKind> ParseOptimiser(const std::string& name) {
  if (name == "SGD") return OptimiserKind::kSgd;
  if (name == "Adam") return OptimiserKind::kAdam;
  if (name == "AdaGrad") return OptimiserKind::kAdaGrad;
  if (name == "AdaDelta") return OptimiserKind::kAdaDelta;
  return absl::InvalidArgumentError(
      absl::StrFormat("unknown optimiser '%s'; choose one of SGD, Adam, AdaGrad, AdaDelta", name));
}

const char* OptimiserName(OptimiserKind k) {
  switch (k) {
    case OptimiserKind::kSgd:
      return "SGD";
    case OptimiserKind::kAdam:
      return "Adam";
    case OptimiserKind::kAdaGrad:
      return "AdaGrad";
    case OptimiserKind::kAdaDelta:
      return "AdaDelta";
  }
  return "?";
}

Optimiser::Optimiser(OptimiserKind kind, kernels::Backend* backend, std::vector<Parameter*> params)
    : kind_(kind), backend_(backend), params_(std::move(params)) {
  const size_t n_slots = SlotNames().size();
  for (Parameter* p : params_) {
    std::vector<float*> s;
    for (size_t i = 0; i < n_slots; ++i) {
      float* buf = backend_->Allocate(p->size);
      backend_->Fill(buf, 0.f, p->size);
      s.push_back(buf);
    }
    slots_.push_back(std::move(s));
  }
}

Optimiser::~Optimiser() {
  for (auto& s : slots_)
    for (float* b : s) backend_->Free(b);
}

std::vector<std::string> Optimiser::SlotNames() const {
  switch (kind_) {
    case OptimiserKind::kSgd:
      return {"v"};
    case OptimiserKind::kAdam:
      return {"m", "s"};
    case OptimiserKind::kAdaGrad:
      return {"h"};
    case OptimiserKind::kAdaDelta:
      return {"s", "d"};
  }
  return {};
}

float* Optimiser::Slot(size_t param_index, size_t slot) const { return slots_[param_index][slot]; }

void Optimiser::Step() {
  ++t_;
  for (size_t i = 0; i < params_.size(); ++i) {
    Parameter* p = params_[i];
    if (!p->trainable) continue;
    kernels::Backend::OptimiserStep s;
    s.lr = hyper_.lr;
    s.mom = hyper_.mom;
    s.wd = hyper_.wd;
    s.beta2 = hyper_.beta2;
    s.wd_multiplier = p->reg_multiplier;
    s.t = t_;
    switch (kind_) {
      case OptimiserKind::kSgd:
        backend_->SgdUpdate(s, p->grad, p->value, slots_[i][0], p->size);
        break;
      case OptimiserKind::kAdam:
        backend_->AdamUpdate(s, p->grad, p->value, slots_[i][0], slots_[i][1], p->size);
        break;
      case OptimiserKind::kAdaGrad:
        backend_->AdaGradUpdate(s, p->grad, p->value, slots_[i][0], t_ == 1, p->size);
        break;
      case OptimiserKind::kAdaDelta:
        backend_->AdaDeltaUpdate(s, p->grad, p->value, slots_[i][0], slots_[i][1], p->size);
        break;
    }
  }
}

}  // namespace elektronn
