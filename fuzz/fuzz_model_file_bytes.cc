// libFuzzer target: model files corrupted byte by byte. Each input is written to a new file and
// read with ReadModelFile; what reads back is loaded (LoadInto) into the tiny model's network
// and Adam. Most of what this finds lies in HDF5's own parser (Debian's libhdf5 1.10.8, not
// instrumented), which crashes, hangs and leaks on such files; so it is run by hand, with
// -detect_leaks=0, and not in CI (see CMakeLists.txt). fuzz_model_file covers our reader.
#include <hdf5.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "engine/graph/graph.h"
#include "engine/graph/network.h"
#include "engine/io/model_file.h"
#include "engine/optim/optimiser.h"
#include "fuzz/tiny_model.h"
#include "google/protobuf/stubs/logging.h"

namespace {

struct Target {
  std::string prefix;
  std::string path;  // the current input's file
  uint64_t n = 0;
  std::unique_ptr<elektronn::kernels::Backend> backend;
  std::unique_ptr<elektronn::Network> net;
  std::unique_ptr<elektronn::Optimiser> adam;
};
Target* g = nullptr;

void RemoveFile() {
  if (g != nullptr && !g->path.empty()) unlink(g->path.c_str());
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
  g->backend = elektronn::kernels::CreateCpuBackend();
  auto net = elektronn::Network::Create(elektronn::fuzz::TinyModel(), g->backend.get());
  if (!net.ok()) abort();
  g->net = *std::move(net);
  g->adam = std::make_unique<elektronn::Optimiser>(elektronn::OptimiserKind::kAdam,
                                                   g->backend.get(), g->net->params());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // A new name per input: HDF5 recognises a file it still holds open (after an error that left
  // an object open) and would answer from that file's cached metadata instead.
  RemoveFile();
  g->path = g->prefix + std::to_string(g->n++) + ".h5";
  FILE* f = std::fopen(g->path.c_str(), "wb");
  if (f == nullptr) abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) abort();
  std::fclose(f);
  auto contents = elektronn::ReadModelFile(g->path);
  // Whatever happened, every HDF5 object the read opened is closed again.
  if (H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) != 0) {
    std::fprintf(stderr, "ReadModelFile left %lld HDF5 objects open (%s)\n",
                 static_cast<long long>(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL)),
                 contents.status().ToString().c_str());
    abort();
  }
  if (!contents.ok()) return 0;
  (void)elektronn::Graph::Create(contents->spec);
  (void)elektronn::LoadInto(*contents, *g->net, g->adam.get());
  return 0;
}
