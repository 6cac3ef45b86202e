// Label transforms on small hand-made volumes; every expected value was worked out by hand from
// the definitions in labels.h (reference §7.8), not by running the code.
#include "engine/data/labels.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace elektronn {
namespace {

using ::testing::ElementsAreArray;

Volume Make(int64_t z, int64_t x, int64_t y, const std::vector<float>& v) {
  Volume out(1, z, x, y);
  out.data = v;
  return out;
}

TEST(Ids2Barriers, PairAcrossTheBoundaryAndItsDilution) {
  const Volume ids = Make(1, 1, 8, {1, 1, 1, 1, 2, 2, 2, 2});
  Ids2BarriersOptions o;
  o.dilute = {false, false, false};
  EXPECT_THAT(Ids2Barriers(ids, o).data, ElementsAreArray({0, 0, 0, 1, 1, 0, 0, 0}));
  o.dilute = {true, true, true};
  EXPECT_THAT(Ids2Barriers(ids, o).data, ElementsAreArray({0, 0, 1, 1, 1, 1, 0, 0}));
  // Dilution only along the axes it is enabled for.
  o.dilute = {true, true, false};
  EXPECT_THAT(Ids2Barriers(ids, o).data, ElementsAreArray({0, 0, 0, 1, 1, 0, 0, 0}));
}

TEST(Ids2Barriers, DilutionStopsAtTheVolumeBorder) {
  const Volume ids = Make(1, 1, 3, {1, 2, 2});
  EXPECT_THAT(Ids2Barriers(ids).data, ElementsAreArray({1, 1, 1}));
  const Volume ids2 = Make(1, 1, 5, {1, 2, 2, 2, 2});
  EXPECT_THAT(Ids2Barriers(ids2).data, ElementsAreArray({1, 1, 1, 0, 0}));
}

TEST(Ids2Barriers, ExtracellularSpaceModes) {
  const Volume ids = Make(1, 1, 8, {1, 1, 0, 0, 0, 2, 2, 2});
  Ids2BarriersOptions o;
  o.dilute = {false, false, false};
  o.ecs = EcsMode::kNone;
  EXPECT_THAT(Ids2Barriers(ids, o).data, ElementsAreArray({0, 1, 1, 0, 1, 1, 0, 0}));
  o.ecs = EcsMode::kBarrier;
  EXPECT_THAT(Ids2Barriers(ids, o).data, ElementsAreArray({0, 1, 1, 1, 1, 1, 0, 0}));
  o.ecs = EcsMode::kNewClass;
  EXPECT_THAT(Ids2Barriers(ids, o).data, ElementsAreArray({0, 1, 1, 2, 1, 1, 0, 0}));
}

TEST(Ids2Barriers, ConnectivityChoosesTheAxes) {
  const Volume ids = Make(1, 4, 1, {1, 1, 2, 2});  // IDs change along x only
  Ids2BarriersOptions o;
  o.dilute = {false, false, false};
  o.connectivity = {true, false, true};
  EXPECT_THAT(Ids2Barriers(ids, o).data, ElementsAreArray({0, 0, 0, 0}));
  o.connectivity = {false, true, false};
  EXPECT_THAT(Ids2Barriers(ids, o).data, ElementsAreArray({0, 1, 1, 0}));
}

TEST(Ids2Barriers, SmoothenKeepsPlanesButDropsCornersAndSpecks) {
  // (3,3,4): ID 1 for y < 2, ID 2 for y >= 2; without dilution the barrier is the planes y=1,2.
  Volume ids(1, 3, 3, 4);
  for (int64_t z = 0; z < 3; ++z)
    for (int64_t x = 0; x < 3; ++x)
      for (int64_t y = 0; y < 4; ++y) ids.at(0, z, x, y) = y < 2 ? 1.f : 2.f;
  Ids2BarriersOptions o;
  o.dilute = {false, false, false};
  o.smoothen = true;
  const Volume b = Ids2Barriers(ids, o);
  // Kernel sums by hand: plane centre 6.7, plane edge 4.9 -> kept; plane corner 3.6, the voxel
  // next to the plane 2.5 -> dropped.
  for (int64_t z = 0; z < 3; ++z) {
    for (int64_t x = 0; x < 3; ++x) {
      for (int64_t y = 0; y < 4; ++y) {
        const bool corner = (z != 1) && (x != 1);
        const float want = (y == 1 || y == 2) && !corner ? 1.f : 0.f;
        EXPECT_EQ(b.at(0, z, x, y), want) << z << "," << x << "," << y;
      }
    }
  }
  // A 2-voxel boundary in a line has kernel sums of 1.5: removed.
  EXPECT_THAT(Ids2Barriers(Make(1, 1, 8, {1, 1, 1, 1, 2, 2, 2, 2}), o).data,
              ElementsAreArray({0, 0, 0, 0, 0, 0, 0, 0}));
}

TEST(MakeAffinities, EdgesAndComponents) {
  // z=1, (x,y) = [[1,1,2],[1,0,2]].
  const Volume ids = Make(1, 2, 3, {1, 1, 2, 1, 0, 2});
  auto r = MakeAffinities(ids);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->aff.ch, 3);
  EXPECT_THAT(r->aff.data, ElementsAreArray({0, 0, 0, 0, 0, 0,     // +z: no partner
                                             1, 0, 1, 0, 0, 0,     // +x
                                             1, 0, 0, 0, 0, 0}));  // +y
  // Components {(0,0),(1,0),(0,1)}, {(0,2),(1,2)}, {(1,1)} numbered by decreasing size.
  EXPECT_THAT(r->seg.data, ElementsAreArray({1, 1, 2, 1, 3, 2}));
  auto r2 = MakeAffinities(ids, DefaultAffinityNhood(), 2);
  ASSERT_TRUE(r2.ok());
  EXPECT_THAT(r2->seg.data, ElementsAreArray({1, 1, 2, 1, 0, 2}));
}

TEST(MakeAffinities, NegativeOffsetsLookBackwards) {
  const Volume ids = Make(1, 2, 3, {1, 1, 2, 1, 0, 2});
  auto r = MakeAffinities(ids, {{0, 0, -1}});
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(r->aff.data, ElementsAreArray({0, 1, 0, 0, 0, 0}));
  // Background (ID 0) is never connected, not even to background.
  auto bg = MakeAffinities(Make(1, 1, 4, {0, 0, 3, 3}), {{0, 0, 1}});
  ASSERT_TRUE(bg.ok());
  EXPECT_THAT(bg->aff.data, ElementsAreArray({0, 0, 1, 0}));
}

TEST(MakeAffinities, EmptyNhoodIsAnError) {
  EXPECT_EQ(MakeAffinities(Make(1, 1, 2, {1, 1}), {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeNhoodTargets(Make(1, 1, 2, {1, 1}), {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(AffinitiesInCut, MarginGivesBorderEdgesRealPartners) {
  // Cut y = [1,1,2,2,0], target = cut positions 1..3.
  const std::vector<float> cut = {1, 1, 2, 2, 0};
  std::vector<float> out(3 * 3);
  AffinitiesInCut(cut.data(), {1, 1, 5}, {0, 0, 1}, {1, 1, 3}, {{0, 0, 1}, {0, 0, -1}, {0, 0, 2}},
                  -666.f, out.data());
  EXPECT_THAT(out, ElementsAreArray({0, 1, 0,        // +y
                                     1, 0, 1,        // -y
                                     0, 0, -666}));  // +2y: the last has no partner in the cut
}

TEST(MakeNhoodTargets, ShiftedCopiesWithMinusOneOutside) {
  auto r = MakeNhoodTargets(Make(1, 1, 3, {5, 6, 7}));
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->ch, 7);
  EXPECT_THAT(r->data, ElementsAreArray({5,  6,  7,     // centre
                                         -1, -1, -1,    // +z
                                         -1, -1, -1,    // +x
                                         6,  7,  -1,    // +y
                                         -1, -1, -1,    // -z
                                         -1, -1, -1,    // -x
                                         -1, 5,  6}));  // -y
}

TEST(GrowSeg, GrowsPerAxisStepsIntoBackground) {
  EXPECT_THAT(GrowSeg(Make(1, 1, 7, {0, 0, 3, 0, 0, 0, 0})).data,
              ElementsAreArray({3, 3, 3, 3, 3, 3, 0}));
  EXPECT_THAT(GrowSeg(Make(3, 1, 1, {4, 0, 0})).data, ElementsAreArray({4, 4, 0}));
  // Two IDs reaching a voxel in the same round: the smaller wins.
  EXPECT_THAT(GrowSeg(Make(1, 1, 3, {5, 0, 2}), {0, 0, 1}).data, ElementsAreArray({5, 2, 2}));
}

}  // namespace
}  // namespace elektronn
