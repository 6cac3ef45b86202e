// NeuralNode: what Conv and Perceptron share after their linear op (reference §2.2): the bias
// is added inside the linear op, monotone activations are fused there too; abs and PReLU run as
// a separate pass, then inverted dropout. Also the initialisation rules of reference §1.4.
#pragma once

#include <random>

#include "engine/nodes/node.h"

namespace elektronn {

std::mt19937_64 NodeRng(uint64_t seed, const std::string& node_name);
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

 protected:
  // Whether the linear op should apply the activation itself.
  bool FusesActivation() const;
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
  bool has_dropout_ = false;
  float dropout_rate_ = 0.f;
  int64_t rows_ = 0, channels_ = 0;
  float* act_out_ = nullptr;
  float* d_buf_ = nullptr;
  size_t slope_index_ = 0;
  bool has_slope_ = false;
};

}  // namespace elektronn
