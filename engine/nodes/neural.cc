// Shared tail of Conv and Perceptron: separate activation, PReLU slope, dropout, init rules.
#include "engine/nodes/neural.h"

#include <functional>

#include "absl/strings/str_format.h"

namespace elektronn {

std::mt19937_64 NodeRng(uint64_t seed, const std::string& node_name) {
  return std::mt19937_64(seed ^ std::hash<std::string>{}(node_name));
}

float GradnetRateOf(const v1::NodeSpec& spec) {
  if (spec.has_conv() && spec.conv().has_gradnet_rate()) return spec.conv().gradnet_rate();
  if (spec.has_perceptron() && spec.perceptron().has_gradnet_rate()) {
    return spec.perceptron().gradnet_rate();
  }
  if (spec.has_upconv() && spec.upconv().has_gradnet_rate()) return spec.upconv().gradnet_rate();
  return 1.f;
}

void SetGradnetRate(v1::NodeSpec& spec, float rate) {
  if (spec.has_conv()) spec.mutable_conv()->set_gradnet_rate(rate);
  if (spec.has_perceptron()) spec.mutable_perceptron()->set_gradnet_rate(rate);
  if (spec.has_upconv()) spec.mutable_upconv()->set_gradnet_rate(rate);
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

absl::Status NeuralNode::set_gradnet_rate(float r) {
  if (!(r >= 0.f && r <= 1.f)) {
    return NodeError(*this, absl::StrFormat("gradnet rate %g is outside [0, 1]", r));
  }
  if (!has_gradnet()) {
    return NodeError(*this, "has no gradnet rate (only batch_normalisation='fadeout' layers do)");
  }
  gradnet_rate_ = r;
  return absl::OkStatus();
}

absl::Status NeuralNode::CheckBatchNorm() const {
  switch (bn_mode_) {
    case v1::BN_OFF:
    case v1::BN_TRAIN:
    case v1::BN_PREDICT:
      return absl::OkStatus();
    case v1::BN_FADEOUT:
      // QUIRK: ELEKTRONN2 registers gradnet_rate only when passed to _setup_params, which Conv,
      // Perceptron and UpConv never do, so 'fadeout' fails there (None * mean). Here the rate
      // is a per-layer hyper-parameter, 1 (= 'train') unless set.
      if (!(gradnet_rate_ >= 0.f && gradnet_rate_ <= 1.f)) {
        return NodeError(*this,
                         absl::StrFormat("gradnet_rate=%g is outside [0, 1]", gradnet_rate_));
      }
      return absl::OkStatus();
    default:
      return NodeError(*this, absl::StrFormat("unknown batch_normalisation mode %d",
                                              static_cast<int>(bn_mode_)));
  }
}

kernels::Eltwise NeuralNode::LinearOpActivation() const {
  return FusesActivation() && !has_bn() ? ToEltwise(act_) : kernels::Eltwise::kLinear;
}

std::string NeuralNode::BatchNormDetails() const {
  switch (bn_mode_) {
    case v1::BN_TRAIN:
      return ", BN='train'";
    case v1::BN_PREDICT:
      return ", BN='predict'";
    case v1::BN_FADEOUT:
      return absl::StrFormat(", BN='fadeout' (gradnet_rate=%g)", gradnet_rate_);
    default:
      return "";
  }
}

std::string NeuralNode::FrozenDetails() const {
  bool any = false;
  for (const Parameter& p : params_) {
    if (p.fixed) continue;
    if (p.trainable) return "";
    any = true;
  }
  return any ? ", frozen" : "";
}

int64_t NeuralNode::TrainableCount(int64_t formula) const {
  if (params_.empty()) return formula;
  int64_t n = 0;
  for (const Parameter& p : params_) n += p.trainable ? p.canonical_size() : 0;
  return n;
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
  if (has_bn()) CompileBatchNorm(b);
}

// BN after the linear op (reference §2.4): the linear op adds a zero bias, the BN kernel adds
// `b` and, for monotone activations, applies the activation in the same pass. gamma starts at
// 1, mean at 0, std at 1 (reference §1.4).
void NeuralNode::CompileBatchNorm(kernels::Backend* b) {
  for (size_t i = 0; i < params_.size(); ++i) {
    if (params_[i].name == "b") bias_index_ = i;
  }
  zero_bias_ = Scratch(b, channels_).data();
  b->Fill(zero_bias_, 0.f, channels_);
  zero_bias_grad_ = Scratch(b, channels_).data();
  bn_out_ = Scratch(b, numel_).data();
  batch_mean_ = Scratch(b, channels_).data();
  batch_std_ = Scratch(b, channels_).data();
  d_lin_ = Scratch(b, numel_).data();
  if (has_gradnet()) {
    faded_mean_ = Scratch(b, channels_).data();
    faded_std_ = Scratch(b, channels_).data();
    faded_gamma_ = Scratch(b, channels_).data();
  }
  if (d_buf_ == nullptr) d_buf_ = Scratch(b, numel_).data();
  // QUIRK 11: ELEKTRONN2 gives gamma apply_reg=3.0 (three times the weight decay of w). We
  // regularise it like every other weight (multiplier 1): nothing in the reference motivates
  // pulling the scale towards 0 three times harder.
  gamma_index_ = params_.size();
  Parameter& gamma = AddParam(b, "gamma", {channels_}, channels_, 1.f);
  b->Fill(gamma.value, 1.f, channels_);
  // In 'predict' mode gamma is not trainable (reference §2.4).
  gamma.trainable = bn_uses_batch_statistics();
  gamma.fixed = !gamma.trainable;
  mean_index_ = params_.size();
  Parameter& mean = AddParam(b, "mean", {channels_}, channels_, 0.f);
  mean.trainable = false;
  mean.fixed = true;
  std_index_ = params_.size();
  Parameter& std = AddParam(b, "std", {channels_}, channels_, 0.f);
  b->Fill(std.value, 1.f, channels_);
  std.trainable = false;
  std.fixed = true;
}

float* NeuralNode::BatchNormForward(ExecContext& ctx, float* lin) {
  kernels::Backend* b = ctx.backend;
  const float* mean = params_[mean_index_].value;
  const float* std = params_[std_index_].value;
  const float* gamma = params_[gamma_index_].value;
  if (bn_uses_batch_statistics()) {
    // Batch statistics in every forward while in 'train' mode, as ELEKTRONN2's one graph does
    // (evaluation and monitoring included); the running estimates follow training steps only.
    b->BatchNormStatistics(lin, batch_mean_, batch_std_, rows_, channels_, kBnEps);
    mean = batch_mean_;
    std = batch_std_;
    if (has_gradnet()) {
      // 'fadeout': the running estimates follow the faded statistics, as in ELEKTRONN2.
      b->BatchNormFade(batch_mean_, batch_std_, gamma, gradnet_rate_, faded_mean_, faded_std_,
                       faded_gamma_, channels_);
      mean = faded_mean_;
      std = faded_std_;
      gamma = faded_gamma_;
    }
    if (ctx.training) {
      b->BatchNormUpdateRunning(mean, std, params_[mean_index_].value, params_[std_index_].value,
                                channels_, kBnDecay);
    }
  }
  b->BatchNormForward(lin, mean, std, gamma, params_[bias_index_].value, bn_out_, rows_, channels_,
                      fused_ ? ToEltwise(act_) : kernels::Eltwise::kLinear);
  return bn_out_;
}

void NeuralNode::TailForward(ExecContext& ctx, float* lin) {
  kernels::Backend* b = ctx.backend;
  float* cur = has_bn() ? BatchNormForward(ctx, lin) : lin;
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
  float* act_in = has_bn() ? bn_out_ : lin;
  if (!fused_) {
    if (has_slope_) {
      Parameter& s = params_[slope_index_];
      b->PreluBackward(act_in, s.value, d, d_buf_, s.grad, rows_, channels_, false);
    } else {
      b->EltwiseBackward(ToEltwise(act_), act_in, act_out_, d, d_buf_, numel_, false);
    }
    d = d_buf_;
  }
  if (!has_bn()) return d;
  if (fused_ && act_ != v1::LIN) {  // the activation the BN kernel applied
    b->EltwiseBackward(ToEltwise(act_), nullptr, bn_out_, d, d_lin_, numel_, false);
    d = d_lin_;
  }
  const bool batch = bn_uses_batch_statistics();
  Parameter& gamma = params_[gamma_index_];
  // 'fadeout' differentiates through the fade: the kernel gets the unfaded statistics and gamma.
  b->BatchNormBackward(lin, batch ? batch_mean_ : params_[mean_index_].value,
                       batch ? batch_std_ : params_[std_index_].value, gamma.value, d, d_lin_,
                       gamma.grad, params_[bias_index_].grad, rows_, channels_, kBnEps, batch,
                       has_gradnet() ? gradnet_rate_ : 1.f, false);
  return d_lin_;
}

}  // namespace elektronn
