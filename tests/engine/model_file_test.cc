// Model files: bit-exact round trip, bit-exact training continuation, clear errors, h5py access.
#include "engine/io/model_file.h"

#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>
#include <hdf5.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "absl/strings/str_cat.h"
#include "engine/graph/model_builder.h"
#include "engine/graph/network.h"
#include "engine/optim/optimiser.h"
#include "tests/support/test_dir.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;

v1::ModelSpec SmallSpec(std::vector<int64_t> first_filter = {1, 3, 3}) {
  ModelBuilder m("small3d", 7);
  std::string x = m.Input({1, 1, 5, 12, 12}, "b,f,z,x,y", "input");
  std::string c = m.Conv(x, 4, first_filter, {1, 2, 2}, v1::RELU);
  c = m.Conv(c, 3, {2, 3, 3}, {}, v1::RELU);
  c = m.Conv(c, 2, {1, 1, 1}, {}, v1::LIN);
  std::string p = m.Softmax(c);
  std::string t = m.InputLike(p, 1, "target");
  std::string nll = m.MultinoulliNLL(p, t, true);
  std::string loss = m.AggregateLoss({nll}, {}, "loss");
  m.Designate(x, t, loss, p);
  return m.spec();
}

// A network, its Adam optimiser, and one fixed batch.
struct Trainee {
  std::unique_ptr<kernels::Backend> backend = kernels::CreateCpuBackend();
  std::unique_ptr<Network> net;
  std::unique_ptr<Optimiser> opt;

  absl::Status Init(const v1::ModelSpec& spec) {
    auto n = Network::Create(spec, backend.get());
    if (!n.ok()) return n.status();
    net = *std::move(n);
    opt = std::make_unique<Optimiser>(OptimiserKind::kAdam, backend.get(), net->params());
    opt->hyper().lr = 1e-3f;
    return absl::OkStatus();
  }

  absl::Status SetBatch(uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal;
    std::bernoulli_distribution coin;
    std::vector<float> x(net->graph().Find("input")->numel());
    std::vector<float> t(net->graph().Find("target")->numel());
    for (float& v : x) v = normal(rng);
    for (float& v : t) v = coin(rng) ? 1.f : 0.f;
    if (absl::Status s = net->SetInput("input", x); !s.ok()) return s;
    return net->SetInput("target", t);
  }

  absl::StatusOr<float> Step() {
    if (absl::Status s = net->Forward(); !s.ok()) return s;
    absl::StatusOr<float> loss = net->Scalar("loss");
    if (!loss.ok()) return loss;
    if (absl::Status s = net->Backward(); !s.ok()) return s;
    opt->Step();
    net->set_step(net->step() + 1);
    return loss;
  }
};

bool BitEqual(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

class ModelFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::FreshTestDir("model_file_test");
    ASSERT_TRUE(a_.Init(SmallSpec()).ok());
    ASSERT_TRUE(a_.SetBatch(42).ok());
    for (int i = 0; i < 3; ++i) {
      absl::StatusOr<float> loss = a_.Step();
      ASSERT_TRUE(loss.ok()) << loss.status();
    }
    path_ = (dir_ / "model.h5").string();
    absl::Status s = SaveModel(path_, *a_.net, a_.opt.get());
    ASSERT_TRUE(s.ok()) << s;
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path dir_;
  std::string path_;
  Trainee a_;
};

TEST_F(ModelFileTest, SaveLeavesOnlyTheFinalFile) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename());
  EXPECT_EQ(names, std::vector<std::string>{"model.h5"});
  // Saving again replaces the file atomically.
  ASSERT_TRUE(SaveModel(path_, *a_.net, nullptr).ok());
  absl::StatusOr<ModelFileContents> f = ReadModelFile(path_);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_FALSE(f->has_optimiser);
}

TEST_F(ModelFileTest, RoundTripIsBitExact) {
  absl::StatusOr<ModelFileContents> f = ReadModelFile(path_);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->path, path_);
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(f->spec, a_.net->graph().spec()));
  ASSERT_EQ(f->params.size(), a_.net->params().size());
  for (const Parameter* p : a_.net->params()) {
    SCOPED_TRACE(p->key());
    ASSERT_TRUE(f->params.contains(p->key()));
    EXPECT_EQ(f->param_shapes.at(p->key()), p->shape);
    EXPECT_TRUE(BitEqual(f->params.at(p->key()), a_.net->ParamValue(*p)));
  }
  EXPECT_EQ(f->param_shapes.at("conv/w"), (std::vector<int64_t>{4, 1, 1, 3, 3}));
  ASSERT_TRUE(f->has_optimiser);
  EXPECT_EQ(f->optimiser, "Adam");
  EXPECT_EQ(f->t, 3);
  EXPECT_EQ(f->step, 3u);
  EXPECT_EQ(f->hyper.lr, 1e-3f);
  EXPECT_EQ(f->hyper.beta2, a_.opt->hyper().beta2);
  EXPECT_EQ(f->slots.size(), 2 * a_.net->params().size());
  EXPECT_EQ(f->slot_shapes.at("conv/w/m"), (std::vector<int64_t>{4, 1, 1, 3, 3}));
}

TEST_F(ModelFileTest, TrainingContinuesBitExact) {
  absl::StatusOr<ModelFileContents> f = ReadModelFile(path_);
  ASSERT_TRUE(f.ok()) << f.status();
  Trainee b;
  ASSERT_TRUE(b.Init(f->spec).ok());
  b.opt->hyper().lr = 0.5f;  // overwritten by the file
  absl::Status s = LoadInto(*f, *b.net, b.opt.get());
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(b.opt->t(), 3);
  EXPECT_EQ(b.net->step(), 3u);
  EXPECT_EQ(b.opt->hyper().lr, 1e-3f);
  ASSERT_TRUE(b.SetBatch(42).ok());
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<float> la = a_.Step(), lb = b.Step();
    ASSERT_TRUE(la.ok() && lb.ok());
    EXPECT_EQ(std::memcmp(&*la, &*lb, sizeof(float)), 0) << *la << " vs " << *lb;
  }
  ASSERT_EQ(a_.net->params().size(), b.net->params().size());
  for (size_t i = 0; i < a_.net->params().size(); ++i) {
    SCOPED_TRACE(a_.net->params()[i]->key());
    EXPECT_TRUE(
        BitEqual(a_.net->ParamValue(*a_.net->params()[i]), b.net->ParamValue(*b.net->params()[i])));
  }

  // Control: without the optimiser state the same two steps land elsewhere, so the comparison
  // above can tell.
  Trainee c;
  ASSERT_TRUE(c.Init(f->spec).ok());
  ASSERT_TRUE(LoadInto(*f, *c.net, nullptr).ok());
  ASSERT_TRUE(c.SetBatch(42).ok());
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(c.Step().ok());
  EXPECT_FALSE(
      BitEqual(a_.net->ParamValue(*a_.net->params()[0]), c.net->ParamValue(*c.net->params()[0])));
}

TEST_F(ModelFileTest, ParametersAloneLoadWithoutOptimiser) {
  absl::StatusOr<ModelFileContents> f = ReadModelFile(path_);
  ASSERT_TRUE(f.ok()) << f.status();
  Trainee b;
  ASSERT_TRUE(b.Init(f->spec).ok());
  ASSERT_TRUE(LoadInto(*f, *b.net, nullptr).ok());
  EXPECT_EQ(b.net->step(), 0u);
  for (size_t i = 0; i < a_.net->params().size(); ++i) {
    EXPECT_TRUE(
        BitEqual(a_.net->ParamValue(*a_.net->params()[i]), b.net->ParamValue(*b.net->params()[i])));
  }
  // A different optimiser kind is refused, and nothing is changed.
  Optimiser sgd(OptimiserKind::kSgd, b.backend.get(), b.net->params());
  absl::Status s = LoadInto(*f, *b.net, &sgd);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find("Adam"), std::string::npos) << s;
  EXPECT_EQ(sgd.t(), 0);
}

TEST_F(ModelFileTest, MissingFileNamesThePath) {
  const std::string missing = (dir_ / "nope.h5").string();
  absl::StatusOr<ModelFileContents> f = ReadModelFile(missing);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound) << f.status();
  EXPECT_NE(f.status().message().find(missing), std::string::npos) << f.status();
}

TEST_F(ModelFileTest, NonHdf5FileIsInvalid) {
  const std::string text = (dir_ / "notes.h5").string();
  std::ofstream(text) << "not an HDF5 file\n";
  absl::StatusOr<ModelFileContents> f = ReadModelFile(text);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << f.status();
  EXPECT_NE(f.status().message().find(text), std::string::npos) << f.status();
}

TEST_F(ModelFileTest, SaveIntoMissingDirectoryFails) {
  const std::string bad = (dir_ / "no" / "such" / "model.h5").string();
  absl::Status s = SaveModel(bad, *a_.net, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_NE(s.message().find(bad), std::string::npos) << s;
}

TEST_F(ModelFileTest, WrongShapeNamesTheDataset) {
  Trainee other;
  ASSERT_TRUE(other.Init(SmallSpec({1, 5, 5})).ok());
  const std::string other_path = (dir_ / "other.h5").string();
  ASSERT_TRUE(SaveModel(other_path, *other.net, other.opt.get()).ok());
  absl::StatusOr<ModelFileContents> f = ReadModelFile(other_path);
  ASSERT_TRUE(f.ok()) << f.status();

  const std::vector<float> before = a_.net->ParamValue(*a_.net->params().back());
  absl::Status s = LoadInto(*f, *a_.net, a_.opt.get());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_EQ(s.message(), absl::StrCat("model file '", other_path,
                                      "': dataset '/params/conv/w' has shape (4,1,1,5,5), the "
                                      "model expects (4,1,1,3,3)"));
  // Nothing was loaded.
  EXPECT_TRUE(BitEqual(before, a_.net->ParamValue(*a_.net->params().back())));
  EXPECT_EQ(a_.opt->t(), 3);
}

TEST_F(ModelFileTest, MissingDatasetIsNamed) {
  absl::StatusOr<ModelFileContents> f = ReadModelFile(path_);
  ASSERT_TRUE(f.ok()) << f.status();
  f->params.erase("conv1/b");
  f->param_shapes.erase("conv1/b");
  absl::Status s = LoadInto(*f, *a_.net, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_NE(s.message().find("dataset '/params/conv1/b' is missing"), std::string::npos) << s;

  f = ReadModelFile(path_);
  ASSERT_TRUE(f.ok());
  f->slot_shapes.erase("conv2/w/s");
  s = LoadInto(*f, *a_.net, a_.opt.get());
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_NE(s.message().find("dataset '/optimiser/conv2/w/s' is missing"), std::string::npos) << s;
}

// Found by fuzz/fuzz_model_file_bytes: a corrupt file declaring huge dimensions made the reader
// allocate for them (abort, or all memory) before HDF5 noticed nothing was stored.
TEST_F(ModelFileTest, DatasetsLargerThanTheFileStoresAreRefusedBeforeAllocating) {
  {
    const hid_t file = H5Fopen(path_.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    ASSERT_GE(file, 0);
    ASSERT_GE(H5Ldelete(file, "/params/conv/w", H5P_DEFAULT), 0);
    const hsize_t dims[3] = {hsize_t{1} << 20, hsize_t{1} << 20, 1 << 10};  // 4 PiB, never written
    const hid_t space = H5Screate_simple(3, dims, nullptr);
    const hid_t d = H5Dcreate2(file, "/params/conv/w", H5T_IEEE_F32LE, space, H5P_DEFAULT,
                               H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(d, 0);
    H5Dclose(d);
    H5Sclose(space);
    ASSERT_GE(H5Fclose(file), 0);
  }
  absl::StatusOr<ModelFileContents> f = ReadModelFile(path_);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(f.status().message(),
            absl::StrCat("model file '", path_,
                         "': dataset '/params/conv/w' has shape (1048576,1048576,1024) "
                         "(4503599627370496 bytes), but the file stores only 0 bytes of it"));
}

// Found the same way: a fixed-length string type may claim gigabytes.
TEST_F(ModelFileTest, OverlongStringAttributeIsRefused) {
  {
    const hid_t file = H5Fopen(path_.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    ASSERT_GE(file, 0);
    ASSERT_GE(H5Adelete(file, "format"), 0);
    const hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, 10000);
    const hid_t space = H5Screate(H5S_SCALAR);
    const hid_t a = H5Acreate2(file, "format", type, space, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(a, 0);
    std::string value(10000, 'x');
    ASSERT_GE(H5Awrite(a, type, value.data()), 0);
    H5Aclose(a);
    H5Sclose(space);
    H5Tclose(type);
    ASSERT_GE(H5Fclose(file), 0);
  }
  absl::StatusOr<ModelFileContents> f = ReadModelFile(path_);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(f.status().message().find("attribute 'format' of '/' is a string of 10000 bytes"),
            std::string::npos)
      << f.status();
}

bool HaveH5py() { return std::system("/usr/bin/python3 -c 'import h5py' >/dev/null 2>&1") == 0; }

TEST_F(ModelFileTest, ReadableWithH5py) {
  // A missing test dependency is a failure, not a skip (scripts/test installs it).
  ASSERT_TRUE(HaveH5py()) << "/usr/bin/python3 cannot import h5py: apt-get install python3-h5py";
  const std::string raw = (dir_ / "conv_w.f32").string();
  const std::string script = absl::StrCat(
      "import sys, h5py, numpy as np\n"
      "f = h5py.File(sys.argv[1], 'r')\n"
      "assert f.attrs['format'] == 'elektronn-model-1', f.attrs['format']\n"
      "w = f['/params/conv/w']\n"
      "assert w.shape == (4, 1, 1, 3, 3), w.shape\n"
      "assert w.dtype == np.float32, w.dtype\n"
      "assert f['/spec'].dtype == np.uint8\n"
      "o = f['/optimiser']\n"
      "assert o.attrs['kind'] == 'Adam' and int(o.attrs['t']) == 3 and int(o.attrs['step']) == 3\n"
      "assert f['/optimiser/conv/w/m'].shape == (4, 1, 1, 3, 3)\n"
      "w[...].astype('<f4').tofile(sys.argv[2])\n");
  const std::string script_path = (dir_ / "check.py").string();
  std::ofstream(script_path) << script;
  const std::string cmd =
      absl::StrCat("/usr/bin/python3 '", script_path, "' '", path_, "' '", raw, "'");
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;

  // h5py sees the canonical (out, in, z, x, y) values in C order, bit for bit.
  std::ifstream in(raw, std::ios::binary);
  std::vector<float> values(4 * 3 * 3);
  in.read(reinterpret_cast<char*>(values.data()), values.size() * sizeof(float));
  ASSERT_EQ(in.gcount(), static_cast<std::streamsize>(values.size() * sizeof(float)));
  absl::StatusOr<Parameter*> w = a_.net->FindParam("conv", "w");
  ASSERT_TRUE(w.ok());
  EXPECT_TRUE(BitEqual(values, a_.net->ParamValue(**w)));
}

}  // namespace
}  // namespace elektronn
