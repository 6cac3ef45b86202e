// The GPUs of this host as the driver sees them: NVML (libnvidia-ml.so.1, loaded at run time) or,
// for tests only, a --fake-gpus file re-read on every call. Everything above this seam (own and
// foreign processes, busy GPUs, reservations) is the same code for both.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace elektronn {

struct GpuProcessSample {
  int pid = 0;
  int64_t used_memory_bytes = 0;
};

struct GpuSample {
  int index = 0;  // NVML's index, or the position in the fake file
  std::string uuid;
  std::string name;
  int64_t memory_used_bytes = 0;
  int64_t memory_total_bytes = 0;
  int utilization_percent = 0;
  std::vector<GpuProcessSample> processes;  // every compute process, ours and foreign
};

struct GpuInventory {
  std::string status;  // "2 GPU(s)", "no GPU: libnvidia-ml.so.1 not found", ...
  std::vector<GpuSample> gpus;
  bool fake = false;  // from --fake-gpus: no real device behind the UUIDs
};

// NVML through dlopen; without the library or a device, `status` says "no GPU: ..." and `gpus`
// is empty.
GpuInventory ReadNvmlInventory();

// The test-only inventory (elektronnd --fake-gpus FILE), a JSON file:
//   {"gpus": [{"uuid": "GPU-fake-0", "name": "Fake GPU", "memory_total_bytes": 8589934592,
//              "memory_used_bytes": 0, "utilization_percent": 0,
//              "processes": [{"pid": 4711, "used_memory_bytes": 1048576}]}]}
// Only "uuid" is required; UUIDs must be unique. An unreadable or malformed file gives no GPUs
// and a status "no GPU: --fake-gpus FILE: <why>" (so nothing can be reserved on it).
GpuInventory ReadFakeInventory(const std::string& path);

// Where GPUs come from: NVML, or the fake file when `fake_gpus_file` is set.
class GpuSource {
 public:
  explicit GpuSource(std::string fake_gpus_file = "") : fake_file_(std::move(fake_gpus_file)) {}
  GpuInventory Read() const {
    return fake_file_.empty() ? ReadNvmlInventory() : ReadFakeInventory(fake_file_);
  }
  bool fake() const { return !fake_file_.empty(); }

 private:
  std::string fake_file_;
};

}  // namespace elektronn
