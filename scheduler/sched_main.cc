// elektronn-sched: experiments (groups of training jobs) across elektronnd hosts, placed by
// each daemon's reported occupancy (scheduler/placement.h). Talks to daemons over gRPC only.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/connection.h"
#include "client/table.h"
#include "elektronn/v1/jobs.grpc.pb.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"
#include "rpc/version.h"
#include "scheduler/experiment.h"
#include "scheduler/member_spec.h"
#include "scheduler/placement.h"
#include "scheduler/run_state.h"
#include "scheduler/runner.h"
#include "scheduler/slurm.h"

namespace elektronn::sched {
namespace {

struct Options {
  std::string experiment;
  std::vector<std::string> hosts;
  std::string hosts_file;
  bool json = false;
  ConnectionOptions connection;
  std::string state_dir;
  std::string id;  // ls/status/cancel/forget: the experiment
  RunnerOptions runner;
};

std::string Needs(const v1::ExperimentMember& m) {
  std::string s =
      absl::StrFormat("%d GPU, %d threads", m.needs().gpus(), std::max(1, m.needs().cpu_threads()));
  if (m.needs().memory_bytes() > 0) {
    absl::StrAppendFormat(&s, ", %.1f GiB", m.needs().memory_bytes() / double(1 << 30));
  }
  return s;
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
              e->members_size(), GroupsInOrder(*e).size(), FormatTable(rows).c_str());
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

// The occupancy of every daemon that answers; the others in `unreachable` ("host: why", also
// printed as warnings).
std::vector<HostSnapshot> Snapshots(const Options& o, const std::vector<std::string>& addresses,
                                    std::vector<std::string>* unreachable) {
  const EnvLookup env = ProcessEnvironment();
  std::vector<HostSnapshot> hosts;
  for (const std::string& address : addresses) {
    auto c = Connect(o.connection, env, address);
    if (!c.ok()) {
      unreachable->push_back(absl::StrCat(address, ": ", c.status().message()));
      continue;
    }
    v1::Resources r;
    auto ctx = MakeContext(*c);
    grpc::Status s = v1::Host::NewStub(c->channel)->GetResources(ctx.get(), {}, &r);
    if (!s.ok()) {
      unreachable->push_back(absl::StrCat(address, ": ", DescribeError(s, *c)));
      continue;
    }
    hosts.push_back(SnapshotOf(address, r));
  }
  for (const std::string& u : *unreachable) std::fprintf(stderr, "warning: %s\n", u.c_str());
  return hosts;
}

// Members that can never start on the hosts (CheckFeasible's error): exit 4.
int FailNever(const absl::Status& feasible) {
  std::fprintf(stderr, "error: these members can never start on these hosts:\n%s\n",
               std::string(feasible.message()).c_str());
  return kExitPrecondition;
}

// `plan`: what would start now, and where; what waits, and why.
int RunPlan(const Options& o) {
  auto e = LoadExperimentFile(o.experiment);
  if (!e.ok()) return Fail(e.status());
  auto addresses = HostList(o);
  if (!addresses.ok()) return Fail(addresses.status());
  std::vector<std::string> unreachable;
  std::vector<HostSnapshot> hosts = Snapshots(o, *addresses, &unreachable);
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
    std::printf("%s", FormatTable(rows).c_str());
    for (const HostSnapshot& h : hosts) {
      for (const GpuSlot& g : h.gpus) {
        if (!g.busy_why.empty() && g.busy_why != "placed") {
          std::printf("%s GPU %s is busy: %s\n", h.address.c_str(), g.uuid.c_str(),
                      g.busy_why.c_str());
        }
      }
    }
  }
  if (!feasible.ok()) return FailNever(feasible);
  return kExitOk;
}

const char* MemberStateName(v1::MemberState s) {
  switch (s) {
    case v1::MEMBER_WAITING:
      return "waiting";
    case v1::MEMBER_RESERVING:
      return "reserving";
    case v1::MEMBER_STARTING:
      return "starting";
    case v1::MEMBER_RUNNING:
      return "running";
    case v1::MEMBER_SUCCEEDED:
      return "succeeded";
    case v1::MEMBER_FAILED:
      return "failed";
    case v1::MEMBER_CANCELLED:
      return "cancelled";
    default:
      return "?";
  }
}

bool MemberEnded(v1::MemberState s) {
  return s == v1::MEMBER_SUCCEEDED || s == v1::MEMBER_FAILED || s == v1::MEMBER_CANCELLED;
}

StateDir OpenStateDir(const Options& o) {
  return StateDir(o.state_dir.empty() ? DefaultStateDir() : o.state_dir);
}

std::string RandomKey() {
  std::random_device rd;
  return absl::StrFormat("%08x", rd());
}

// The experiment as JSON, without the members' binary job specs.
std::string RunJson(v1::ExperimentRun run) {
  for (v1::MemberRun& m : *run.mutable_members()) m.clear_job_spec();
  std::string json;
  google::protobuf::util::JsonPrintOptions p;
  p.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(run, &json, p);
  return json;
}

// `run`: a new experiment (its members' specs built now, once), or the rest of one a stopped
// scheduler left (its stored specs and hosts); until every member has ended.
int RunRun(Options o) {
  auto e = LoadExperimentFile(o.experiment);
  if (!e.ok()) return Fail(e.status());
  const std::string id = o.id.empty() ? e->name() : o.id;
  StateDir dir = OpenStateDir(o);
  if (absl::Status s = dir.Init(); !s.ok()) return Fail(s);
  auto lock = dir.Lock(id);
  if (!lock.ok()) return Fail(lock.status());
  v1::ExperimentRun run;
  if (dir.Exists(id)) {
    auto stored = dir.Load(id);
    if (!stored.ok()) return Fail(stored.status());
    run = *std::move(stored);
    if (std::all_of(run.members().begin(), run.members().end(),
                    [](const v1::MemberRun& m) { return MemberEnded(m.state()); })) {
      return Fail(absl::FailedPreconditionError(
          absl::StrCat("experiment '", id, "' has ended (see `elektronn-sched status ", id,
                       "`); to run it again: `elektronn-sched forget ", id, "`, or give --name")));
    }
    if (!o.hosts.empty() || !o.hosts_file.empty()) {
      auto addresses = HostList(o);
      if (!addresses.ok()) return Fail(addresses.status());
      run.mutable_hosts()->Assign(addresses->begin(), addresses->end());
    }
    std::fprintf(o.json ? stderr : stdout,
                 "resuming experiment '%s' (state in %s/%s.pb); its members as they were "
                 "stored, not as %s says now\n",
                 id.c_str(), dir.dir().c_str(), id.c_str(), o.experiment.c_str());
  } else {
    auto addresses = HostList(o);
    if (!addresses.ok()) return Fail(addresses.status());
    std::vector<std::string> unreachable;
    std::vector<HostSnapshot> hosts = Snapshots(o, *addresses, &unreachable);
    if (hosts.empty()) return Fail(absl::UnavailableError("no host answered"));
    // With a host missing, a member that fits nowhere now may fit there later.
    if (unreachable.empty()) {
      if (absl::Status f = CheckFeasible(*e, hosts); !f.ok()) return FailNever(f);
    }
    run.set_id(id);
    run.set_run_key(RandomKey());
    *run.mutable_experiment() = *e;
    run.mutable_hosts()->Assign(addresses->begin(), addresses->end());
    const std::string client = FindClientBinary();
    for (const v1::ExperimentMember& m : e->members()) {
      auto spec = BuildMemberSpec(m, client);
      if (!spec.ok()) return Fail(spec.status());
      v1::MemberRun* r = run.add_members();
      r->set_member(m.name());
      r->set_state(v1::MEMBER_WAITING);
      r->set_job_spec(*std::move(spec));
    }
    run.mutable_create_time()->set_seconds(absl::ToUnixSeconds(absl::Now()));
    if (absl::Status s = dir.Save(&run); !s.ok()) return Fail(s);
    std::fprintf(o.json ? stderr : stdout,
                 "experiment '%s': %d members on %d hosts (state in %s/%s.pb)\n", id.c_str(),
                 run.members_size(), run.hosts_size(), dir.dir().c_str(), id.c_str());
  }
  std::fflush(stdout);
  if (const char* hook = std::getenv("ELEKTRONN_SCHED_TEST_HOOK")) o.runner.test_hook = hook;
  o.runner.connection = o.connection;
  o.runner.progress_to_stderr = o.json;
  Runner runner(std::move(run), dir, o.runner);
  const int code = runner.Run();
  if (o.json) std::printf("%s\n", RunJson(runner.run()).c_str());
  return code;
}

std::string RunnerText(const StateDir& dir, const std::string& id) {
  auto pid = dir.Runner(id);
  return pid ? absl::StrCat("run by process ", *pid) : "not running";
}

// `status ID`: each member's host, GPUs, state, job, step and loss, as the run last saw them.
int RunStatus(const Options& o) {
  StateDir dir = OpenStateDir(o);
  auto run = dir.Load(o.id);
  if (!run.ok()) return Fail(run.status());
  if (o.json) {
    nlohmann::json out = nlohmann::json::parse(RunJson(*run));
    auto pid = dir.Runner(o.id);
    out["runner_pid"] = pid ? *pid : 0;
    std::printf("%s\n", out.dump().c_str());
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows = {
      {"MEMBER", "GROUP", "STATE", "HOST", "GPUS", "JOB", "STEP", "LOSS", "NOTE"}};
  for (int i = 0; i < run->members_size(); ++i) {
    const v1::MemberRun& m = run->members(i);
    const v1::ExperimentMember& spec = run->experiment().members(i);
    const bool placed = !m.host().empty() && m.state() != v1::MEMBER_WAITING;
    std::string state = MemberStateName(m.state());
    if (m.state() == v1::MEMBER_RUNNING && !m.job_state().empty()) {
      state = absl::AsciiStrToLower(m.job_state());
    }
    rows.push_back({m.member(), spec.group().empty() ? "-" : spec.group(), state,
                    placed ? m.host() : "-",
                    placed && m.gpu_uuids_size() > 0 ? absl::StrJoin(m.gpu_uuids(), ",") : "-",
                    m.job().empty() ? "-" : m.job(), m.job().empty() ? "-" : absl::StrCat(m.step()),
                    m.job().empty() ? "-" : absl::StrFormat("%.4g", m.loss()), m.error()});
  }
  std::printf(
      "experiment '%s' (%s; %d attempts of gang starts so far)\n%s", o.id.c_str(),
      RunnerText(dir, o.id).c_str(),
      std::accumulate(run->members().begin(), run->members().end(), 0,
                      [](int n, const v1::MemberRun& m) { return std::max(n, m.attempt()); }),
      FormatTable(rows).c_str());
  return kExitOk;
}

// `ls`: every experiment in the state directory.
int RunLs(const Options& o) {
  StateDir dir = OpenStateDir(o);
  nlohmann::json out = nlohmann::json::array();
  std::vector<std::vector<std::string>> rows = {{"EXPERIMENT", "MEMBERS", "STATES", "RUNNER"}};
  for (const std::string& id : dir.Ids()) {
    auto run = dir.Load(id);
    if (!run.ok()) {
      rows.push_back({id, "?", std::string(run.status().message()), "-"});
      continue;
    }
    std::map<std::string, int> count;
    for (const v1::MemberRun& m : run->members()) ++count[MemberStateName(m.state())];
    std::vector<std::string> states;
    for (const auto& [state, n] : count) states.push_back(absl::StrCat(n, " ", state));
    auto pid = dir.Runner(id);
    rows.push_back({id, absl::StrCat(run->members_size()), absl::StrJoin(states, ", "),
                    pid ? absl::StrCat("pid ", *pid) : "-"});
    out.push_back({{"id", id},
                   {"members", run->members_size()},
                   {"states", count},
                   {"runner_pid", pid ? *pid : 0}});
  }
  if (o.json) {
    std::printf("%s\n", out.dump().c_str());
  } else if (rows.size() == 1) {
    std::printf("no experiments in %s\n", dir.dir().c_str());
  } else {
    std::printf("%s", FormatTable(rows).c_str());
  }
  return kExitOk;
}

// `cancel ID`: the running scheduler cancels (asked through a file), or, when none runs, this
// process does: jobs cancelled, reservations released, members CANCELLED.
int RunCancel(const Options& o) {
  StateDir dir = OpenStateDir(o);
  if (!dir.Exists(o.id)) return Fail(dir.Load(o.id).status());
  if (auto pid = dir.Runner(o.id)) {
    if (absl::Status s = dir.RequestCancel(o.id); !s.ok()) return Fail(s);
    std::printf("asked process %d, which runs '%s', to cancel it\n", *pid, o.id.c_str());
    for (int i = 0; i < 600 && dir.Runner(o.id); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (dir.Runner(o.id)) {
      return Fail(absl::DeadlineExceededError("it has not finished cancelling after 60 s"));
    }
  } else {
    auto lock = dir.Lock(o.id);
    if (!lock.ok()) return Fail(lock.status());
    auto run = dir.Load(o.id);
    if (!run.ok()) return Fail(run.status());
    RunnerOptions ro = o.runner;
    ro.connection = o.connection;
    const int left =
        Runner(*std::move(run), dir, ro).CancelAll("cancelled by `elektronn-sched cancel`");
    if (left > 0) {
      return Fail(absl::UnavailableError(absl::StrCat(
          left, " job(s) could not be cancelled (their daemons do not answer); run cancel again")));
    }
  }
  auto run = dir.Load(o.id);
  if (!run.ok()) return Fail(run.status());
  int cancelled = 0;
  for (const v1::MemberRun& m : run->members()) cancelled += m.state() == v1::MEMBER_CANCELLED;
  std::printf("experiment '%s' cancelled: %d members cancelled\n", o.id.c_str(), cancelled);
  return kExitOk;
}

int RunForget(const Options& o) {
  StateDir dir = OpenStateDir(o);
  if (absl::Status s = dir.Forget(o.id); !s.ok()) return Fail(s);
  std::printf("forgot experiment '%s'\n", o.id.c_str());
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

// Experiment ids name files in the state directory: no path may come out of one.
const CLI::Validator kExperimentId(
    [](std::string& id) -> std::string {
      return ValidExperimentName(id)
                 ? ""
                 : "an experiment id is 1 to 64 letters, digits or . _ = + - (see `ls`)";
    },
    "ID");

void AddStateDir(CLI::App* sub, Options* o) {
  sub->add_option("--state-dir", o->state_dir,
                  "where experiments are kept (default: $ELEKTRONN_SCHED_STATE, else "
                  "~/.local/state/elektronn-sched)");
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
  auto* run = app.add_subcommand(
      "run",
      "run an experiment until every member has ended: place members on free GPUs, start each "
      "group together (reserve, create, common start), retry what could not start; a stopped "
      "run resumes with the same command");
  run->add_option("experiment", o.experiment, "the Lua experiment file")
      ->required()
      ->check(CLI::ExistingFile);
  run->add_option("--name", o.id, "the experiment's id (default: its `experiment` name)")
      ->check(kExperimentId);
  run->add_option("--poll", o.runner.poll_s, "seconds between occupancy polls")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  run->add_option("--lease", o.runner.lease_s,
                  "seconds a reservation lives unless renewed while its group gathers")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 3600.0));
  run->add_option("--start-margin", o.runner.start_margin_s,
                  "seconds from creating a group's jobs to their common first step")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 600.0));
  run->add_option("--backoff", o.runner.backoff_min_s,
                  "seconds before retrying a group that failed to start (doubles, randomised)")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  run->add_flag("--quiet", o.runner.quiet, "no progress lines");
  run->add_flag("--json", o.json,
                "progress on stderr; at the end, the experiment as JSON (as `status --json`)");
  AddConnection(run, &o);
  AddStateDir(run, &o);
  // run --slurm (scheduler/slurm.h): each start group as one Slurm heterogeneous job, no daemons.
  bool on_slurm = false;
  SlurmOptions slurm;
  auto* slurm_flag = run->add_flag(
      "--slurm", on_slurm,
      "submit each start group as one Slurm heterogeneous job (its members start together or "
      "not at all) instead of using daemons");
  slurm_flag->excludes(run->get_option("--hosts"))->excludes(run->get_option("--hosts-file"));
  run->add_option("--slurm-dir", slurm.dir,
                  "with --slurm: specs, scripts, outputs and training directories, on a "
                  "filesystem the nodes share (default: <experiment>-slurm next to the file)")
      ->needs(slurm_flag);
  run->add_option("--slurm-partition", slurm.partition, "with --slurm: the Slurm partition(s)")
      ->needs(slurm_flag)
      ->check(CLI::Validator(
          [](std::string& p) -> std::string {
            return p.find_first_not_of(
                       "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                       "0123456789._,-") == std::string::npos
                       ? ""
                       : "a partition name has only letters, digits and ._,-";
          },
          "PARTITION"));
  run->add_option("--slurm-data-dir", slurm.data_dir,
                  "with --slurm: the members' data directory (default: each member's job "
                  "file's directory)")
      ->needs(slurm_flag);
  run->add_flag("--wait", slurm.wait,
                "with --slurm: poll Slurm until every group's job ended; exit 1 if any failed")
      ->needs(slurm_flag);
  auto run_on_slurm = [&]() {
    auto e = LoadExperimentFile(o.experiment);
    if (!e.ok()) return Fail(e.status());
    namespace fs = std::filesystem;
    if (slurm.dir.empty()) {
      slurm.dir = (fs::path(e->file()).parent_path() / (e->name() + "-slurm")).string();
    }
    slurm.dir = fs::absolute(slurm.dir).lexically_normal().string();
    if (!slurm.data_dir.empty()) {
      slurm.data_dir = fs::absolute(slurm.data_dir).lexically_normal().string();
    }
    slurm.worker_binary = FindWorkerBinary();
    const std::string client = FindClientBinary();
    absl::Status s = RunSlurm(
        *e, slurm, [&](const v1::ExperimentMember& m) { return BuildMemberSpec(m, client); });
    return s.ok() ? kExitOk : Fail(s);
  };
  auto* ls = app.add_subcommand("ls", "list the experiments in the state directory");
  ls->add_flag("--json", o.json, "print JSON");
  AddStateDir(ls, &o);
  auto* status = app.add_subcommand(
      "status", "each member's state, host, GPUs, job, step and loss, as its run last saw them");
  status->add_option("id", o.id, "the experiment (see ls)")->required()->check(kExperimentId);
  status->add_flag("--json", o.json, "print the stored experiment as JSON");
  AddStateDir(status, &o);
  auto* cancel = app.add_subcommand(
      "cancel", "cancel an experiment: its jobs are cancelled and its reservations released");
  cancel->add_option("id", o.id, "the experiment (see ls)")->required()->check(kExperimentId);
  AddConnection(cancel, &o);
  AddStateDir(cancel, &o);
  auto* forget = app.add_subcommand(
      "forget", "drop an experiment that is not running from the state directory");
  forget->add_option("id", o.id, "the experiment (see ls)")->required()->check(kExperimentId);
  AddStateDir(forget, &o);
  app.footer(
      "Experiment file (sandboxed Lua):\n"
      "  experiment = 'lr-sweep'\n"
      "  defaults = {job = 'neuro3d_lite.lua', gpus = 1, cpu_threads = 4, memory = '8G'}\n"
      "  members = {}\n"
      "  for _, lr in ipairs{1e-3, 3e-4} do\n"
      "    members[#members + 1] = {name = ('lr%g'):format(lr), set = {lr = lr}, group = 'a'}\n"
      "  end\n"
      "Member keys: name, job, set, gpus, cpu_threads, memory, hosts, priority, group.\n"
      "Exit codes: 0 ok, 1 other (run: a member failed), 2 usage, 3 not found, 4 cannot start\n"
      "(run: cancelled), 5 auth, 6 unreachable.");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; usage errors exit 2, as the client's.
    return app.exit(e) == 0 ? 0 : kExitUsage;
  }
  if (check->parsed()) return RunCheck(o);
  if (plan->parsed()) return RunPlan(o);
  if (run->parsed()) return on_slurm ? run_on_slurm() : RunRun(o);
  if (ls->parsed()) return RunLs(o);
  if (status->parsed()) return RunStatus(o);
  if (cancel->parsed()) return RunCancel(o);
  return RunForget(o);
}
