// Restoring a saved model with modifications (ELEKTRONN2's `modelload`, reference §3.4): a new
// patch or batch size, max-fragment-pooling for dense prediction, frozen or constant weights.
//
// The options rewrite the stored ModelSpec (RewriteSpec), the rewritten spec is compiled into a
// Network, and the stored parameter values are set into it (LoadModel). Every change the options
// make that the user did not spell out exactly (a snapped patch size, a batch forced to 1) is
// reported in LoadedModel::notes, one sentence each.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "elektronn/v1/model.pb.h"
#include "engine/graph/network.h"
#include "engine/io/model_file.h"
#include "kernels/backend.h"

namespace elektronn {

// ELEKTRONN2's replace_bn (reference §3.4) for every layer with batch normalisation: switched
// off entirely (its gamma/mean/std in the file are dropped), or to 'predict' with the stored
// running statistics. 'const' is 'predict' whose gamma, mean and std are constant: in this engine
// 'predict' already takes them as constants (gamma is not trainable in 'predict', mean and std
// never are), so both give the same network; 'const' also marks them constant in saved files.
enum class ReplaceBn { kKeep, kRemove, kPredict, kConst };
// "remove" | "predict" | "const" (and "" for kKeep); errors name `field` and the value.
absl::StatusOr<ReplaceBn> ParseReplaceBn(const std::string& field, const std::string& value);

// Name of the FragmentsToDense node that override_mfp_to_active inserts (with a numeric suffix
// if the model already has a node of that name).
inline constexpr char kToDenseNodeName[] = "to_dense";

struct LoadOptions {
  // Spatial sizes of the designated input node, in its tag order (e.g. z,x,y); empty keeps the
  // stored ones. A size the network cannot take is snapped down to the nearest valid size.
  std::vector<int64_t> imposed_patch_size;
  // Batch size of the designated input node; 0 keeps the stored one.
  int64_t imposed_batch_size = 0;
  // Every Conv runs max-fragment-pooling and a FragmentsToDense node (kToDenseNodeName) is
  // inserted before the prediction node, which then outputs the dense (stride-1) prediction.
  // Needs batch 1, which is imposed (with a note) when the stored batch differs.
  bool override_mfp_to_active = false;
  // Every parameter becomes constant (not updated by optimisers); for inference.
  bool make_weights_constant = false;
  // ELEKTRONN2's lock_trainable_params: the parameters of the first `lock_first_n` nodes that
  // have parameters, and of the nodes named in `lock_nodes`, become constant.
  int lock_first_n = 0;
  std::vector<std::string> lock_nodes;
  // Parameters the file stores as constant become trainable again.
  bool unlock_all_params = false;
  // Batch-normalisation modes (ELEKTRONN2's replace_bn): see ReplaceBn.
  ReplaceBn replace_bn = ReplaceBn::kKeep;

  // Seed, input gradients and the batch size used where the (rewritten) batch is unknown.
  NetworkOptions network;
};

struct LoadedModel {
  std::unique_ptr<Network> net;
  v1::ModelSpec spec;              // the rewritten spec the network was built from
  std::vector<std::string> notes;  // what the options changed, for the user's log
};

// The stored spec with the options applied (everything but trainability, which is not part of
// the spec). `path` only names the file in errors. Notes are appended to `notes`.
absl::StatusOr<v1::ModelSpec> RewriteSpec(const v1::ModelSpec& stored, const LoadOptions& o,
                                          const std::string& path, std::vector<std::string>* notes);

// Reads the model file at `path`, rewrites its spec, compiles it for `backend` and restores the
// parameter values. Errors name the file and, where one is at fault, the node.
absl::StatusOr<LoadedModel> LoadModel(const std::string& path, const LoadOptions& o,
                                      kernels::Backend* backend);
// The same from a file already read.
absl::StatusOr<LoadedModel> LoadModel(const ModelFileContents& f, const LoadOptions& o,
                                      kernels::Backend* backend);

// Sets every layer with batch normalisation to the mode `r` asks for; returns how many changed.
int ReplaceBatchNorm(v1::ModelSpec& spec, ReplaceBn r);

// The trainer's conversion after training (reference §2.4): a network like `net` whose layers
// with BN in 'train' or 'fadeout' mode run in 'predict' mode on the running statistics
// (replace_bn='const'), with all parameter values copied over. Null when `net` has no such layer.
absl::StatusOr<std::unique_ptr<Network>> ConvertBatchNormToConstants(Network& net);

}  // namespace elektronn
