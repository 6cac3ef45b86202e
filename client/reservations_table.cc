// `elektronn hosts`: the reservations each daemon holds (elektronn-sched's leases and the jobs
// that consumed them), below the resources table.
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/remote_commands.h"

namespace elektronn {

std::string FormatReservationsTable(const std::vector<HostResources>& hosts, absl::Time now) {
  std::vector<std::vector<std::string>> rows = {
      {"HOST", "RESERVATION", "OWNER", "STATE", "GPUS", "CPUS", "MEMORY", "LEASE"}};
  for (const HostResources& h : hosts) {
    if (!h.error.empty()) continue;
    for (const v1::Reservation& r : h.resources.reservations()) {
      std::string lease;
      if (r.state() == v1::CONSUMED) {
        lease = r.job();
      } else {
        const absl::Time end = absl::FromUnixSeconds(r.expire_time().seconds()) +
                               absl::Nanoseconds(r.expire_time().nanos());
        lease = end > now ? absl::StrCat(
                                "expires in ",
                                absl::ToInt64Seconds(absl::Ceil(end - now, absl::Seconds(1))), "s")
                          : "expired";
      }
      rows.push_back({h.host, r.name(), r.owner().empty() ? "-" : r.owner(),
                      v1::ReservationState_Name(r.state()),
                      r.gpu_uuids().empty() ? "-" : absl::StrJoin(r.gpu_uuids(), ","),
                      r.cpu_threads() > 0 ? absl::StrCat(r.cpu_threads()) : "-",
                      r.memory_bytes() > 0 ? FormatBytes(r.memory_bytes()) : "-", lease});
    }
  }
  return rows.size() == 1 ? "" : FormatTable(rows);
}

}  // namespace elektronn
