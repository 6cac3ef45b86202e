// Exports what tests/python/test_torch_fidelity.py compares against PyTorch: a neuro3d_lite model
// file, and in reference.h5 one batch (input, target), our forward output and loss, and the
// parameter gradients of one training step.
//
// Usage: fidelity_export OUT_DIR
//   OUT_DIR/model.h5      the model file (SaveModel)
//   OUT_DIR/reference.h5  /input, /target (logical b,f,z,x,y), /probs, /loss (scalar),
//                         /grads/<node>/<param> (canonical layout, float32)
#include <hdf5.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/graph/model_builder.h"
#include "engine/graph/network.h"
#include "engine/io/model_file.h"

namespace elektronn {
namespace {

// Small enough for a few seconds in PyTorch, large enough that every layer of neuro3d_lite
// (two x/y poolings, one z pooling) sees more than one output position: 2x3x3 per sample.
constexpr int64_t kBatch = 2;
const std::vector<int64_t> kPatch = {7, 47, 47};

absl::Status WriteFloats(hid_t file, const std::string& name, const std::vector<int64_t>& shape,
                         const std::vector<float>& values) {
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  const hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  const hid_t space = dims.empty()
                          ? H5Screate(H5S_SCALAR)
                          : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  const hid_t d =
      H5Dcreate2(file, name.c_str(), H5T_IEEE_F32LE, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
  const bool ok =
      d >= 0 && H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()) >= 0;
  if (d >= 0) H5Dclose(d);
  H5Sclose(space);
  H5Pclose(lcpl);
  return ok ? absl::OkStatus() : absl::InternalError(absl::StrCat("cannot write ", name));
}

absl::Status Run(const std::string& out) {
  std::unique_ptr<kernels::Backend> backend = kernels::CreateCpuBackend();
  NetworkOptions no;
  no.batch_size = kBatch;
  absl::StatusOr<std::unique_ptr<Network>> created =
      Network::Create(Neuro3dSpec(kPatch, /*lite=*/true), backend.get(), no);
  if (!created.ok()) return created.status();
  Network& net = **created;

  const std::string input = net.graph().spec().designations().input_node();
  const std::string target = net.graph().spec().designations().target_node();
  const std::string pred = net.graph().spec().designations().prediction_node();
  const std::string loss = net.graph().spec().designations().loss_node();
  std::mt19937 rng(2024);
  std::normal_distribution<float> normal;
  std::uniform_int_distribution<int> label(-1, 1);  // -1: unlabelled, left out of the loss
  std::vector<float> x(net.graph().Find(input)->numel()), t(net.graph().Find(target)->numel());
  for (float& v : x) v = normal(rng);
  for (float& v : t) v = static_cast<float>(label(rng));
  t[0] = 1.f;  // at least one labelled voxel whatever the seed
  if (absl::Status s = net.SetInput(input, x); !s.ok()) return s;
  if (absl::Status s = net.SetInput(target, t); !s.ok()) return s;
  net.set_training(true);
  if (absl::Status s = net.Forward(); !s.ok()) return s;
  absl::StatusOr<std::vector<float>> probs = net.Output(pred);
  absl::StatusOr<float> l = net.Scalar(loss);
  if (!probs.ok()) return probs.status();
  if (!l.ok()) return l.status();
  if (absl::Status s = net.Backward(); !s.ok()) return s;

  if (absl::Status s = SaveModel(out + "/model.h5", net, nullptr); !s.ok()) return s;
  const std::string ref = out + "/reference.h5";
  const hid_t file = H5Fcreate(ref.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (file < 0) return absl::InternalError(absl::StrCat("cannot create ", ref));
  absl::Status s = WriteFloats(file, "/input", net.graph().Find(input)->shape().sizes(), x);
  if (s.ok()) s = WriteFloats(file, "/target", net.graph().Find(target)->shape().sizes(), t);
  if (s.ok()) s = WriteFloats(file, "/probs", net.graph().Find(pred)->shape().sizes(), *probs);
  if (s.ok()) s = WriteFloats(file, "/loss", {}, {*l});
  for (const Parameter* p : net.params()) {
    if (s.ok())
      s = WriteFloats(file, absl::StrCat("/grads/", p->key()), p->shape, net.ParamGrad(*p));
  }
  if (H5Fclose(file) < 0 && s.ok()) s = absl::InternalError(absl::StrCat("cannot close ", ref));
  return s;
}

}  // namespace
}  // namespace elektronn

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  const absl::Status s = elektronn::Run(argv[1]);
  if (!s.ok()) {
    std::fprintf(stderr, "fidelity_export: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
