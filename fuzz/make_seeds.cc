// Writes the fuzzers' seed inputs: each example job file's JobSpec, serialised (for
// fuzz_job_spec), and model files of the tiny model with and without Adam state (for
// fuzz_model_file_bytes). Usage: fuzz_make_seeds EXAMPLES_DIR JOB_SPEC_DIR MODEL_FILE_DIR
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "engine/io/model_file.h"
#include "engine/lua/job_file.h"
#include "engine/optim/optimiser.h"
#include "fuzz/tiny_model.h"

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s EXAMPLES_DIR JOB_SPEC_DIR MODEL_FILE_DIR\n", argv[0]);
    return 2;
  }
  const fs::path examples = argv[1], specs = argv[2], models = argv[3];
  fs::create_directories(specs);
  fs::create_directories(models);
  int n = 0;
  for (const auto& e : fs::directory_iterator(examples)) {
    if (e.path().extension() != ".lua") continue;
    elektronn::JobFileOptions options;
    options.print = [](std::string_view) {};
    auto job = elektronn::LoadJobFile(e.path().string(), options);
    if (!job.ok()) {
      std::fprintf(stderr, "%s\n", job.status().ToString().c_str());
      return 1;
    }
    std::ofstream(specs / (e.path().stem().string() + ".pb"), std::ios::binary)
        << job->SerializeAsString();
    ++n;
  }
  if (n == 0) {
    std::fprintf(stderr, "no job files in %s\n", argv[1]);
    return 1;
  }

  auto backend = elektronn::kernels::CreateCpuBackend();
  auto net = elektronn::Network::Create(elektronn::fuzz::TinyModel(), backend.get());
  if (!net.ok()) {
    std::fprintf(stderr, "%s\n", net.status().ToString().c_str());
    return 1;
  }
  elektronn::Optimiser adam(elektronn::OptimiserKind::kAdam, backend.get(), (*net)->params());
  for (const auto& [name, opt] :
       {std::pair{"tiny-adam.h5", &adam},
        std::pair{"tiny.h5", static_cast<elektronn::Optimiser*>(nullptr)}}) {
    if (auto s = elektronn::SaveModel((models / name).string(), **net, opt); !s.ok()) {
      std::fprintf(stderr, "%s\n", s.ToString().c_str());
      return 1;
    }
  }
  std::printf("seeds: %d job specs in %s, 2 model files in %s\n", n, argv[2], argv[3]);
  return 0;
}
