// The Host service (CPU, memory, disk of the state directory, GPUs with their processes and
// holders, running jobs, reservations) and the Reservations service (leases on those resources).
#pragma once

#include <string>

#include "elektronn/v1/jobs.grpc.pb.h"
#include "server/auth.h"
#include "server/gpu_inventory.h"
#include "server/job_manager.h"
#include "server/reservation_book.h"

namespace elektronn {

// CPUs, load, RAM and the state directory's free disk, from /proc and statvfs.
void FillMachineInfo(const std::string& state_dir, v1::Resources* out);

class HostService final : public v1::Host::Service {
 public:
  HostService(const JobManager* manager, const TokenChecker* auth, std::string state_dir,
              const GpuSource* gpus, ReservationBook* reservations)
      : manager_(manager),
        auth_(auth),
        state_dir_(std::move(state_dir)),
        gpus_(gpus),
        reservations_(reservations) {}

  grpc::Status GetResources(grpc::ServerContext* context, const v1::GetResourcesRequest* request,
                            v1::Resources* response) override;

 private:
  const JobManager* manager_;
  const TokenChecker* auth_;
  std::string state_dir_;
  const GpuSource* gpus_;
  ReservationBook* reservations_;
};

class ReservationsService final : public v1::Reservations::Service {
 public:
  ReservationsService(JobManager* manager, const TokenChecker* auth, std::string state_dir,
                      const GpuSource* gpus, ReservationBook* reservations)
      : manager_(manager),
        auth_(auth),
        state_dir_(std::move(state_dir)),
        gpus_(gpus),
        reservations_(reservations) {}

  grpc::Status Reserve(grpc::ServerContext* context, const v1::ReserveRequest* request,
                       v1::Reservation* response) override;
  grpc::Status RenewReservation(grpc::ServerContext* context,
                                const v1::RenewReservationRequest* request,
                                v1::Reservation* response) override;
  grpc::Status ReleaseReservation(grpc::ServerContext* context,
                                  const v1::ReleaseReservationRequest* request,
                                  v1::Reservation* response) override;
  grpc::Status GetReservation(grpc::ServerContext* context,
                              const v1::GetReservationRequest* request,
                              v1::Reservation* response) override;
  grpc::Status ListReservations(grpc::ServerContext* context,
                                const v1::ListReservationsRequest* request,
                                v1::ListReservationsResponse* response) override;

 private:
  JobManager* manager_;
  const TokenChecker* auth_;
  std::string state_dir_;
  const GpuSource* gpus_;
  ReservationBook* reservations_;
};

}  // namespace elektronn
