// DynamicKdTree against brute force on random points: the tree alone, the buffer alone, both
// merged across rebuilds, and anisotropic scaling.
#include "engine/util/dynamic_kd_tree.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace elektronn {
namespace {

// The k nearest of `points` to `q` under `scale`, by sorting every distance.
std::vector<std::pair<double, int64_t>> BruteForce(const std::vector<double>& points,
                                                   const std::vector<double>& q,
                                                   const std::vector<double>& scale, int64_t k) {
  const size_t d = q.size();
  std::vector<std::pair<double, int64_t>> all;
  for (size_t i = 0; i < points.size() / d; ++i) {
    double s = 0;
    for (size_t j = 0; j < d; ++j) {
      const double diff = (points[i * d + j] - q[j]) * scale[j];
      s += diff * diff;
    }
    all.emplace_back(std::sqrt(s), static_cast<int64_t>(i));
  }
  std::sort(all.begin(), all.end());
  all.resize(std::min<size_t>(all.size(), k));
  return all;
}

std::vector<double> Random(std::mt19937& rng, size_t n) {
  std::uniform_real_distribution<double> u(-50, 50);
  std::vector<double> v(n);
  for (double& x : v) x = u(rng);
  return v;
}

void ExpectMatches(const DynamicKdTree& tree, const std::vector<double>& all,
                   const std::vector<double>& scale, std::mt19937& rng, int64_t k) {
  const size_t d = scale.size();
  for (int t = 0; t < 50; ++t) {
    const std::vector<double> q = Random(rng, d);
    auto got = tree.Knn(q, k);
    ASSERT_TRUE(got.ok()) << got.status();
    auto want = BruteForce(all, q, scale, k);
    ASSERT_EQ(got->size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ((*got)[i].index, want[i].second) << "query " << t << " rank " << i;
      EXPECT_NEAR((*got)[i].distance, want[i].first, 1e-9);
      const auto& c = (*got)[i].coordinates;
      ASSERT_EQ(c.size(), d);
      for (size_t j = 0; j < d; ++j) EXPECT_EQ(c[j], all[want[i].second * d + j]);
    }
  }
}

TEST(DynamicKdTree, StaticTreeMatchesBruteForce) {
  std::mt19937 rng(1);
  const std::vector<double> pts = Random(rng, 3 * 500);
  auto tree = DynamicKdTree::Create(pts, {.dims = 3, .aniso_scale = {}});
  ASSERT_TRUE(tree.ok()) << tree.status();
  EXPECT_EQ((*tree)->size(), 500);
  EXPECT_EQ((*tree)->buffered(), 0);
  ExpectMatches(**tree, pts, {1, 1, 1}, rng, 1);
  ExpectMatches(**tree, pts, {1, 1, 1}, rng, 7);
}

TEST(DynamicKdTree, AppendsMergeTreeAndBufferAcrossRebuilds) {
  std::mt19937 rng(2);
  std::vector<double> all = Random(rng, 3 * 200);
  auto tree = DynamicKdTree::Create(all, {.dims = 3, .rebuild_threshold = 25, .aniso_scale = {}});
  ASSERT_TRUE(tree.ok()) << tree.status();
  EXPECT_EQ((*tree)->rebuilds(), 1);
  for (int i = 0; i < 110; ++i) {
    const std::vector<double> p = Random(rng, 3);
    ASSERT_TRUE((*tree)->Append(p).ok());
    all.insert(all.end(), p.begin(), p.end());
    // Buffered points must be found before they reach the tree: check often mid-buffer.
    if (i % 9 == 0) ExpectMatches(**tree, all, {1, 1, 1}, rng, 5);
  }
  EXPECT_EQ((*tree)->size(), 310);
  EXPECT_EQ((*tree)->rebuilds(), 1 + 110 / 25);  // the buffer emptied 4 times
  EXPECT_EQ((*tree)->buffered(), 110 % 25);
  ExpectMatches(**tree, all, {1, 1, 1}, rng, 1);
  ExpectMatches(**tree, all, {1, 1, 1}, rng, 12);
}

TEST(DynamicKdTree, EmptyTreeAnswersFromTheBuffer) {
  std::mt19937 rng(3);
  auto tree = DynamicKdTree::Create({}, {.dims = 2, .rebuild_threshold = 1000, .aniso_scale = {}});
  ASSERT_TRUE(tree.ok()) << tree.status();
  auto none = (*tree)->Knn(std::vector<double>{0, 0}, 3);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  std::vector<double> all;
  for (int i = 0; i < 40; ++i) {
    const std::vector<double> p = Random(rng, 2);
    ASSERT_TRUE((*tree)->Append(p).ok());
    all.insert(all.end(), p.begin(), p.end());
  }
  EXPECT_EQ((*tree)->buffered(), 40);
  ExpectMatches(**tree, all, {1, 1}, rng, 4);
  // More neighbours asked for than there are points: all of them, nearest first.
  ExpectMatches(**tree, all, {1, 1}, rng, 100);
}

TEST(DynamicKdTree, AnisotropicScaleChangesTheNearest) {
  // z spacing 10x coarser: a point 1 voxel away in z is farther than one 5 away in x.
  const std::vector<double> pts = {1, 0, 0, 0, 5, 0};
  auto iso = DynamicKdTree::Create(pts, {.dims = 3, .aniso_scale = {}});
  auto aniso = DynamicKdTree::Create(pts, {.dims = 3, .aniso_scale = {10, 1, 1}});
  ASSERT_TRUE(iso.ok() && aniso.ok());
  const std::vector<double> origin = {0, 0, 0};
  EXPECT_EQ((*(*iso)->Knn(origin, 1))[0].index, 0);
  auto a = (*aniso)->Knn(origin, 2);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ((*a)[0].index, 1);
  EXPECT_DOUBLE_EQ((*a)[0].distance, 5);
  EXPECT_DOUBLE_EQ((*a)[1].distance, 10);
  EXPECT_EQ((*a)[1].coordinates, (std::vector<double>{1, 0, 0}));  // unscaled

  std::mt19937 rng(4);
  std::vector<double> all = Random(rng, 3 * 300);
  const std::vector<double> scale = {3.5, 1, 0.5};
  auto tree =
      DynamicKdTree::Create(all, {.dims = 3, .rebuild_threshold = 30, .aniso_scale = scale});
  ASSERT_TRUE(tree.ok());
  for (int i = 0; i < 45; ++i) {
    const std::vector<double> p = Random(rng, 3);
    ASSERT_TRUE((*tree)->Append(p).ok());
    all.insert(all.end(), p.begin(), p.end());
  }
  ExpectMatches(**tree, all, scale, rng, 6);
}

TEST(DynamicKdTree, BadInputsAreErrors) {
  EXPECT_FALSE(
      DynamicKdTree::Create(std::vector<double>{1, 2}, {.dims = 3, .aniso_scale = {}}).ok());
  EXPECT_FALSE(DynamicKdTree::Create({}, {.dims = 3, .aniso_scale = {1, 1}}).ok());
  EXPECT_FALSE(DynamicKdTree::Create({}, {.dims = 3, .aniso_scale = {1, 0, 1}}).ok());
  EXPECT_FALSE(
      DynamicKdTree::Create({}, {.dims = 3, .rebuild_threshold = 0, .aniso_scale = {}}).ok());
  auto tree = DynamicKdTree::Create({}, {.dims = 3, .aniso_scale = {}});
  ASSERT_TRUE(tree.ok());
  EXPECT_FALSE((*tree)->Append(std::vector<double>{1, 2}).ok());
  EXPECT_FALSE((*tree)->Append(std::vector<double>{1, NAN, 2}).ok());
  EXPECT_FALSE((*tree)->Knn(std::vector<double>{1, 2, 3}, 0).ok());
  EXPECT_EQ((*tree)->size(), 0);
}

}  // namespace
}  // namespace elektronn
