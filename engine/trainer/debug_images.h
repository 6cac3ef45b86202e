// Pictures the shell asks for (reference §5.3, §6): the debug batch `Batch_test_image.png` and a
// node's filters `filters_<node>.png`. RGB PNGs, each panel scaled to its own value range.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/core/tagged_shape.h"

namespace elektronn {

// The first example of a batch, middle z slice (2-D nets: the image): input channel 0, target
// channel 0 placed where its voxels sit on the input (the target's offsets and strides; grey
// where it has none), and the target over the input in red; side by side. A target without
// spatial axes (img-scalar) gives the input panel only.
absl::Status WriteBatchImage(const std::string& path, const TaggedShape& input_shape,
                             std::span<const float> input, const TaggedShape& target_shape,
                             std::span<const float> target);

// A convolution's filters `w` (canonical layout: out, in, [z,] x, y) as tiles in a grid: for each
// output channel the middle z slice of input channel 0, enlarged to at least 16 pixels.
// InvalidArgument for a parameter of fewer than 4 axes (not convolution filters).
absl::Status WriteFilterImage(const std::string& path, const std::vector<int64_t>& shape,
                              std::span<const float> w);

}  // namespace elektronn
