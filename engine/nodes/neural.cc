// Shared tail of Conv and Perceptron: separate activation, PReLU slope, dropout, init rules.
#include "engine/nodes/neural.h"

#include <functional>

#include "absl/strings/str_format.h"

namespace elektronn {

std::mt19937_64 NodeRng(uint64_t seed, const std::string& node_name) {
  return std::mt19937_64(seed ^ std::hash<std::string>{}(node_name));
}

void InitNormal(std::vector<float>& w, double stddev, std::mt19937_64& rng) {
  std::normal_distribution<double> d(0.0, stddev);
  for (float& v : w) v = static_cast<float>(d(rng));
}

void InitBias(std::vector<float>& b, v1::Activation act, double fov_kernel, std::mt19937_64& rng) {
  switch (act) {
    case v1::RELU:
    case v1::ACTIVATION_UNSPECIFIED:
    case v1::PRELU:
      std::fill(b.begin(), b.end(), static_cast<float>(1.0 / fov_kernel));
      return;
    case v1::SIGMOID:
      std::fill(b.begin(), b.end(), 0.5f);
      return;
    default: {
      std::uniform_real_distribution<double> d(-1e-6, 1e-6);
      for (float& v : b) v = static_cast<float>(d(rng));
    }
  }
}

absl::Status NeuralNode::set_dropout_rate(float r) {
  if (!(r >= 0.f && r < 1.f)) {
    return NodeError(*this, absl::StrFormat("dropout rate %g is outside [0, 1)", r));
  }
  if (!has_dropout_ && r != 0.f) {
    return NodeError(*this, "was built without dropout (dropout_rate=0); rebuild it with a rate");
  }
  dropout_rate_ = r;
  return absl::OkStatus();
}

bool NeuralNode::FusesActivation() const {
  return act_ != v1::PRELU && kernels::IsMonotone(ToEltwise(act_));
}

void NeuralNode::CompileTail(ExecContext& ctx, v1::Activation act, float dropout_rate, int64_t rows,
                             int64_t channels, std::mt19937_64& /*rng*/) {
  kernels::Backend* b = ctx.backend;
  act_ = act;
  fused_ = FusesActivation();
  rows_ = rows;
  channels_ = channels;
  numel_ = rows * channels;
  const bool separate = !fused_;
  if (separate) act_out_ = Scratch(b, numel_).data();
  has_dropout_ = dropout_rate != 0.f;
  dropout_rate_ = dropout_rate;
  if (has_dropout_) value_ = Scratch(b, numel_).data();
  if (separate || has_dropout_) d_buf_ = Scratch(b, numel_).data();
  if (act == v1::PRELU) {
    has_slope_ = true;
    slope_index_ = params_.size();
    Parameter& s = AddParam(b, "prelu_slope", {channels}, channels, 1.f);
    std::vector<float> ones(channels, 1.f);  // starts linear, as ELEKTRONN2
    b->Upload(ones.data(), s.value, channels);
  }
}

void NeuralNode::TailForward(ExecContext& ctx, float* lin) {
  kernels::Backend* b = ctx.backend;
  float* cur = lin;
  if (!fused_) {
    if (has_slope_) {
      b->PreluForward(cur, params_[slope_index_].value, act_out_, rows_, channels_);
    } else {
      b->EltwiseForward(ToEltwise(act_), cur, act_out_, numel_);
    }
    cur = act_out_;
  }
  if (has_dropout_) {
    if (ctx.training && dropout_rate_ > 0.f) {
      b->Dropout(cur, value_, numel_, dropout_rate_, ctx.seed ^ std::hash<std::string>{}(name()),
                 ctx.step);
    } else {
      b->Copy(cur, value_, numel_);
    }
  } else {
    value_ = cur;
  }
}

float* NeuralNode::TailBackward(ExecContext& ctx, float* lin) {
  kernels::Backend* b = ctx.backend;
  float* d = grad();
  if (has_dropout_) {
    if (ctx.training && dropout_rate_ > 0.f) {
      b->DropoutBackward(d, d_buf_, numel_, dropout_rate_,
                         ctx.seed ^ std::hash<std::string>{}(name()), ctx.step, false);
    } else {
      b->Copy(d, d_buf_, numel_);
    }
    d = d_buf_;
  }
  if (!fused_) {
    if (has_slope_) {
      Parameter& s = params_[slope_index_];
      b->PreluBackward(lin, s.value, d, d_buf_, s.grad, rows_, channels_, false);
    } else {
      b->EltwiseBackward(ToEltwise(act_), lin, act_out_, d, d_buf_, numel_, false);
    }
    d = d_buf_;
  }
  return d;
}

}  // namespace elektronn
