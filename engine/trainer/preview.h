// Preview predictions during training (reference §5.6): the central block of each preview cube
// is predicted densely (one forward pass per stride shift, ELEKTRONN2's predict_dense for one
// tile) with the current parameters, and slices of the raw data and of the exported classes are
// written as PNG files (and as TensorBoard images).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "elektronn/v1/training.pb.h"
#include "engine/data/volume.h"
#include "engine/graph/network.h"

namespace elektronn {

class EventWriter;

class PreviewPredictor {
 public:
  // Loads the preview cubes (every dataset of the file, or `key`) and compiles a batch-1 copy of
  // the model. Errors name the file and what does not fit.
  static absl::StatusOr<std::unique_ptr<PreviewPredictor>> Create(const v1::ModelSpec& model,
                                                                  kernels::Backend* backend,
                                                                  const std::string& file,
                                                                  const std::string& key,
                                                                  const v1::PreviewKwargs& kwargs);

  // Copies the parameters of `trained`, predicts, writes
  // <dir>/<name>-pred-<cube>-z<z>-c<class>-<hours>hrs.png (and the raw slices once).
  absl::Status Run(Network& trained, const std::string& dir, const std::string& name, double hours,
                   int64_t step, EventWriter* events);

 private:
  std::unique_ptr<Network> net_;
  std::vector<Volume> cubes_;
  std::vector<int64_t> export_class_;
  int64_t max_z_pred_ = 5;
  std::string input_, prediction_;
  bool raw_written_ = false;
};

}  // namespace elektronn
