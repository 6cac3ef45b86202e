// ModelBuilder: builds a ModelSpec in code with ELEKTRONN2's functional node API (tests,
// benchmarks, the model loader). AppendNode is the one way a node joins a ModelSpec: the Lua
// recorder of job files (engine/lua/nm_functions.cc) and ModelBuilder both go through it.
#pragma once

#include <string>
#include <vector>

#include "elektronn/v1/model.pb.h"

namespace elektronn {

// Appends `node` to `spec` under its name, made unique ELEKTRONN2's way when taken (conv, conv1,
// conv2, ...); returns the name it got.
std::string AppendNode(v1::ModelSpec* spec, v1::NodeSpec node);

class ModelBuilder {
 public:
  explicit ModelBuilder(std::string model_name = "model", uint64_t seed = 1);

  // Each call appends a node and returns its name. An empty `name` picks ELEKTRONN2's default
  // name with a numeric suffix when taken (conv, conv1, conv2, ...).
  std::string Input(std::vector<int64_t> shape, const std::string& tags,
                    const std::string& name = "input");
  std::string InputLike(const std::string& ref, int64_t override_f = 0,
                        const std::string& name = "input");
  std::string Conv(const std::string& parent, int64_t n_f, std::vector<int64_t> filter,
                   std::vector<int64_t> pool = {}, v1::Activation act = v1::RELU,
                   v1::ConvMode mode = v1::VALID, float dropout = 0, bool mfp = false,
                   const std::string& name = "");
  std::string Pool(const std::string& parent, std::vector<int64_t> pool,
                   std::vector<int64_t> stride = {}, v1::PoolMode mode = v1::MAX,
                   const std::string& name = "");
  std::string Perceptron(const std::string& parent, int64_t n_f, v1::Activation act = v1::RELU,
                         bool flatten = false, float dropout = 0, const std::string& name = "");
  std::string Activation(const std::string& parent, v1::Activation act,
                         const std::string& name = "");
  std::string Softmax(const std::string& parent, int64_t n_class = 0, int64_t n_indep = 0,
                      const std::string& name = "");
  std::string Concat(const std::vector<std::string>& parents, const std::string& axis = "f",
                     const std::string& name = "");
  std::string Crop(const std::string& parent, std::vector<int64_t> crop,
                   const std::string& name = "");
  std::string Add(const std::string& a, const std::string& b, const std::string& name = "");
  std::string MultinoulliNLL(const std::string& pred, const std::string& target,
                             bool target_is_sparse = true, std::vector<float> class_weights = {},
                             const std::string& name = "");
  std::string AggregateLoss(const std::vector<std::string>& losses,
                            std::vector<float> mixing_weights = {}, const std::string& name = "");
  std::string Errors(const std::string& pred, const std::string& target,
                     bool target_is_sparse = true, const std::string& name = "");
  // UpConv family: transposed convolution (reference §2.8); identity_init as ELEKTRONN2's.
  std::string UpConv(const std::string& parent, int64_t n_f, std::vector<int64_t> pool,
                     v1::Activation act = v1::RELU, bool identity_init = true, float dropout = 0,
                     const std::string& name = "");

  void Designate(const std::string& input, const std::string& target, const std::string& loss,
                 const std::string& prediction, std::vector<std::string> prediction_ext = {},
                 const std::string& errors = "");
  const v1::ModelSpec& spec() const { return spec_; }

 private:
  v1::NodeSpec* NewNode(const std::string& default_name, const std::string& name,
                        std::vector<std::string> inputs);
  v1::ModelSpec spec_;
};

// The neuro3d network of reference §9.1 (or neuro3d_lite, §9.2) at a given input size.
v1::ModelSpec Neuro3dSpec(std::vector<int64_t> input_zxy = {23, 185, 185}, bool lite = false);

}  // namespace elektronn
