// GPU inventories: NVML loaded with dlopen (no header or stub library is installed here), and the
// test-only JSON file of --fake-gpus.
#include "server/gpu_inventory.h"

#include <dlfcn.h>

#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace elektronn {
namespace {

// The few NVML declarations used (NVML's ABI).
using nvmlDevice_t = void*;
struct NvmlMemory {
  unsigned long long total, free, used;
};
struct NvmlUtilization {
  unsigned int gpu, memory;
};
struct NvmlProcessInfo {  // nvmlProcessInfo_v3_t
  unsigned int pid;
  unsigned long long usedGpuMemory;
  unsigned int gpuInstanceId, computeInstanceId;
};
// NVML_VALUE_NOT_AVAILABLE for usedGpuMemory (e.g. under Windows WDDM or without permission).
constexpr unsigned long long kNvmlValueNotAvailable = ~0ULL;

}  // namespace

GpuInventory ReadNvmlInventory() {
  GpuInventory out;
  void* lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    out.status = "no GPU: libnvidia-ml.so.1 not found";
    return out;
  }
  auto sym = [&](const char* name) { return dlsym(lib, name); };
  using InitFn = int (*)();
  using CountFn = int (*)(unsigned int*);
  using HandleFn = int (*)(unsigned int, nvmlDevice_t*);
  using StrFn = int (*)(nvmlDevice_t, char*, unsigned int);
  using MemFn = int (*)(nvmlDevice_t, NvmlMemory*);
  using UtilFn = int (*)(nvmlDevice_t, NvmlUtilization*);
  using ProcFn = int (*)(nvmlDevice_t, unsigned int*, NvmlProcessInfo*);
  using ErrFn = const char* (*)(int);
  auto init = reinterpret_cast<InitFn>(sym("nvmlInit_v2"));
  auto shutdown = reinterpret_cast<InitFn>(sym("nvmlShutdown"));
  auto count_fn = reinterpret_cast<CountFn>(sym("nvmlDeviceGetCount_v2"));
  auto handle_fn = reinterpret_cast<HandleFn>(sym("nvmlDeviceGetHandleByIndex_v2"));
  auto uuid_fn = reinterpret_cast<StrFn>(sym("nvmlDeviceGetUUID"));
  auto name_fn = reinterpret_cast<StrFn>(sym("nvmlDeviceGetName"));
  auto mem_fn = reinterpret_cast<MemFn>(sym("nvmlDeviceGetMemoryInfo"));
  auto util_fn = reinterpret_cast<UtilFn>(sym("nvmlDeviceGetUtilizationRates"));
  auto proc_fn = reinterpret_cast<ProcFn>(sym("nvmlDeviceGetComputeRunningProcesses_v3"));
  auto err_fn = reinterpret_cast<ErrFn>(sym("nvmlErrorString"));
  if (!init || !shutdown || !count_fn || !handle_fn) {
    out.status = "no GPU: libnvidia-ml.so.1 lacks nvmlInit_v2/nvmlDeviceGetCount_v2";
    dlclose(lib);
    return out;
  }
  if (int rc = init(); rc != 0) {
    out.status = absl::StrCat("no GPU: nvmlInit_v2 failed: ",
                              err_fn ? err_fn(rc) : absl::StrCat("code ", rc));
    dlclose(lib);
    return out;
  }
  unsigned int count = 0;
  if (count_fn(&count) != 0 || count == 0) {
    out.status = "no GPU: NVML reports no device";
    count = 0;
  } else {
    out.status = absl::StrCat(count, " GPU(s)");
  }
  for (unsigned int i = 0; i < count; ++i) {
    nvmlDevice_t dev = nullptr;
    if (handle_fn(i, &dev) != 0) continue;
    GpuSample g;
    g.index = static_cast<int>(i);
    char buf[256] = {};
    if (uuid_fn && uuid_fn(dev, buf, sizeof(buf)) == 0) g.uuid = buf;
    if (name_fn && name_fn(dev, buf, sizeof(buf)) == 0) g.name = buf;
    NvmlMemory mem{};
    if (mem_fn && mem_fn(dev, &mem) == 0) {
      g.memory_used_bytes = static_cast<int64_t>(mem.used);
      g.memory_total_bytes = static_cast<int64_t>(mem.total);
    }
    NvmlUtilization util{};
    if (util_fn && util_fn(dev, &util) == 0) g.utilization_percent = static_cast<int>(util.gpu);
    if (proc_fn) {
      NvmlProcessInfo procs[64];
      unsigned int n = 64;
      if (proc_fn(dev, &n, procs) == 0) {
        for (unsigned int k = 0; k < n && k < 64; ++k) {
          const unsigned long long used = procs[k].usedGpuMemory;
          g.processes.push_back({static_cast<int>(procs[k].pid),
                                 used == kNvmlValueNotAvailable ? 0 : static_cast<int64_t>(used)});
        }
      }
    }
    out.gpus.push_back(std::move(g));
  }
  shutdown();
  dlclose(lib);
  return out;
}

GpuInventory ReadFakeInventory(const std::string& path) {
  GpuInventory out;
  out.fake = true;
  auto broken = [&](const std::string& why) {
    out.gpus.clear();
    out.status = absl::StrCat("no GPU: --fake-gpus ", path, ": ", why);
    return out;
  };
  std::ifstream in(path);
  if (!in) return broken("cannot read the file");
  std::stringstream ss;
  ss << in.rdbuf();
  const nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || !j.contains("gpus") || !j["gpus"].is_array()) {
    return broken(R"(not JSON of the form {"gpus": [{"uuid": ...}, ...]})");
  }
  std::set<std::string> seen;
  for (const nlohmann::json& e : j["gpus"]) {
    GpuSample g;
    g.index = static_cast<int>(out.gpus.size());
    const std::string where = absl::StrCat("gpus[", g.index, "]");
    if (!e.is_object() || !e.contains("uuid") || !e["uuid"].is_string() ||
        e["uuid"].get<std::string>().empty()) {
      return broken(absl::StrCat(where, " has no \"uuid\" string"));
    }
    g.uuid = e["uuid"].get<std::string>();
    if (!seen.insert(g.uuid).second)
      return broken(absl::StrCat(where, ": uuid ", g.uuid, " twice"));
    g.name =
        e.contains("name") && e["name"].is_string() ? e["name"].get<std::string>() : "Fake GPU";
    auto number = [&](const char* key, int64_t* value) {
      if (!e.contains(key)) return true;
      if (!e[key].is_number_integer() || e[key].get<int64_t>() < 0) return false;
      *value = e[key].get<int64_t>();
      return true;
    };
    int64_t util = 0;
    if (!number("memory_total_bytes", &g.memory_total_bytes) ||
        !number("memory_used_bytes", &g.memory_used_bytes) ||
        !number("utilization_percent", &util)) {
      return broken(absl::StrCat(where, ": memory and utilisation must be integers >= 0"));
    }
    g.utilization_percent = static_cast<int>(util);
    if (e.contains("processes")) {
      if (!e["processes"].is_array()) return broken(absl::StrCat(where, ".processes: not a list"));
      for (const nlohmann::json& p : e["processes"]) {
        if (!p.is_object() || !p.contains("pid") || !p["pid"].is_number_integer() ||
            p["pid"].get<int64_t>() <= 0) {
          return broken(absl::StrCat(where, ".processes: each needs a \"pid\" > 0"));
        }
        GpuProcessSample s;
        s.pid = p["pid"].get<int>();
        if (p.contains("used_memory_bytes") && p["used_memory_bytes"].is_number_integer()) {
          s.used_memory_bytes = p["used_memory_bytes"].get<int64_t>();
        }
        g.processes.push_back(s);
      }
    }
    out.gpus.push_back(std::move(g));
  }
  out.status =
      absl::StrCat(out.gpus.size(), " fake GPU(s) from --fake-gpus ", path, " (test only)");
  return out;
}

}  // namespace elektronn
