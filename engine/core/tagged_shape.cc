// TaggedShape bookkeeping, exactly as ELEKTRONN2's graphutils.TaggedShape.
#include "engine/core/tagged_shape.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace elektronn {
namespace {

constexpr std::string_view kAllowedTags = "rbfzxys";

int64_t FloorDiv2(int64_t v) { return v >= 0 ? v / 2 : -((-v + 1) / 2); }

std::string SizeString(int64_t s) { return s == kUnknownSize ? "None" : absl::StrCat(s); }

}  // namespace

absl::StatusOr<TaggedShape> TaggedShape::Create(std::vector<int64_t> sizes, std::string_view tags,
                                                std::vector<int64_t> strides,
                                                std::vector<int64_t> fov) {
  TaggedShape s;
  for (char c : tags) {
    if (c == ',' || c == ' ') continue;
    if (kAllowedTags.find(c) == std::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrFormat("unknown tag '%c' in \"%s\"; allowed tags are r,b,f,z,x,y,s", c, tags));
    }
    if (s.tags_.find(c) != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrFormat("tag '%c' appears twice in \"%s\"", c, tags));
    }
    s.tags_.push_back(c);
  }
  if (s.tags_.size() != sizes.size()) {
    return absl::InvalidArgumentError(absl::StrFormat("shape has %d axes but tags \"%s\" name %d",
                                                      sizes.size(), tags, s.tags_.size()));
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (sizes[i] < 0 && sizes[i] != kUnknownSize) {
      return absl::InvalidArgumentError(
          absl::StrFormat("size %d of axis '%c' is negative", sizes[i], s.tags_[i]));
    }
    if (sizes[i] == kUnknownSize && s.tags_[i] != 'b') {
      return absl::InvalidArgumentError(absl::StrFormat(
          "only the batch axis may have an unknown size (None), not axis '%c'", s.tags_[i]));
    }
  }
  s.sizes_ = std::move(sizes);
  s.UpdateSpatialAxes();
  const size_t nd = s.spatial_axes_.size();
  if (strides.empty()) strides.assign(nd, 1);
  if (fov.empty()) fov.assign(nd, 1);
  if (strides.size() != nd || fov.size() != nd) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "strides (%d values) and fov (%d values) need one value per spatial axis (%d)",
        strides.size(), fov.size(), nd));
  }
  s.strides_ = std::move(strides);
  s.fov_ = std::move(fov);
  s.mfp_offsets_ = {std::vector<int64_t>(nd, 0)};
  return s;
}

void TaggedShape::UpdateSpatialAxes() {
  spatial_axes_.clear();
  for (int i = 0; i < rank(); ++i) {
    char t = tags_[i];
    if (t == 'z' || t == 'x' || t == 'y') spatial_axes_.push_back(i);
  }
}

std::string TaggedShape::tags_string() const {
  std::string out;
  for (size_t i = 0; i < tags_.size(); ++i) {
    if (i) out.push_back(',');
    out.push_back(tags_[i]);
  }
  return out;
}

int TaggedShape::TagIndex(char tag) const {
  auto p = tags_.find(tag);
  return p == std::string::npos ? -1 : static_cast<int>(p);
}

int64_t TaggedShape::SizeOf(char tag) const {
  int i = TagIndex(tag);
  return i < 0 ? kUnknownSize : sizes_[i];
}

std::vector<int64_t> TaggedShape::spatial_shape() const {
  std::vector<int64_t> out;
  for (int a : spatial_axes_) out.push_back(sizes_[a]);
  return out;
}

std::vector<int64_t> TaggedShape::offsets() const {
  std::vector<int64_t> out;
  for (int64_t f : fov_) out.push_back(FloorDiv2(f));
  return out;
}

bool TaggedShape::fov_all_centered() const {
  return std::all_of(fov_.begin(), fov_.end(), [](int64_t f) { return f % 2 != 0; });
}

int64_t TaggedShape::stripnone_prod() const {
  int64_t p = 1;
  for (int64_t s : sizes_)
    if (s != kUnknownSize) p *= s;
  return p;
}

int64_t TaggedShape::stripbatch_prod() const {
  int64_t p = 1;
  for (int i = 0; i < rank(); ++i)
    if (tags_[i] != 'b') p *= sizes_[i];
  return p;
}

bool TaggedShape::fully_known() const {
  return std::none_of(sizes_.begin(), sizes_.end(), [](int64_t s) { return s == kUnknownSize; });
}

TaggedShape TaggedShape::WithBatch(int64_t batch) const {
  TaggedShape s = *this;
  int b = TagIndex('b');
  if (b >= 0 && s.sizes_[b] == kUnknownSize) s.sizes_[b] = batch;
  return s;
}

std::string TaggedShape::ToString() const {
  std::vector<std::string> parts;
  for (int i = 0; i < rank(); ++i)
    parts.push_back(absl::StrFormat("(%s,%c)", SizeString(sizes_[i]), tags_[i]));
  return absl::StrCat("[", absl::StrJoin(parts, ", "), "]");
}

std::string TaggedShape::ExtRepr() const {
  return absl::StrFormat("fov=[%s], offsets=[%s], strides=[%s], spatial shape=[%s]",
                         absl::StrJoin(fov_, ", "), absl::StrJoin(offsets(), ", "),
                         absl::StrJoin(strides_, ", "), absl::StrJoin(spatial_shape(), ", "));
}

}  // namespace elektronn
