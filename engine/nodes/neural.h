// NeuralNode: what Conv and Perceptron share after their linear op (reference §2.2): the bias
// is added inside the linear op, monotone activations are fused there too; abs and PReLU run as
// a separate pass, then inverted dropout. Also the initialisation rules of reference §1.4.
//
// Batch normalisation (reference §2.4) is a facility of the tail: linear op -> [pool] -> BN ->
// bias -> activation -> dropout. With BN the linear op must add neither the bias nor the
// activation (BN sits between them), so a subclass asks the facility for both. Wiring BN into a
// NeuralNode subclass (UpConv after the merge) takes these lines:
//   constructor:  set_bn_mode(spec.upconv().batch_normalisation());
//   InferShape:   RETURN_IF_ERROR(CheckBatchNorm());
//   Compile:      desc.fused_activation = LinearOpActivation();   // instead of the fused act
//                 (AddParam "w" and "b" as before, then CompileTail, which adds gamma/mean/std)
//   Forward:      kernel->Forward(src, w, LinearOpBias(params_[1].value), lin);
//   Backward:     if (LinearOpFusesActivation()) ...activation backward as before...;
//                 kernel->BackwardWeights(src, d, w.grad, LinearOpBiasGrad(params_[1].grad));
//   param_count:  TrainableCount(... + BatchNormParamCount(n_f))
//   details:      + BatchNormDetails() + FrozenDetails()
// TailForward/TailBackward then normalise, add the bias `b` and activate; the bias parameter must
// be named "b".
#pragma once

#include <random>

#include "engine/nodes/node.h"

namespace elektronn {

std::mt19937_64 NodeRng(uint64_t seed, const std::string& node_name);
// The gradnet_rate field of a Conv, Perceptron or UpConv spec (1 when unset or another op), and
// its setter (no-op for other ops).
float GradnetRateOf(const v1::NodeSpec& spec);
void SetGradnetRate(v1::NodeSpec& spec, float rate);
void InitNormal(std::vector<float>& w, double stddev, std::mt19937_64& rng);
void InitBias(std::vector<float>& b, v1::Activation act, double fov_kernel, std::mt19937_64& rng);

class NeuralNode : public Node {
 public:
  using Node::Node;
  float dropout_rate() const { return dropout_rate_; }
  // Live-settable (schedules, shell); only layers built with dropout have a mask.
  absl::Status set_dropout_rate(float r);
  bool has_dropout() const { return has_dropout_; }
  kernels::Eltwise activation() const override { return ToEltwise(act_); }
  v1::Activation activation_proto() const { return act_; }

  // Batch normalisation (reference §2.4).
  v1::BatchNormMode bn_mode() const { return bn_mode_; }
  bool has_bn() const { return bn_mode_ != v1::BN_OFF; }
  // 'train' and 'fadeout' normalise with the batch's statistics (and train gamma).
  bool bn_uses_batch_statistics() const {
    return bn_mode_ == v1::BN_TRAIN || bn_mode_ == v1::BN_FADEOUT;
  }
  // 'fadeout' (reference §2.4): statistics and gamma faded by the gradnet rate r in [0, 1],
  // mean' = r mean, std' = r std + 1 - r, gamma' = r gamma; r = 1 is 'train', r = 0 leaves
  // act(b). Live-settable (schedules, shell: gradnet_rates) on 'fadeout' layers only.
  bool has_gradnet() const { return bn_mode_ == v1::BN_FADEOUT; }
  float gradnet_rate() const { return gradnet_rate_; }
  absl::Status set_gradnet_rate(float r);
  // ELEKTRONN2's constants: std is the biased batch std plus kBnEps; the running estimates move
  // by (1 - kBnDecay) of the batch's each training step.
  static constexpr float kBnEps = 1e-6f;
  static constexpr float kBnDecay = 0.9995f;

 protected:
  // Whether the linear op should apply the activation itself.
  bool FusesActivation() const;

  // Also takes the gradnet rate from the node's spec.
  void set_bn_mode(v1::BatchNormMode m) {
    bn_mode_ = m;
    gradnet_rate_ = GradnetRateOf(spec_);
  }
  // Rejects unknown modes and a gradnet_rate outside [0, 1], naming the node.
  absl::Status CheckBatchNorm() const;
  // What the linear op fuses: the activation when FusesActivation() and BN is off, else linear.
  kernels::Eltwise LinearOpActivation() const;
  // Whether the node itself must differentiate an activation the linear op applied.
  bool LinearOpFusesActivation() const { return fused_ && !has_bn(); }
  // The bias the linear op adds (and where its gradient goes): `b` without BN; with BN zeros
  // (and a scratch gradient), since the bias then comes after the normalisation.
  const float* LinearOpBias(const float* b) const { return has_bn() ? zero_bias_ : b; }
  float* LinearOpBiasGrad(float* db) const { return has_bn() ? zero_bias_grad_ : db; }
  // gamma (trainable in 'train' and 'fadeout' modes) per feature; mean and std are not trainable.
  int64_t BatchNormParamCount(int64_t n_f) const { return bn_uses_batch_statistics() ? n_f : 0; }
  std::string BatchNormDetails() const;
  // ", frozen" when the compiled layer's parameters are all frozen (lock_trainable_params, the
  // shell's freeze), for summaries.
  std::string FrozenDetails() const;
  // The trainable parameter count for summaries: `formula` before compilation, afterwards the
  // values of the parameters that are trainable now (frozen ones do not count).
  int64_t TrainableCount(int64_t formula) const;
  // `rows` x `channels` is the output of the linear op (after pooling for Conv).
  void CompileTail(ExecContext& ctx, v1::Activation act, float dropout_rate, int64_t rows,
                   int64_t channels, std::mt19937_64& rng);
  // Runs the tail on the linear output `lin`; sets value_.
  void TailForward(ExecContext& ctx, float* lin);
  // From grad() to d(lin); returns a pointer to it (a node-owned buffer).
  float* TailBackward(ExecContext& ctx, float* lin);

  v1::Activation act_ = v1::RELU;
  bool fused_ = false;

 private:
  void CompileBatchNorm(kernels::Backend* b);
  // Normalises `lin` into bn_out_ (adding the bias, activating when fused_); returns bn_out_.
  float* BatchNormForward(ExecContext& ctx, float* lin);

  bool has_dropout_ = false;
  float dropout_rate_ = 0.f;
  int64_t rows_ = 0, channels_ = 0;
  float* act_out_ = nullptr;
  float* d_buf_ = nullptr;
  size_t slope_index_ = 0;
  bool has_slope_ = false;
  // Batch normalisation state (allocated in CompileTail when BN is on).
  v1::BatchNormMode bn_mode_ = v1::BN_OFF;
  float gradnet_rate_ = 1.f;
  size_t bias_index_ = 0, gamma_index_ = 0, mean_index_ = 0, std_index_ = 0;
  float* zero_bias_ = nullptr;
  float* zero_bias_grad_ = nullptr;
  float* bn_out_ = nullptr;
  float* batch_mean_ = nullptr;
  float* batch_std_ = nullptr;
  // 'fadeout': the faded batch statistics and gamma the forward normalises with.
  float* faded_mean_ = nullptr;
  float* faded_std_ = nullptr;
  float* faded_gamma_ = nullptr;
  float* d_lin_ = nullptr;
};

}  // namespace elektronn
