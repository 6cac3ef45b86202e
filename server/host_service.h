// The Host service: CPU, memory, disk of the state directory, GPUs (NVML via dlopen), jobs here.
#pragma once

#include <string>

#include "elektronn/v1/jobs.grpc.pb.h"
#include "server/auth.h"
#include "server/job_manager.h"

namespace elektronn {

// Fills the GPU part of `out` through libnvidia-ml.so.1 loaded at run time; without the library
// or a device, sets gpu_status to "no GPU: ..." and leaves gpus empty. PIDs in `own_pids` are
// not reported as foreign.
void FillGpuInfo(const std::vector<int>& own_pids, v1::Resources* out);

class HostService final : public v1::Host::Service {
 public:
  HostService(const JobManager* manager, const TokenChecker* auth, std::string state_dir)
      : manager_(manager), auth_(auth), state_dir_(std::move(state_dir)) {}

  grpc::Status GetResources(grpc::ServerContext* context, const v1::GetResourcesRequest* request,
                            v1::Resources* response) override;

 private:
  const JobManager* manager_;
  const TokenChecker* auth_;
  std::string state_dir_;
};

}  // namespace elektronn
