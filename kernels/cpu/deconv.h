// Transposed convolution on oneDNN (UpConv family, reference §2.8), channels-last.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/cpu/onednn_util.h"

namespace elektronn::kernels::cpu {

absl::StatusOr<std::unique_ptr<ConvKernel>> CreateDnnlDeconv(DnnlContext* ctx, const DeconvDesc& d);

}  // namespace elektronn::kernels::cpu
