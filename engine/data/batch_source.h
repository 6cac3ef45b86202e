// BatchSource: where training examples come from (ELEKTRONN2's data classes, reference §7.1).
// The trainer asks for batches shaped like the model's input and target nodes; BatchQueue runs
// several sources' GetBatch calls on background threads so that training never waits.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "elektronn/v1/training.pb.h"
#include "engine/core/tagged_shape.h"

namespace elektronn {

enum class Split { kTrain, kValid };

// Geometry of a batch, from the compiled network's input and target nodes (concrete shapes,
// batch axis = batch size). Buffers are in the nodes' logical layout (tag order).
struct BatchGeometry {
  TaggedShape input;
  TaggedShape target;  // its fov/strides/offsets give where labels sit relative to the input
  // Further model inputs a source fills besides input and target, by node name (e.g. the
  // lazy-label masks "mask_class_labeled" / "mask_class_not_present" of ret_ll_mask).
  struct Extra {
    std::string name;
    TaggedShape shape;
  };
  std::vector<Extra> extras;
};

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  // Fills `input` and `target` (sizes of geometry().input/target) with one batch.
  // Must be safe to call from several threads at once, each with its own `rng`.
  virtual absl::Status GetBatch(Split split, std::mt19937_64& rng, float* input,
                                float* target) const = 0;
  // As above, also filling geometry().extras[i] into extras[i] (sizes of those shapes).
  // Sources without extra inputs need not override it.
  virtual absl::Status GetBatch(Split split, std::mt19937_64& rng, float* input, float* target,
                                float* const* extras) const {
    (void)extras;
    return GetBatch(split, rng, input, target);
  }
  virtual bool has_validation() const = 0;
  virtual const BatchGeometry& geometry() const = 0;
  // One line for the log: "2-target data set with 1 input channel: 2 train cubes, 1 valid cube,
  // ...".
  virtual std::string Describe() const = 0;
};

}  // namespace elektronn
