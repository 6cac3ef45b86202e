// The data keys of a job file (data_init_kwargs, data_batch_args and their sub-tables) ->
// TrainingSpec; the rest of the keys are in training_keys.cc.
#pragma once

#include "absl/status/status.h"
#include "elektronn/v1/training.pb.h"
#include "engine/lua/internal/key_reader.h"

namespace elektronn::lua {

// data_init_kwargs for the spec's data_class (set before: the keys depend on it).
absl::Status ReadDataInitKwargs(const KeyReader& r, v1::TrainingSpec* spec);
// data_batch_args: warping, blobs, flips, greyvalue augmentation, ...
absl::Status ReadDataBatchArgs(const KeyReader& r, v1::TrainingSpec* spec);

}  // namespace elektronn::lua
