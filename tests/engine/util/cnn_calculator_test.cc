// The CNN calculator against hand-computed cases (reference §8.1), its MFP rule (the Conv
// node's, not ELEKTRONN2's QUIRK), argument parsing, and the model form on job files.
#include "engine/util/cnn_calculator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/lua/job_file.h"
#include "tests/support/tiny_job.h"

namespace elektronn {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

CnnCalculatorOptions Chain(std::vector<int64_t> f, std::vector<int64_t> p, bool mfp = false) {
  CnnCalculatorOptions o;
  for (size_t i = 0; i < f.size(); ++i) {
    o.filters.push_back({f[i]});
    o.poolings.push_back({p[i]});
    if (mfp) o.mfp.push_back({true});
  }
  return o;
}

// filters 3,3,3, poolings 2,2,1: in−2 = 2a, a−2 = 2b, b−2 ≥ 1, so in = 4b + 6 with b ≥ 3.
TEST(CnnCalculator, PlainChainByHand) {
  CnnCalculatorOptions o = Chain({3, 3, 3}, {2, 2, 1});
  o.desired = {100};
  auto c = CalculateCnn(o);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->axes.size(), 1u);
  const CnnAxis& a = c->axes[0];
  ASSERT_FALSE(a.valid_patch_sizes.empty());
  EXPECT_EQ(a.valid_patch_sizes.front(), 18);
  EXPECT_EQ(a.valid_patch_sizes.back(), 4998);
  for (int64_t s : a.valid_patch_sizes) EXPECT_EQ(s % 4, 2) << s;
  EXPECT_EQ(a.valid_patch_sizes.size(), (4998u - 18) / 4 + 1);
  EXPECT_EQ(a.patch_size, 98);
  EXPECT_EQ(a.change, "patch_size (100) changed to (98) (size not possible)");
  EXPECT_THAT(a.unpooled_sizes, ElementsAre(96, 46, 21));
  EXPECT_THAT(a.fragment_sizes, ElementsAre(48, 23, 21));
  EXPECT_THAT(a.receptive_fields, ElementsAre(4, 10, 18));
  EXPECT_THAT(a.strides, ElementsAre(2, 4, 4));
  EXPECT_THAT(a.overlaps, ElementsAre(2, 6, 14));
  EXPECT_EQ(a.fov, 18);
  EXPECT_DOUBLE_EQ(a.offset, 9.0);
  ASSERT_EQ(c->warnings.size(), 1u);  // even fov
  EXPECT_THAT(c->warnings[0], HasSubstr("even field of view 18"));
}

TEST(CnnCalculator, ChoosesTheDesiredSizeOrTheNearestValidOne) {
  CnnCalculatorOptions o = Chain({3, 3, 3}, {2, 2, 1});
  o.desired = {102};  // valid as it is
  auto c = CalculateCnn(o);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->axes[0].patch_size, 102);
  EXPECT_EQ(c->axes[0].change, "");
  o.desired = {10};
  c = CalculateCnn(o);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->axes[0].patch_size, 18);
  EXPECT_EQ(c->axes[0].change, "patch_size (10) changed to (18) (size too small)");
  o.desired = {};  // none: the largest valid size
  c = CalculateCnn(o);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->axes[0].patch_size, 4998);
}

TEST(CnnCalculator, ForceCenterRejectsAnEvenFov) {
  CnnCalculatorOptions o = Chain({3, 3, 3}, {2, 2, 1});
  o.force_center = true;
  auto c = CalculateCnn(o);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("even field of view 18"));
  // Filters 4,3,3: rf = 1 → 1·1+2 = 3 → 3·2+2 = 8 → 8·2+3 = 19, odd.
  o = Chain({4, 3, 3}, {2, 2, 1});
  o.force_center = true;
  c = CalculateCnn(o);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->axes[0].fov, 19);
  EXPECT_DOUBLE_EQ(c->axes[0].offset, 9.5);
  EXPECT_TRUE(c->warnings.empty());
}

// The reference's docstring example (§8.1): anisotropic 3-D net, MFP in the first two layers.
TEST(CnnCalculator, AnisotropicMfpExampleOfTheReference) {
  CnnCalculatorArgs args;
  args.filters = "1x6x6,4x4x4,2x2x2,1x1x1";
  args.poolings = "1x2x2,2x2x2,2x2x2,1x1x1";
  args.mfp_layers = "1,1,0,0";
  args.desired = "8,211,211";
  args.force_center = true;
  auto o = ParseCnnCalculatorArgs(args);
  ASSERT_TRUE(o.ok()) << o.status();
  auto c = CalculateCnn(*o);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->axes.size(), 3u);
  const CnnAxis &z = c->axes[0], &x = c->axes[1];
  EXPECT_EQ(z.patch_size, 10);
  EXPECT_EQ(z.change, "patch_size (8) changed to (10) (size too small)");
  EXPECT_EQ(x.patch_size, 210);
  EXPECT_EQ(x.change, "patch_size (211) changed to (210) (size not possible)");
  EXPECT_THAT(z.fragment_sizes, ElementsAre(10, 3, 1, 1));
  EXPECT_THAT(x.fragment_sizes, ElementsAre(102, 49, 24, 24));
  EXPECT_THAT(z.unpooled_sizes, ElementsAre(10, 7, 2, 1));
  EXPECT_THAT(x.unpooled_sizes, ElementsAre(205, 99, 48, 24));
  EXPECT_THAT(z.receptive_fields, ElementsAre(1, 5, 9, 9));
  EXPECT_THAT(x.receptive_fields, ElementsAre(7, 15, 23, 23));
  EXPECT_THAT(x.strides, ElementsAre(2, 4, 8, 8));
  EXPECT_THAT(z.overlaps, ElementsAre(0, 3, 5, 5));
  EXPECT_THAT(x.overlaps, ElementsAre(5, 11, 15, 15));
  EXPECT_DOUBLE_EQ(z.offset, 4.5);
  EXPECT_DOUBLE_EQ(x.offset, 11.5);
  const std::string text = CnnCalculationText(*c);
  EXPECT_THAT(text, HasSubstr("patch_size: (10, 210, 210)"));
  EXPECT_THAT(text, HasSubstr("(10, 102, 102)  (10, 205, 205)  (1, 7, 7)"));
  EXPECT_THAT(text, HasSubstr("offset: (4.5, 11.5, 11.5)"));
}

// MFP with pool 2: conv output L must be odd (L ≡ p−1 = 1 mod 2), the same in both rules.
TEST(CnnCalculator, MfpPoolTwo) {
  auto c = CalculateCnn(Chain({3}, {2}, /*mfp=*/true));
  ASSERT_TRUE(c.ok());
  // in − 2 odd and ≥ 2: in = 5, 7, 9, ...
  EXPECT_THAT(std::vector<int64_t>(c->axes[0].valid_patch_sizes.begin(),
                                   c->axes[0].valid_patch_sizes.begin() + 4),
              ElementsAre(5, 7, 9, 11));
  c = CalculateCnn(Chain({3}, {2}));
  ASSERT_TRUE(c.ok());
  EXPECT_THAT(std::vector<int64_t>(c->axes[0].valid_patch_sizes.begin(),
                                   c->axes[0].valid_patch_sizes.begin() + 4),
              ElementsAre(4, 6, 8, 10));
}

// The QUIRK fix (reference §11 item 2): with MFP pool 3 the Conv node needs L ≡ 2 (mod 3);
// ELEKTRONN2's calculator asked L % 3 == 1 and offered sizes the node refuses.
TEST(CnnCalculator, MfpPoolThreeFollowsTheConvNodeNotTheQuirk) {
  CnnCalculatorOptions o = Chain({3}, {3}, /*mfp=*/true);
  o.desired = {9};  // L = 7 ≡ 1: ELEKTRONN2 took it, the Conv node refuses it
  auto c = CalculateCnn(o);
  ASSERT_TRUE(c.ok());
  const auto& v = c->axes[0].valid_patch_sizes;
  EXPECT_THAT(std::vector<int64_t>(v.begin(), v.begin() + 4), ElementsAre(7, 10, 13, 16));
  for (int64_t s : v) EXPECT_EQ((s - 2) % 3, 2) << s;
  EXPECT_EQ(c->axes[0].patch_size, 7);
  EXPECT_EQ(c->axes[0].change, "patch_size (9) changed to (7) (size not possible)");
  EXPECT_THAT(c->axes[0].fragment_sizes, ElementsAre(1));  // (5 − 3 + 1) / 3
}

TEST(CnnCalculator, ParsesTheCommandLineForms) {
  CnnCalculatorArgs a;
  a.filters = "3,3";
  a.poolings = "2,1";
  a.ndim = 3;
  a.mfp = true;
  a.desired = "50";
  auto o = ParseCnnCalculatorArgs(a);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_THAT(o->filters, ElementsAre(ElementsAre(3, 3, 3), ElementsAre(3, 3, 3)));
  EXPECT_THAT(o->poolings[0], ElementsAre(2, 2, 2));
  EXPECT_THAT(o->desired, ElementsAre(50, 50, 50));
  EXPECT_THAT(o->mfp, ElementsAre(ElementsAre(true, true, true), ElementsAre(true, true, true)));
  // Scalars and per-axis layers mix; the axes come from the per-axis ones.
  a = {};
  a.filters = "3,1x3x3";
  a.poolings = "1,2";
  o = ParseCnnCalculatorArgs(a);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_THAT(o->filters, ElementsAre(ElementsAre(3, 3, 3), ElementsAre(1, 3, 3)));
}

TEST(CnnCalculator, BadInputsAreClearErrors) {
  auto err = [](std::string filters, std::string poolings, std::string desired = "",
                std::string mfp_layers = "") {
    CnnCalculatorArgs a;
    a.filters = filters;
    a.poolings = poolings;
    a.desired = desired;
    a.mfp_layers = mfp_layers;
    auto o = ParseCnnCalculatorArgs(a);
    if (!o.ok()) return std::string(o.status().message());
    auto c = CalculateCnn(*o);
    return c.ok() ? std::string("ok") : std::string(c.status().message());
  };
  EXPECT_THAT(err("3,x", "2,2"), HasSubstr("layer 2 is 'x'"));
  EXPECT_THAT(err("3", "2,2"), HasSubstr("1 layers but --poolings 2"));
  EXPECT_THAT(err("1x3x3,1x3", "1,1"), HasSubstr("a layer has 2 axes (1x3), the others 3"));
  EXPECT_THAT(err("0", "1"), HasSubstr("filter 0"));
  EXPECT_THAT(err("3", "0"), HasSubstr("pooling 0"));
  EXPECT_THAT(err("3", "1", "5,5"), HasSubstr("--desired has 2 sizes for 1 spatial axes"));
  EXPECT_THAT(err("3", "1", "0"), HasSubstr("--desired: 0 is not a patch size"));
  EXPECT_THAT(err("3,3", "1,1", "", "1"), HasSubstr("1 entries for 2 layers"));
  EXPECT_THAT(err("6000", "1"), HasSubstr("no input size from 2 to 4999"));
}

// The model form asks the engine: neuro3d_lite-like tiny job, conv {1,3,3} then a 1x1x1 conv.
TEST(CnnCalculator, ModelFormUsesTheEngineShapeRules) {
  testing::TinyJobOptions t;
  t.hidden = "out = nm.Conv{out, 4, {1, 3, 3}, {1, 2, 2}}";  // x: (in − 2) even
  t.input_zxy = {3, 18, 18};
  auto job = testing::TinyJob(t);
  ASSERT_TRUE(job.ok()) << job.status();
  auto c = CalculateModel(job->model(), {}, 2, 60);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->input_node, "raw");
  ASSERT_EQ(c->axes.size(), 3u);
  EXPECT_EQ(c->axes[0].tag, 'z');
  EXPECT_EQ(c->axes[0].valid_patch_sizes.front(), 2);  // filter 1 and pool 1 along z
  EXPECT_EQ(c->axes[0].valid_patch_sizes.size(), 59u);
  EXPECT_EQ(c->axes[1].tag, 'x');
  const auto& x = c->axes[1].valid_patch_sizes;
  EXPECT_EQ(x.front(), 4);
  EXPECT_EQ(x.back(), 60);
  for (int64_t s : x) EXPECT_EQ(s % 2, 0) << s;
  EXPECT_EQ(c->axes[1].patch_size, 18);  // the model's own size
  ASSERT_GE(c->nodes.size(), 3u);
  EXPECT_EQ(c->nodes[1].op, "Conv");
  EXPECT_THAT(c->nodes[1].spatial_shape, ElementsAre(3, 8, 8));
  EXPECT_THAT(c->nodes[1].fov, ElementsAre(1, 4, 4));
  EXPECT_THAT(c->nodes[1].strides, ElementsAre(1, 2, 2));

  c = CalculateModel(job->model(), {3, 25, 19}, 2, 60);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->axes[1].patch_size, 24);
  EXPECT_EQ(c->axes[1].change, "patch_size (25) changed to (24) (size not possible)");
  EXPECT_EQ(c->axes[2].patch_size, 18);
  EXPECT_THAT(c->nodes[1].spatial_shape, ElementsAre(3, 11, 8));
  EXPECT_THAT(ModelCalculationJson(*c), HasSubstr("\"axis\":\"x\",\"model_size\":18,"
                                                  "\"patch_size\":24"));
  EXPECT_FALSE(CalculateModel(job->model(), {3, 25}).ok());  // 2 sizes for 3 axes
}

// MFP Conv nodes in a model follow the same rule as the chain form with --mfp.
TEST(CnnCalculator, ModelFormAgreesWithTheChainForMfpPoolThree) {
  testing::TinyJobOptions t;
  t.hidden = "out = nm.Conv{out, 4, {1, 3, 3}, {1, 3, 3}, mfp = true}";
  t.input_zxy = {3, 19, 19};
  t.batch_size = 1;
  auto job = testing::TinyJob(t);
  ASSERT_TRUE(job.ok()) << job.status();
  auto m = CalculateModel(job->model(), {}, 2, 200);
  ASSERT_TRUE(m.ok()) << m.status();
  CnnCalculatorOptions o = Chain({3, 1}, {3, 1}, /*mfp=*/true);
  o.max_size = 200;
  auto c = CalculateCnn(o);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(m->axes[1].valid_patch_sizes, c->axes[0].valid_patch_sizes);
}

}  // namespace
}  // namespace elektronn
