// Host resources from /proc, statvfs and the GPU inventory (NVML or --fake-gpus), and the
// Reservations service on top of them.
#include "server/host_service.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "kernels/backend.h"
#include "rpc/status.h"
#include "rpc/version.h"

namespace elektronn {
namespace {

int64_t MeminfoBytes(const std::string& meminfo, const std::string& key) {
  const size_t at = meminfo.find(key + ":");
  if (at == std::string::npos) return 0;
  std::istringstream in(meminfo.substr(at + key.size() + 1));
  int64_t kib = 0;
  in >> kib;
  return kib * 1024;
}

grpc::Status Answer(const absl::StatusOr<v1::Reservation>& r, v1::Reservation* response) {
  if (!r.ok()) return ToGrpcStatus(r.status());
  *response = *r;
  return grpc::Status::OK;
}

}  // namespace

void FillMachineInfo(const std::string& state_dir, v1::Resources* out) {
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  out->set_hostname(host);
  out->set_cpu_count(static_cast<int>(std::thread::hardware_concurrency()));
  out->set_cpu_bf16(kernels::CpuHasBf16());
  {
    std::ifstream in("/proc/loadavg");
    double load = 0;
    if (in >> load) out->set_load_average_1m(load);
  }
  {
    std::ifstream in("/proc/meminfo");
    std::stringstream ss;
    ss << in.rdbuf();
    out->set_memory_total_bytes(MeminfoBytes(ss.str(), "MemTotal"));
    out->set_memory_available_bytes(MeminfoBytes(ss.str(), "MemAvailable"));
  }
  struct statvfs vfs;
  if (statvfs(state_dir.c_str(), &vfs) == 0) {
    out->set_state_dir_free_bytes(static_cast<int64_t>(vfs.f_bavail) *
                                  static_cast<int64_t>(vfs.f_frsize));
  }
}

grpc::Status HostService::GetResources(grpc::ServerContext* context, const v1::GetResourcesRequest*,
                                       v1::Resources* response) {
  if (auto s = auth_->Check(*context); !s.ok()) return ToGrpcStatus(s);
  FillMachineInfo(state_dir_, response);
  const GpuInventory gpus = gpus_->Read();  // NVML may take a while: no lock held
  reservations_->DescribeGpus(gpus, manager_->Occupancy(), response);
  for (const auto& name : manager_->RunningJobs()) response->add_running_jobs(name);
  response->set_capacity(manager_->capacity());
  v1::BuildInfo* build = response->mutable_daemon();
  build->set_version(std::string(ReleaseVersion()));
  build->set_revision(std::string(SourceRevision()));
  build->set_protocol_version(kProtocolVersion);
  return grpc::Status::OK;
}

#define ELK_CHECK_AUTH(context)                                             \
  do {                                                                      \
    if (auto s = auth_->Check(*(context)); !s.ok()) return ToGrpcStatus(s); \
  } while (0)

grpc::Status ReservationsService::Reserve(grpc::ServerContext* context,
                                          const v1::ReserveRequest* request,
                                          v1::Reservation* response) {
  ELK_CHECK_AUTH(context);
  v1::Resources machine;
  FillMachineInfo(state_dir_, &machine);
  const GpuInventory gpus = gpus_->Read();
  return Answer(
      manager_->Reserve(*request, gpus, machine.cpu_count(), machine.memory_total_bytes()),
      response);
}

grpc::Status ReservationsService::RenewReservation(grpc::ServerContext* context,
                                                   const v1::RenewReservationRequest* request,
                                                   v1::Reservation* response) {
  ELK_CHECK_AUTH(context);
  const absl::Duration ttl =
      absl::Seconds(request->ttl().seconds()) + absl::Nanoseconds(request->ttl().nanos());
  return Answer(reservations_->Renew(request->name(), ttl), response);
}

grpc::Status ReservationsService::ReleaseReservation(grpc::ServerContext* context,
                                                     const v1::ReleaseReservationRequest* request,
                                                     v1::Reservation* response) {
  ELK_CHECK_AUTH(context);
  return Answer(reservations_->Release(request->name()), response);
}

grpc::Status ReservationsService::GetReservation(grpc::ServerContext* context,
                                                 const v1::GetReservationRequest* request,
                                                 v1::Reservation* response) {
  ELK_CHECK_AUTH(context);
  return Answer(reservations_->Get(request->name()), response);
}

grpc::Status ReservationsService::ListReservations(grpc::ServerContext* context,
                                                   const v1::ListReservationsRequest* request,
                                                   v1::ListReservationsResponse* response) {
  ELK_CHECK_AUTH(context);
  for (v1::Reservation& r : reservations_->List(request->include_ended())) {
    *response->add_reservations() = std::move(r);
  }
  return grpc::Status::OK;
}

}  // namespace elektronn
