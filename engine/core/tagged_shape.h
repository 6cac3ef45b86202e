// TaggedShape: sizes plus axis tags, strides, field of view and MFP offsets (reference §1.1).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace elektronn {

inline constexpr int64_t kUnknownSize = -1;  // ELEKTRONN2's None

class TaggedShape {
 public:
  TaggedShape() = default;

  // `tags` is a comma-separated list ("b,f,z,x,y") or one letter per axis ("bfzxy").
  // Empty strides/fov default to 1 per spatial axis.
  static absl::StatusOr<TaggedShape> Create(std::vector<int64_t> sizes, std::string_view tags,
                                            std::vector<int64_t> strides = {},
                                            std::vector<int64_t> fov = {});

  int rank() const { return static_cast<int>(sizes_.size()); }
  const std::vector<int64_t>& sizes() const { return sizes_; }
  int64_t size(int axis) const { return sizes_[axis]; }
  const std::string& tags() const { return tags_; }  // one char per axis
  std::string tags_string() const;                   // "b,f,z,x,y"

  int TagIndex(char tag) const;  // -1 if absent
  bool HasTag(char tag) const { return TagIndex(tag) >= 0; }
  int64_t SizeOf(char tag) const;  // kUnknownSize if absent or unknown

  // Spatial axes (z, x, y present), sorted by position in the tensor.
  const std::vector<int>& spatial_axes() const { return spatial_axes_; }
  int ndim() const { return static_cast<int>(spatial_axes_.size()); }
  std::vector<int64_t> spatial_shape() const;

  const std::vector<int64_t>& strides() const { return strides_; }
  const std::vector<int64_t>& fov() const { return fov_; }
  // fov // 2 with floor division (so -1 stays -1).
  std::vector<int64_t> offsets() const;
  const std::vector<std::vector<int64_t>>& mfp_offsets() const { return mfp_offsets_; }
  bool fov_all_centered() const;

  // Product of known sizes; product of all non-batch sizes (flatten size).
  int64_t stripnone_prod() const;
  int64_t stripbatch_prod() const;
  bool fully_known() const;

  // Mutators used by shape rules.
  void set_size(int axis, int64_t size) { sizes_[axis] = size; }
  void set_spatial_size(int spatial_idx, int64_t size) {
    sizes_[spatial_axes_[spatial_idx]] = size;
  }
  void set_fov(int spatial_idx, int64_t v) { fov_[spatial_idx] = v; }
  void set_stride(int spatial_idx, int64_t v) { strides_[spatial_idx] = v; }
  void set_mfp_offsets(std::vector<std::vector<int64_t>> o) { mfp_offsets_ = std::move(o); }
  // Replaces the batch size with `batch` where it is unknown.
  TaggedShape WithBatch(int64_t batch) const;

  // "(10,b), (32,f), (23,z)"-style listing, with None for unknown sizes.
  std::string ToString() const;
  // "fov=[..], offsets=[..], strides=[..], spatial shape=[..]" (ELEKTRONN2's ext_repr).
  std::string ExtRepr() const;

  friend bool operator==(const TaggedShape&, const TaggedShape&) = default;

 private:
  void UpdateSpatialAxes();

  std::vector<int64_t> sizes_;
  std::string tags_;
  std::vector<int> spatial_axes_;
  std::vector<int64_t> strides_;
  std::vector<int64_t> fov_;
  std::vector<std::vector<int64_t>> mfp_offsets_;
};

}  // namespace elektronn
