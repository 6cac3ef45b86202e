// libFuzzer target: arbitrary bytes parsed as a v1::JobSpec (what CreateJob receives), then the
// daemon's validation: fields, data paths confined to a data directory, the model's shapes.
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "elektronn/v1/training.pb.h"
#include "google/protobuf/stubs/logging.h"
#include "server/jobs_service.h"

namespace {

// A data directory with a file, a subdirectory and a symlink leading out of it, so the path
// confinement has real entries to resolve.
std::string* g_data_dir = nullptr;

void RemoveDataDir() {
  std::error_code ec;
  if (g_data_dir != nullptr) std::filesystem::remove_all(*g_data_dir, ec);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Protobuf logs every string field that is not UTF-8 when parsing; those inputs are expected.
  google::protobuf::SetLogHandler(nullptr);
  const char* tmp = getenv("TMPDIR");
  std::string dir =
      std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/elk-fuzz-data-XXXXXX";
  if (mkdtemp(dir.data()) == nullptr) abort();
  g_data_dir = new std::string(dir);
  atexit(RemoveDataDir);
  namespace fs = std::filesystem;
  fs::create_directory(dir + "/demo-data");
  std::ofstream(dir + "/demo-data/raw_0.h5") << "not really HDF5";
  fs::create_symlink("/etc", dir + "/demo-data/out");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  elektronn::v1::JobSpec spec;
  if (!spec.ParseFromArray(data, static_cast<int>(size))) return -1;  // not worth keeping
  (void)elektronn::ValidateJobSpec(spec, *g_data_dir);
  return 0;
}
