// PredictVolume (reference §3.6): tiled prediction equals one large forward, MFP equals
// shift-and-stitch, padding and roi geometry, resume after a kill, stop, uint8/channels/roi,
// Zarr with blosc, integer inputs divided by 255.
#include "engine/predict/predictor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/graph/model_builder.h"
#include "engine/graph/network.h"
#include "engine/io/model_file.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using Zxy = std::array<int64_t, 3>;

// A net of valid convolutions without pooling: fov (3,5,5), 2 classes.
v1::ModelSpec ValidNet(Zxy patch) {
  ModelBuilder m("valid", 3);
  std::string x = m.Input({-1, 1, patch[0], patch[1], patch[2]}, "b,f,z,x,y", "raw");
  std::string c = m.Conv(x, 4, {3, 3, 3});
  c = m.Conv(c, 4, {1, 3, 3}, {}, v1::TANH);
  c = m.Conv(c, 2, {1, 1, 1}, {}, v1::LIN);
  std::string p = m.Softmax(c);
  std::string t = m.InputLike(p, 1, "target");
  std::string loss = m.AggregateLoss({m.MultinoulliNLL(p, t, true)}, {}, "loss");
  m.Designate(x, t, loss, p);
  return m.spec();
}

// Pools (1,2,2) then (2,2,2) inside the Convs: strides (2,4,4), fov (3,10,10), 2 classes.
// Valid patches: (3 + 2k, 10 + 4i, 10 + 4j).
v1::ModelSpec StridedNet(Zxy patch) {
  ModelBuilder m("strided", 4);
  std::string x = m.Input({-1, 1, patch[0], patch[1], patch[2]}, "b,f,z,x,y", "raw");
  std::string c = m.Conv(x, 3, {1, 3, 3}, {1, 2, 2});
  c = m.Conv(c, 4, {2, 3, 3}, {2, 2, 2});
  c = m.Conv(c, 2, {1, 1, 1}, {}, v1::LIN);
  std::string p = m.Softmax(c);
  std::string t = m.InputLike(p, 1, "target");
  std::string loss = m.AggregateLoss({m.MultinoulliNLL(p, t, true)}, {}, "loss");
  m.Designate(x, t, loss, p);
  return m.spec();
}

kernels::Backend* Cpu() {
  static std::unique_ptr<kernels::Backend> b = kernels::CreateCpuBackend();
  return b.get();
}

// A volume (c,z,x,y) in memory.
struct Vol {
  VolumeShape shape;
  std::vector<float> v;
  float at(int64_t c, int64_t z, int64_t x, int64_t y) const {
    return v[((c * shape.z + z) * shape.x + x) * shape.y + y];
  }
};

Vol RandomVolume(VolumeShape s, uint32_t seed) {
  Vol v{s, std::vector<float>(s.values())};
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  for (float& x : v.v) x = u(rng);
  return v;
}

class PredictorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           absl::StrCat("predictor_test_", ::getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(dir_);
  }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  // Saves a net with random weights (variance 1/fan-in, so the pools have maxima to choose).
  std::string SaveNet(const v1::ModelSpec& spec, const std::string& name = "model.h5") {
    auto net = Network::Create(spec, Cpu());
    EXPECT_TRUE(net.ok()) << net.status();
    std::mt19937_64 rng(17);
    for (Parameter* p : (*net)->params()) {
      const int64_t n = p->canonical_size();
      std::normal_distribution<float> g(
          0.f, p->shape.size() > 1 ? 1 / std::sqrt(static_cast<float>(n / p->shape[0])) : 0.3f);
      std::vector<float> v(n);
      for (float& x : v) x = g(rng);
      EXPECT_TRUE((*net)->SetParamValue(*p, v).ok());
    }
    const std::string path = Path(name);
    absl::Status s = SaveModel(path, **net, nullptr);
    EXPECT_TRUE(s.ok()) << s;
    return path;
  }

  // Writes a volume as one chunk (float32, or uint8 from values in 0..255).
  std::string WriteVolume(const std::string& spec, const Vol& vol,
                          VolumeDtype dtype = VolumeDtype::kFloat32) {
    VolumeWriterOptions o;
    o.shape = vol.shape;
    o.chunk = {vol.shape.z, vol.shape.x, vol.shape.y};
    o.dtype = dtype;
    auto w = VolumeWriter::Open(Path(spec), o);
    EXPECT_TRUE(w.ok()) << w.status();
    absl::Status s;
    if (dtype == VolumeDtype::kUint8) {
      std::vector<uint8_t> b(vol.v.size());
      for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(vol.v[i]);
      s = (*w)->WriteChunk({0, 0, 0}, b);
    } else {
      s = (*w)->WriteChunk({0, 0, 0}, vol.v);
    }
    EXPECT_TRUE(s.ok()) << s;
    return Path(spec);
  }

  // The whole output as floats (uint8 as their values).
  Vol ReadOutput(const std::string& spec) {
    VolumeReaderOptions ro;
    ro.integers = IntegerValues::kAsIs;
    auto r = VolumeReader::Open(spec, ro);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return {};
    Vol v{(*r)->shape(), std::vector<float>((*r)->shape().values())};
    absl::Status s =
        (*r)->Read({0, 0, 0, v.shape.z, v.shape.x, v.shape.y}, PadMode::kError, v.v.data());
    EXPECT_TRUE(s.ok()) << s;
    return v;
  }

  PredictOptions Options(const std::string& model, const std::string& input,
                         const std::string& output) {
    PredictOptions o;
    o.model = model;
    o.input = input;
    o.output = Path(output);
    return o;
  }

  absl::StatusOr<PredictSummary> Predict(const PredictOptions& o,
                                         std::vector<PredictProgress>* progress = nullptr,
                                         const std::atomic<bool>* stop = nullptr) {
    return PredictVolume(
        o, Cpu(),
        [progress](const PredictProgress& p) {
          if (progress != nullptr) progress->push_back(p);
        },
        stop);
  }

  fs::path dir_;
};

// One forward of `spec` (rebuilt for the whole input) with the saved model's weights.
std::vector<float> LargeForward(const std::string& model, v1::ModelSpec spec, const Vol& in) {
  v1::InputOp* inp = spec.mutable_nodes(0)->mutable_input();
  inp->set_shape(0, 1);
  inp->set_shape(2, in.shape.z);
  inp->set_shape(3, in.shape.x);
  inp->set_shape(4, in.shape.y);
  auto f = ReadModelFile(model);
  EXPECT_TRUE(f.ok()) << f.status();
  auto net = Network::Create(spec, Cpu());
  EXPECT_TRUE(net.ok()) << net.status();
  EXPECT_TRUE(LoadInto(*f, **net, nullptr).ok());
  EXPECT_TRUE((*net)->SetInput("raw", in.v).ok());
  EXPECT_TRUE((*net)->Forward().ok());
  return *(*net)->Output(spec.designations().prediction_node());
}

double MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double d = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    const double e = std::abs(static_cast<double>(a[i]) - b[i]);
    d = std::max(d, std::isnan(e) ? INFINITY : e);
  }
  return d;
}

// Bytes of every chunk file of a Zarr array (names not starting with '.').
std::map<std::string, std::string> ChunkFiles(const std::string& zarr) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::directory_iterator(zarr)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    std::ifstream f(e.path(), std::ios::binary);
    out[name] = std::string(std::istreambuf_iterator<char>(f), {});
  }
  return out;
}

TEST_F(PredictorTest, TiledValidNetEqualsOneLargeForward) {
  const std::string model = SaveNet(ValidNet({5, 9, 9}));
  const Vol raw = RandomVolume({1, 11, 23, 27}, 1);
  const std::string input = WriteVolume("raw.zarr", raw);
  PredictOptions o = Options(model, input, "pred.zarr");
  o.patch = {5, 9, 9};  // out (3,5,5) per tile
  o.pad = PadMode::kError;
  o.chunk = {3, 10, 5};  // (1,2,1) tiles per chunk
  std::vector<PredictProgress> progress;
  auto s = Predict(o, &progress);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->output_shape, (VolumeShape{2, 9, 19, 23}));
  EXPECT_EQ(s->output_offset, (std::array<int64_t, 3>{1, 2, 2}));
  EXPECT_EQ(s->patch, (std::array<int64_t, 3>{5, 9, 9}));
  EXPECT_FALSE(s->mfp);
  EXPECT_EQ(s->chunks_computed, 3 * 2 * 5);
  EXPECT_EQ(s->chunks_skipped, 0);
  const Vol out = ReadOutput(o.output);
  EXPECT_EQ(out.shape, s->output_shape);
  EXPECT_LT(MaxAbsDiff(out.v, LargeForward(model, ValidNet({5, 9, 9}), raw)), 1e-6);

  // Progress: once at the start, then after each chunk, ending at the total.
  ASSERT_EQ(progress.size(), 31u);
  EXPECT_EQ(progress.front().voxels_done, 0);
  EXPECT_EQ(progress.back().voxels_done, 9 * 19 * 23);
  EXPECT_EQ(progress.back().voxels_total, 9 * 19 * 23);
  EXPECT_EQ(progress.back().chunks_done, 30);
  EXPECT_GT(progress.back().voxels_per_s, 0);
  EXPECT_EQ(progress.back().eta_s, 0);
  EXPECT_GT(progress[10].eta_s, 0);
}

// Naive dense prediction of the strided net at output voxel q (input coordinates q..q+fov):
// the plain net on a patch of exactly its fov gives one value per class.
std::vector<float> AtOneVoxel(Network& fov_net, const Vol& raw, Zxy q) {
  std::vector<float> patch;
  for (int64_t z = 0; z < 3; ++z)
    for (int64_t x = 0; x < 10; ++x)
      for (int64_t y = 0; y < 10; ++y) patch.push_back(raw.at(0, q[0] + z, q[1] + x, q[2] + y));
  EXPECT_TRUE(fov_net.SetInput("raw", patch).ok());
  EXPECT_TRUE(fov_net.Forward().ok());
  return *fov_net.Output("softmax");
}

TEST_F(PredictorTest, StridedNetMfpEqualsShiftAndStitchAndTheReferenceGeometry) {
  const std::string model = SaveNet(StridedNet({5, 18, 18}));
  const Vol raw = RandomVolume({1, 13, 37, 34}, 2);
  const std::string input = WriteVolume("raw.h5:/raw", raw);
  PredictOptions o = Options(model, input, "mfp.zarr");
  o.patch = {5, 18, 18};  // out (2,3,3), tile_in (6,21,21), tile_out (4,12,12)
  o.pad = PadMode::kError;
  o.mfp = PredictOptions::Mfp::kOn;
  auto mfp = Predict(o);
  ASSERT_TRUE(mfp.ok()) << mfp.status();
  EXPECT_TRUE(mfp->mfp);
  o.mfp = PredictOptions::Mfp::kOff;
  o.output = Path("sas.zarr");
  auto sas = Predict(o);
  ASSERT_TRUE(sas.ok()) << sas.status();
  EXPECT_FALSE(sas->mfp);
  // §3.6: off = fov/2 = (1,5,5); without padding pred = raw - 2*off.
  const VolumeShape want{2, 13 - 2, 37 - 10, 34 - 10};
  EXPECT_EQ(mfp->output_shape, want);
  EXPECT_EQ(sas->output_shape, want);
  EXPECT_EQ(mfp->output_offset, (std::array<int64_t, 3>{1, 5, 5}));
  const Vol a = ReadOutput(Path("mfp.zarr")), b = ReadOutput(Path("sas.zarr"));
  EXPECT_LT(MaxAbsDiff(a.v, b.v), 1e-5);

  // Each output voxel is the net at the input window it sits in (the shift interleave).
  auto fov_net = Network::Create(StridedNet({3, 10, 10}), Cpu());
  ASSERT_TRUE(fov_net.ok());
  ASSERT_TRUE(LoadInto(*ReadModelFile(model), **fov_net, nullptr).ok());
  std::mt19937 rng(5);
  for (int i = 0; i < 150; ++i) {
    const Zxy q = {static_cast<int64_t>(rng() % want.z), static_cast<int64_t>(rng() % want.x),
                   static_cast<int64_t>(rng() % want.y)};
    const std::vector<float> v = AtOneVoxel(**fov_net, raw, q);
    for (int c = 0; c < 2; ++c) {
      ASSERT_NEAR(b.at(c, q[0], q[1], q[2]), v[c], 1e-5) << q[0] << "," << q[1] << "," << q[2];
    }
  }

  // Mirror padding: the output covers the input; its interior is the unpadded output.
  o.pad = PadMode::kMirror;
  o.output = Path("mirror.zarr");
  o.mfp = PredictOptions::Mfp::kAuto;
  auto m = Predict(o);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(m->mfp);
  EXPECT_EQ(m->output_shape, (VolumeShape{2, 13, 37, 34}));
  EXPECT_EQ(m->output_offset, (std::array<int64_t, 3>{0, 0, 0}));
  const Vol mirror = ReadOutput(Path("mirror.zarr"));
  double d = 0;
  for (int64_t c = 0; c < 2; ++c)
    for (int64_t z = 0; z < want.z; ++z)
      for (int64_t x = 0; x < want.x; ++x)
        for (int64_t y = 0; y < want.y; ++y)
          d = std::max<double>(d, std::abs(mirror.at(c, z + 1, x + 5, y + 5) - a.at(c, z, x, y)));
  EXPECT_LT(d, 1e-5);
  for (float v : mirror.v) ASSERT_FALSE(std::isnan(v));
}

}  // namespace
}  // namespace elektronn
