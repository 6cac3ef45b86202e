// DynamicKdTree: k-nearest-neighbour search over a growing point set (ELEKTRONN2's DynamicKDT,
// reference §8.2): a static nanoflann k-d tree plus an append buffer searched by brute force.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"

namespace elektronn {

struct DynamicKdTreeOptions {
  int dims = 3;
  // Buffered points are merged into the tree (a full rebuild) once this many are waiting;
  // ELEKTRONN2's rebuild_thresh.
  int64_t rebuild_threshold = 100;
  // Per-axis factors applied to every coordinate (stored and queried) before distances are
  // taken, e.g. {2, 1, 1} for z voxels twice as thick as x and y; empty = all 1.
  std::vector<double> aniso_scale;
  int leaf_size = 20;  // sklearn's leaf_size in ELEKTRONN2
};

struct Neighbour {
  double distance = 0;              // Euclidean, in scaled coordinates
  int64_t index = 0;                // order of insertion: initial points first, then appends
  std::vector<double> coordinates;  // as given (unscaled)
};

class DynamicKdTree {
 public:
  // `points` (row-major, `dims` values per point) seed the tree; a bad option, a point count
  // that is not a multiple of dims or a non-finite value is an InvalidArgument error.
  static absl::StatusOr<std::unique_ptr<DynamicKdTree>> Create(std::span<const double> points,
                                                               DynamicKdTreeOptions options);
  ~DynamicKdTree();

  // Adds one point (`dims` values) to the buffer; rebuilds the tree when the buffer is full.
  absl::Status Append(std::span<const double> point);
  // The k nearest points to `query`, nearest first, from the tree and the buffer together;
  // fewer than k when fewer points exist. Equal distances: the lower index first.
  absl::StatusOr<std::vector<Neighbour>> Knn(std::span<const double> query, int64_t k) const;

  int64_t size() const;
  int64_t buffered() const { return static_cast<int64_t>(buffer_.size()) / options_.dims; }
  int64_t rebuilds() const { return rebuilds_; }  // tree builds so far (the first included)

 private:
  struct Index;  // the nanoflann tree over tree_points_
  explicit DynamicKdTree(DynamicKdTreeOptions options);
  absl::Status CheckPoint(std::span<const double> p, const char* what) const;
  void Rebuild();

  DynamicKdTreeOptions options_;
  std::vector<double> tree_points_;  // scaled, row-major
  std::vector<double> buffer_;       // scaled, row-major
  std::vector<double> originals_;    // unscaled, by index
  std::unique_ptr<Index> index_;
  int64_t rebuilds_ = 0;
};

}  // namespace elektronn
