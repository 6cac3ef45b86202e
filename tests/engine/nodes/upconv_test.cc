// UpConv (reference §2.8): finite-difference gradients, shapes, fov, strides, cost, identity
// initialisation, the no-flip spreading convention and the errors.
#include <gtest/gtest.h>

#include "engine/graph/graph.h"
#include "engine/graph/model_builder.h"
#include "engine/graph/network.h"
#include "kernels/backend.h"
#include "tests/engine/gradient_checker.h"

namespace elektronn {
namespace {

using testing::CheckGradients;
using testing::GradientCheckOptions;
using testing::GradientCheckReport;

void ExpectGradientsMatch(const ModelBuilder& m, const std::string& out,
                          std::vector<std::string> wrt) {
  GradientCheckOptions opt;
  opt.output = out;
  opt.wrt_inputs = std::move(wrt);
  GradientCheckReport report;
  absl::Status s = CheckGradients(m.spec(), opt, &report);
  std::string lines;
  for (const auto& l : report.lines) lines += "  " + l + "\n";
  EXPECT_TRUE(s.ok()) << s << "\n" << lines;
}

struct UpConvCase {
  std::string name;
  std::vector<int64_t> in_shape;
  std::string tags;
  std::vector<int64_t> pool;
  v1::Activation act;
  bool identity_init;
  float dropout;
};
void PrintTo(const UpConvCase& c, std::ostream* os) { *os << c.name; }

class UpConvGradient : public ::testing::TestWithParam<UpConvCase> {};

// Input -> Conv (so the input of UpConv has a stride to divide) -> UpConv; gradients w.r.t. the
// input and every parameter.
TEST_P(UpConvGradient, MatchesFiniteDifferences) {
  const UpConvCase& c = GetParam();
  ModelBuilder m;
  std::string x = m.Input(c.in_shape, c.tags, "x");
  std::vector<int64_t> ones(c.pool.size(), 1);
  std::string h = m.Conv(x, 3, ones, c.pool, v1::TANH);
  std::string y = m.UpConv(h, 4, c.pool, c.act, c.identity_init, c.dropout);
  ExpectGradientsMatch(m, y, {x});
}

INSTANTIATE_TEST_SUITE_P(
    Nodes, UpConvGradient,
    ::testing::Values(
        UpConvCase{"upconv1d", {2, 2, 8}, "b,f,x", {2}, v1::TANH, false, 0},
        UpConvCase{"upconv1d_pool3_identity", {1, 3, 9}, "b,f,x", {3}, v1::LIN, true, 0},
        UpConvCase{"upconv2d", {1, 2, 4, 6}, "b,f,x,y", {2, 3}, v1::SIGMOID, false, 0},
        UpConvCase{"upconv2d_relu", {2, 2, 4, 4}, "b,f,x,y", {2, 2}, v1::RELU, false, 0},
        UpConvCase{"upconv3d", {1, 2, 4, 4, 4}, "b,f,z,x,y", {2, 2, 2}, v1::TANH, false, 0},
        UpConvCase{"upconv3d_aniso", {2, 2, 3, 4, 4}, "b,f,z,x,y", {1, 2, 2}, v1::ELU, true, 0},
        UpConvCase{"upconv3d_pool_z", {1, 2, 4, 3, 3}, "b,f,z,x,y", {2, 1, 1}, v1::LIN, false, 0},
        UpConvCase{"upconv3d_prelu", {1, 2, 2, 4, 4}, "b,f,z,x,y", {1, 2, 2}, v1::PRELU, false, 0},
        UpConvCase{"upconv2d_abs", {1, 2, 4, 4}, "b,f,x,y", {2, 2}, v1::ABS, false, 0},
        UpConvCase{"upconv2d_dropout", {1, 2, 4, 4}, "b,f,x,y", {2, 2}, v1::TANH, false, 0.3f},
        UpConvCase{
            "upconv3d_theano_order", {1, 2, 2, 4, 4}, "b,z,f,x,y", {1, 2, 2}, v1::TANH, false, 0}),
    [](const ::testing::TestParamInfo<UpConvCase>& i) { return i.param.name; });

// The input gradient reaches an UpConv's parent through its backward-data pass, also when the
// parent's gradient is accumulated from two consumers.
TEST(UpConvGradientExtra, TwoConsumersAccumulate) {
  ModelBuilder m;
  std::string x = m.Input({1, 2, 4, 4}, "b,f,x,y", "x");
  std::string h = m.Conv(x, 3, {1, 1}, {2, 2}, v1::TANH);
  std::string u1 = m.UpConv(h, 2, {2, 2}, v1::TANH, false);
  std::string u2 = m.UpConv(h, 2, {2, 2}, v1::LIN, false);
  ExpectGradientsMatch(m, m.Add(u1, u2), {x});
}

absl::StatusOr<std::unique_ptr<Graph>> Build(const ModelBuilder& m) {
  return Graph::Create(m.spec());
}

TEST(UpConvShape, SizeFovStridesAndFeatures) {
  ModelBuilder m;
  std::string x = m.Input({-1, 1, 10, 20, 24}, "b,f,z,x,y", "x");
  std::string c = m.Conv(x, 5, {3, 3, 3}, {2, 2, 2});  // (4, 9, 11), strides 2
  std::string p = m.Conv(c, 6, {1, 2, 2}, {1, 2, 2});  // (4, 4, 5), strides (2, 4, 4)
  std::string u = m.UpConv(p, 7, {1, 4, 2});
  auto g = Build(m);
  ASSERT_TRUE(g.ok()) << g.status();
  const TaggedShape& s = (*g)->Find(u)->shape();
  EXPECT_EQ(s.spatial_shape(), (std::vector<int64_t>{4, 16, 10}));
  EXPECT_EQ(s.SizeOf('f'), 7);
  EXPECT_EQ(s.SizeOf('b'), kUnknownSize);
  EXPECT_EQ(s.strides(), (std::vector<int64_t>{2, 1, 2}));
  EXPECT_EQ(s.fov(), (std::vector<int64_t>{-1, -1, -1}));
  EXPECT_EQ(s.offsets(), (std::vector<int64_t>{-1, -1, -1}));
  // A later Conv keeps the unknown fov.
  ModelBuilder m2 = m;
  std::string after = m2.Conv(u, 2, {1, 3, 3});
  auto g2 = Build(m2);
  ASSERT_TRUE(g2.ok()) << g2.status();
  EXPECT_EQ((*g2)->Find(after)->shape().fov(), (std::vector<int64_t>{-1, -1, -1}));
}

TEST(UpConvShape, ParamsAndCost) {
  ModelBuilder m;
  std::string x = m.Input({2, 3, 4, 6}, "b,f,x,y", "x");
  std::string h = m.Conv(x, 5, {1, 1}, {2, 2});  // (2, 3), f=5
  std::string u = m.UpConv(h, 4, {2, 2});
  std::string up = m.UpConv(h, 4, {2, 2}, v1::PRELU);
  auto g = Build(m);
  ASSERT_TRUE(g.ok()) << g.status();
  const Node* n = (*g)->Find(u);
  EXPECT_EQ(n->param_count(), 4 * 5 * 2 * 2 + 4);
  EXPECT_EQ((*g)->Find(up)->param_count(), 4 * 5 * 2 * 2 + 4 + 4);
  // prod(w) * prod(s*p - p + 1) * b = 80 * (3 * 5) * 2
  EXPECT_DOUBLE_EQ(n->cost(), 80.0 * (4 - 2 + 1) * (6 - 2 + 1) * 2);
}

TEST(UpConvShape, Errors) {
  auto error_of = [](const ModelBuilder& m) {
    auto g = Graph::Create(m.spec());
    return g.ok() ? std::string("ok") : std::string(g.status().message());
  };
  {
    ModelBuilder m;  // stride 1 is not divisible by 2
    std::string x = m.Input({1, 1, 6, 6}, "b,f,x,y", "x");
    m.UpConv(x, 2, {1, 2}, v1::RELU, true, 0, "up");
    const std::string e = error_of(m);
    EXPECT_NE(e.find("'up'"), std::string::npos) << e;
    EXPECT_NE(e.find("along y"), std::string::npos) << e;
    EXPECT_NE(e.find("not divisible by the pool 2"), std::string::npos) << e;
  }
  {
    ModelBuilder m;
    std::string x = m.Input({1, 1, 8, 8}, "b,f,x,y", "x");
    std::string c = m.Conv(x, 2, {1, 1}, {2, 2});
    m.UpConv(c, 2, {2, 2, 2}, v1::RELU, true, 0, "up");
    EXPECT_NE(error_of(m).find("pool_shape has 3 entries"), std::string::npos) << error_of(m);
  }
  {
    ModelBuilder m;
    std::string x = m.Input({1, 1, 10, 10}, "b,f,x,y", "x");  // MFP: 10 - 2 + 1 = 2 * 5 - 1
    std::string c = m.Conv(x, 2, {2, 2}, {2, 2}, v1::RELU, v1::VALID, 0, /*mfp=*/true);
    m.UpConv(c, 2, {2, 2}, v1::RELU, true, 0, "up");
    EXPECT_NE(error_of(m).find("MFP nets cannot contain UpConv"), std::string::npos) << error_of(m);
  }
  {
    ModelBuilder m;
    std::string x = m.Input({1, 1, 8, 8}, "b,f,x,y", "x");
    std::string c = m.Conv(x, 2, {1, 1}, {2, 2});
    m.UpConv(c, 2, {2, 2}, v1::RELU, true, 0, "up");
    v1::ModelSpec spec = m.spec();
    spec.mutable_nodes(2)->mutable_upconv()->set_batch_normalisation(v1::BN_TRAIN);
    auto g = Graph::Create(spec);
    ASSERT_TRUE(g.ok()) << g.status();  // batch normalisation is wired into UpConv
    const Node* up = (*g)->Find("up");
    ASSERT_NE(up, nullptr);
    // w (2*2*2*2) + b (2) + gamma (2): BN 'train' adds the trainable gamma.
    EXPECT_EQ(up->param_count(), 16 + 2 + 2);
    EXPECT_NE(up->details().find("BN"), std::string::npos) << up->details();
  }
}

struct Built {
  std::unique_ptr<kernels::Backend> backend;
  std::unique_ptr<Network> net;
};
Built Compile(const ModelBuilder& m) {
  Built b;
  b.backend = kernels::CreateCpuBackend();
  auto net = Network::Create(m.spec(), b.backend.get(), NetworkOptions{});
  EXPECT_TRUE(net.ok()) << net.status();
  if (net.ok()) b.net = *std::move(net);
  return b;
}

// identity_init: the random init scaled by 0.1 (the same draws as without identity_init), the
// kernels w[c, c, ...] all 1 for c < min(n_f, n_in), bias 0.
TEST(UpConvInit, IdentityInitScalesAndSetsDiagonalKernels) {
  for (auto [n_in, n_f] : {std::pair<int64_t, int64_t>{3, 5}, {4, 2}}) {
    std::vector<float> w_plain, w_id, b_id;
    for (bool identity : {false, true}) {
      ModelBuilder m;
      std::string x = m.Input({1, 1, 8, 8}, "b,f,x,y", "x");
      std::string c = m.Conv(x, n_in, {1, 1}, {2, 2}, v1::RELU, v1::VALID, 0, false, "c");
      m.UpConv(c, n_f, {2, 2}, v1::RELU, identity, 0, "up");
      Built b = Compile(m);
      ASSERT_NE(b.net, nullptr);
      auto w = b.net->FindParam("up", "w");
      auto bias = b.net->FindParam("up", "b");
      ASSERT_TRUE(w.ok() && bias.ok());
      EXPECT_EQ((*w)->shape, (std::vector<int64_t>{n_f, n_in, 2, 2}));
      (identity ? w_id : w_plain) = b.net->ParamValue(**w);
      if (identity) b_id = b.net->ParamValue(**bias);
    }
    ASSERT_EQ(w_plain.size(), w_id.size());
    for (int64_t o = 0; o < n_f; ++o)
      for (int64_t i = 0; i < n_in; ++i)
        for (int k = 0; k < 4; ++k) {
          const size_t at = (o * n_in + i) * 4 + k;
          if (o == i) {
            EXPECT_EQ(w_id[at], 1.f) << o << "," << i;
          } else {
            EXPECT_FLOAT_EQ(w_id[at], 0.1f * w_plain[at]) << o << "," << i;
          }
        }
    for (float v : b_id) EXPECT_EQ(v, 0.f);
  }
}

// One channel in and out: identity_init makes the UpConv nearest-neighbour upsampling; with the
// kernel set to (1, 10, 100) voxel i spreads into [3i, 3i + 3) unflipped.
TEST(UpConvForward, NearestNeighbourAndUnflippedSpreading) {
  ModelBuilder m;
  std::string x = m.Input({1, 1, 6}, "b,f,x", "x");
  std::string c = m.Conv(x, 1, {1}, {3}, v1::LIN, v1::VALID, 0, false, "c");  // (2), stride 3
  m.UpConv(c, 1, {3}, v1::LIN, true, 0, "up");
  Built b = Compile(m);
  ASSERT_NE(b.net, nullptr);
  Parameter* cw = *b.net->FindParam("c", "w");
  Parameter* cb = *b.net->FindParam("c", "b");
  ASSERT_TRUE(b.net->SetParamValue(*cw, std::vector<float>{1.f}).ok());
  ASSERT_TRUE(b.net->SetParamValue(*cb, std::vector<float>{0.f}).ok());
  ASSERT_TRUE(b.net->SetInput("x", std::vector<float>{1, 5, 2, 3, 7, 4}).ok());
  ASSERT_TRUE(b.net->Forward().ok());
  EXPECT_EQ(*b.net->Output("up"), (std::vector<float>{5, 5, 5, 7, 7, 7}));

  Parameter* uw = *b.net->FindParam("up", "w");
  ASSERT_TRUE(b.net->SetParamValue(*uw, std::vector<float>{1.f, 10.f, 100.f}).ok());
  ASSERT_TRUE(b.net->Forward().ok());
  EXPECT_EQ(*b.net->Output("up"), (std::vector<float>{5, 50, 500, 7, 70, 700}));
}

}  // namespace
}  // namespace elektronn
