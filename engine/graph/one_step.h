// The one-step model of a recurrent model (ELEKTRONN2's rebuild_rnn, reference §2.10): the Scan
// replaced by its step graph, whose placeholders become the model's inputs.
#pragma once

#include "absl/status/statusor.h"
#include "elektronn/v1/model.pb.h"

namespace elektronn {

// Turns a model with one Scan node into the model of a single step:
//  - each iterated input's placeholder (in_iterate_0) and each memory (in_memory) becomes an
//    Input node of the step shape, under the placeholder's name, replacing any outer node of
//    that name (e.g. the InitialState_like that gave the initial memory);
//  - the step nodes take the Scan's place, and nodes that read the Scan read its step_result;
//  - outer nodes no longer needed (the sequence input) are dropped; the designated input
//    becomes the first iterated placeholder when the old one was dropped.
// Running it with the step-t slice and the out_memory values of step t-1 fed back as the
// memories reproduces the Scan's step t; parameter keys ("gru/w") are unchanged, so the
// parameters of the recurrent model load into it.
absl::StatusOr<v1::ModelSpec> OneStepModel(const v1::ModelSpec& spec);

}  // namespace elektronn
