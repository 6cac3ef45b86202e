// LoadModel: a saved model restored with a new patch or batch size, frozen or constant weights,
// or max-fragment-pooling for dense prediction.
#include "engine/io/model_loader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/graph/graph.h"
#include "engine/graph/model_builder.h"
#include "engine/optim/optimiser.h"
#include "tests/support/test_dir.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// Two pooling convs (stride 4 along x and y), then a linear 1x1x1 conv and a softmax.
v1::ModelSpec PooledSpec(std::vector<int64_t> zxy = {3, 14, 14}) {
  ModelBuilder m("pooled", 5);
  std::string x = m.Input({-1, 1, zxy[0], zxy[1], zxy[2]}, "b,f,z,x,y", "input");
  std::string c = m.Conv(x, 4, {1, 3, 3}, {1, 2, 2});
  c = m.Conv(c, 3, {2, 3, 3}, {1, 2, 2});
  c = m.Conv(c, 2, {1, 1, 1}, {}, v1::LIN);
  std::string p = m.Softmax(c);
  std::string t = m.InputLike(p, 1, "target");
  std::string nll = m.MultinoulliNLL(p, t, true);
  std::string loss = m.AggregateLoss({nll}, {}, "loss");
  m.Designate(x, t, loss, p);
  return m.spec();
}

std::vector<float> Random(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

std::vector<int64_t> InputSizes(const Network& net) {
  return net.graph().Find(net.graph().spec().designations().input_node())->shape().sizes();
}

class ModelLoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::FreshTestDir("model_loader_test");
    path_ = Save(PooledSpec(), "model.h5");
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Save(const v1::ModelSpec& spec, const std::string& name,
                   const std::vector<std::string>& frozen = {}) {
    auto net = Network::Create(spec, backend_.get());
    EXPECT_TRUE(net.ok()) << net.status();
    for (Parameter* p : (*net)->params()) {
      if (std::find(frozen.begin(), frozen.end(), p->node) != frozen.end()) p->trainable = false;
    }
    const std::string path = (dir_ / name).string();
    absl::Status s = SaveModel(path, **net, nullptr);
    EXPECT_TRUE(s.ok()) << s;
    return path;
  }

  absl::StatusOr<LoadedModel> Load(const LoadOptions& o) {
    return LoadModel(path_, o, backend_.get());
  }

  // One forward/backward/Adam step on random data; returns the parameter values before it.
  std::vector<std::vector<float>> TrainOneStep(Network& net) {
    std::vector<std::vector<float>> before;
    for (const Parameter* p : net.params()) before.push_back(net.ParamValue(*p));
    EXPECT_TRUE(net.SetInput("input", Random(net.graph().Find("input")->numel(), 1)).ok());
    std::vector<float> t(net.graph().Find("target")->numel());
    for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<float>(i % 2);
    EXPECT_TRUE(net.SetInput("target", t).ok());
    EXPECT_TRUE(net.Forward().ok());
    EXPECT_TRUE(net.Backward().ok());
    Optimiser opt(OptimiserKind::kAdam, net.backend(), net.params());
    opt.hyper().lr = 1e-2f;
    opt.Step();
    return before;
  }

  std::unique_ptr<kernels::Backend> backend_ = kernels::CreateCpuBackend();
  fs::path dir_;
  std::string path_;
};

TEST_F(ModelLoaderTest, WithoutOptionsRestoresTheSavedNetwork) {
  auto m = Load({});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(m->notes.empty()) << absl::StrJoin(m->notes, "\n");
  auto f = ReadModelFile(path_);
  ASSERT_TRUE(f.ok());
  for (const Parameter* p : m->net->params()) {
    SCOPED_TRACE(p->key());
    EXPECT_EQ(m->net->ParamValue(*p), f->params.at(p->key()));
    EXPECT_TRUE(p->trainable);
  }
}

TEST_F(ModelLoaderTest, ImposedPatchSizeIsSnappedDownAndTheNoteSaysToWhat) {
  LoadOptions o;
  o.imposed_patch_size = {3, 31, 28};  // x: 31 -> 30, y: 28 -> 26 (valid: x = 2 mod 4)
  auto m = Load(o);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(InputSizes(*m->net), (std::vector<int64_t>{1, 1, 3, 30, 26}));
  ASSERT_EQ(m->notes.size(), 1u);
  EXPECT_EQ(m->notes[0],
            "imposed patch size (3,31,28) of input 'input' changed to (3,30,26), the nearest "
            "valid size not above it");
  // The parameters are the stored ones at the new size.
  auto f = ReadModelFile(path_);
  ASSERT_TRUE(f.ok());
  for (const Parameter* p : m->net->params()) {
    EXPECT_EQ(m->net->ParamValue(*p), f->params.at(p->key())) << p->key();
  }
  ASSERT_TRUE(m->net->SetInput("input", Random(m->net->graph().Find("input")->numel(), 3)).ok());
  EXPECT_TRUE(m->net->Forward().ok());

  // A valid size is taken as it is, without a note.
  o.imposed_patch_size = {4, 18, 22};
  m = Load(o);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(InputSizes(*m->net), (std::vector<int64_t>{1, 1, 4, 18, 22}));
  EXPECT_TRUE(m->notes.empty());
}

// The snapped size is the largest valid one not above the desired size, checked against a
// search that builds the graph at every size.
TEST_F(ModelLoaderTest, SnappedSizeIsTheLargestValidOneNotAbove) {
  auto f = ReadModelFile(path_);
  ASSERT_TRUE(f.ok());
  auto valid = [&](int64_t x) {
    v1::ModelSpec s = f->spec;
    s.mutable_nodes(0)->mutable_input()->set_shape(3, x);
    Graph g;
    return Graph::BuildWithoutHints(s, &g).ok();
  };
  for (int64_t want = 14; want <= 60; ++want) {
    int64_t expect = want;
    while (!valid(expect)) --expect;
    LoadOptions o;
    o.imposed_patch_size = {3, want, 14};
    std::vector<std::string> notes;
    auto s = RewriteSpec(f->spec, o, path_, &notes);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(s->nodes(0).input().shape(3), expect) << "desired x=" << want;
  }
}

TEST_F(ModelLoaderTest, TooSmallPatchIsRefusedNamingFileAndNode) {
  LoadOptions o;
  o.imposed_patch_size = {1, 14, 14};  // the second conv needs z >= 2
  auto m = Load(o);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(m.status().message(), HasSubstr(path_));
  EXPECT_THAT(m.status().message(), HasSubstr("too small"));
  EXPECT_THAT(m.status().message(), HasSubstr("Conv 'conv1'"));

  o.imposed_patch_size = {3, 14};
  m = Load(o);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(), HasSubstr("has 2 entries, but input 'input'"));
}

TEST_F(ModelLoaderTest, ImposedBatchSize) {
  LoadOptions o;
  o.imposed_batch_size = 3;
  auto m = Load(o);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->spec.nodes(0).input().shape(0), 3);
  EXPECT_EQ(InputSizes(*m->net)[0], 3);
  EXPECT_EQ(m->net->graph().Find("softmax")->shape().SizeOf('b'), 3);
}

TEST_F(ModelLoaderTest, ConstantWeightsAreNotUpdatedByAnOptimiserStep) {
  LoadOptions o;
  o.make_weights_constant = true;
  auto m = Load(o);
  ASSERT_TRUE(m.ok()) << m.status();
  auto before = TrainOneStep(*m->net);
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ(m->net->ParamValue(*m->net->params()[i]), before[i]) << m->net->params()[i]->key();
  }
  // Control: the same step changes every parameter of a normally loaded model.
  auto n = Load({});
  ASSERT_TRUE(n.ok());
  before = TrainOneStep(*n->net);
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_NE(n->net->ParamValue(*n->net->params()[i]), before[i]) << n->net->params()[i]->key();
  }
}

TEST_F(ModelLoaderTest, LockFirstNNodesFreezesExactlyThem) {
  LoadOptions o;
  o.lock_first_n = 2;
  auto m = Load(o);
  ASSERT_TRUE(m.ok()) << m.status();
  auto before = TrainOneStep(*m->net);
  for (size_t i = 0; i < before.size(); ++i) {
    const Parameter& p = *m->net->params()[i];
    const bool locked = p.node == "conv" || p.node == "conv1";
    EXPECT_EQ(p.trainable, !locked) << p.key();
    EXPECT_EQ(m->net->ParamValue(p) == before[i], locked) << p.key();
  }
  EXPECT_THAT(absl::StrJoin(m->notes, "\n"), HasSubstr("parameters of conv, conv1 locked"));

  o.lock_first_n = 4;
  m = Load(o);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(), HasSubstr("lock_trainable_params=4"));
}

TEST_F(ModelLoaderTest, LockNamedNodes) {
  LoadOptions o;
  o.lock_nodes = {"conv2"};
  auto m = Load(o);
  ASSERT_TRUE(m.ok()) << m.status();
  for (const Parameter* p : m->net->params()) EXPECT_EQ(p->trainable, p->node != "conv2");
}

TEST_F(ModelLoaderTest, UnknownNodeNameIsAnErrorNamingFileAndNode) {
  LoadOptions o;
  o.lock_nodes = {"conv", "conv9"};
  auto m = Load(o);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(m.status().message(),
            absl::StrCat("model file '", path_,
                         "': lock_trainable_params names node 'conv9', which the model does not "
                         "have; nodes with parameters: conv, conv1, conv2"));
  o.lock_nodes = {"softmax"};
  m = Load(o);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(), HasSubstr("node 'softmax', which has no parameters"));
}

TEST_F(ModelLoaderTest, FrozenParametersStayFrozenUnlessUnlocked) {
  path_ = Save(PooledSpec(), "frozen.h5", {"conv"});
  auto m = Load({});
  ASSERT_TRUE(m.ok()) << m.status();
  for (const Parameter* p : m->net->params()) EXPECT_EQ(p->trainable, p->node != "conv");
  LoadOptions o;
  o.unlock_all_params = true;
  m = Load(o);
  ASSERT_TRUE(m.ok()) << m.status();
  for (const Parameter* p : m->net->params()) EXPECT_TRUE(p->trainable) << p->key();
}

TEST_F(ModelLoaderTest, MissingFileIsNotFound) {
  path_ = (dir_ / "nope.h5").string();
  auto m = Load({});
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(m.status().message(), HasSubstr(path_));
}

TEST_F(ModelLoaderTest, MfpRewriteInsertsToDenseAndActivatesEveryConv) {
  auto f = ReadModelFile(path_);
  ASSERT_TRUE(f.ok());
  LoadOptions o;
  o.override_mfp_to_active = true;
  std::vector<std::string> notes;
  auto s = RewriteSpec(f->spec, o, path_, &notes);
  ASSERT_TRUE(s.ok()) << s.status();
  std::vector<std::string> order;
  for (const v1::NodeSpec& n : s->nodes()) {
    order.push_back(n.name());
    if (n.has_conv()) {
      EXPECT_TRUE(n.conv().mfp()) << n.name();
    }
  }
  EXPECT_EQ(absl::StrJoin(order, " "), "input conv conv1 conv2 to_dense softmax target nll loss");
  const v1::NodeSpec& to_dense = s->nodes(4);
  EXPECT_TRUE(to_dense.has_fragments_to_dense());
  EXPECT_EQ(absl::StrJoin(to_dense.inputs(), ","), "conv2");
  EXPECT_EQ(absl::StrJoin(s->nodes(5).inputs(), ","), "to_dense");
  // Batch 1 imposed (stored: None); the stored 14 is not valid with MFP (x = 1 mod 4 is).
  EXPECT_EQ(absl::StrJoin(s->nodes(0).input().shape(), ","), "1,1,3,13,13");
  EXPECT_THAT(absl::StrJoin(notes, "\n"),
              HasSubstr("batch size of input 'input' changed from None to 1"));
  EXPECT_THAT(absl::StrJoin(notes, "\n"),
              HasSubstr("stored patch size (3,14,14) of input 'input' changed to (3,13,13)"));

  // A model that already has a node named to_dense gets to_dense1.
  v1::ModelSpec named = f->spec;
  named.mutable_nodes(3)->set_name("to_dense");
  named.mutable_nodes(4)->set_inputs(0, "to_dense");
  s = RewriteSpec(named, o, path_, &notes);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->nodes(4).name(), "to_dense1");

  // MFP needs batch 1.
  o.imposed_batch_size = 2;
  s = RewriteSpec(f->spec, o, path_, &notes);
  EXPECT_THAT(s.status().message(), HasSubstr("needs batch size 1"));
}

TEST_F(ModelLoaderTest, MfpRefusesPoolNodes) {
  ModelBuilder m("with_pool", 5);
  std::string x = m.Input({1, 1, 1, 12, 12}, "b,f,z,x,y", "input");
  std::string c = m.Conv(x, 2, {1, 3, 3});
  c = m.Pool(c, {1, 2, 2});
  std::string p = m.Softmax(m.Conv(c, 2, {1, 1, 1}, {}, v1::LIN));
  m.Designate(x, "", "", p);
  std::vector<std::string> notes;
  LoadOptions o;
  o.override_mfp_to_active = true;
  auto s = RewriteSpec(m.spec(), o, "f.h5", &notes);
  EXPECT_THAT(s.status().message(), HasSubstr("Pool 'pool' pools by (1,2,2) outside a Conv"));
}

// Dense prediction in one pass: the MFP network's output, taken at every stride-th voxel from
// a shift (dz, dx, dy), equals the stored network's output on the input shifted by it.
TEST_F(ModelLoaderTest, MfpForwardEqualsPredictionAtEveryShift) {
  const int64_t z = 3, xy = 14, stride = 4;
  LoadOptions o;
  o.override_mfp_to_active = true;
  o.imposed_patch_size = {z, xy + stride - 1, xy + stride - 1};
  auto mfp = Load(o);
  ASSERT_TRUE(mfp.ok()) << mfp.status();
  EXPECT_EQ(InputSizes(*mfp->net), (std::vector<int64_t>{1, 1, z, 17, 17}));
  LoadOptions plain;
  plain.imposed_batch_size = 1;
  auto base = Load(plain);
  ASSERT_TRUE(base.ok()) << base.status();

  const int64_t big = xy + stride - 1;
  const std::vector<float> in = Random(z * big * big, 7);
  ASSERT_TRUE(mfp->net->SetInput("input", in).ok());
  ASSERT_TRUE(mfp->net->Forward().ok());
  auto dense = mfp->net->Output("softmax");
  ASSERT_TRUE(dense.ok()) << dense.status();
  const TaggedShape& ds = mfp->net->graph().Find("softmax")->shape();
  const TaggedShape& bs = base->net->graph().Find("softmax")->shape();
  const int64_t oz = bs.size(2), ox = bs.size(3), oy = bs.size(4);
  ASSERT_EQ(ds.sizes(), (std::vector<int64_t>{1, 2, oz, ox * stride, oy * stride}));

  for (int64_t dx = 0; dx < stride; ++dx) {
    for (int64_t dy = 0; dy < stride; ++dy) {
      std::vector<float> crop(z * xy * xy);
      for (int64_t k = 0; k < z; ++k)
        for (int64_t i = 0; i < xy; ++i)
          for (int64_t j = 0; j < xy; ++j)
            crop[(k * xy + i) * xy + j] = in[(k * big + i + dx) * big + j + dy];
      ASSERT_TRUE(base->net->SetInput("input", crop).ok());
      ASSERT_TRUE(base->net->Forward().ok());
      auto out = base->net->Output("softmax");
      ASSERT_TRUE(out.ok());
      for (int64_t c = 0; c < 2; ++c)
        for (int64_t k = 0; k < oz; ++k)
          for (int64_t i = 0; i < ox; ++i)
            for (int64_t j = 0; j < oy; ++j) {
              const float want = (*out)[((c * oz + k) * ox + i) * oy + j];
              const int64_t X = i * stride + dx, Y = j * stride + dy;
              const float got = (*dense)[((c * oz + k) * ox * stride + X) * oy * stride + Y];
              ASSERT_NEAR(got, want, 1e-5)
                  << "shift " << dx << "," << dy << " at " << i << "," << j;
            }
    }
  }
}

}  // namespace
}  // namespace elektronn
