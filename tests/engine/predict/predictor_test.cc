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
#include "engine/io/knossos.h"
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

// A KNOSSOS input (issue 15): the prediction equals the one of the same voxels stored as a Zarr
// array, across cube borders (the volume spans 2 x 2 cubes in x and y).
TEST_F(PredictorTest, KnossosInputPredictsLikeTheSameVoxelsInZarr) {
  const std::string model = SaveNet(ValidNet({5, 9, 9}));
  const std::string knossos = Path("em");
  // KNOSSOS (x, y, z) = (140, 133, 9): the volume (z, x, y) = (9, 133, 140).
  auto value = [](int64_t x, int64_t y, int64_t z) {
    return static_cast<uint8_t>((x * 7 + y * 13 + z * 29) % 251);
  };
  ASSERT_TRUE(WriteKnossosDataset(knossos, "em", {140, 133, 9}, value).ok());
  Vol raw{{1, 9, 133, 140}, {}};
  for (int64_t z = 0; z < 9; ++z)
    for (int64_t x = 0; x < 133; ++x)
      for (int64_t y = 0; y < 140; ++y) raw.v.push_back(value(y, x, z));
  const std::string zarr = WriteVolume("raw.zarr", raw, VolumeDtype::kUint8);
  PredictOptions a = Options(model, absl::StrCat("knossos:", knossos), "from_knossos.zarr");
  PredictOptions b = Options(model, zarr, "from_zarr.zarr");
  for (PredictOptions* o : {&a, &b}) {
    o->patch = {5, 41, 41};
    auto s = Predict(*o);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(s->output_shape, (VolumeShape{2, 9, 133, 140}));  // mirror padding: whole input
  }
  const Vol pa = ReadOutput(a.output), pb = ReadOutput(b.output);
  ASSERT_EQ(pa.v.size(), pb.v.size());
  EXPECT_EQ(MaxAbsDiff(pa.v, pb.v), 0.0);
  // And it is a prediction of these voxels, not of zeros.
  const Vol zeros{{1, 9, 133, 140}, std::vector<float>(9 * 133 * 140, 0.f)};
  PredictOptions c = Options(model, WriteVolume("zeros.zarr", zeros), "from_zeros.zarr");
  c.patch = {5, 41, 41};
  ASSERT_TRUE(Predict(c).ok());
  EXPECT_GT(MaxAbsDiff(pa.v, ReadOutput(c.output).v), 1e-3);
}

// batch_norm family: a model saved with BN in 'train' mode (a LAST checkpoint) predicts with its
// running statistics, so tiles do not normalise by their own statistics.
TEST_F(PredictorTest, BatchNormPredictsWithTheRunningStatistics) {
  v1::ModelSpec spec = ValidNet({5, 9, 9});
  spec.mutable_nodes(1)->mutable_conv()->set_batch_normalisation(v1::BN_TRAIN);
  std::string model = SaveNet(spec);
  {  // positive running std, as training leaves it
    auto f = ReadModelFile(model);
    ASSERT_TRUE(f.ok()) << f.status();
    auto net = Network::Create(spec, Cpu());
    ASSERT_TRUE(net.ok()) << net.status();
    ASSERT_TRUE(LoadInto(*f, **net, nullptr).ok());
    Parameter* std = *(*net)->FindParam("conv", "std");
    ASSERT_TRUE((*net)->SetParamValue(*std, std::vector<float>{0.5f, 1.f, 2.f, 3.f}).ok());
    ASSERT_TRUE(SaveModel(model, **net, nullptr).ok());
  }
  const Vol raw = RandomVolume({1, 11, 23, 27}, 5);
  const std::string input = WriteVolume("raw.zarr", raw);
  PredictOptions o = Options(model, input, "pred.zarr");
  o.patch = {5, 9, 9};
  o.pad = PadMode::kError;
  ASSERT_TRUE(Predict(o).ok());
  v1::ModelSpec predict = spec;
  predict.mutable_nodes(1)->mutable_conv()->set_batch_normalisation(v1::BN_PREDICT);
  EXPECT_LT(MaxAbsDiff(ReadOutput(o.output).v, LargeForward(model, predict, raw)), 1e-5);
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
  const Vol raw = RandomVolume({1, 11, 33, 34}, 2);
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
  const VolumeShape want{2, 11 - 2, 33 - 10, 34 - 10};  // tiles (3,2,2)
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
  for (int i = 0; i < 60; ++i) {
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
  EXPECT_EQ(m->output_shape, (VolumeShape{2, 11, 33, 34}));
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

// Runs PredictVolume in a child process that SIGKILLs itself once `kill_after` chunks are
// durable. The child predicts on a fresh thread with its own backend: OpenMP's thread pool of
// the parent's main thread does not survive fork.
void PredictUntilKilled(PredictOptions o, int64_t kill_after) {
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::thread t([&] {
      o.test_after_chunk = [kill_after](int64_t n) {
        if (n == kill_after) ::raise(SIGKILL);
      };
      auto backend = kernels::CreateCpuBackend();
      (void)PredictVolume(o, backend.get());
    });
    t.join();
    ::_exit(3);  // only reached when the kill did not happen
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;
}

TEST_F(PredictorTest, KilledRunResumesToTheSameBytes) {
  const std::string model = SaveNet(StridedNet({5, 18, 18}));
  const std::string input = WriteVolume("raw.zarr", RandomVolume({1, 13, 37, 34}, 3));
  PredictOptions o = Options(model, input, "whole.h5:/pred");
  o.patch = {5, 18, 18};  // tile_out (4,12,12): 4x4x3 = 48 tiles
  o.chunk = {4, 24, 12};  // 4x2x3 = 24 chunks of 1x2x1 tiles
  auto whole = Predict(o);
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(whole->chunks_computed, 24);

  o.output = Path("resumed.h5:/pred");
  PredictUntilKilled(o, 7);
  std::vector<PredictProgress> progress;
  auto resumed = Predict(o, &progress);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->chunks_skipped, 7);
  EXPECT_EQ(resumed->chunks_computed, 24 - 7);
  EXPECT_THAT(absl::StrJoin(resumed->notes, "\n"), HasSubstr("7 of 24 chunks done"));
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.front().chunks_done, 7);
  EXPECT_GT(progress.front().voxels_done, 0);  // the earlier run's chunks count as done
  const Vol a = ReadOutput(Path("whole.h5:/pred")), b = ReadOutput(Path("resumed.h5:/pred"));
  ASSERT_EQ(a.v.size(), b.v.size());
  EXPECT_EQ(std::memcmp(a.v.data(), b.v.data(), a.v.size() * sizeof(float)), 0);

  // A run of everything done computes nothing.
  auto again = Predict(o);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->chunks_skipped, 24);
  EXPECT_EQ(again->chunks_computed, 0);
}

TEST_F(PredictorTest, StopEndsWithDurableChunksAndResumes) {
  const std::string model = SaveNet(ValidNet({5, 9, 9}));
  const std::string input = WriteVolume("raw.zarr", RandomVolume({1, 11, 23, 27}, 4));
  PredictOptions o = Options(model, input, "whole.zarr");
  o.patch = {5, 9, 9};
  o.chunk = {3, 5, 5};  // 4x5x6 = 120 chunks (pad mirror: 11x23x27)
  o.compression.kind = Compression::Kind::kBlosc;
  auto whole = Predict(o);
  ASSERT_TRUE(whole.ok()) << whole.status();

  o.output = Path("stopped.zarr");
  std::atomic<bool> stop{false};
  std::vector<PredictProgress> progress;
  auto stopped = PredictVolume(
      o, Cpu(),
      [&](const PredictProgress& p) {
        progress.push_back(p);
        if (p.chunks_done == 5) stop = true;
      },
      &stop);
  ASSERT_EQ(stopped.status().code(), absl::StatusCode::kCancelled) << stopped.status();
  EXPECT_THAT(stopped.status().message(), HasSubstr("run again with the same arguments"));
  const int64_t done = progress.back().chunks_done;
  EXPECT_GE(done, 5);
  EXPECT_LE(done, 5 + 3);  // at most the chunks in flight
  EXPECT_EQ(static_cast<int64_t>(ChunkFiles(o.output).size()), done);

  auto resumed = Predict(o);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->chunks_skipped, done);
  EXPECT_EQ(resumed->chunks_computed, 120 - done);
  EXPECT_EQ(ChunkFiles(Path("whole.zarr")), ChunkFiles(o.output));  // the same bytes

  // Other arguments are refused, naming what changed.
  PredictOptions other = o;
  other.pad = PadMode::kZero;  // the same shape, chunks and dtype
  auto refused = Predict(other);
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
  EXPECT_THAT(refused.status().message(), HasSubstr("pad mirror"));
  EXPECT_THAT(refused.status().message(), HasSubstr("pad zero"));
  EXPECT_THAT(refused.status().message(), HasSubstr("remove it or write elsewhere"));
  other = o;
  other.resume = false;
  EXPECT_FALSE(Predict(other).ok());
}

TEST_F(PredictorTest, DifferentModelWeightsAreRefused) {
  const std::string model = SaveNet(StridedNet({5, 18, 18}));
  const std::string input = WriteVolume("raw.zarr", RandomVolume({1, 7, 20, 20}, 6));
  PredictOptions o = Options(model, input, "pred.zarr");
  o.patch = {5, 18, 18};
  ASSERT_TRUE(Predict(o).ok());
  ASSERT_TRUE(Predict(o).ok());  // same arguments: continues (nothing left)
  // The same file name with other weights (retrained) is another model.
  auto net = Network::Create(StridedNet({5, 18, 18}), Cpu());
  ASSERT_TRUE(net.ok());
  ASSERT_TRUE(SaveModel(model, **net, nullptr).ok());
  auto refused = Predict(o);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("fingerprint of the arguments"));
  // MFP on and off give (slightly) different bytes: also refused.
  o.output = Path("mfp.zarr");
  o.mfp = PredictOptions::Mfp::kOn;
  ASSERT_TRUE(Predict(o).ok());
  o.mfp = PredictOptions::Mfp::kOff;
  refused = Predict(o);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("mfp on"));
}

TEST_F(PredictorTest, Uint8ChannelsRoiBloscAndIntegerInputs) {
  const std::string model = SaveNet(StridedNet({5, 18, 18}));
  // Integer input: uint8 values v read as v / 255.
  Vol bytes = RandomVolume({1, 9, 30, 29}, 7);
  Vol scaled = bytes;
  for (size_t i = 0; i < bytes.v.size(); ++i) {
    bytes.v[i] = std::floor(bytes.v[i] * 256);
    scaled.v[i] = bytes.v[i] / 255.f;
  }
  const std::string u8 = WriteVolume("raw8.zarr", bytes, VolumeDtype::kUint8);
  const std::string f32 = WriteVolume("raw.h5:/raw", scaled);
  PredictOptions o = Options(model, f32, "ref.zarr");
  o.patch = {5, 18, 18};
  ASSERT_TRUE(Predict(o).ok());
  const Vol ref = ReadOutput(o.output);
  ASSERT_EQ(ref.shape, (VolumeShape{2, 9, 30, 29}));

  o.input = u8;
  o.output = Path("from_uint8.zarr");
  ASSERT_TRUE(Predict(o).ok());
  EXPECT_LT(MaxAbsDiff(ReadOutput(o.output).v, ref.v), 1e-6);

  // uint8 output of channel 1, Zarr with blosc.
  o.output = Path("u8.zarr");
  o.as_uint8 = true;
  o.channels = {1};
  o.compression.kind = Compression::Kind::kBlosc;
  auto s = Predict(o);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->output_shape, (VolumeShape{1, 9, 30, 29}));
  auto meta = std::ifstream(Path("u8.zarr/.zarray"));
  const std::string zarray(std::istreambuf_iterator<char>(meta), {});
  EXPECT_THAT(zarray, HasSubstr("blosc"));
  EXPECT_THAT(zarray, HasSubstr("|u1"));
  const Vol u = ReadOutput(o.output);
  int64_t mismatches = 0;
  for (int64_t z = 0; z < 9; ++z)
    for (int64_t x = 0; x < 30; ++x)
      for (int64_t y = 0; y < 29; ++y) {
        const float want = std::round(ref.at(1, z, x, y) * 255.f);
        if (u.at(0, z, x, y) != want) ++mismatches;
      }
  EXPECT_EQ(mismatches, 0);

  // A roi inside the volume: the same values as that region of the whole output (its context
  // is read around it); a roi at the border with pad none loses the border voxels.
  o.as_uint8 = false;
  o.channels = {};
  o.compression = {};
  o.roi = Box{2, 7, 3, 5, 13, 20};
  o.output = Path("roi.zarr");
  s = Predict(o);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->output_shape, (VolumeShape{2, 5, 13, 20}));
  EXPECT_EQ(s->output_offset, (std::array<int64_t, 3>{2, 7, 3}));
  const Vol roi = ReadOutput(o.output);
  double d = 0;
  for (int64_t c = 0; c < 2; ++c)
    for (int64_t z = 0; z < 5; ++z)
      for (int64_t x = 0; x < 13; ++x)
        for (int64_t y = 0; y < 20; ++y)
          d = std::max<double>(d, std::abs(roi.at(c, z, x, y) - ref.at(c, z + 2, x + 7, y + 3)));
  EXPECT_LT(d, 1e-5);
  o.pad = PadMode::kError;
  o.roi = Box{0, 2, 20, 9, 20, 9};
  o.output = Path("roi_none.zarr");
  s = Predict(o);
  ASSERT_TRUE(s.ok()) << s.status();
  // off (1,5,5): z [1,8), x [5,22), y [20,24).
  EXPECT_EQ(s->output_shape, (VolumeShape{2, 7, 17, 4}));
  EXPECT_EQ(s->output_offset, (std::array<int64_t, 3>{1, 5, 20}));

  // Bad arguments name the value.
  o.roi = Box{0, 0, 0, 10, 5, 5};
  EXPECT_THAT(Predict(o).status().message(), HasSubstr("not a non-empty region inside"));
  o.roi.reset();
  o.channels = {2};
  EXPECT_THAT(Predict(o).status().message(), HasSubstr("channel 2 is not an output channel"));
}

TEST_F(PredictorTest, DefaultPatchIsTheLargestThatFitsTheMemoryLimit) {
  const std::string model = SaveNet(StridedNet({5, 18, 18}));
  const std::string input = WriteVolume("raw.zarr", RandomVolume({1, 12, 61, 58}, 8));
  PredictOptions o = Options(model, input, "big.zarr");
  auto big = Predict(o);
  ASSERT_TRUE(big.ok()) << big.status();
  // 4 GiB: one tile covers the input (patch = fov + (ceil(pred/S) - 1) * S).
  EXPECT_EQ(big->patch, (std::array<int64_t, 3>{3 + 5 * 2, 10 + 15 * 4, 10 + 14 * 4}));
  EXPECT_THAT(absl::StrJoin(big->notes, "\n"), HasSubstr("chosen: the largest that fits"));
  o.output = Path("small.zarr");
  o.memory_limit = int64_t{40} << 20;
  auto small = Predict(o);
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_LT(small->patch[1] * small->patch[2], big->patch[1] * big->patch[2]);
  EXPECT_THAT(absl::StrJoin(small->notes, "\n"), HasSubstr("memory_limit 40 MiB"));
  EXPECT_LT(MaxAbsDiff(ReadOutput(o.output).v, ReadOutput(Path("big.zarr")).v), 1e-5);
}

// A 2-D net predicts every z slice on its own (reference §3.6): z has patch, fov and stride 1.
TEST_F(PredictorTest, TwoDimensionalNetPredictsEverySlice) {
  auto spec = [](int64_t xy) {
    ModelBuilder m("flat", 6);
    std::string x = m.Input({-1, 1, xy, xy}, "b,f,x,y", "raw");
    std::string c = m.Conv(x, 3, {3, 3}, {2, 2});
    c = m.Conv(c, 2, {3, 3}, {}, v1::LIN);
    m.Designate(x, "", "", m.Softmax(c));
    return m.spec();  // fov 8, stride 2
  };
  const std::string model = SaveNet(spec(12));
  const Vol raw = RandomVolume({1, 3, 20, 21}, 9);
  PredictOptions o = Options(model, WriteVolume("raw.zarr", raw), "pred.zarr");
  o.patch = {12, 12};
  o.pad = PadMode::kError;
  auto s = Predict(o);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->mfp);
  EXPECT_EQ(s->patch, (std::array<int64_t, 3>{1, 12, 12}));
  EXPECT_EQ(s->output_shape, (VolumeShape{2, 3, 12, 13}));
  EXPECT_EQ(s->output_offset, (std::array<int64_t, 3>{0, 4, 4}));
  const Vol out = ReadOutput(o.output);
  auto fov_net = Network::Create(spec(8), Cpu());
  ASSERT_TRUE(fov_net.ok()) << fov_net.status();
  ASSERT_TRUE(LoadInto(*ReadModelFile(model), **fov_net, nullptr).ok());
  for (int64_t z = 0; z < 3; ++z)
    for (int64_t x = 0; x < 12; x += 5)
      for (int64_t y = 0; y < 13; y += 3) {
        std::vector<float> patch;
        for (int64_t i = 0; i < 8; ++i)
          for (int64_t j = 0; j < 8; ++j) patch.push_back(raw.at(0, z, x + i, y + j));
        ASSERT_TRUE((*fov_net)->SetInput("raw", patch).ok());
        ASSERT_TRUE((*fov_net)->Forward().ok());
        const std::vector<float> v = *(*fov_net)->Output("softmax");
        for (int c = 0; c < 2; ++c) ASSERT_NEAR(out.at(c, z, x, y), v[c], 1e-5);
      }
  o.patch = {2, 12, 12};
  EXPECT_THAT(Predict(o).status().message(), HasSubstr("the net is 2-D"));
}

// A Pool node outside the Convs rules out max-fragment-pooling: kAuto falls back to
// shift-and-stitch with a note, kOn is refused.
TEST_F(PredictorTest, MfpAutoFallsBackToShiftAndStitchForPoolNodes) {
  ModelBuilder m("with_pool", 8);
  std::string x = m.Input({-1, 1, 3, 12, 12}, "b,f,z,x,y", "raw");
  std::string c = m.Pool(m.Conv(x, 3, {1, 3, 3}), {1, 2, 2});
  m.Designate(x, "", "", m.Softmax(m.Conv(c, 2, {1, 1, 1}, {}, v1::LIN)));
  const std::string model = SaveNet(m.spec());
  PredictOptions o =
      Options(model, WriteVolume("raw.zarr", RandomVolume({1, 5, 20, 17}, 10)), "pred.zarr");
  o.patch = {3, 12, 12};
  auto s = Predict(o);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_FALSE(s->mfp);
  EXPECT_THAT(absl::StrJoin(s->notes, "\n"), HasSubstr("max-fragment-pooling is not possible"));
  EXPECT_THAT(absl::StrJoin(s->notes, "\n"), HasSubstr("shift-and-stitch, 4 passes per tile"));
  for (float v : ReadOutput(o.output).v) ASSERT_FALSE(std::isnan(v));
  o.mfp = PredictOptions::Mfp::kOn;
  o.output = Path("mfp.zarr");
  EXPECT_THAT(Predict(o).status().message(), HasSubstr("Pool 'pool' pools by (1,2,2)"));
}

}  // namespace
}  // namespace elektronn
