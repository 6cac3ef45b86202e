// Schedule values at given steps (reference §5.5).
#include "engine/config/schedule.h"

#include <gtest/gtest.h>

namespace elektronn {
namespace {

double ValueAfter(const Schedule& s, double v, int64_t from, int64_t to) {
  for (int64_t i = from; i <= to; ++i)
    if (auto n = s.Apply(i, v)) v = *n;
  return v;
}

TEST(Schedule, DecMultipliesEvery1000Steps) {
  v1::Schedule spec;
  spec.set_dec(0.995);
  auto s = Schedule::Create("lr", spec);
  ASSERT_TRUE(s.ok());
  EXPECT_DOUBLE_EQ(ValueAfter(*s, 5e-4, 0, 999), 5e-4);
  EXPECT_DOUBLE_EQ(ValueAfter(*s, 5e-4, 0, 1000), 5e-4 * 0.995);
  // The reference's example: 5e-4 with 0.995 -> 4.756e-4 at step 10000.
  EXPECT_NEAR(ValueAfter(*s, 5e-4, 0, 10000), 4.756e-4, 1e-7);
  // A resumed run continues from any step.
  EXPECT_DOUBLE_EQ(ValueAfter(*s, 1.0, 2500, 3000), 0.995);
}

TEST(Schedule, LinDecReachesZeroAtN) {
  v1::Schedule spec;
  spec.mutable_lindec()->set_n(2500);
  spec.mutable_lindec()->set_v0(0.5);
  auto s = Schedule::Create("dropout_rates", spec);
  ASSERT_TRUE(s.ok());
  EXPECT_DOUBLE_EQ(ValueAfter(*s, 0.5, 0, 1000), 0.5 - 0.5 * 1000 / 2500);
  EXPECT_DOUBLE_EQ(ValueAfter(*s, 0.5, 0, 2000), 0.5 - 2 * 0.5 * 1000 / 2500);
  EXPECT_DOUBLE_EQ(ValueAfter(*s, 0.5, 0, 2500), 0.0);  // QUIRK 9 fixed: n need not be a multiple
  EXPECT_DOUBLE_EQ(ValueAfter(*s, 0.5, 0, 5000), 0.0);
}

TEST(Schedule, UpdatesSetExactValues) {
  v1::Schedule spec;
  auto* u = spec.mutable_updates()->add_updates();
  u->set_step(300);
  u->set_value(0.95);
  u = spec.mutable_updates()->add_updates();
  u->set_step(5000);
  u->set_value(0.99);
  auto s = Schedule::Create("mom", spec);
  ASSERT_TRUE(s.ok());
  EXPECT_DOUBLE_EQ(ValueAfter(*s, 0.9, 0, 299), 0.9);
  EXPECT_DOUBLE_EQ(ValueAfter(*s, 0.9, 0, 300), 0.95);
  EXPECT_DOUBLE_EQ(ValueAfter(*s, 0.9, 0, 4999), 0.95);
  EXPECT_DOUBLE_EQ(ValueAfter(*s, 0.9, 0, 6000), 0.99);
}

TEST(Schedule, CustomGranularityAndErrors) {
  v1::Schedule spec;
  spec.set_dec(0.5);
  spec.set_granularity(10);
  auto s = Schedule::Create("lr", spec);
  ASSERT_TRUE(s.ok());
  EXPECT_DOUBLE_EQ(ValueAfter(*s, 1.0, 0, 30), 0.125);
  v1::Schedule bad;
  bad.set_dec(-1);
  EXPECT_FALSE(Schedule::Create("lr", bad).ok());
  v1::Schedule empty;
  auto e = Schedule::Create("lr", empty);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(std::string(e.status().message()).find("dec, lindec or updates"), std::string::npos);
}

}  // namespace
}  // namespace elektronn
