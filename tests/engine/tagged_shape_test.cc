#include "engine/core/tagged_shape.h"
#include <gtest/gtest.h>
namespace elektronn { namespace {
TEST(TaggedShape, SpatialAxes) {
  auto s = TaggedShape::Create({kUnknownSize, 1, 26, 26}, "b,f,y,x");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->spatial_axes(), (std::vector<int>{2, 3}));
}
}}
