// Shape, field-of-view, stride and MFP rules (reference §1.1, §2.5–§2.7) and the model summary.
#include <gtest/gtest.h>

#include "engine/graph/graph.h"
#include "engine/graph/model_builder.h"
#include "engine/nodes/shape_rules.h"

namespace elektronn {
namespace {

TEST(TaggedShape, TagsSpatialAxesOffsets) {
  auto s = TaggedShape::Create({kUnknownSize, 1, 26, 26}, "b,f,y,x");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->spatial_axes(), (std::vector<int>{2, 3}));
  EXPECT_EQ(s->ndim(), 2);
  EXPECT_EQ(s->stripnone_prod(), 26 * 26);
  EXPECT_EQ(s->ToString(), "[(None,b), (1,f), (26,y), (26,x)]");
  auto t = TaggedShape::Create({1, 2, 5, 5}, "bfzx", {1, 1}, {7, -1});
  auto even = TaggedShape::Create({1, 2, 5, 5}, "bfzx", {1, 1}, {7, 4});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->offsets(), (std::vector<int64_t>{3, -1}));
  EXPECT_TRUE(t->fov_all_centered());  // -1 counts as odd, as in Python
  EXPECT_FALSE(even->fov_all_centered());
}

TEST(TaggedShape, RejectsBadTags) {
  EXPECT_FALSE(TaggedShape::Create({1, 2}, "b,q").ok());
  EXPECT_FALSE(TaggedShape::Create({1, 2}, "b,b").ok());
  EXPECT_FALSE(TaggedShape::Create({1, 2, 3}, "b,f").ok());
  auto s = TaggedShape::Create({1, 2}, "b,k");
  EXPECT_NE(std::string(s.status().message()).find("unknown tag 'k'"), std::string::npos);
}

TEST(Shapes, Neuro3dSummary) {
  auto g = Graph::Create(Neuro3dSpec());
  ASSERT_TRUE(g.ok()) << g.status();
  ModelSummary s = (*g)->Summary();
  // Per-node summary: every node of the spec, in order, with shape, fov and strides.
  ASSERT_EQ(s.nodes.size(), 17u);
  EXPECT_EQ(s.nodes[0].name, "raw");
  const NodeSummary& c0 = s.nodes[1];
  EXPECT_EQ(c0.name, "conv");
  EXPECT_EQ(c0.shape.spatial_shape(), (std::vector<int64_t>{23, 90, 90}));
  EXPECT_EQ(c0.shape.fov(), (std::vector<int64_t>{1, 7, 7}));
  EXPECT_EQ(c0.shape.strides(), (std::vector<int64_t>{1, 2, 2}));
  EXPECT_EQ(c0.params, 740);
  const NodeSummary& c3 = s.nodes[4];
  EXPECT_EQ(c3.name, "conv3");
  EXPECT_EQ(c3.shape.spatial_shape(), (std::vector<int64_t>{10, 36, 36}));
  EXPECT_EQ(c3.shape.fov(), (std::vector<int64_t>{5, 45, 45}));
  EXPECT_EQ(c3.shape.strides(), (std::vector<int64_t>{2, 4, 4}));
  const NodeSummary& probs = s.nodes[12];
  EXPECT_EQ(probs.op, "Softmax");
  EXPECT_EQ(probs.shape.ToString(), "[(None,b), (2,f), (5,z), (21,x), (21,y)]");
  EXPECT_EQ(probs.shape.fov(), (std::vector<int64_t>{15, 105, 105}));
  EXPECT_EQ(probs.shape.offsets(), (std::vector<int64_t>{7, 52, 52}));
  EXPECT_EQ(probs.shape.strides(), (std::vector<int64_t>{2, 4, 4}));
  EXPECT_EQ(s.total_params, 2756042);
  EXPECT_NEAR(s.total_gops, 20.0, 0.1);  // ELEKTRONN2 counts multiply-adds: 40 GFLOP = 20 G MACs
  const std::string table = s.ToString();
  EXPECT_NE(table.find("prediction 'softmax': fov=[15, 105, 105], offsets=[7, 52, 52], "
                       "strides=[2, 4, 4], spatial shape=[5, 21, 21]"),
            std::string::npos)
      << table;
}

// The summary is one table: columns sized to their widest cell (a long name shifts nothing),
// each node's settings in the last column, totals and the prediction's geometry below.
TEST(Shapes, SummaryTableKeepsColumnsAlignedAndShowsSettings) {
  v1::ModelSpec spec = Neuro3dSpec();
  const std::string old_name = spec.nodes(2).name();
  const std::string long_name = "a_much_longer_name_than_fourteen_characters";
  spec.mutable_nodes(2)->set_name(long_name);
  for (v1::NodeSpec& n : *spec.mutable_nodes())
    for (std::string& in : *n.mutable_inputs())
      if (in == old_name) in = long_name;
  auto g = Graph::Create(spec);
  ASSERT_TRUE(g.ok()) << g.status();
  const std::string table = (*g)->Summary().ToString();
  std::vector<std::string> lines;
  for (size_t at = 0, nl; (nl = table.find('\n', at)) != std::string::npos; at = nl + 1)
    lines.push_back(table.substr(at, nl - at));
  ASSERT_GT(lines.size(), 18u) << table;
  const size_t fov = lines[0].find("fov"), settings = lines[0].find("settings");
  ASSERT_NE(fov, std::string::npos) << table;
  ASSERT_NE(settings, std::string::npos) << table;
  for (size_t i = 1; i <= 17; ++i) {  // one row per node
    ASSERT_GT(lines[i].size(), fov) << lines[i];
    // "-" where a node has no spatial axes (loss, errors).
    EXPECT_TRUE((lines[i][fov] == '[' || lines[i][fov] == '-') && lines[i][fov - 1] == ' ')
        << table;
  }
  EXPECT_EQ(lines[3].rfind(long_name, 0), 0u) << table;
  EXPECT_EQ(lines[2].substr(settings, 10), "n_f=20, 3d") << table;  // conv's settings
  EXPECT_EQ(lines[18].rfind("total: 2756042 trainable parameters", 0), 0u) << table;
}

TEST(Shapes, WrongInputSizeNamesNodeAxisAndNearestSizes) {
  auto g = Graph::Create(Neuro3dSpec({22, 185, 185}));
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(g.status().message()),
            "Conv 'conv3': input z=22 with kernel 4 and pool 2 leaves 19 voxels, not divisible by "
            "2; nearest valid z: 21 or 23; nearest valid sizes of input 'raw' along z: 21 or 23");
  auto gx = Graph::Create(Neuro3dSpec({23, 186, 185}));
  ASSERT_FALSE(gx.ok());
  const std::string m(gx.status().message());
  EXPECT_NE(m.find("Conv 'conv': input x=186 with kernel 6 and pool 2 leaves 181 voxels"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("nearest valid sizes of input 'raw' along x: 185 or 189"), std::string::npos)
      << m;
  // Check the suggested sizes really are valid.
  EXPECT_TRUE(Graph::Create(Neuro3dSpec({23, 185, 185})).ok());
  EXPECT_TRUE(Graph::Create(Neuro3dSpec({23, 189, 185})).ok());
}

TEST(Shapes, ConvModesFovAndStrides) {
  ModelBuilder m;
  std::string x = m.Input({1, 1, 10, 10}, "b,f,x,y", "x");
  std::string full = m.Conv(x, 2, {3, 3}, {}, v1::RELU, v1::FULL);
  std::string same = m.Conv(full, 2, {3, 3}, {}, v1::RELU, v1::SAME);
  auto g = Graph::Create(m.spec());
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ((*g)->Find(full)->shape().spatial_shape(), (std::vector<int64_t>{12, 12}));
  EXPECT_EQ((*g)->Find(full)->shape().fov(), (std::vector<int64_t>{3, 3}));
  EXPECT_EQ((*g)->Find(same)->shape().spatial_shape(), (std::vector<int64_t>{12, 12}));
  EXPECT_EQ((*g)->Find(same)->shape().fov(), (std::vector<int64_t>{5, 5}));
  ModelBuilder ok;
  std::string y = ok.Input({1, 1, 11, 11}, "b,f,x,y", "x");
  std::string p = ok.Pool(ok.Conv(y, 1, {1, 1}), {3, 3}, {2, 2});
  auto g2 = Graph::Create(ok.spec());
  ASSERT_TRUE(g2.ok()) << g2.status();
  EXPECT_EQ((*g2)->Find(p)->shape().spatial_shape(), (std::vector<int64_t>{5, 5}));
  EXPECT_EQ((*g2)->Find(p)->shape().fov(), (std::vector<int64_t>{3, 3}));
  EXPECT_EQ((*g2)->Find(p)->shape().strides(), (std::vector<int64_t>{2, 2}));
  // Pool 3 stride 2 on 12 voxels is invalid: (12-3) % 2 != 0.
  m.Pool(same, {3, 3}, {2, 2});
  auto bad = Graph::Create(m.spec());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("nearest valid x: 11 or 13"),
            std::string::npos)
      << bad.status();
}

TEST(Shapes, MaxFragmentPoolingOneDimensionalExample) {
  // Reference §2.6: conv output x0..x4 (L=5), p=2 -> two fragments at offsets 0 and 1.
  ModelBuilder m;
  std::string x = m.Input({1, 1, 6}, "b,f,x", "x");
  std::string c = m.Conv(x, 1, {2}, {2}, v1::RELU, v1::VALID, 0, /*mfp=*/true);
  auto g = Graph::Create(m.spec());
  ASSERT_TRUE(g.ok()) << g.status();
  const TaggedShape& s = (*g)->Find(c)->shape();
  EXPECT_EQ(s.spatial_shape(), (std::vector<int64_t>{2}));
  EXPECT_EQ(s.SizeOf('b'), 2);
  EXPECT_EQ(s.mfp_offsets(), (std::vector<std::vector<int64_t>>{{0}, {1}}));
  EXPECT_EQ(s.strides(), (std::vector<int64_t>{2}));
  // Without MFP, L=5 is not divisible by 2.
  ModelBuilder n;
  std::string y = n.Input({1, 1, 6}, "b,f,x", "x");
  n.Conv(y, 1, {2}, {2});
  EXPECT_FALSE(Graph::Create(n.spec()).ok());
  // MFP needs L = p-1 mod p: L=4 with p=2 is invalid with MFP.
  ModelBuilder k;
  std::string z = k.Input({1, 1, 5}, "b,f,x", "x");
  k.Conv(z, 1, {2}, {2}, v1::RELU, v1::VALID, 0, true);
  EXPECT_FALSE(Graph::Create(k.spec()).ok());
}

TEST(Shapes, MaxFragmentPoolingOffsetsCompose) {
  // Two MFP layers: offsets o + t * S_in, shift t outer, old offset inner.
  ModelBuilder m;
  std::string x = m.Input({1, 1, 1, 16, 16}, "b,f,z,x,y", "x");
  std::string a = m.Conv(x, 2, {1, 2, 2}, {1, 2, 2}, v1::RELU, v1::VALID, 0, true);
  std::string b = m.Conv(a, 2, {1, 3, 3}, {1, 2, 2}, v1::RELU, v1::VALID, 0, true);
  auto g = Graph::Create(m.spec());
  ASSERT_TRUE(g.ok()) << g.status();
  const TaggedShape& s = (*g)->Find(b)->shape();
  EXPECT_EQ(s.SizeOf('b'), 16);
  ASSERT_EQ(s.mfp_offsets().size(), 16u);
  EXPECT_EQ(s.mfp_offsets()[0], (std::vector<int64_t>{0, 0, 0}));
  EXPECT_EQ(s.mfp_offsets()[1], (std::vector<int64_t>{0, 0, 1}));
  EXPECT_EQ(s.mfp_offsets()[4], (std::vector<int64_t>{0, 0, 2}));  // t=(0,0,1) * S_in=(1,2,2)
  EXPECT_EQ(s.mfp_offsets()[15], (std::vector<int64_t>{0, 3, 3}));
  EXPECT_EQ(s.strides(), (std::vector<int64_t>{1, 4, 4}));
}

TEST(Shapes, ClearErrorsForBadModels) {
  ModelBuilder m;
  std::string x = m.Input({1, 1, 8, 8}, "b,f,x,y", "x");
  m.Conv(x, 2, {3, 3, 3});
  auto g = Graph::Create(m.spec());
  ASSERT_FALSE(g.ok());
  EXPECT_NE(std::string(g.status().message()).find("Conv 'conv': filter_shape has 3 entries"),
            std::string::npos)
      << g.status();
  ModelBuilder s;
  std::string y = s.Input({1, 1, 8, 8}, "b,f,x,y", "x");
  s.Softmax(s.Conv(y, 2, {3, 3}));  // relu before softmax
  auto gs = Graph::Create(s.spec());
  ASSERT_FALSE(gs.ok());
  EXPECT_NE(std::string(gs.status().message()).find("must have activation_func='lin'"),
            std::string::npos)
      << gs.status();
  v1::ModelSpec bad = m.spec();
  bad.mutable_nodes(1)->set_inputs(0, "nope");
  auto gb = Graph::Create(bad);
  EXPECT_NE(std::string(gb.status().message()).find("names input 'nope'"), std::string::npos);
}

}  // namespace
}  // namespace elektronn

namespace elektronn {
namespace {

// The nearest valid input sizes, in closed form, against a plain scan of ConvAxisOut; and a
// huge kernel (a fuzzer's 1e6) answers at once instead of scanning a million sizes.
TEST(Shapes, NearestValidConvInputMatchesAScan) {
  for (int mode = 0; mode <= 2; ++mode) {
    for (bool mfp : {false, true}) {
      for (int64_t filter = 1; filter <= 7; ++filter) {
        for (int64_t pool = 1; pool <= 4; ++pool) {
          for (int64_t in = 1; in <= 60; ++in) {
            int64_t lo = -1, hi = -1;
            for (int64_t c = in - 1; c > 0 && lo < 0; --c) {
              if (ConvAxisOut(c, filter, pool, mode, mfp) > 0) lo = c;
            }
            for (int64_t c = in + 1; c < in + 200 && hi < 0; ++c) {
              if (ConvAxisOut(c, filter, pool, mode, mfp) > 0) hi = c;
            }
            EXPECT_EQ(NearestValidConvInput(in, filter, pool, mode, mfp), std::make_pair(lo, hi))
                << "in " << in << " filter " << filter << " pool " << pool << " mode " << mode
                << " mfp " << mfp;
          }
        }
      }
    }
  }
  const auto [lo, hi] = NearestValidConvInput(10, 1'000'000, 2, 0, false);
  EXPECT_EQ(lo, -1);
  EXPECT_EQ(hi, 1'000'001);  // L = in + 1 - filter must reach pool = 2 and be even
}

}  // namespace
}  // namespace elektronn
