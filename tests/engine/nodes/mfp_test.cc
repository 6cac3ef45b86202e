// Max-fragment-pooling and FragmentsToDense (reference §2.6): the 1-D example, and on
// neuro3d-like nets MFP == shift-and-stitch == a large strided forward.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <random>

#include "absl/strings/str_format.h"
#include "engine/graph/graph.h"
#include "engine/graph/model_builder.h"
#include "engine/graph/network.h"
#include "engine/lua/job_file.h"

namespace elektronn {
namespace {

using ::testing::HasSubstr;
using Zxy = std::array<int64_t, 3>;

kernels::Backend* Cpu() {
  static std::unique_ptr<kernels::Backend> b = kernels::CreateCpuBackend();
  return b.get();
}

// Appends FragmentsToDense (name "to_dense") to `spec` after `parent`.
void AddToDense(v1::ModelSpec& spec, const std::string& parent) {
  v1::NodeSpec* n = spec.add_nodes();
  n->set_name("to_dense");
  n->add_inputs(parent);
  n->mutable_fragments_to_dense();
}

TEST(Mfp, OneDimensionalExampleOfTheReference) {
  // Conv output x0..x4 (weights (1, 0), no bias: the input's first five values), p=2:
  // fragment t=0 = [max(x0,x1), max(x2,x3)], t=1 = [max(x1,x2), max(x3,x4)].
  ModelBuilder m;
  std::string x = m.Input({1, 1, 6}, "b,f,x", "x");
  std::string c = m.Conv(x, 1, {2}, {2}, v1::LIN, v1::VALID, 0, /*mfp=*/true, "conv");
  v1::ModelSpec spec = m.spec();
  AddToDense(spec, c);
  auto net = Network::Create(spec, Cpu());
  ASSERT_TRUE(net.ok()) << net.status();
  ASSERT_TRUE(
      (*net)->SetParamValue(**(*net)->FindParam("conv", "w"), std::vector<float>{1, 0}).ok());
  ASSERT_TRUE((*net)->SetParamValue(**(*net)->FindParam("conv", "b"), std::vector<float>{0}).ok());
  ASSERT_TRUE((*net)->SetInput("x", std::vector<float>{5, 1, 2, 8, 3, 0}).ok());
  ASSERT_TRUE((*net)->Forward().ok());
  EXPECT_EQ(*(*net)->Output("conv"), (std::vector<float>{5, 8, 2, 8}));  // batch (t), f, x
  EXPECT_EQ(*(*net)->Output("to_dense"), (std::vector<float>{5, 2, 8, 8}));
  const TaggedShape& d = (*net)->graph().Find("to_dense")->shape();
  EXPECT_EQ(d.ToString(), "[(1,b), (1,f), (4,x)]");
  EXPECT_EQ(d.strides(), (std::vector<int64_t>{1}));
  EXPECT_EQ(d.mfp_offsets(), (std::vector<std::vector<int64_t>>{{0}}));
  EXPECT_EQ(d.fov(), (std::vector<int64_t>{3}));
}

// A small net of 3-D convolutions; `mfp` turns on max-fragment-pooling in every layer.
struct Layer {
  int64_t n_f;
  std::vector<int64_t> kernel, pool;
};

// neuro3d_lite (reference §9.2) scaled down: kz=1 layers (the 2-D path), (1,2,2) pools twice,
// a (2,1,1) pool and 1x1x1 layers (the matrix-product path). Strides (2,4,4).
const std::vector<Layer> kLite = {{4, {1, 3, 3}, {1, 2, 2}}, {6, {3, 3, 3}, {1, 2, 2}},
                                  {8, {2, 3, 3}, {2, 1, 1}}, {8, {1, 3, 3}, {}},
                                  {8, {1, 1, 1}, {}},        {3, {1, 1, 1}, {}}};
// neuro3d-like (reference §9.1): pools (1,2,2) and (2,2,2). Strides (2,4,4).
const std::vector<Layer> kNeuro3d = {
    {4, {1, 4, 4}, {1, 2, 2}}, {6, {2, 3, 3}, {2, 2, 2}}, {6, {2, 3, 3}, {}}, {3, {1, 1, 1}, {}}};

v1::ModelSpec Net(const std::vector<Layer>& layers, Zxy input, bool mfp) {
  ModelBuilder m("mfp_net", 3);
  std::string x = m.Input({1, 1, input[0], input[1], input[2]}, "b,f,z,x,y", "raw");
  for (size_t i = 0; i < layers.size(); ++i) {
    const bool last = i + 1 == layers.size();
    x = m.Conv(x, layers[i].n_f, layers[i].kernel, layers[i].pool, last ? v1::LIN : v1::RELU,
               v1::VALID, 0, mfp, absl::StrFormat("conv%d", i));
  }
  v1::ModelSpec spec = m.spec();
  if (mfp) AddToDense(spec, x);
  return spec;
}

// A single-channel volume (z, x, y).
struct Volume {
  Zxy size;
  std::vector<float> v;
  Volume Crop(Zxy origin, Zxy extent) const {
    Volume out{extent, {}};
    for (int64_t z = 0; z < extent[0]; ++z)
      for (int64_t x = 0; x < extent[1]; ++x)
        for (int64_t y = 0; y < extent[2]; ++y)
          out.v.push_back(v[((origin[0] + z) * size[1] + origin[1] + x) * size[2] + origin[2] + y]);
    return out;
  }
};

// Output of `node` for the input `raw` (logical layout: batch 1, f, z, x, y).
std::vector<float> Run(Network& net, const std::string& node, const Volume& raw) {
  EXPECT_TRUE(net.SetInput("raw", raw.v).ok());
  EXPECT_TRUE(net.Forward().ok());
  return *net.Output(node);
}

void CopyParams(const Network& from, Network& to) {
  for (const Parameter* p : from.params()) {
    auto q = to.FindParam(p->node, p->name);
    ASSERT_TRUE(q.ok()) << q.status();
    ASSERT_TRUE(to.SetParamValue(**q, from.ParamValue(*p)).ok());
  }
}

// max |a - b| / max |b|.
double RelError(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double d = 0, n = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    d = std::max(d, std::abs(static_cast<double>(a[i]) - b[i]));
    n = std::max(n, std::abs(static_cast<double>(b[i])));
  }
  return d / n;
}

// The dense result three ways, for a net whose non-MFP version takes `patch` (valid) and has
// strides S = (2, 4, 4):
//  * MFP: one forward on patch + S - 1 with every Conv mfp=True, then FragmentsToDense;
//  * shift-and-stitch (reference §3.6): prod(S) forwards of the plain net on the input shifted
//    by t in [0, S), each written to dense[t::S];
//  * one large plain forward on patch + S, whose outputs at stride S are dense[::S] (and one
//    more position beyond it on each axis).
// And the backward the same way, exactly rather than by finite differences (sliding max-pools
// have many near-ties, where differences jump): for L = sum(dense * R), MFP's gradients equal
// the sums over shifts of the plain net's gradients for L_t = sum(pass_t * R[t::S]).
void ExpectMfpEqualsShiftAndStitch(const std::vector<Layer>& layers, Zxy patch) {
  const Zxy S = {2, 4, 4};
  const Zxy mfp_in = {patch[0] + S[0] - 1, patch[1] + S[1] - 1, patch[2] + S[2] - 1};
  const Zxy large_in = {patch[0] + S[0], patch[1] + S[1], patch[2] + S[2]};
  NetworkOptions with_input_grad;
  with_input_grad.input_gradients = true;
  auto plain = Network::Create(Net(layers, patch, false), Cpu(), with_input_grad);
  auto mfp = Network::Create(Net(layers, mfp_in, true), Cpu(), with_input_grad);
  auto large = Network::Create(Net(layers, large_in, false), Cpu());
  ASSERT_TRUE(plain.ok()) << plain.status();
  ASSERT_TRUE(mfp.ok()) << mfp.status();
  ASSERT_TRUE(large.ok()) << large.status();
  // Random weights (variance 1 / fan-in) and biases, the same in all three nets (the
  // initial positive ReLU biases would leave the max-pools less to choose between).
  std::mt19937_64 rng(11);
  for (Parameter* p : (*plain)->params()) {
    const int64_t n = p->canonical_size();
    std::normal_distribution<float> g(
        0.f, p->shape.size() > 1 ? 1 / std::sqrt(static_cast<float>(n / p->shape[0])) : 0.1f);
    std::vector<float> v(n);
    for (float& x : v) x = g(rng);
    ASSERT_TRUE((*plain)->SetParamValue(*p, v).ok());
  }
  CopyParams(**plain, **mfp);
  CopyParams(**plain, **large);

  Volume raw{large_in, {}};
  std::uniform_real_distribution<float> u(0.f, 1.f);
  for (int64_t i = 0; i < large_in[0] * large_in[1] * large_in[2]; ++i) raw.v.push_back(u(rng));

  const std::string last = absl::StrFormat("conv%d", layers.size() - 1);
  const TaggedShape& out = (*plain)->graph().Find(last)->shape();
  ASSERT_EQ(out.strides(), (std::vector<int64_t>(S.begin(), S.end())));
  const int64_t C = out.SizeOf('f');
  const Zxy o = {out.SizeOf('z'), out.SizeOf('x'), out.SizeOf('y')};
  const Zxy D = {o[0] * S[0], o[1] * S[1], o[2] * S[2]};
  auto dense_at = [&](int64_t c, int64_t z, int64_t x, int64_t y) {
    return ((c * D[0] + z) * D[1] + x) * D[2] + y;
  };

  const TaggedShape& dense_shape = (*mfp)->graph().Find("to_dense")->shape();
  EXPECT_EQ(dense_shape.ToString(),
            absl::StrFormat("[(1,b), (%d,f), (%d,z), (%d,x), (%d,y)]", C, D[0], D[1], D[2]));
  EXPECT_EQ(dense_shape.fov(), out.fov());
  EXPECT_EQ(dense_shape.strides(), (std::vector<int64_t>{1, 1, 1}));
  const std::vector<float> dense = Run(**mfp, "to_dense", raw.Crop({0, 0, 0}, mfp_in));
  std::vector<float> seed(dense.size());
  for (float& r : seed) r = u(rng) - 0.5f;
  ASSERT_TRUE((*mfp)->BackwardFrom("to_dense", seed).ok());
  const std::vector<float> mfp_dx = *(*mfp)->InputGradient("raw");

  std::vector<float> stitched(dense.size(), NAN);
  std::vector<float> stitched_dx(mfp_dx.size(), 0.f);
  std::vector<std::vector<float>> stitched_dw;
  for (const Parameter* p : (*plain)->params()) stitched_dw.emplace_back(p->canonical_size(), 0.f);
  for (int64_t tz = 0; tz < S[0]; ++tz)
    for (int64_t tx = 0; tx < S[1]; ++tx)
      for (int64_t ty = 0; ty < S[2]; ++ty) {
        const std::vector<float> r = Run(**plain, last, raw.Crop({tz, tx, ty}, patch));
        std::vector<float> seed_t(r.size());
        for (int64_t c = 0, i = 0; c < C; ++c)
          for (int64_t z = 0; z < o[0]; ++z)
            for (int64_t x = 0; x < o[1]; ++x)
              for (int64_t y = 0; y < o[2]; ++y, ++i) {
                const int64_t at = dense_at(c, tz + z * S[0], tx + x * S[1], ty + y * S[2]);
                stitched[at] = r[i];
                seed_t[i] = seed[at];
              }
        ASSERT_TRUE((*plain)->BackwardFrom(last, seed_t).ok());
        const std::vector<float> dx = *(*plain)->InputGradient("raw");
        for (int64_t z = 0, i = 0; z < patch[0]; ++z)
          for (int64_t x = 0; x < patch[1]; ++x)
            for (int64_t y = 0; y < patch[2]; ++y, ++i)
              stitched_dx[((tz + z) * mfp_in[1] + tx + x) * mfp_in[2] + ty + y] += dx[i];
        for (size_t k = 0; k < stitched_dw.size(); ++k) {
          const std::vector<float> dw = (*plain)->ParamGrad(*(*plain)->params()[k]);
          for (size_t i = 0; i < dw.size(); ++i) stitched_dw[k][i] += dw[i];
        }
      }
  EXPECT_LT(RelError(dense, stitched), 1e-5);
  EXPECT_LT(RelError(mfp_dx, stitched_dx), 1e-4);
  for (size_t k = 0; k < stitched_dw.size(); ++k) {
    const Parameter& p = *(*plain)->params()[k];
    const std::vector<float> dw = (*mfp)->ParamGrad(**(*mfp)->FindParam(p.node, p.name));
    EXPECT_LT(RelError(dw, stitched_dw[k]), 1e-4) << p.key();
  }

  // The large forward: (o + 1) outputs per axis, of which the first o are dense[::S].
  const std::vector<float> big = Run(**large, last, raw);
  const Zxy bo = {o[0] + 1, o[1] + 1, o[2] + 1};
  ASSERT_EQ(static_cast<int64_t>(big.size()), C * bo[0] * bo[1] * bo[2]);
  std::vector<float> sub, big_sub;
  for (int64_t c = 0; c < C; ++c)
    for (int64_t z = 0; z < o[0]; ++z)
      for (int64_t x = 0; x < o[1]; ++x)
        for (int64_t y = 0; y < o[2]; ++y) {
          sub.push_back(dense[dense_at(c, z * S[0], x * S[1], y * S[2])]);
          big_sub.push_back(big[((c * bo[0] + z) * bo[1] + x) * bo[2] + y]);
        }
  EXPECT_LT(RelError(sub, big_sub), 1e-5);
}

TEST(Mfp, Neuro3dLiteLikeNetEqualsShiftAndStitch) {
  // Plain output (2, 2, 2) per pass; MFP input (8, 33, 33) gives a (4, 8, 8) dense volume.
  ExpectMfpEqualsShiftAndStitch(kLite, {7, 30, 30});
}

TEST(Mfp, Neuro3dLikeNetEqualsShiftAndStitch) {
  ExpectMfpEqualsShiftAndStitch(kNeuro3d, {7, 23, 23});
}

TEST(Mfp, BatchOfSeveralImagesKeepsShiftMajorOrder) {
  // Fragment batch index = index(t) * B_in + b (reference §2.6, step 3).
  ModelBuilder m;
  std::string x = m.Input({2, 1, 5}, "b,f,x", "x");
  std::string c = m.Conv(x, 1, {1}, {2}, v1::LIN, v1::VALID, 0, /*mfp=*/true, "conv");
  auto net = Network::Create(m.spec(), Cpu());
  ASSERT_TRUE(net.ok()) << net.status();
  ASSERT_TRUE((*net)->SetParamValue(**(*net)->FindParam("conv", "w"), std::vector<float>{1}).ok());
  ASSERT_TRUE((*net)->SetParamValue(**(*net)->FindParam("conv", "b"), std::vector<float>{0}).ok());
  ASSERT_TRUE((*net)->SetInput("x", std::vector<float>{7, 1, 2, 6, 3, 9, 4, 8, 5, 0}).ok());
  ASSERT_TRUE((*net)->Forward().ok());
  // t=0: image 0 [7, 6], image 1 [9, 8]; t=1: image 0 [2, 6], image 1 [8, 5].
  EXPECT_EQ(*(*net)->Output("conv"), (std::vector<float>{7, 6, 9, 8, 2, 6, 8, 5}));
}

TEST(Mfp, FragmentsToDenseNeedsEveryPoolToBeMfp) {
  ModelBuilder m;
  std::string x = m.Input({1, 1, 12, 12}, "b,f,x,y", "x");
  x = m.Conv(x, 2, {2, 2}, {2, 2}, v1::RELU, v1::VALID, 0, /*mfp=*/true);
  x = m.Conv(x, 2, {2, 2});
  x = m.Pool(x, {2, 2});
  v1::ModelSpec spec = m.spec();
  AddToDense(spec, x);
  auto g = Graph::Create(spec);
  ASSERT_FALSE(g.ok());
  EXPECT_THAT(std::string(g.status().message()),
              HasSubstr("FragmentsToDense 'to_dense': its input has 4 fragment(s) but strides "
                        "(4,4)"));
  EXPECT_THAT(std::string(g.status().message()), HasSubstr("Conv with mfp=True"));
}

TEST(Mfp, FragmentsToDenseNeedsABatchOfOneImage) {
  ModelBuilder m;
  std::string x = m.Input({-1, 1, 12, 12}, "b,f,x,y", "x");
  x = m.Conv(x, 2, {2, 2}, {2, 2}, v1::RELU, v1::VALID, 0, /*mfp=*/true);
  v1::ModelSpec spec = m.spec();
  AddToDense(spec, x);
  ASSERT_TRUE(Graph::Create(spec).ok());  // an unknown batch is fine until compiled
  auto net = Network::Create(spec, Cpu(), {.batch_size = 2});
  ASSERT_FALSE(net.ok());
  EXPECT_THAT(std::string(net.status().message()),
              HasSubstr("FragmentsToDense 'to_dense': its input batch holds 8 entries, not the "
                        "4 fragments of one image; MFP prediction needs a network input batch "
                        "of 1"));
  EXPECT_TRUE(Network::Create(spec, Cpu(), {.batch_size = 1}).ok());
}

TEST(Mfp, PoolRefusesMfpAsElektronn2) {
  ModelBuilder m;
  std::string x = m.Input({1, 1, 8, 8}, "b,f,x,y", "x");
  m.Pool(x, {2, 2});
  v1::ModelSpec spec = m.spec();
  spec.mutable_nodes(1)->mutable_pool()->set_mfp(true);
  auto g = Graph::Create(spec);
  ASSERT_FALSE(g.ok());
  EXPECT_THAT(std::string(g.status().message()), HasSubstr("use Conv(..., pool_shape, mfp=True)"));
}

TEST(Mfp, JobFilesCallFragmentsToDense) {
  const std::string src = R"(save_path = '/tmp/elk'
n_steps = 10
max_runtime = 60
history_freq = 5
monitor_batch_size = 2
optimiser = 'SGD'
optimiser_params = {lr = 0.01, mom = 0.9}
batch_size = 1
data_class = 'MNISTData'
function create_model()
  local inp = nm.Input{{1, 1, 28, 28}, 'b,f,x,y', name = 'raw'}
  local out = nm.Conv{inp, 4, {2, 2}, {2, 2}, mfp = true}
  out = nm.Conv{out, 2, {3, 3}, {2, 2}, activation_func = 'lin', mfp = true}
  local dense = nm.FragmentsToDense{out}
  local probs = nm.Softmax{dense}
  local target = nm.Input_like{probs, override_f = 1, name = 'target'}
  local nll = nm.MultinoulliNLL{probs, target, target_is_sparse = true}
  local loss = nm.AggregateLoss{nll, name = 'loss'}
  return nm.designate_nodes{input_node = inp, target_node = target, loss_node = loss,
                            prediction_node = probs}
end
)";
  auto job = LoadJobSource(src, "job.lua");
  ASSERT_TRUE(job.ok()) << job.status();
  auto g = Graph::Create(job->model());
  ASSERT_TRUE(g.ok()) << g.status();
  Node* d = (*g)->Find("to_dense");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->op(), "FragmentsToDense");
  EXPECT_EQ(d->shape().ToString(), "[(1,b), (2,f), (20,x), (20,y)]");
  EXPECT_EQ(d->shape().strides(), (std::vector<int64_t>{1, 1}));
}

}  // namespace
}  // namespace elektronn
