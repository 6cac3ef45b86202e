// elektronn-sched: experiments (groups of training jobs) across elektronnd hosts, placed by
// each daemon's reported occupancy (scheduler/placement.h). Talks to daemons over gRPC only.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/connection.h"
#include "elektronn/v1/jobs.grpc.pb.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"
#include "rpc/version.h"
#include "scheduler/experiment.h"
#include "scheduler/placement.h"

namespace elektronn::sched {
namespace {

struct Options {
  std::string experiment;
  std::vector<std::string> hosts;
  std::string hosts_file;
  bool json = false;
  ConnectionOptions connection;
};

std::string Needs(const v1::ExperimentMember& m) {
  std::string s =
      absl::StrFormat("%d GPU, %d threads", m.needs().gpus(), std::max(1, m.needs().cpu_threads()));
  if (m.needs().memory_bytes() > 0) {
    absl::StrAppendFormat(&s, ", %.1f GiB", m.needs().memory_bytes() / double(1 << 30));
  }
  return s;
}

// Left-aligned columns, each as wide as its widest cell.
std::string Table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& r : rows) {
    width.resize(std::max(width.size(), r.size()), 0);
    for (size_t c = 0; c < r.size(); ++c) width[c] = std::max(width[c], r[c].size());
  }
  std::string out;
  for (const auto& r : rows) {
    std::string line;
    for (size_t c = 0; c < r.size(); ++c) {
      line += c + 1 == r.size() ? r[c] : absl::StrFormat("%-*s  ", width[c], r[c]);
    }
    out += line + "\n";
  }
  return out;
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
  return ExitCodeFor(static_cast<grpc::StatusCode>(s.code()));
}

int RunCheck(const Options& o) {
  auto e = LoadExperimentFile(o.experiment);
  if (!e.ok()) return Fail(e.status());
  if (o.json) {
    std::string json;
    google::protobuf::util::JsonPrintOptions p;
    p.preserve_proto_field_names = true;
    (void)google::protobuf::util::MessageToJsonString(*e, &json, p);
    std::printf("%s\n", json.c_str());
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows = {
      {"MEMBER", "GROUP", "PRIORITY", "NEEDS", "HOSTS", "JOB", "SET"}};
  for (const v1::ExperimentMember& m : e->members()) {
    rows.push_back({m.name(), m.group().empty() ? "-" : m.group(), absl::StrCat(m.priority()),
                    Needs(m), m.hosts().empty() ? "any" : absl::StrJoin(m.hosts(), ","),
                    m.job_file(), absl::StrJoin(m.overrides(), " ")});
  }
  std::printf("experiment '%s': %d members, %zu start groups\n%s", e->name().c_str(),
              e->members_size(), GroupsInOrder(*e).size(), Table(rows).c_str());
  return kExitOk;
}

absl::StatusOr<std::vector<std::string>> HostList(const Options& o) {
  std::vector<std::string> hosts;
  for (const std::string& h : o.hosts) {
    for (absl::string_view part : absl::StrSplit(h, ',', absl::SkipWhitespace())) {
      hosts.emplace_back(absl::StripAsciiWhitespace(part));
    }
  }
  if (!o.hosts_file.empty()) {
    std::ifstream in(o.hosts_file);
    if (!in) return absl::NotFoundError("cannot read the hosts file " + o.hosts_file);
    std::string line;
    while (std::getline(in, line)) {
      absl::string_view l = absl::StripAsciiWhitespace(line.substr(0, line.find('#')));
      if (!l.empty()) hosts.emplace_back(l);
    }
  }
  if (hosts.empty()) {
    return absl::InvalidArgumentError(
        "no hosts: give --hosts gpu1:7077,gpu2:7077 or --hosts-file FILE (one per line)");
  }
  return hosts;
}

// `plan`: what would start now, and where; what waits, and why.
int RunPlan(const Options& o) {
  auto e = LoadExperimentFile(o.experiment);
  if (!e.ok()) return Fail(e.status());
  auto addresses = HostList(o);
  if (!addresses.ok()) return Fail(addresses.status());
  const EnvLookup env = ProcessEnvironment();
  std::vector<HostSnapshot> hosts;
  std::vector<std::string> unreachable;
  for (const std::string& address : *addresses) {
    auto c = Connect(o.connection, env, address);
    if (!c.ok()) {
      unreachable.push_back(absl::StrCat(address, ": ", c.status().message()));
      continue;
    }
    v1::Resources r;
    auto ctx = MakeContext(*c);
    grpc::Status s = v1::Host::NewStub(c->channel)->GetResources(ctx.get(), {}, &r);
    if (!s.ok()) {
      unreachable.push_back(absl::StrCat(address, ": ", DescribeError(s, *c)));
      continue;
    }
    hosts.push_back(SnapshotOf(address, r));
  }
  for (const std::string& u : unreachable) std::fprintf(stderr, "warning: %s\n", u.c_str());
  if (hosts.empty()) return Fail(absl::UnavailableError("no host answered"));

  const absl::Status feasible = CheckFeasible(*e, hosts);
  nlohmann::json placed = nlohmann::json::array(), waiting = nlohmann::json::array();
  std::vector<std::vector<std::string>> rows = {{"MEMBER", "GROUP", "HOST", "GPUS", "STATE"}};
  std::vector<HostSnapshot> free = hosts;
  for (const std::vector<int>& group : GroupsInOrder(*e)) {
    auto fit = PlaceGroup(*e, group, &free);
    for (size_t i = 0; i < group.size(); ++i) {
      const v1::ExperimentMember& m = e->members(group[i]);
      const std::string g = m.group().empty() ? "-" : m.group();
      if (fit) {
        const Assignment& a = (*fit)[i];
        const std::string gpus = a.gpu_uuids.empty() ? "-" : absl::StrJoin(a.gpu_uuids, ",");
        rows.push_back({m.name(), g, hosts[a.host].address, gpus, "would start"});
        placed.push_back(
            {{"member", m.name()}, {"host", hosts[a.host].address}, {"gpus", a.gpu_uuids}});
      } else {
        const std::string why =
            group.size() > 1
                ? absl::StrFormat("waits: its group of %d does not fit now", group.size())
                : "waits: does not fit now";
        rows.push_back({m.name(), g, "-", "-", why});
        waiting.push_back({{"member", m.name()}, {"why", why}});
      }
    }
  }
  if (o.json) {
    nlohmann::json out = {{"placed", placed}, {"waiting", waiting}, {"unreachable", unreachable}};
    if (!feasible.ok()) out["never"] = std::string(feasible.message());
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("%s", Table(rows).c_str());
    for (const HostSnapshot& h : hosts) {
      for (const GpuSlot& g : h.gpus) {
        if (!g.busy_why.empty() && g.busy_why != "placed") {
          std::printf("%s GPU %s is busy: %s\n", h.address.c_str(), g.uuid.c_str(),
                      g.busy_why.c_str());
        }
      }
    }
  }
  if (!feasible.ok()) {
    std::fprintf(stderr, "error: these members can never start on these hosts:\n%s\n",
                 std::string(feasible.message()).c_str());
    return kExitPrecondition;
  }
  return kExitOk;
}

void AddConnection(CLI::App* sub, Options* o) {
  sub->add_option("--hosts", o->hosts, "daemons, e.g. gpu1:7077,gpu2:7077 (repeatable)");
  sub->add_option("--hosts-file", o->hosts_file, "a file with one daemon per line (# comments)");
  sub->add_option("--token", o->connection.token,
                  "bearer token (default: $ELEKTRONN_TOKEN, else the token file)");
  sub->add_option("--token-file", o->connection.token_file,
                  "file holding the token (default: ~/.local/state/elektronnd/token)");
  sub->add_option("--tls-ca", o->connection.tls_ca,
                  "PEM file of the CA that signed the daemons' certificates");
  sub->add_flag("--insecure", o->connection.insecure,
                "allow plaintext to non-loopback daemons (the token travels in clear)");
  sub->add_option("--timeout", o->connection.timeout_s, "seconds per call")->capture_default_str();
}

}  // namespace
}  // namespace elektronn::sched

int main(int argc, char** argv) {
  using namespace elektronn;
  using namespace elektronn::sched;
  CLI::App app{
      "elektronn-sched: experiments (groups of training jobs) across elektronnd hosts, each\n"
      "member on free GPUs (a GPU with any other process is busy), a group's members together.\n"
      "Run 'elektronn-sched <command> --help' for a command's options."};
  app.require_subcommand(1);
  app.set_version_flag("--version", VersionText("elektronn-sched"));
  Options o;
  auto* check = app.add_subcommand(
      "check", "read an experiment file and list its members and start groups; no daemons");
  check->add_option("experiment", o.experiment, "the Lua experiment file")
      ->required()
      ->check(CLI::ExistingFile);
  check->add_flag("--json", o.json, "print the experiment as proto JSON");
  auto* plan = app.add_subcommand(
      "plan", "ask the daemons for their occupancy and show where each member would start now");
  plan->add_option("experiment", o.experiment, "the Lua experiment file")
      ->required()
      ->check(CLI::ExistingFile);
  plan->add_flag("--json", o.json, "print {\"placed\", \"waiting\", \"unreachable\", \"never\"}");
  AddConnection(plan, &o);
  app.footer(
      "Experiment file (sandboxed Lua):\n"
      "  experiment = 'lr-sweep'\n"
      "  defaults = {job = 'neuro3d_lite.lua', gpus = 1, cpu_threads = 4, memory = '8G'}\n"
      "  members = {}\n"
      "  for _, lr in ipairs{1e-3, 3e-4} do\n"
      "    members[#members + 1] = {name = ('lr%g'):format(lr), set = {lr = lr}, group = 'a'}\n"
      "  end\n"
      "Member keys: name, job, set, gpus, cpu_threads, memory, hosts, priority, group.\n"
      "Exit codes: 0 ok, 1 other, 2 usage, 3 not found, 4 cannot start, 5 auth, 6 unreachable.");
  CLI11_PARSE(app, argc, argv);
  if (check->parsed()) return RunCheck(o);
  return RunPlan(o);
}
