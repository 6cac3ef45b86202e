// Host resources from /proc, statvfs and NVML (dlopen'ed; absent NVML is "no GPU", not an error).
#include "server/host_service.h"

#include <dlfcn.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "rpc/status.h"
#include "rpc/version.h"

namespace elektronn {
namespace {

// The few NVML declarations used (NVML's ABI; no header is installed here).
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

int64_t MeminfoBytes(const std::string& meminfo, const std::string& key) {
  const size_t at = meminfo.find(key + ":");
  if (at == std::string::npos) return 0;
  std::istringstream in(meminfo.substr(at + key.size() + 1));
  int64_t kib = 0;
  in >> kib;
  return kib * 1024;
}

}  // namespace

void FillGpuInfo(const std::vector<int>& own_pids, v1::Resources* out) {
  void* lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    out->set_gpu_status("no GPU: libnvidia-ml.so.1 not found");
    return;
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
    out->set_gpu_status("no GPU: libnvidia-ml.so.1 lacks nvmlInit_v2/nvmlDeviceGetCount_v2");
    dlclose(lib);
    return;
  }
  if (int rc = init(); rc != 0) {
    out->set_gpu_status(absl::StrCat("no GPU: nvmlInit_v2 failed: ",
                                     err_fn ? err_fn(rc) : absl::StrCat("code ", rc)));
    dlclose(lib);
    return;
  }
  unsigned int count = 0;
  if (count_fn(&count) != 0 || count == 0) {
    out->set_gpu_status("no GPU: NVML reports no device");
  } else {
    out->set_gpu_status(absl::StrCat(count, " GPU(s)"));
  }
  for (unsigned int i = 0; i < count; ++i) {
    nvmlDevice_t dev = nullptr;
    if (handle_fn(i, &dev) != 0) continue;
    v1::GpuInfo* g = out->add_gpus();
    char buf[256] = {};
    if (uuid_fn && uuid_fn(dev, buf, sizeof(buf)) == 0) g->set_uuid(buf);
    if (name_fn && name_fn(dev, buf, sizeof(buf)) == 0) g->set_name(buf);
    NvmlMemory mem{};
    if (mem_fn && mem_fn(dev, &mem) == 0) {
      g->set_memory_used_bytes(static_cast<int64_t>(mem.used));
      g->set_memory_total_bytes(static_cast<int64_t>(mem.total));
    }
    NvmlUtilization util{};
    if (util_fn && util_fn(dev, &util) == 0) g->set_utilization_percent(static_cast<int>(util.gpu));
    if (proc_fn) {
      NvmlProcessInfo procs[64];
      unsigned int n = 64;
      if (proc_fn(dev, &n, procs) == 0) {
        for (unsigned int k = 0; k < n && k < 64; ++k) {
          const int pid = static_cast<int>(procs[k].pid);
          if (std::find(own_pids.begin(), own_pids.end(), pid) == own_pids.end()) {
            g->add_foreign_pids(pid);
          }
        }
      }
    }
  }
  shutdown();
  dlclose(lib);
}

grpc::Status HostService::GetResources(grpc::ServerContext* context, const v1::GetResourcesRequest*,
                                       v1::Resources* response) {
  if (auto s = auth_->Check(*context); !s.ok()) return ToGrpcStatus(s);
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  response->set_hostname(host);
  response->set_cpu_count(static_cast<int>(std::thread::hardware_concurrency()));
  {
    std::ifstream in("/proc/loadavg");
    double load = 0;
    if (in >> load) response->set_load_average_1m(load);
  }
  {
    std::ifstream in("/proc/meminfo");
    std::stringstream ss;
    ss << in.rdbuf();
    response->set_memory_total_bytes(MeminfoBytes(ss.str(), "MemTotal"));
    response->set_memory_available_bytes(MeminfoBytes(ss.str(), "MemAvailable"));
  }
  struct statvfs vfs;
  if (statvfs(state_dir_.c_str(), &vfs) == 0) {
    response->set_state_dir_free_bytes(static_cast<int64_t>(vfs.f_bavail) *
                                       static_cast<int64_t>(vfs.f_frsize));
  }
  FillGpuInfo(manager_->WorkerPids(), response);
  for (const auto& name : manager_->RunningJobs()) response->add_running_jobs(name);
  response->set_capacity(manager_->capacity());
  v1::BuildInfo* build = response->mutable_daemon();
  build->set_version(std::string(ReleaseVersion()));
  build->set_revision(std::string(SourceRevision()));
  build->set_protocol_version(kProtocolVersion);
  return grpc::Status::OK;
}

}  // namespace elektronn
