// The U-Net examples (reference §9.4, §9.5) and the nm functions of the UpConv family.
//
// Each example's shapes, fields of view, offsets, strides and parameter count are computed here
// independently, layer by layer, by the rules of reference §2.5 (Conv), §2.7 (Pool), §2.8
// (UpConv), §2.9 (UpConvMerge) and §3.2 (designate_nodes' fov repair), and compared with what the
// job file builds.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/strings/str_replace.h"
#include "engine/graph/graph.h"
#include "engine/lua/job_file.h"
#include "tests/support/examples.h"

namespace elektronn {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using V3 = std::array<int64_t, 3>;

using testing::ExamplePath;

// --- the independent calculator ---------------------------------------------------------

struct T {
  V3 s, st = {1, 1, 1}, fov = {1, 1, 1};
  int64_t f = 1;
};

struct Calc {
  int64_t params = 0;
  T Conv(T x, int64_t n_f, V3 k, V3 p = {1, 1, 1}) {
    T y = x;
    for (int j = 0; j < 3; ++j) {
      const int64_t len = x.s[j] - k[j] + 1;  // valid
      EXPECT_EQ(len % p[j], 0);
      y.s[j] = len / p[j];
      y.fov[j] = x.fov[j] <= 0 ? -1 : x.fov[j] + (k[j] + p[j] - 2) * x.st[j];
      y.st[j] = x.st[j] * p[j];
    }
    y.f = n_f;
    params += n_f * x.f * k[0] * k[1] * k[2] + n_f;
    return y;
  }
  T Pool(T x, V3 p) {
    T y = x;
    for (int j = 0; j < 3; ++j) {
      EXPECT_EQ((x.s[j] - p[j]) % p[j], 0);
      y.s[j] = (x.s[j] - p[j]) / p[j] + 1;
      y.fov[j] = x.fov[j] <= 0 ? -1 : x.fov[j] + (p[j] - 1) * x.st[j];
      y.st[j] = x.st[j] * p[j];
    }
    return y;
  }
  T UpConv(T x, int64_t n_f, V3 p) {
    T y = x;
    for (int j = 0; j < 3; ++j) {
      y.s[j] = x.s[j] * p[j];
      y.fov[j] = -1;
      y.st[j] = x.st[j] / p[j];
    }
    y.f = n_f;
    params += n_f * x.f * p[0] * p[1] * p[2] + n_f;
    return y;
  }
  // UpConvMerge(hi, lo, n_f): lo upsampled by the stride ratio, hi cropped to it, lo's channels
  // first; the result has lo's (upsampled) shape and -1 fov.
  T Merge(T hi, T lo, int64_t n_f, V3* unpool) {
    for (int j = 0; j < 3; ++j) (*unpool)[j] = lo.st[j] / hi.st[j];
    T up = UpConv(lo, n_f, *unpool);
    for (int j = 0; j < 3; ++j) EXPECT_EQ((hi.s[j] - up.s[j]) % 2, 0);
    up.f = n_f + hi.f;
    return up;
  }
};

struct Expected {
  V3 input, output;
  V3 fov, offsets, strides = {1, 1, 1};
  std::vector<T> merges;
  std::vector<V3> unpools;
  int64_t params = 0;
  int64_t merge_f0 = 0;
};

// §9.4 / §9.5: conv pairs down, (pools), conv pair at the bottom, three merges up, 1x1x1 head.
struct UNet {
  V3 input;
  std::array<int64_t, 8> down;   // channels of conv0..conv7
  V3 k_hi, k_lo, pool;           // kernels of conv0-5 and conv6-7; pool
  bool extra_pool;               // litelite: a pool between conv6 and conv7
  std::array<int64_t, 3> up_f;   // upconv channels of mrg0..2
  std::array<int64_t, 6> mconv;  // channels of mconv0..5
  V3 k_m01, k_m25;               // kernels of mconv0/1 and mconv2-5
};

Expected Compute(const UNet& u) {
  Calc c;
  Expected e;
  e.input = u.input;
  T x{u.input};
  T conv0 = c.Conv(x, u.down[0], u.k_hi), conv1 = c.Conv(conv0, u.down[1], u.k_hi);
  T conv2 = c.Conv(c.Pool(conv1, u.pool), u.down[2], u.k_hi);
  T conv3 = c.Conv(conv2, u.down[3], u.k_hi);
  T conv4 = c.Conv(c.Pool(conv3, u.pool), u.down[4], u.k_hi);
  T conv5 = c.Conv(conv4, u.down[5], u.k_hi);
  T conv6 = c.Conv(c.Pool(conv5, u.pool), u.down[6], u.k_lo);
  T conv7 = c.Conv(u.extra_pool ? c.Pool(conv6, u.pool) : conv6, u.down[7], u.k_lo);
  V3 unpool;
  T m0 = c.Merge(conv5, conv7, u.up_f[0], &unpool);
  e.merges.push_back(m0);
  e.unpools.push_back(unpool);
  T mc1 = c.Conv(c.Conv(m0, u.mconv[0], u.k_m01), u.mconv[1], u.k_m01);
  T m1 = c.Merge(conv3, mc1, u.up_f[1], &unpool);
  e.merges.push_back(m1);
  e.unpools.push_back(unpool);
  T mc3 = c.Conv(c.Conv(m1, u.mconv[2], u.k_m25), u.mconv[3], u.k_m25);
  T m2 = c.Merge(conv1, mc3, u.up_f[2], &unpool);
  e.merges.push_back(m2);
  e.unpools.push_back(unpool);
  T mc5 = c.Conv(c.Conv(m2, u.mconv[4], u.k_m25), u.mconv[5], u.k_m25);
  T barr = c.Conv(mc5, 2, {1, 1, 1});
  e.output = barr.s;
  e.strides = barr.st;
  for (int j = 0; j < 3; ++j) {  // §3.2: fov = input - (stride * (out - 1) + 1), offsets fov / 2
    e.fov[j] = u.input[j] - (barr.st[j] * (barr.s[j] - 1) + 1);
    e.offsets[j] = e.fov[j] / 2;
  }
  e.params = c.params;
  return e;
}

std::vector<int64_t> Vec(const V3& v) { return {v[0], v[1], v[2]}; }

void CheckExample(const std::string& file, const UNet& u) {
  SCOPED_TRACE(file);
  const Expected e = Compute(u);
  auto job = LoadJobFile(ExamplePath(file));
  ASSERT_TRUE(job.ok()) << job.status();
  auto g = Graph::Create(job->model());
  ASSERT_TRUE(g.ok()) << g.status();
  const Graph& graph = **g;
  const v1::Designations& d = job->model().designations();
  const TaggedShape& in = graph.Find(d.input_node())->shape();
  EXPECT_EQ(in.spatial_shape(), Vec(e.input));
  const TaggedShape& pred = graph.Find(d.prediction_node())->shape();
  EXPECT_EQ(pred.spatial_shape(), Vec(e.output));
  EXPECT_EQ(pred.SizeOf('f'), 2);
  EXPECT_EQ(pred.fov(), Vec(e.fov));
  EXPECT_EQ(pred.offsets(), Vec(e.offsets));
  EXPECT_EQ(pred.strides(), Vec(e.strides));
  const TaggedShape& target = graph.Find(d.target_node())->shape();
  EXPECT_EQ(target.spatial_shape(), Vec(e.output));
  EXPECT_EQ(target.fov(), Vec(e.fov));
  EXPECT_EQ(target.offsets(), Vec(e.offsets));
  EXPECT_EQ(graph.Summary().total_params, e.params);

  // The merges: each a Concat of its UpConv (first) and the cropped skip connection.
  for (int i = 0; i < 3; ++i) {
    const std::string merge = i == 0 ? "merge" : absl::StrCat("merge", i);
    const std::string upconv = i == 0 ? "upconv" : absl::StrCat("upconv", i);
    SCOPED_TRACE(merge);
    const Node* m = graph.Find(merge);
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(m->op(), "Concat");
    ASSERT_EQ(m->parents().size(), 2u);
    EXPECT_EQ(m->parents()[0]->name(), upconv);
    EXPECT_EQ(m->parents()[1]->op(), "Crop");
    EXPECT_EQ(m->shape().spatial_shape(), Vec(e.merges[i].s));
    EXPECT_EQ(m->shape().strides(), Vec(e.merges[i].st));
    EXPECT_EQ(m->shape().fov(), Vec(e.merges[i].fov));
    EXPECT_EQ(m->shape().SizeOf('f'), e.merges[i].f);
    const Node* up = graph.Find(upconv);
    ASSERT_NE(up, nullptr);
    EXPECT_EQ(up->op(), "UpConv");
    EXPECT_THAT(up->spec().upconv().pool_shape(),
                ElementsAre(e.unpools[i][0], e.unpools[i][1], e.unpools[i][2]));
  }

  // What `elektronn check` prints: the repaired fov and offsets of the prediction.
  auto json = CheckJson(*job);
  ASSERT_TRUE(json.ok()) << json.status();
  const auto j = nlohmann::json::parse(*json);
  EXPECT_EQ(j["prediction"]["fov"].get<std::vector<int64_t>>(), Vec(e.fov));
  EXPECT_EQ(j["prediction"]["offsets"].get<std::vector<int64_t>>(), Vec(e.offsets));
  EXPECT_EQ(j["total_params"].get<int64_t>(), e.params);
}

TEST(UNetExamples, Unet3d) {
  CheckExample("unet3d.lua", {{116, 132, 132},
                              {32, 64, 64, 128, 128, 256, 256, 512},
                              {3, 3, 3},
                              {3, 3, 3},
                              {2, 2, 2},
                              false,
                              {512, 256, 128},
                              {256, 256, 128, 128, 64, 64},
                              {3, 3, 3},
                              {3, 3, 3}});
}

TEST(UNetExamples, Unet3dLite) {
  CheckExample("unet3d_lite.lua", {{22, 140, 140},
                                   {32, 32, 64, 64, 128, 128, 256, 256},
                                   {1, 3, 3},
                                   {3, 3, 3},
                                   {1, 2, 2},
                                   false,
                                   {512, 256, 128},
                                   {256, 256, 128, 128, 64, 64},
                                   {1, 3, 3},
                                   {3, 3, 3}});
}

TEST(UNetExamples, Unet3dLitelite) {
  CheckExample("unet3d_litelite.lua", {{22, 140, 140},
                                       {20, 20, 30, 30, 35, 35, 42, 42},
                                       {1, 3, 3},
                                       {3, 3, 3},
                                       {1, 2, 2},
                                       true,
                                       {45, 42, 30},
                                       {42, 42, 35, 35, 20, 20},
                                       {1, 3, 3},
                                       {3, 3, 3}});
}

// --- nm.UpConv, nm.UpConvMerge / nm.AutoMerge -----------------------------------------------

// MODEL assigns `out` from `hi` (x, y = SIZE - 2, stride 1) and `lo` (a Conv of hi with kernel
// LOK and pool 2); a 1x1 head, softmax, target and loss follow, designated.
constexpr const char* kJob = R"(save_path = '/tmp/elk'
n_steps = 10
max_runtime = 60
history_freq = 5
monitor_batch_size = 2
optimiser = 'SGD'
optimiser_params = {lr = 0.01, mom = 0.9}
batch_size = 1
data_class = 'MNISTData'
function create_model()
  local inp = nm.Input{{None, 1, SIZE}, 'b,f,x,y', name = 'raw'}
  local hi = nm.Conv{inp, 4, {3, 3}, name = 'hi'}
  local lo = nm.Conv{hi, 6, {LOK}, {2, 2}, name = 'lo'}
  local out
  MODEL
  out = nm.Conv{out, 2, HEAD, activation_func = 'lin', name = 'head'}
  local probs = nm.Softmax{out}
  local target = nm.Input_like{probs, override_f = 1, name = 'target'}
  local loss = nm.AggregateLoss{nm.MultinoulliNLL{probs, target, target_is_sparse = true},
                                name = 'loss'}
  return nm.designate_nodes{input_node = inp, target_node = target, loss_node = loss,
                            prediction_node = probs, prediction_ext = {loss, probs}}
end
)";

absl::StatusOr<v1::JobSpec> Load(const std::string& model, const std::string& size = "18, 18",
                                 const std::string& lo_kernel = "3, 3",
                                 const std::string& head = "{1, 1}") {
  return LoadJobSource(
      absl::StrReplaceAll(kJob,
                          {{"MODEL", model}, {"SIZE", size}, {"LOK", lo_kernel}, {"HEAD", head}}),
      "job.lua");
}

std::vector<std::string> Names(const v1::ModelSpec& m) {
  std::vector<std::string> names;
  for (const auto& n : m.nodes()) names.push_back(n.name());
  return names;
}

TEST(NmUpConv, RecordsEveryArgument) {
  auto job = Load(
      "local u = nm.UpConv{lo, 5, {2, 2}, activation_func = 'tanh', identity_init = false, "
      "dropout_rate = 0.25, name = 'up'}\n"
      "out = nm.UpConv{parent = u, n_f = 3, pool_shape = 1}");
  ASSERT_TRUE(job.ok()) << job.status();
  const v1::NodeSpec& u = job->model().nodes(3);
  EXPECT_EQ(u.name(), "up");
  EXPECT_THAT(u.inputs(), ElementsAre("lo"));
  EXPECT_EQ(u.upconv().n_f(), 5);
  EXPECT_THAT(u.upconv().pool_shape(), ElementsAre(2, 2));
  EXPECT_EQ(u.upconv().activation(), v1::TANH);
  EXPECT_FALSE(u.upconv().identity_init());
  EXPECT_FLOAT_EQ(u.upconv().dropout_rate(), 0.25f);
  const v1::NodeSpec& v = job->model().nodes(4);
  EXPECT_EQ(v.name(), "upconv");
  EXPECT_THAT(v.upconv().pool_shape(), ElementsAre(1, 1));
  EXPECT_TRUE(v.upconv().identity_init());
  EXPECT_EQ(v.upconv().activation(), v1::RELU);
}

TEST(NmUpConv, RecordsBatchNormalisation) {
  for (auto [bn, mode] : {std::pair{"true", v1::BN_TRAIN},
                          {"'train'", v1::BN_TRAIN},
                          {"'fadeout'", v1::BN_FADEOUT},
                          {"'predict'", v1::BN_PREDICT},
                          {"false", v1::BN_OFF}}) {
    auto job = Load(absl::StrCat("out = nm.UpConv{lo, 5, {2, 2}, batch_normalisation = ", bn, "}"));
    ASSERT_TRUE(job.ok()) << bn << ": " << job.status();
    int found = 0;
    for (const v1::NodeSpec& n : job->model().nodes()) {
      if (!n.has_upconv() || n.name() != "upconv") continue;
      EXPECT_EQ(n.upconv().batch_normalisation(), mode) << bn;
      ++found;
    }
    EXPECT_EQ(found, 1) << bn;
  }
}

// lo (x: 18-2=16, //2 = 7, stride 2) upsampled to 14 with 8 channels; hi (16) cropped by 1.
TEST(NmUpConvMerge, ComposesUpConvCropAndConcatUpsampledFirst) {
  for (const char* call : {"nm.UpConvMerge{hi, lo, 8}", "nm.UpConvMerge{lo, hi, 8}",
                           "nm.AutoMerge{parent1 = hi, parent2 = lo, upconv_n_f = 8}"}) {
    SCOPED_TRACE(call);
    auto job = Load(absl::StrCat("out = ", call));
    ASSERT_TRUE(job.ok()) << job.status();
    EXPECT_THAT(Names(job->model()), ElementsAre("raw", "hi", "lo", "upconv", "crop", "merge",
                                                 "head", "softmax", "target", "nll", "loss"));
    const auto& nodes = job->model().nodes();
    EXPECT_THAT(nodes[3].inputs(), ElementsAre("lo"));
    EXPECT_THAT(nodes[3].upconv().pool_shape(), ElementsAre(2, 2));
    EXPECT_EQ(nodes[3].upconv().n_f(), 8);
    EXPECT_THAT(nodes[4].inputs(), ElementsAre("hi"));
    EXPECT_THAT(nodes[4].crop().crop(), ElementsAre(1, 1));
    EXPECT_THAT(nodes[5].inputs(), ElementsAre("upconv", "crop"));
    EXPECT_EQ(nodes[5].concat().axis(), "f");
    auto g = Graph::Create(job->model());
    ASSERT_TRUE(g.ok()) << g.status();
    const TaggedShape& m = (*g)->Find("merge")->shape();
    EXPECT_EQ(m.spatial_shape(), (std::vector<int64_t>{14, 14}));
    EXPECT_EQ(m.SizeOf('f'), 12);
    EXPECT_EQ(m.strides(), (std::vector<int64_t>{1, 1}));
    EXPECT_EQ(m.fov(), (std::vector<int64_t>{-1, -1}));
  }
}

TEST(NmUpConvMerge, AddModeKwargsAndDisabledUpconv) {
  auto job = Load(
      "out = nm.UpConvMerge{hi, lo, 4, merge_mode = 'add', name = 'sum', "
      "upconv_kwargs = {activation_func = 'lin', identity_init = false}}");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_THAT(Names(job->model()), ElementsAre("raw", "hi", "lo", "upconv", "crop", "sum", "head",
                                               "softmax", "target", "nll", "loss"));
  const auto& nodes = job->model().nodes();
  EXPECT_EQ(nodes[3].upconv().activation(), v1::LIN);
  EXPECT_FALSE(nodes[3].upconv().identity_init());
  EXPECT_TRUE(nodes[5].has_add());
  EXPECT_THAT(nodes[5].inputs(), ElementsAre("upconv", "crop"));

  // Without upsampling the low-resolution node keeps its size: here the high-resolution one is
  // cropped from 16 to 7 (odd difference 9: an error naming both nodes and the axis).
  auto odd = Load("out = nm.UpConvMerge{hi, lo, disable_upconv = true}");
  ASSERT_FALSE(odd.ok());
  EXPECT_THAT(odd.status().message(), HasSubstr("'hi' (x=16) and 'lo' (x=7)"));
  EXPECT_THAT(odd.status().message(), HasSubstr("along x, an odd number"));
}

TEST(NmUpConvMerge, Errors) {
  auto missing = Load("out = nm.UpConvMerge{hi, lo}");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("missing argument 'upconv_n_f'"));
  EXPECT_THAT(missing.status().message(), HasSubstr("'lo' (strides 2,2)"));
  auto mode = Load("out = nm.UpConvMerge{hi, lo, 4, merge_mode = 'mult'}");
  ASSERT_FALSE(mode.ok());
  EXPECT_THAT(mode.status().message(), HasSubstr("merge_mode"));
  auto kw = Load("out = nm.UpConvMerge{hi, lo, 4, upconv_kwargs = {n_f = 3}}");
  ASSERT_FALSE(kw.ok());
  EXPECT_THAT(kw.status().message(), HasSubstr("must not set 'n_f'"));
  // x: hi 17 (from 19), lo (kernel 2) 8 -> upsampled 16: odd difference 1.
  auto odd = Load("out = nm.UpConvMerge{hi, lo, 4}", "19, 19", "2, 2");
  ASSERT_FALSE(odd.ok());
  EXPECT_THAT(odd.status().message(), HasSubstr("'hi' (x=17) and 'upconv' (x=16)"));
}

// designate_nodes repairs the prediction's unknown fov (§3.2), or refuses an uncentred one.
TEST(DesignateNodes, RepairsUpConvFovOrRejectsUncentred) {
  auto job = Load("out = nm.UpConvMerge{hi, lo, 4}");
  ASSERT_TRUE(job.ok()) << job.status();
  auto g = Graph::Create(job->model());
  ASSERT_TRUE(g.ok()) << g.status();
  // Output 14 of input 18: fov 18 - 14 = 4, offsets 2, for prediction and target alike; the
  // merge itself keeps -1.
  for (const char* n : {"softmax", "target"}) {
    EXPECT_EQ((*g)->Find(n)->shape().fov(), (std::vector<int64_t>{4, 4})) << n;
    EXPECT_EQ((*g)->Find(n)->shape().offsets(), (std::vector<int64_t>{2, 2})) << n;
  }
  EXPECT_EQ((*g)->Find("merge")->shape().fov(), (std::vector<int64_t>{-1, -1}));
  // A 2x2 head leaves 13 of 18: diff 5, odd.
  auto uncentred = Load("out = nm.UpConvMerge{hi, lo, 4}", "18, 18", "3, 3", "{2, 2}");
  ASSERT_FALSE(uncentred.ok());
  EXPECT_THAT(uncentred.status().message(), HasSubstr("FOV is not centered"));
  EXPECT_THAT(uncentred.status().message(), HasSubstr("along x"));
}

}  // namespace
}  // namespace elektronn
