// libFuzzer target: corrupt model files, made with HDF5 itself. Each input edits a valid model
// file of the tiny model (Adam state included) through the HDF5 API: objects deleted, replaced
// by datasets of other types, shapes (huge ones too), layouts and contents, by groups or by
// soft, hard (cyclic) and external links; attributes of other types and values; /spec bytes
// mutated. ReadModelFile reads the result and LoadInto loads it into the tiny model's network
// and Adam. HDF5's own metadata stays well formed, so this exercises our reader rather than
// HDF5's parser (fuzz_model_file_bytes corrupts raw bytes).
#include <fuzzer/FuzzedDataProvider.h>
#include <hdf5.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "engine/graph/graph.h"
#include "engine/graph/network.h"
#include "engine/io/internal/hdf5_util.h"
#include "engine/io/model_file.h"
#include "engine/optim/optimiser.h"
#include "fuzz/tiny_model.h"
#include "google/protobuf/stubs/logging.h"

namespace {

using elektronn::internal::H5Id;

struct Target {
  std::string prefix;
  std::string path;  // the current input's file
  uint64_t n = 0;
  std::string seed_bytes;          // a valid model file with Adam state
  std::vector<std::string> paths;  // its objects, and a few more places to put things
  std::string spec_bytes;          // its /spec
  std::unique_ptr<elektronn::kernels::Backend> backend;
  std::unique_ptr<elektronn::Network> net;
  std::unique_ptr<elektronn::Optimiser> adam;
};
Target* g = nullptr;

void RemoveFile() {
  if (g != nullptr && !g->path.empty()) unlink(g->path.c_str());
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// What a corrupt file may hold where a model file has a float32 dataset, a uint8 /spec or a
// scalar attribute.
hid_t PickType(FuzzedDataProvider& p) {
  switch (p.ConsumeIntegralInRange(0, 10)) {
    case 0:
      return H5Tcopy(H5T_IEEE_F32LE);
    case 1:
      return H5Tcopy(H5T_IEEE_F64LE);
    case 2:
      return H5Tcopy(H5T_IEEE_F32BE);
    case 3:
      return H5Tcopy(H5T_STD_U8LE);
    case 4:
      return H5Tcopy(H5T_STD_I8LE);
    case 5:
      return H5Tcopy(H5T_STD_I64LE);
    case 6:
      return H5Tcopy(H5T_STD_U64BE);
    case 7: {  // variable-length string
      hid_t t = H5Tcopy(H5T_C_S1);
      H5Tset_size(t, H5T_VARIABLE);
      H5Tset_cset(t, p.ConsumeBool() ? H5T_CSET_UTF8 : H5T_CSET_ASCII);
      return t;
    }
    case 8: {  // fixed-length string, up to far more than a name needs
      hid_t t = H5Tcopy(H5T_C_S1);
      H5Tset_size(t, p.ConsumeBool() ? p.ConsumeIntegralInRange<size_t>(1, 32)
                                     : p.ConsumeIntegralInRange<size_t>(1, 100000));
      return t;
    }
    case 9: {  // an array of floats per element
      const hsize_t dims[1] = {p.ConsumeIntegralInRange<hsize_t>(1, 4)};
      return H5Tarray_create2(H5T_IEEE_F32LE, 1, dims);
    }
    default: {  // a compound of a float and an int
      hid_t t = H5Tcreate(H5T_COMPOUND, 12);
      H5Tinsert(t, "x", 0, H5T_IEEE_F32LE);
      H5Tinsert(t, "n", 4, H5T_STD_I64LE);
      return t;
    }
  }
}

// A dataspace of small, zero, huge or absurd dimensions; null and scalar ones too.
hid_t PickSpace(FuzzedDataProvider& p, std::vector<hsize_t>* dims_out) {
  const int kind = p.ConsumeIntegralInRange(0, 9);
  if (kind == 0) return H5Screate(H5S_NULL);
  if (kind == 1) return H5Screate(H5S_SCALAR);
  const int rank = p.ConsumeIntegralInRange(1, 6);
  std::vector<hsize_t> dims(rank);
  for (hsize_t& d : dims) {
    switch (p.ConsumeIntegralInRange(0, 7)) {
      case 0:
        d = 0;
        break;
      case 1:
        d = hsize_t{1} << p.ConsumeIntegralInRange(20, 62);
        break;
      case 2:
        d = p.ConsumeIntegral<uint32_t>();
        break;
      default:
        d = p.ConsumeIntegralInRange<hsize_t>(1, 4);
    }
  }
  *dims_out = dims;
  return H5Screate_simple(rank, dims.data(), nullptr);
}

// Replaces whatever is at `name` with a dataset of a picked type, shape, layout and contents.
void PutDataset(hid_t file, const std::string& name, FuzzedDataProvider& p) {
  H5Ldelete(file, name.c_str(), H5P_DEFAULT);
  H5Id type(PickType(p), H5Tclose);
  std::vector<hsize_t> dims;
  H5Id space(PickSpace(p, &dims), H5Sclose);
  H5Id lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  H5Id dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  const int layout = p.ConsumeIntegralInRange(0, 2);
  if (layout == 1 && !dims.empty()) {
    std::vector<hsize_t> chunk(dims.size());
    for (size_t i = 0; i < dims.size(); ++i) chunk[i] = std::clamp<hsize_t>(dims[i], 1, 4);
    H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data());
    if (p.ConsumeBool()) H5Pset_deflate(dcpl.get(), 6);
  } else if (layout == 2) {
    H5Pset_layout(dcpl.get(), H5D_COMPACT);
  }
  H5Id d(
      H5Dcreate2(file, name.c_str(), type.get(), space.get(), lcpl.get(), dcpl.get(), H5P_DEFAULT),
      H5Dclose);
  if (!d.valid() || p.ConsumeBool()) return;  // sometimes never written: no storage at all
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  if (n <= 0 || n > 4096 || H5Tis_variable_str(type.get()) > 0) return;
  const size_t bytes = static_cast<size_t>(n) * H5Tget_size(type.get());
  std::vector<uint8_t> data = p.ConsumeBytes<uint8_t>(bytes);
  data.resize(bytes);
  H5Dwrite(d.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data());
}

// Replaces attribute `name` of the object at `where` with one of a picked type, shape and value.
void PutAttribute(hid_t file, const std::string& where, const std::string& name,
                  FuzzedDataProvider& p) {
  H5Adelete_by_name(file, where.c_str(), name.c_str(), H5P_DEFAULT);
  H5Id type(PickType(p), H5Tclose);
  std::vector<hsize_t> dims;
  H5Id space(p.ConsumeIntegralInRange(0, 3) != 0 ? H5Screate(H5S_SCALAR) : PickSpace(p, &dims),
             H5Sclose);
  H5Id a(H5Acreate_by_name(file, where.c_str(), name.c_str(), type.get(), space.get(), H5P_DEFAULT,
                           H5P_DEFAULT, H5P_DEFAULT),
         H5Aclose);
  if (!a.valid() || p.ConsumeBool()) return;
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  if (n <= 0 || n > 64) return;
  if (H5Tis_variable_str(type.get()) > 0) {
    static const char* const kWords[] = {
        elektronn::kModelFileFormat, "Adam", "SGD", "AdaGrad", "AdaDelta", ""};
    std::vector<std::string> words(n);
    std::vector<const char*> ptrs(n);
    for (hssize_t i = 0; i < n; ++i) {
      words[i] = p.ConsumeBool() ? kWords[p.ConsumeIntegralInRange<size_t>(0, 5)]
                                 : p.ConsumeRandomLengthString(64);
      ptrs[i] = words[i].c_str();
    }
    H5Awrite(a.get(), type.get(), ptrs.data());
    return;
  }
  const size_t bytes = static_cast<size_t>(n) * H5Tget_size(type.get());
  std::vector<uint8_t> data = p.ConsumeBytes<uint8_t>(bytes);
  data.resize(bytes);
  H5Awrite(a.get(), type.get(), data.data());
}

// Replaces /spec with the valid spec's bytes, mutated, or with other bytes.
void PutSpec(hid_t file, FuzzedDataProvider& p) {
  std::string bytes = g->spec_bytes;
  const int edits = p.ConsumeIntegralInRange(0, 4);
  for (int i = 0; i < edits && !bytes.empty(); ++i) {
    const size_t at = p.ConsumeIntegralInRange<size_t>(0, bytes.size() - 1);
    switch (p.ConsumeIntegralInRange(0, 3)) {
      case 0:
        bytes[at] = static_cast<char>(p.ConsumeIntegral<uint8_t>());
        break;
      case 1:
        bytes.insert(at, p.ConsumeRandomLengthString(16));
        break;
      case 2:
        bytes.erase(at, p.ConsumeIntegralInRange<size_t>(1, 16));
        break;
      default:
        bytes.resize(at);
    }
  }
  if (p.ConsumeIntegralInRange(0, 7) == 0) bytes = p.ConsumeRandomLengthString(256);
  H5Ldelete(file, "/spec", H5P_DEFAULT);
  const hsize_t n = bytes.size();
  H5Id space(H5Screate_simple(1, &n, nullptr), H5Sclose);
  H5Id d(
      H5Dcreate2(file, "/spec", H5T_STD_U8LE, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
      H5Dclose);
  if (d.valid() && n > 0) {
    H5Dwrite(d.get(), H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data());
  }
}

const std::string& PickPath(FuzzedDataProvider& p) {
  return g->paths[p.ConsumeIntegralInRange<size_t>(0, g->paths.size() - 1)];
}

void Edit(hid_t file, FuzzedDataProvider& p) {
  switch (p.ConsumeIntegralInRange(0, 7)) {
    case 0:
      H5Ldelete(file, PickPath(p).c_str(), H5P_DEFAULT);
      return;
    case 1:
    case 2:
      PutDataset(file, PickPath(p), p);
      return;
    case 3: {
      static const char* const kNames[] = {"format", "kind", "t",     "step", "lr",
                                           "mom",    "wd",   "beta2", "other"};
      const std::string where =
          p.ConsumeBool() ? "/" : (p.ConsumeBool() ? "/optimiser" : PickPath(p));
      PutAttribute(file, where, kNames[p.ConsumeIntegralInRange<size_t>(0, 8)], p);
      return;
    }
    case 4:
      PutSpec(file, p);
      return;
    case 5: {  // an empty group (or one holding another) where something else was
      const std::string& name = PickPath(p);
      H5Ldelete(file, name.c_str(), H5P_DEFAULT);
      H5Id lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
      H5Pset_create_intermediate_group(lcpl.get(), 1);
      H5Id grp(H5Gcreate2(file, name.c_str(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
      if (grp.valid() && p.ConsumeBool()) PutDataset(grp.get(), "x", p);
      return;
    }
    case 6: {  // a soft link (perhaps dangling) or a hard link (perhaps to an ancestor: a cycle)
      const std::string& name = PickPath(p);
      const std::string& to = PickPath(p);
      H5Ldelete(file, name.c_str(), H5P_DEFAULT);
      if (p.ConsumeBool()) {
        H5Lcreate_soft(to.c_str(), file, name.c_str(), H5P_DEFAULT, H5P_DEFAULT);
      } else {
        H5Lcreate_hard(file, p.ConsumeBool() ? "/" : to.c_str(), file, name.c_str(), H5P_DEFAULT,
                       H5P_DEFAULT);
      }
      return;
    }
    default: {  // an external link: to a missing file, or into the valid seed file
      const std::string& name = PickPath(p);
      H5Ldelete(file, name.c_str(), H5P_DEFAULT);
      const std::string target = p.ConsumeBool() ? g->prefix + "seed.h5" : "/nonexistent.h5";
      H5Lcreate_external(target.c_str(), PickPath(p).c_str(), file, name.c_str(), H5P_DEFAULT,
                         H5P_DEFAULT);
      return;
    }
  }
}

void Check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz_model_file setup: %s\n", what);
  abort();
}

// Every HDF5 object opened since the file was opened has been closed again.
void CheckNothingOpen(const char* after) {
  const ssize_t open = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
  if (open == 0) return;
  std::fprintf(stderr, "%zd HDF5 objects are still open after %s\n", open, after);
  abort();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Protobuf logs every string field that is not UTF-8 when parsing; those inputs are expected.
  google::protobuf::SetLogHandler(nullptr);
  g = new Target;
  const char* tmp = getenv("TMPDIR");
  g->prefix = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/elk-fuzz-model-" +
              std::to_string(getpid()) + "-";
  atexit(RemoveFile);
  atexit([] { unlink((g->prefix + "seed.h5").c_str()); });
  g->backend = elektronn::kernels::CreateCpuBackend();
  auto net = elektronn::Network::Create(elektronn::fuzz::TinyModel(), g->backend.get());
  Check(net.ok(), "cannot create the tiny model");
  g->net = *std::move(net);
  g->adam = std::make_unique<elektronn::Optimiser>(elektronn::OptimiserKind::kAdam,
                                                   g->backend.get(), g->net->params());
  const std::string seed = g->prefix + "seed.h5";
  Check(elektronn::SaveModel(seed, *g->net, g->adam.get()).ok(), "cannot save the seed file");
  g->seed_bytes = ReadAll(seed);
  auto contents = elektronn::ReadModelFile(seed);
  Check(contents.ok(), "cannot read the seed file back");
  Check(contents->spec.SerializeToString(&g->spec_bytes), "cannot serialise the spec");
  {
    H5Id file(H5Fopen(seed.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
    Check(file.valid(), "cannot open the seed file");
    H5Ovisit(
        file.get(), H5_INDEX_NAME, H5_ITER_INC,
        [](hid_t, const char* name, const H5O_info_t*, void*) -> herr_t {
          g->paths.push_back(std::string("/") + (std::string(name) == "." ? "" : name));
          return 0;
        },
        nullptr);
  }
  for (const char* extra : {"/params/conv/extra", "/params/extra", "/optimiser/conv/w/extra",
                            "/optimiser/conv/extra", "/extra"}) {
    g->paths.push_back(extra);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  elektronn::internal::QuietHdf5Errors quiet;
  FuzzedDataProvider p(data, size);
  // A new name per input: HDF5 recognises a file it still holds open and would answer from its
  // cached metadata.
  RemoveFile();
  g->path = g->prefix + std::to_string(g->n++) + ".h5";
  {
    std::ofstream out(g->path, std::ios::binary);
    out << g->seed_bytes;
    Check(out.good(), "cannot write the input file");
  }
  {
    H5Id file(H5Fopen(g->path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), H5Fclose);
    Check(file.valid(), "cannot open the input file");
    const int edits = p.ConsumeIntegralInRange(0, 6);
    for (int i = 0; i < edits && p.remaining_bytes() > 0; ++i) Edit(file.get(), p);
  }
  CheckNothingOpen("editing");
  auto contents = elektronn::ReadModelFile(g->path);
  CheckNothingOpen("ReadModelFile");
  if (!contents.ok()) return 0;
  (void)elektronn::Graph::Create(contents->spec);
  (void)elektronn::LoadInto(*contents, *g->net, g->adam.get());
  return 0;
}
