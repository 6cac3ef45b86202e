// The CNN calculator (ELEKTRONN2's cnncalculator, reference §8.1): valid input (patch) sizes,
// receptive fields, strides and overlaps of a chain of valid convolutions with pooling, per
// spatial axis; and the same question asked of a whole model, answered by the engine's shape
// rules. Pure computation: the client links it (`elektronn calc`), no backend needed.
//
// One deliberate difference from ELEKTRONN2 (its QUIRK, reference §11 item 2): a layer with
// max-fragment-pooling p is valid when its conv output L satisfies L ≡ p−1 (mod p) and L ≥ p,
// the rule the Conv node itself enforces (engine/nodes/shape_rules.h, ConvAxisOut); ELEKTRONN2's
// calculator tested L % p == 1, which agrees only for p = 2 and so offered sizes its own Conv
// node refused for p ≥ 3. A plain pool needs L % p == 0 and L ≥ p (an empty output is invalid).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "elektronn/v1/model.pb.h"

namespace elektronn {

struct CnnCalculatorOptions {
  // One row per layer, one value per spatial axis (all rows the same length, 1 to 3 axes).
  std::vector<std::vector<int64_t>> filters, poolings;
  std::vector<std::vector<bool>> mfp;     // same layout; empty: no layer uses MFP
  std::vector<int64_t> desired;           // per axis; empty: the largest valid size
  bool force_center = false;              // an even field of view is an error, not a warning
  int64_t min_size = 2, max_size = 4999;  // the sizes tried (ELEKTRONN2: range(2, 5000))
};

// One spatial axis of a calculation; per-layer vectors are in layer order (first layer first).
struct CnnAxis {
  std::vector<int64_t> valid_patch_sizes;
  int64_t patch_size = 0;
  std::string change;  // "patch_size (8) changed to (10) (size too small)", or empty
  std::vector<int64_t> fragment_sizes;    // after pooling (per fragment with MFP)
  std::vector<int64_t> unpooled_sizes;    // conv output before pooling
  std::vector<int64_t> receptive_fields;  // of one output neuron of the layer, in input voxels
  std::vector<int64_t> strides;           // product of the poolings up to the layer
  std::vector<int64_t> overlaps;          // receptive field − stride
  int64_t fov = 0;                        // receptive field of the last layer
  double offset = 0;                      // fov / 2; non-integer: output centred on an input voxel
};

struct CnnCalculation {
  std::vector<CnnAxis> axes;
  std::vector<std::string> warnings;  // e.g. an even field of view
};

absl::StatusOr<CnnCalculation> CalculateCnn(const CnnCalculatorOptions& options);

// The command-line form: per-layer lists "3,3,3" (every axis alike, `ndim` axes) or "1x6x6,4x4x4"
// (per axis); desired "100" or "8,211,211"; mfp_layers "1,1,0,0" (per layer) or all layers with
// `mfp`. Errors name the option and the bad value.
struct CnnCalculatorArgs {
  std::string filters, poolings, desired, mfp_layers;
  bool mfp = false, force_center = false;
  int ndim = 0;  // 0: from the lists (1 if every entry is a scalar)
};
absl::StatusOr<CnnCalculatorOptions> ParseCnnCalculatorArgs(const CnnCalculatorArgs& args);

// ELEKTRONN2's report: the patch size, then per layer fragment and unpooled sizes, receptive
// fields, strides and overlaps, then the offset and the valid sizes; or one JSON object.
std::string CnnCalculationText(const CnnCalculation& c);
std::string CnnCalculationJson(const CnnCalculation& c);

// The same questions of a model (`elektronn calc job.lua`): for each spatial axis of its input
// node, the input sizes in [min_size, max_size] for which the whole graph infers (the other
// axes held at the model's sizes), the patch size chosen as above from `desired` (empty: the
// model's own size), and every node's spatial shape, fov, strides and offsets at that size.
struct ModelCalculation {
  struct Axis {
    char tag = 'x';
    int64_t model_size = 0;
    std::vector<int64_t> valid_patch_sizes;
    int64_t patch_size = 0;
    std::string change;
  };
  struct NodeRow {
    std::string name, op;
    std::vector<int64_t> spatial_shape, fov, strides, offsets;
  };
  std::string input_node;
  std::vector<Axis> axes;
  std::vector<NodeRow> nodes;
  std::vector<std::string> warnings;
};
absl::StatusOr<ModelCalculation> CalculateModel(const v1::ModelSpec& spec,
                                                std::vector<int64_t> desired = {},
                                                int64_t min_size = 2, int64_t max_size = 4999);
std::string ModelCalculationText(const ModelCalculation& c);
std::string ModelCalculationJson(const ModelCalculation& c);

}  // namespace elektronn
