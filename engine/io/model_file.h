// Model files: a network's spec, parameters and optimiser state in one HDF5 file.
//
// Layout (plain arrays, readable with h5py):
//   /                          attribute `format` = "elektronn-model-1" (variable-length string)
//   /spec                      uint8 (n,): the serialised v1::ModelSpec
//   /params/<node>/<param>     float32, the parameter's canonical shape; attribute
//                              `trainable` (uint8 0) on constant (frozen) parameters only
//   /optimiser                 optional group; attributes `kind` (string, e.g. "Adam"),
//                              `t` (int64), `lr`, `mom`, `wd`, `beta2` (float32),
//                              `step` (uint64, the network's step counter)
//   /optimiser/<node>/<param>/<slot>
//                              float32, the optimiser state in the parameter's canonical shape
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "elektronn/v1/model.pb.h"
#include "engine/graph/network.h"
#include "engine/optim/optimiser.h"

namespace elektronn {

inline constexpr char kModelFileFormat[] = "elektronn-model-1";

// Saves the model (spec, parameters) and, when `opt` is given, the optimiser state and the
// network's step counter. Atomic: writes `<path>.tmp-<pid>` in the same directory, flushes and
// fsyncs it, renames it over `path` and fsyncs the directory, so a crash leaves either the old
// file or the new one. `net` is non-const only because Network has no const params()/graph().
absl::Status SaveModel(const std::string& path, Network& net, const Optimiser* opt);

// What a model file holds, read back. Parameters and slots are in canonical layout.
struct ModelFileContents {
  std::string path;  // where it was read from, for error messages
  v1::ModelSpec spec;
  std::map<std::string, std::vector<float>> params;          // key "node/param"
  std::map<std::string, std::vector<int64_t>> param_shapes;  // key "node/param"
  std::set<std::string> constant_params;  // keys "node/param" of frozen parameters
  bool has_optimiser = false;
  std::string optimiser;  // OptimiserName() of the saved optimiser, e.g. "Adam"
  int64_t t = 0;
  HyperParams hyper;
  uint64_t step = 0;
  std::map<std::string, std::vector<float>> slots;  // key "node/param/slot"
  std::map<std::string, std::vector<int64_t>> slot_shapes;
};

// Reads a whole model file. A missing file is NotFound; a file that is not HDF5, or not a model
// file of this format, is InvalidArgument; every error names the path and the dataset.
absl::StatusOr<ModelFileContents> ReadModelFile(const std::string& path);

// Restores parameter values, and which are constant, into a compiled network whose parameters match
// the file's (same spec, possibly compiled for another input size). When `opt` is given and the
// file has optimiser state, also restores the optimiser's slots, t and hyper-parameters, and the
// network's step. Everything is checked before anything is written, so on error `net` and
// `opt` are unchanged; errors name the missing or mismatching dataset.
absl::Status LoadInto(const ModelFileContents& f, Network& net, Optimiser* opt);

}  // namespace elektronn
