// What the prediction end-to-end tests share: a small 3-D net with pooling inside its
// convolutions (so max-fragment-pooling applies) saved with random weights, an EM-like input
// volume, and reading a whole output back.
#pragma once

#include <cmath>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/data/demo_data.h"
#include "engine/graph/model_builder.h"
#include "engine/graph/network.h"
#include "engine/io/model_file.h"
#include "engine/io/volume_store.h"
#include "kernels/backend.h"

namespace elektronn::testing {

// Conv (1,4,4) + pool (1,2,2), Conv (3,3,3), Conv (1,1,1) to 2 classes, softmax: strides
// (1,2,2), patch (5,25,25). `width` feature maps per hidden layer set how long a voxel takes.
inline v1::ModelSpec PredictNet(int width) {
  ModelBuilder m("predict_e2e", 5);
  std::string x = m.Input({-1, 1, 5, 25, 25}, "b,f,z,x,y", "raw");
  std::string c = m.Conv(x, width, {1, 4, 4}, {1, 2, 2});
  c = m.Conv(c, width, {3, 3, 3});
  c = m.Conv(c, 2, {1, 1, 1}, {}, v1::LIN);
  std::string p = m.Softmax(c);
  std::string t = m.InputLike(p, 1, "target");
  std::string loss = m.AggregateLoss({m.MultinoulliNLL(p, t, true)}, {}, "loss");
  m.Designate(x, t, loss, p);
  return m.spec();
}

// Saves PredictNet(width) with random weights (variance 1/fan-in) as a model file.
inline absl::Status SavePredictModel(const std::string& path, int width) {
  static std::unique_ptr<kernels::Backend> cpu = kernels::CreateCpuBackend();
  auto net = Network::Create(PredictNet(width), cpu.get());
  if (!net.ok()) return net.status();
  std::mt19937_64 rng(17);
  for (Parameter* p : (*net)->params()) {
    const int64_t n = p->canonical_size();
    std::normal_distribution<float> g(
        0.f, p->shape.size() > 1 ? 1 / std::sqrt(static_cast<float>(n / p->shape[0])) : 0.3f);
    std::vector<float> v(n);
    for (float& x : v) x = g(rng);
    if (absl::Status s = (*net)->SetParamValue(*p, v); !s.ok()) return s;
  }
  return SaveModel(path, **net, nullptr);
}

// raw_0.h5 with dataset "raw" (uint8, z,x,y) in `dir`.
inline absl::Status MakeInputVolume(const std::string& dir, std::array<int64_t, 3> shape) {
  DemoDataOptions o;
  o.num_cubes = 1;
  o.shape = shape;
  o.preview_shape = {4, 8, 8};
  return MakeDemoData(dir, o);
}

// A whole volume as floats (uint8 as their values), with its shape.
struct VolumeData {
  VolumeShape shape;
  std::vector<float> values;
};
inline absl::StatusOr<VolumeData> ReadWholeVolume(const std::string& spec) {
  VolumeReaderOptions ro;
  ro.integers = IntegerValues::kAsIs;
  auto r = VolumeReader::Open(spec, ro);
  if (!r.ok()) return r.status();
  VolumeData v{(*r)->shape(), std::vector<float>((*r)->shape().values())};
  absl::Status s =
      (*r)->Read({0, 0, 0, v.shape.z, v.shape.x, v.shape.y}, PadMode::kError, v.values.data());
  if (!s.ok()) return s;
  return v;
}

// Zarr chunk files written so far (".zarray", ".zattrs" and ".partial" files are not chunks).
inline int CountZarrChunks(const std::filesystem::path& dir) {
  int n = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.path().filename().string()[0] != '.') ++n;
  }
  return n;
}

}  // namespace elektronn::testing
