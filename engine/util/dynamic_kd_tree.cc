// DynamicKdTree over Debian's nanoflann (libnanoflann-dev, header only).
#include "engine/util/dynamic_kd_tree.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"
#include "nanoflann.hpp"

namespace elektronn {

struct DynamicKdTree::Index {
  // nanoflann's dataset adaptor over the scaled tree points.
  struct Points {
    const std::vector<double>* data;
    size_t dims;
    size_t kdtree_get_point_count() const { return data->size() / dims; }
    double kdtree_get_pt(size_t i, size_t d) const { return (*data)[i * dims + d]; }
    template <class BBox>
    bool kdtree_get_bbox(BBox&) const {
      return false;
    }
  };
  using Tree = nanoflann::KDTreeSingleIndexAdaptor<nanoflann::L2_Simple_Adaptor<double, Points>,
                                                   Points, -1, size_t>;
  Index(const std::vector<double>* data, int dims, int leaf)
      : points{data, static_cast<size_t>(dims)},
        tree(dims, points, nanoflann::KDTreeSingleIndexAdaptorParams(leaf)) {}
  Points points;
  Tree tree;
};

DynamicKdTree::DynamicKdTree(DynamicKdTreeOptions options) : options_(std::move(options)) {}
DynamicKdTree::~DynamicKdTree() = default;

absl::StatusOr<std::unique_ptr<DynamicKdTree>> DynamicKdTree::Create(std::span<const double> points,
                                                                     DynamicKdTreeOptions options) {
  if (options.dims < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("DynamicKdTree: dims must be at least 1, got %d", options.dims));
  }
  if (options.rebuild_threshold < 1 || options.leaf_size < 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "DynamicKdTree: rebuild_threshold (%d) and leaf_size (%d) must be at least 1",
        options.rebuild_threshold, options.leaf_size));
  }
  if (options.aniso_scale.empty()) options.aniso_scale.assign(options.dims, 1.0);
  if (static_cast<int>(options.aniso_scale.size()) != options.dims) {
    return absl::InvalidArgumentError(
        absl::StrFormat("DynamicKdTree: aniso_scale has %d values, need one per axis (%d)",
                        options.aniso_scale.size(), options.dims));
  }
  for (double s : options.aniso_scale) {
    if (!(s > 0) || !std::isfinite(s)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("DynamicKdTree: aniso_scale values must be positive, got %g", s));
    }
  }
  if (points.size() % options.dims != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("DynamicKdTree: %d coordinates are not a whole number of %d-D points",
                        points.size(), options.dims));
  }
  std::unique_ptr<DynamicKdTree> t(new DynamicKdTree(std::move(options)));
  const size_t d = t->options_.dims;
  for (size_t i = 0; i < points.size(); i += d) {
    auto p = points.subspan(i, d);
    if (absl::Status s = t->CheckPoint(p, "point"); !s.ok()) return s;
    t->originals_.insert(t->originals_.end(), p.begin(), p.end());
    for (size_t j = 0; j < d; ++j) t->tree_points_.push_back(p[j] * t->options_.aniso_scale[j]);
  }
  t->Rebuild();
  return t;
}

absl::Status DynamicKdTree::CheckPoint(std::span<const double> p, const char* what) const {
  if (static_cast<int>(p.size()) != options_.dims) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "DynamicKdTree: a %s needs %d coordinates, got %d", what, options_.dims, p.size()));
  }
  for (double v : p) {
    if (!std::isfinite(v)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("DynamicKdTree: a %s has the non-finite coordinate %g", what, v));
    }
  }
  return absl::OkStatus();
}

void DynamicKdTree::Rebuild() {
  tree_points_.insert(tree_points_.end(), buffer_.begin(), buffer_.end());
  buffer_.clear();
  index_ = std::make_unique<Index>(&tree_points_, options_.dims, options_.leaf_size);
  ++rebuilds_;
}

int64_t DynamicKdTree::size() const {
  return static_cast<int64_t>(originals_.size()) / options_.dims;
}

absl::Status DynamicKdTree::Append(std::span<const double> point) {
  if (absl::Status s = CheckPoint(point, "point"); !s.ok()) return s;
  originals_.insert(originals_.end(), point.begin(), point.end());
  for (int j = 0; j < options_.dims; ++j) buffer_.push_back(point[j] * options_.aniso_scale[j]);
  if (buffered() >= options_.rebuild_threshold) Rebuild();
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Neighbour>> DynamicKdTree::Knn(std::span<const double> query,
                                                          int64_t k) const {
  if (absl::Status s = CheckPoint(query, "query"); !s.ok()) return s;
  if (k < 1) {
    return absl::InvalidArgumentError(absl::StrFormat("DynamicKdTree: k must be >= 1, got %d", k));
  }
  const int d = options_.dims;
  std::vector<double> q(d);
  for (int j = 0; j < d; ++j) q[j] = query[j] * options_.aniso_scale[j];
  // (squared distance, index) from the tree, then every buffered point; the k smallest win.
  std::vector<std::pair<double, int64_t>> found;
  const int64_t in_tree = static_cast<int64_t>(tree_points_.size()) / d;
  if (in_tree > 0) {
    const size_t want = static_cast<size_t>(std::min(k, in_tree));
    std::vector<size_t> idx(want);
    std::vector<double> dist(want);
    const size_t n = index_->tree.knnSearch(q.data(), want, idx.data(), dist.data());
    for (size_t i = 0; i < n; ++i) found.emplace_back(dist[i], static_cast<int64_t>(idx[i]));
  }
  for (int64_t b = 0; b < buffered(); ++b) {
    double s = 0;
    for (int j = 0; j < d; ++j) {
      const double diff = buffer_[b * d + j] - q[j];
      s += diff * diff;
    }
    found.emplace_back(s, in_tree + b);
  }
  const size_t keep = std::min<size_t>(found.size(), static_cast<size_t>(k));
  std::partial_sort(found.begin(), found.begin() + keep, found.end());
  std::vector<Neighbour> out(keep);
  for (size_t i = 0; i < keep; ++i) {
    out[i].distance = std::sqrt(found[i].first);
    out[i].index = found[i].second;
    out[i].coordinates.assign(originals_.begin() + found[i].second * d,
                              originals_.begin() + (found[i].second + 1) * d);
  }
  return out;
}

}  // namespace elektronn
