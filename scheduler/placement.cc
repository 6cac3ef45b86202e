// Placement (see placement.h): a depth-first search over the members of a group, largest first.
#include "scheduler/placement.h"

#include <algorithm>
#include <map>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace elektronn::sched {
namespace {

// The search visits at most this many partial placements per group (a group of 16 members on
// 16 hosts needs far fewer unless it cannot fit, which the bound then reports as "not now").
constexpr int kMaxVisits = 200'000;

int Threads(const v1::ExperimentMember& m) { return std::max(1, m.needs().cpu_threads()); }

int FreeGpus(const HostSnapshot& h) {
  return static_cast<int>(
      std::count_if(h.gpus.begin(), h.gpus.end(), [](const GpuSlot& g) { return g.free; }));
}

bool Fits(const v1::ExperimentMember& m, const HostSnapshot& h) {
  return HostAllowed(m, h) && h.job_slots_free > 0 && FreeGpus(h) >= m.needs().gpus() &&
         h.cpu_threads_free >= Threads(m) && h.memory_free >= m.needs().memory_bytes();
}

// Takes what `m` uses from `h`: the first free GPUs.
Assignment Take(int member, int host, const v1::ExperimentMember& m, HostSnapshot* h) {
  Assignment a{member, host, {}};
  for (GpuSlot& g : h->gpus) {
    if (static_cast<int>(a.gpu_uuids.size()) == m.needs().gpus()) break;
    if (!g.free) continue;
    g.free = false;
    g.busy_why = "placed";
    a.gpu_uuids.push_back(g.uuid);
  }
  h->job_slots_free -= 1;
  h->cpu_threads_free -= Threads(m);
  h->memory_free -= m.needs().memory_bytes();
  return a;
}

struct Search {
  const v1::Experiment& e;
  const std::vector<int>& order;  // members, largest first
  std::vector<HostSnapshot> hosts;
  std::vector<Assignment> chosen;
  int visits = 0;

  bool Run(size_t k) {
    if (k == order.size()) return true;
    if (++visits > kMaxVisits) return false;
    const v1::ExperimentMember& m = e.members(order[k]);
    // Hosts with the fewest free GPUs first: a 1-GPU member should not split the host that
    // alone can take a 4-GPU member. Ties keep the given order.
    std::vector<int> candidates(hosts.size());
    std::iota(candidates.begin(), candidates.end(), 0);
    std::stable_sort(candidates.begin(), candidates.end(),
                     [&](int a, int b) { return FreeGpus(hosts[a]) < FreeGpus(hosts[b]); });
    for (int h : candidates) {
      if (!Fits(m, hosts[h])) continue;
      const HostSnapshot saved = hosts[h];
      chosen.push_back(Take(order[k], h, m, &hosts[h]));
      if (Run(k + 1)) return true;
      chosen.pop_back();
      hosts[h] = saved;
    }
    return false;
  }
};

}  // namespace

HostSnapshot SnapshotOf(const std::string& address, const v1::Resources& r) {
  HostSnapshot h;
  h.address = address;
  h.hostname = r.hostname();
  for (const v1::GpuInfo& g : r.gpus()) {
    // `busy` is the daemon's own verdict (any foreign process, a reservation or a job holds
    // it); a daemon from before reservations sends only foreign_pids.
    GpuSlot slot{g.uuid(), !g.busy() && g.foreign_pids().empty(), g.busy_reason()};
    if (!slot.free && slot.busy_why.empty()) {
      slot.busy_why = absl::StrCat("process ", absl::StrJoin(g.foreign_pids(), ", "),
                                   " (not elektronnd's) runs on it");
    }
    h.gpus.push_back(std::move(slot));
  }
  // What reservations hold is not free; the load average is not subtracted: it lags minutes
  // behind jobs that start and end.
  int reserved_threads = 0, active = 0;
  int64_t reserved_memory = 0;
  for (const v1::Reservation& res : r.reservations()) {
    if (res.state() != v1::ACTIVE && res.state() != v1::CONSUMED) continue;
    reserved_threads += res.cpu_threads();
    reserved_memory += res.memory_bytes();
    active += res.state() == v1::ACTIVE;  // a consumed one's job is among running_jobs
  }
  h.cpu_threads_total = std::max(1, r.cpu_count());
  h.cpu_threads_free = std::max(0, h.cpu_threads_total - reserved_threads);
  h.memory_total = r.memory_total_bytes();
  h.memory_free = std::max<int64_t>(0, r.memory_available_bytes() - reserved_memory);
  h.job_slots_free =
      r.capacity() > 0 ? std::max(0, r.capacity() - r.running_jobs_size() - active) : 1 << 20;
  return h;
}

bool HostAllowed(const v1::ExperimentMember& m, const HostSnapshot& h) {
  if (m.hosts().empty()) return true;
  return std::any_of(m.hosts().begin(), m.hosts().end(), [&](const std::string& want) {
    return want == h.address || (!h.hostname.empty() && want == h.hostname);
  });
}

std::vector<std::vector<int>> GroupsInOrder(const v1::Experiment& e) {
  std::vector<std::vector<int>> groups;
  std::map<std::string, size_t> index;
  for (int i = 0; i < e.members_size(); ++i) {
    const std::string& g = e.members(i).group();
    if (g.empty()) {
      groups.push_back({i});
    } else if (auto it = index.find(g); it != index.end()) {
      groups[it->second].push_back(i);
    } else {
      index[g] = groups.size();
      groups.push_back({i});
    }
  }
  auto priority = [&](const std::vector<int>& g) {
    int p = e.members(g[0]).priority();
    for (int m : g) p = std::max(p, e.members(m).priority());
    return p;
  };
  std::stable_sort(groups.begin(), groups.end(),
                   [&](const auto& a, const auto& b) { return priority(a) > priority(b); });
  return groups;
}

absl::Status CheckFeasible(const v1::Experiment& e, const std::vector<HostSnapshot>& hosts) {
  std::vector<std::string> problems;
  for (const v1::ExperimentMember& m : e.members()) {
    std::vector<std::string> why;
    bool fits = false;
    for (const HostSnapshot& h : hosts) {
      if (!HostAllowed(m, h)) continue;
      const int gpus = static_cast<int>(h.gpus.size());
      if (gpus < m.needs().gpus()) {
        why.push_back(absl::StrFormat("%s has %d GPUs", h.address, gpus));
      } else if (h.cpu_threads_total < Threads(m)) {
        why.push_back(absl::StrFormat("%s has %d CPU threads", h.address, h.cpu_threads_total));
      } else if (h.memory_total < m.needs().memory_bytes()) {
        why.push_back(absl::StrFormat("%s has %.1f GiB of memory", h.address,
                                      h.memory_total / double(1 << 30)));
      } else {
        fits = true;
      }
    }
    if (fits) continue;
    if (why.empty()) {
      problems.push_back(
          absl::StrFormat("member '%s' may run only on %s, which is not among the "
                          "hosts",
                          m.name(), absl::StrJoin(m.hosts(), ", ")));
    } else {
      problems.push_back(
          absl::StrFormat("member '%s' needs %d GPUs, %d CPU threads and %.1f GiB, but %s",
                          m.name(), m.needs().gpus(), Threads(m),
                          m.needs().memory_bytes() / double(1 << 30), absl::StrJoin(why, "; ")));
    }
  }
  if (problems.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrJoin(problems, "\n"));
}

std::optional<std::vector<Assignment>> PlaceGroup(const v1::Experiment& e,
                                                  const std::vector<int>& group,
                                                  std::vector<HostSnapshot>* hosts) {
  std::vector<int> order = group;
  auto size = [&](int i) {
    const v1::MemberNeeds& n = e.members(i).needs();
    return std::make_tuple(n.gpus(), Threads(e.members(i)), n.memory_bytes());
  };
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return size(a) > size(b); });
  Search s{e, order, *hosts, {}, 0};
  if (!s.Run(0)) return std::nullopt;
  *hosts = std::move(s.hosts);
  std::vector<Assignment> out;
  for (int m : group) {
    for (const Assignment& a : s.chosen) {
      if (a.member == m) out.push_back(a);
    }
  }
  return out;
}

}  // namespace elektronn::sched
