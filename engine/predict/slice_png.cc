// RenderSlicePng: raw | prediction of one z slice as a grey PNG.
#include "engine/predict/slice_png.h"

#include <algorithm>
#include <span>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/core/status.h"
#include "engine/io/png.h"
#include "engine/io/volume_store.h"

namespace elektronn {

absl::StatusOr<SlicePngInfo> RenderSlicePng(const std::string& raw, const std::string& pred,
                                            const std::string& png, const SlicePngOptions& o) {
  ASSIGN_OR_RETURN(auto pred_reader, VolumeReader::Open(pred));
  ASSIGN_OR_RETURN(auto raw_reader, VolumeReader::Open(raw));
  const VolumeShape p = pred_reader->shape(), r = raw_reader->shape();
  if (p.z > r.z || p.x > r.x || p.y > r.y) {
    return absl::InvalidArgumentError(absl::StrCat("prediction '", pred, "' ", p.ToString(),
                                                   " is larger than the raw '", raw, "' ",
                                                   r.ToString(), ": not its prediction?"));
  }
  SlicePngInfo info;
  info.z = o.z < 0 ? p.z / 2 : o.z;
  info.channel = o.channel < 0 ? p.c - 1 : o.channel;
  if (info.z >= p.z) {
    return absl::InvalidArgumentError(
        absl::StrCat("slice z=", info.z, " is outside the prediction's ", p.z, " slices"));
  }
  if (info.channel >= p.c) {
    return absl::InvalidArgumentError(
        absl::StrCat("channel ", info.channel, " is outside the prediction's ", p.c, " channels"));
  }
  // The prediction sits centred in the raw (output voxel i at raw voxel i + offset).
  const int64_t oz = (r.z - p.z) / 2, ox = (r.x - p.x) / 2, oy = (r.y - p.y) / 2;
  const int64_t n = p.x * p.y;
  std::vector<float> prob(p.c * n), grey(r.c * n);
  RETURN_IF_ERROR(pred_reader->Read({info.z, 0, 0, 1, p.x, p.y}, PadMode::kError, prob.data()));
  RETURN_IF_ERROR(
      raw_reader->Read({info.z + oz, ox, oy, 1, p.x, p.y}, PadMode::kError, grey.data()));
  const auto [lo, hi] = std::minmax_element(grey.begin(), grey.begin() + n);
  const std::span<const float> raw_slice(grey.data(), static_cast<size_t>(n));
  const std::span<const float> prob_slice(prob.data() + info.channel * n, static_cast<size_t>(n));
  ASSIGN_OR_RETURN(std::vector<uint8_t> left,
                   FloatToGrey8(raw_slice, *lo, *hi > *lo ? *hi : *lo + 1));
  ASSIGN_OR_RETURN(std::vector<uint8_t> right, FloatToGrey8(prob_slice, 0, 1));
  constexpr int kGap = 4;  // white columns between the two halves
  info.width = static_cast<int>(2 * p.y + kGap);
  info.height = static_cast<int>(p.x);
  std::vector<uint8_t> pixels(static_cast<size_t>(info.width) * info.height, 255);
  for (int64_t i = 0; i < p.x; ++i) {
    uint8_t* row = pixels.data() + i * info.width;
    std::copy_n(left.data() + i * p.y, p.y, row);
    std::copy_n(right.data() + i * p.y, p.y, row + p.y + kGap);
  }
  RETURN_IF_ERROR(WritePngFile(png, pixels.data(), info.width, info.height, 1));
  return info;
}

}  // namespace elektronn
