// The gang start and the watch loop of `elektronn-sched run` (see runner.h).
#include "scheduler/runner.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"

extern char** environ;

namespace elektronn::sched {
namespace {

google::protobuf::Timestamp ToProto(absl::Time t) {
  google::protobuf::Timestamp p;
  const int64_t ns = absl::ToUnixNanos(t);
  p.set_seconds(ns / 1'000'000'000);
  p.set_nanos(static_cast<int32_t>(ns % 1'000'000'000));
  return p;
}

absl::Time FromProto(const google::protobuf::Timestamp& p) {
  return absl::FromUnixSeconds(p.seconds()) + absl::Nanoseconds(p.nanos());
}

google::protobuf::Duration Seconds(double s) {
  google::protobuf::Duration d;
  d.set_seconds(static_cast<int64_t>(s));
  d.set_nanos(static_cast<int32_t>((s - static_cast<double>(d.seconds())) * 1e9));
  return d;
}

bool Ended(v1::MemberState s) {
  return s == v1::MEMBER_SUCCEEDED || s == v1::MEMBER_FAILED || s == v1::MEMBER_CANCELLED;
}

std::string Clock() { return absl::FormatTime("%H:%M:%S", absl::Now(), absl::LocalTimeZone()); }

}  // namespace

struct Runner::Host {
  std::string address;
  Connection connection;
  std::unique_ptr<v1::Jobs::Stub> jobs;
  std::unique_ptr<v1::Host::Stub> host;
  std::unique_ptr<v1::Reservations::Stub> reservations;
  std::string unreachable;  // the last error, "" when it answered
};

Runner::Runner(v1::ExperimentRun run, const StateDir& dir, RunnerOptions options)
    : run_(std::move(run)), dir_(dir), options_(std::move(options)) {
  groups_ = GroupsInOrder(run_.experiment());
}

Runner::~Runner() = default;

Runner::Host* Runner::HostOf(const std::string& address) {
  auto& h = hosts_[address];
  if (h == nullptr) {
    h = std::make_unique<Host>();
    h->address = address;
  }
  if (h->jobs == nullptr) {  // (again: a failed Connect is retried, and said once)
    auto c = Connect(options_.connection, ProcessEnvironment(), address);
    if (!c.ok()) {
      const std::string why(c.status().message());
      if (h->unreachable != why) Say(absl::StrCat(address, ": ", why));
      h->unreachable = why;
      return h.get();
    }
    h->unreachable.clear();
    h->connection = *std::move(c);
    h->jobs = v1::Jobs::NewStub(h->connection.channel);
    h->host = v1::Host::NewStub(h->connection.channel);
    h->reservations = v1::Reservations::NewStub(h->connection.channel);
  }
  return h.get();
}

// Polls (occupancy, job states) give up sooner than the connection's deadline, so that one
// host that does not answer slows a poll by seconds, not minutes.
double Runner::PollTimeout() const { return std::min(options_.connection.timeout_s, 5.0); }

std::unique_ptr<grpc::ClientContext> Runner::Context(Host* h, double timeout_s) {
  auto ctx = MakeContext(h->connection);
  if (timeout_s > 0) {
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
  }
  return ctx;
}

void Runner::Save() {
  if (absl::Status s = dir_.Save(&run_); !s.ok()) {
    // Without its state a restart could not undo what this run began: stop here, loudly.
    std::fprintf(stderr, "error: cannot save the experiment's state: %s\n",
                 std::string(s.message()).c_str());
    std::exit(kExitOther);
  }
}

void Runner::Say(const std::string& line) const {
  if (options_.quiet) return;
  FILE* out = options_.progress_to_stderr ? stderr : stdout;
  std::fprintf(out, "[%s] %s\n", Clock().c_str(), line.c_str());
  std::fflush(out);
}

void Runner::Hook(const std::string& event, const v1::MemberRun& m) const {
  if (options_.test_hook.empty()) return;
  std::vector<std::string> args = {options_.test_hook, event, m.member(), m.host()};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  if (posix_spawn(&pid, options_.test_hook.c_str(), nullptr, nullptr, argv.data(), environ) == 0) {
    int status = 0;
    waitpid(pid, &status, 0);
  }
}

std::string Runner::RequestId(const v1::MemberRun& m) const {
  return absl::StrCat(run_.id(), ".", run_.run_key(), "/", m.member(), "/", m.attempt());
}

std::string Runner::GroupName(const std::vector<int>& group) const {
  const v1::ExperimentMember& first = run_.experiment().members(group[0]);
  return first.group().empty() ? first.name() : "group " + first.group();
}

// Global order: by host address, then first GPU UUID, then member name.
std::vector<int> Runner::GlobalOrder(const std::vector<int>& group) const {
  std::vector<int> order = group;
  auto key = [&](int i) {
    const v1::MemberRun& m = run_.members(i);
    return std::make_tuple(m.host(), m.gpu_uuids().empty() ? "" : m.gpu_uuids(0), m.member());
  };
  std::sort(order.begin(), order.end(), [&](int a, int b) { return key(a) < key(b); });
  return order;
}

namespace {
std::atomic<int> g_stop_signal{0};
void OnStopSignal(int sig) { g_stop_signal = sig; }
}  // namespace

int Runner::Run() {
  // Ctrl-C or SIGTERM stops the scheduler between steps (never inside a gang start), not the
  // experiment: its jobs keep running, and the same `run` resumes watching them.
  struct sigaction action = {};
  action.sa_handler = OnStopSignal;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  if (std::none_of(run_.hosts().begin(), run_.hosts().end(),
                   [&](const std::string& a) { return HostOf(a)->jobs != nullptr; })) {
    Say("no daemon can be dialled (see above); give the connection options `run` had");
    return kExitUnavailable;
  }
  Recover();
  while (true) {
    if (g_stop_signal != 0) {
      Say(absl::StrCat("stopped by signal ", g_stop_signal.load(), "; the experiment's jobs keep ",
                       "running: run the same command to resume, or `elektronn-sched cancel ",
                       run_.id(), "`"));
      return 128 + g_stop_signal;
    }
    if (dir_.CancelRequested(run_.id())) {
      CancelAll("cancelled by `elektronn-sched cancel`");
      return kExitPrecondition;
    }
    RetryUndo();
    Refresh();
    const bool all_ended = std::all_of(run_.members().begin(), run_.members().end(),
                                       [](const v1::MemberRun& m) { return Ended(m.state()); });
    if (all_ended) break;
    StartWaitingGroups();
    // Sleep in slices, so that a cancel is seen quickly.
    const absl::Time until = absl::Now() + absl::Seconds(options_.poll_s);
    while (absl::Now() < until && !dir_.CancelRequested(run_.id()) && g_stop_signal == 0) {
      absl::SleepFor(absl::Milliseconds(100));
    }
  }
  int succeeded = 0, failed = 0, cancelled = 0;
  for (const v1::MemberRun& m : run_.members()) {
    succeeded += m.state() == v1::MEMBER_SUCCEEDED;
    failed += m.state() == v1::MEMBER_FAILED;
    cancelled += m.state() == v1::MEMBER_CANCELLED;
  }
  Say(absl::StrFormat("experiment '%s' ended: %d succeeded, %d failed, %d cancelled", run_.id(),
                      succeeded, failed, cancelled));
  if (failed > 0) return kExitOther;
  return cancelled > 0 ? kExitPrecondition : kExitOk;
}

// What a killed scheduler left: groups in the middle of a gang start.
void Runner::Recover() {
  for (const std::vector<int>& group : groups_) {
    const v1::MemberState s = run_.members(group[0]).state();
    if (s == v1::MEMBER_RESERVING) Abort(group, "the scheduler stopped while reserving");
  }
  ReleaseStrayReservations();
  for (const std::vector<int>& group : groups_) {
    if (run_.members(group[0]).state() != v1::MEMBER_STARTING) continue;
    Say(absl::StrCat(GroupName(group), ": finishing the start a stopped scheduler began"));
    Commit(group, /*recovering=*/true);
  }
}

// ACTIVE reservations of this run that no member records (a Reserve answered, then the
// scheduler died before saving it): released now rather than at their lease's end.
void Runner::ReleaseStrayReservations() {
  const std::string prefix = absl::StrCat(run_.id(), ".", run_.run_key(), "/");
  std::set<std::string> recorded;
  for (const v1::MemberRun& m : run_.members()) {
    if (!m.reservation().empty()) recorded.insert(m.host() + " " + m.reservation());
  }
  for (const std::string& address : run_.hosts()) {
    Host* h = HostOf(address);
    if (h->reservations == nullptr) continue;
    v1::ListReservationsResponse list;
    if (!h->reservations->ListReservations(Context(h, PollTimeout()).get(), {}, &list).ok())
      continue;
    for (const v1::Reservation& r : list.reservations()) {
      if (r.state() != v1::ACTIVE || !absl::StartsWith(r.request_id(), prefix) ||
          recorded.count(address + " " + r.name()) > 0) {
        continue;
      }
      v1::ReleaseReservationRequest req;
      req.set_name(r.name());
      v1::Reservation out;
      (void)h->reservations->ReleaseReservation(Context(h).get(), req, &out);
      Say(absl::StrCat("released ", address, " ", r.name(), " (", r.request_id(),
                       "), left by a stopped scheduler"));
    }
  }
}

bool Runner::Refresh() {
  bool changed = false;
  for (v1::MemberRun& m : *run_.mutable_members()) {
    if (m.state() != v1::MEMBER_RUNNING) continue;
    Host* h = HostOf(m.host());
    if (h->jobs == nullptr) continue;
    v1::GetJobRequest req;
    req.set_name(m.job());
    v1::Job job;
    grpc::Status s = h->jobs->GetJob(Context(h, PollTimeout()).get(), req, &job);
    if (s.error_code() == grpc::StatusCode::NOT_FOUND) {
      m.set_state(v1::MEMBER_FAILED);
      m.set_error(absl::StrCat(m.job(), " is gone from ", m.host(), " (its daemon lost it)"));
      Say(absl::StrCat(m.member(), ": ", m.error()));
      changed = true;
      continue;
    }
    if (!s.ok()) {
      const std::string why = DescribeError(s, h->connection);
      if (h->unreachable != why) Say(absl::StrCat(m.host(), ": ", why));
      h->unreachable = why;
      continue;
    }
    h->unreachable.clear();
    const std::string state = v1::JobState_Name(job.state());
    if (job.step() != m.step() || job.loss() != m.loss() || state != m.job_state()) {
      changed = true;
      m.set_step(job.step());
      m.set_loss(job.loss());
      m.set_job_state(state);
    }
    v1::MemberState ended = v1::MEMBER_STATE_UNSPECIFIED;
    if (job.state() == v1::SUCCEEDED) ended = v1::MEMBER_SUCCEEDED;
    if (job.state() == v1::FAILED) ended = v1::MEMBER_FAILED;
    if (job.state() == v1::CANCELLED) ended = v1::MEMBER_CANCELLED;
    if (ended != v1::MEMBER_STATE_UNSPECIFIED) {
      m.set_state(ended);
      m.set_error(job.error());
      Say(absl::StrCat(m.member(), ": ", m.host(), " ", m.job(), " ", state, " at step ",
                       job.step(), job.error().empty() ? "" : ": " + job.error()));
    }
  }
  if (changed) Save();
  return changed;
}

void Runner::StartWaitingGroups() {
  std::vector<HostSnapshot> snapshots;
  for (const std::string& address : run_.hosts()) {
    Host* h = HostOf(address);
    if (h->host == nullptr) continue;
    v1::Resources r;
    grpc::Status s = h->host->GetResources(Context(h, PollTimeout()).get(), {}, &r);
    if (!s.ok()) {
      const std::string why = DescribeError(s, h->connection);
      if (h->unreachable != why) Say(absl::StrCat(address, ": ", why));
      h->unreachable = why;
      continue;
    }
    h->unreachable.clear();
    snapshots.push_back(SnapshotOf(address, r));
  }
  for (const std::vector<int>& group : groups_) {
    if (run_.members(group[0]).state() != v1::MEMBER_WAITING) continue;
    const std::string name = GroupName(group);
    auto retry = retry_after_.find(name);
    if (retry != retry_after_.end() && absl::Now() < retry->second) continue;
    std::vector<HostSnapshot> before = snapshots;
    auto fit = PlaceGroup(run_.experiment(), group, &snapshots);
    if (!fit) {
      const std::string why =
          group.size() > 1 ? "waits: the group does not fit now" : "waits: does not fit now";
      if (said_waiting_[name] != why) Say(absl::StrCat(name, ": ", why));
      said_waiting_[name] = why;
      continue;
    }
    said_waiting_.erase(name);
    // What PlaceGroup took from `snapshots` stays taken even if the start fails: the next poll
    // looks again.
    GangStart(group, *fit, before);
  }
}

bool Runner::GangStart(const std::vector<int>& group, const std::vector<Assignment>& fit,
                       const std::vector<HostSnapshot>& hosts) {
  int attempt = 0;
  for (int i : group) attempt = std::max(attempt, run_.members(i).attempt());
  ++attempt;
  for (const Assignment& a : fit) {
    v1::MemberRun& m = *run_.mutable_members(a.member);
    m.set_state(v1::MEMBER_RESERVING);
    m.set_attempt(attempt);
    m.set_host(hosts[a.host].address);
    m.clear_gpu_uuids();
    for (const std::string& u : a.gpu_uuids) m.add_gpu_uuids(u);
    m.clear_reservation();
    m.clear_job();
    m.clear_start_at();
    m.clear_error();
  }
  Save();
  const absl::Time began = absl::Now();
  const double call_s = std::min(options_.connection.timeout_s, options_.lease_s / 4);
  for (int i : GlobalOrder(group)) {
    v1::MemberRun& m = *run_.mutable_members(i);
    const v1::ExperimentMember& spec = run_.experiment().members(i);
    Host* h = HostOf(m.host());
    if (h->reservations == nullptr) {
      Abort(group, absl::StrCat(m.host(), ": ", h->unreachable));
      return false;
    }
    v1::ReserveRequest req;
    req.set_request_id(RequestId(m));
    req.set_owner(absl::StrCat("elektronn-sched ", run_.id(), " (", m.member(), ")"));
    *req.mutable_resources()->mutable_gpu_uuids() = m.gpu_uuids();
    req.mutable_resources()->set_cpu_threads(spec.needs().cpu_threads());
    req.mutable_resources()->set_memory_bytes(spec.needs().memory_bytes());
    *req.mutable_ttl() = Seconds(options_.lease_s);
    v1::Reservation r;
    grpc::Status s = h->reservations->Reserve(Context(h, call_s).get(), req, &r);
    if (!s.ok()) {
      Abort(group, absl::StrCat("cannot reserve for ", m.member(), " on ", m.host(), ": ",
                                DescribeError(s, h->connection)));
      return false;
    }
    m.set_reservation(r.name());
    Save();
    Hook("reserved", m);
    if (absl::Now() - began > absl::Seconds(options_.lease_s / 2)) RenewHeld(group);
  }
  return Commit(group, /*recovering=*/false);
}

// Long gathers (a slow host) renew what is held, so that the first reservations outlive the
// last Reserve.
void Runner::RenewHeld(const std::vector<int>& group) {
  for (int i : group) {
    const v1::MemberRun& m = run_.members(i);
    if (m.reservation().empty()) continue;
    Host* h = HostOf(m.host());
    v1::RenewReservationRequest req;
    req.set_name(m.reservation());
    *req.mutable_ttl() = Seconds(options_.lease_s);
    v1::Reservation r;
    (void)h->reservations->RenewReservation(Context(h).get(), req, &r);
  }
}

bool Runner::Commit(const std::vector<int>& group, bool recovering) {
  // A restarted scheduler keeps the start time it had chosen (the jobs may exist already).
  absl::Time start = absl::Now() + absl::Seconds(options_.start_margin_s);
  if (run_.members(group[0]).has_start_at()) start = FromProto(run_.members(group[0]).start_at());
  for (int i : group) {
    v1::MemberRun& m = *run_.mutable_members(i);
    m.set_state(v1::MEMBER_STARTING);
    *m.mutable_start_at() = ToProto(start);
  }
  Save();
  const std::vector<int> order = GlobalOrder(group);
  std::set<int> resumed;  // recovering: members whose job had been resumed already
  for (int i : order) {
    v1::MemberRun& m = *run_.mutable_members(i);
    const v1::ExperimentMember& member = run_.experiment().members(i);
    Host* h = HostOf(m.host());
    if (h->jobs == nullptr) {
      Abort(group, absl::StrCat(m.host(), ": ", h->unreachable));
      return false;
    }
    v1::CreateJobRequest req;
    if (!req.mutable_job()->ParseFromString(m.job_spec())) {
      Abort(group, absl::StrCat(m.member(), ": its stored JobSpec is damaged"));
      return false;
    }
    *req.mutable_job()->mutable_start_at() = m.start_at();
    // The reservation decides the device and, where the member asks, threads and memory.
    v1::JobResources* res = req.mutable_job()->mutable_resources();
    res->set_device(member.needs().gpus() == 0 ? "cpu" : "");
    if (member.needs().cpu_threads() > 0) res->set_cpu_threads(member.needs().cpu_threads());
    if (member.needs().memory_bytes() > 0) res->set_memory_bytes(member.needs().memory_bytes());
    req.set_request_id(RequestId(m));
    req.set_reservation(m.reservation());
    req.set_start_paused(true);
    *req.mutable_resume_by() = ToProto(start + absl::Seconds(options_.lease_s));
    v1::Job job;
    grpc::Status s = h->jobs->CreateJob(Context(h).get(), req, &job);
    if (!s.ok()) {
      Abort(group, absl::StrCat("cannot create ", m.member(), "'s job on ", m.host(), ": ",
                                DescribeError(s, h->connection)));
      return false;
    }
    m.set_job(job.name());
    Save();
    // The daemon clears resume_by when it resumes a job: a job a stopped scheduler had resumed
    // already (whatever its state now) counts as started; only unresumed ones are resumed.
    const bool unresumed = job.state() == v1::PAUSED && job.has_resume_by();
    if (recovering && !job.has_resume_by()) {
      resumed.insert(i);
    } else if (!unresumed) {
      Abort(group, !recovering && job.state() == v1::PAUSED
                       ? absl::StrCat(m.host(), " did not keep ", job.name(),
                                      "'s resume_by: its elektronnd is too old for elektronn-sched")
                       : absl::StrCat(m.member(), "'s job ", job.name(), " on ", m.host(), " is ",
                                      v1::JobState_Name(job.state()), ": ", job.error()));
      return false;
    }
    Hook("created", m);
  }
  for (int i : order) {
    if (resumed.count(i) > 0) continue;
    v1::MemberRun& m = *run_.mutable_members(i);
    Host* h = HostOf(m.host());
    v1::ResumeJobRequest req;
    req.set_name(m.job());
    v1::Job job;
    grpc::Status s = h->jobs->ResumeJob(Context(h).get(), req, &job);
    if (!s.ok()) {
      Abort(group, absl::StrCat("cannot start ", m.member(), "'s job ", m.job(), " on ", m.host(),
                                ": ", DescribeError(s, h->connection)));
      return false;
    }
    Hook("resumed", m);
  }
  std::vector<std::string> where;
  for (int i : order) {
    v1::MemberRun& m = *run_.mutable_members(i);
    m.set_state(v1::MEMBER_RUNNING);
    where.push_back(absl::StrCat(m.member(), " on ", m.host(), " ", m.job(),
                                 m.gpu_uuids().empty() ? "" : " ",
                                 absl::StrJoin(m.gpu_uuids(), ",")));
  }
  failures_.erase(GroupName(group));
  Save();
  Say(absl::StrCat(GroupName(group), " starts at ",
                   absl::FormatTime("%H:%M:%E3S", start, absl::LocalTimeZone()), ": ",
                   absl::StrJoin(where, "; ")));
  return true;
}

void Runner::Abort(const std::vector<int>& group, const std::string& why) {
  for (int i : GlobalOrder(group)) {
    v1::MemberRun& m = *run_.mutable_members(i);
    // Unreachable hosts: the lease ends reservations, resume_by paused jobs; a job whose resume
    // went through unanswered is cancelled once its daemon answers again (RetryUndo).
    if (std::string failed = Undo(m, 5); !failed.empty() && !m.job().empty()) {
      v1::UndoLater* later = run_.add_undo();
      later->set_host(m.host());
      later->set_job(m.job());
      later->set_member(m.member());
      later->set_why(failed);
    }
    m.set_state(v1::MEMBER_WAITING);
    m.clear_reservation();
    m.clear_job();
    m.clear_start_at();
    m.set_error(why);
  }
  const std::string name = GroupName(group);
  const int n = ++failures_[name];
  static std::mt19937_64 rng(std::random_device{}());
  const double delay =
      std::min(options_.backoff_max_s, options_.backoff_min_s * std::pow(2.0, n - 1)) *
      std::uniform_real_distribution<double>(0.5, 1.5)(rng);
  retry_after_[name] = absl::Now() + absl::Seconds(delay);
  Save();
  Say(absl::StrFormat("%s: not started (%s); everything it held is released; retrying in %.1f s",
                      name, why, delay));
}

std::string Runner::Undo(const v1::MemberRun& m, double timeout_s) {
  if (m.host().empty()) return "";  // never placed: nothing on any daemon
  Host* h = HostOf(m.host());
  if (h->jobs == nullptr && (!m.job().empty() || !m.reservation().empty())) {
    return absl::StrCat("cannot reach ", m.host(), ": ", h->unreachable);
  }
  grpc::Status s;
  if (!m.job().empty()) {
    v1::CancelJobRequest req;  // cancelling the job releases its reservation
    req.set_name(m.job());
    v1::Job job;
    s = h->jobs->CancelJob(Context(h, timeout_s).get(), req, &job);
    // FAILED_PRECONDITION: it has ended already.
    if (s.error_code() == grpc::StatusCode::FAILED_PRECONDITION) s = grpc::Status::OK;
  } else if (!m.reservation().empty()) {
    v1::ReleaseReservationRequest req;
    req.set_name(m.reservation());
    v1::Reservation r;
    s = h->reservations->ReleaseReservation(Context(h, timeout_s).get(), req, &r);
  }
  // NOT_FOUND: the daemon lost it (its state directory was wiped): nothing left to undo.
  if (s.ok() || s.error_code() == grpc::StatusCode::NOT_FOUND) return "";
  return absl::StrCat("cannot cancel ", m.job().empty() ? m.reservation() : m.job(), " on ",
                      m.host(), ": ", DescribeError(s, h->connection));
}

int Runner::CancelAll(const std::string& why) {
  run_.set_cancel_requested(true);
  RetryUndo();
  int left = run_.undo_size();
  for (v1::MemberRun& m : *run_.mutable_members()) {
    if (Ended(m.state())) continue;
    // A member whose job or reservation cannot be undone now stays as it is, so that `cancel`
    // (or `run`, which cancels again) can try once more.
    if (std::string failed = Undo(m, 0); !failed.empty()) {
      Say(absl::StrCat(m.member(), ": ", failed));
      ++left;
      continue;
    }
    m.clear_reservation();
    m.set_state(v1::MEMBER_CANCELLED);
    m.set_error(why);
  }
  Save();
  Say(left == 0 ? absl::StrCat("experiment '", run_.id(), "' cancelled")
                : absl::StrCat("experiment '", run_.id(), "': ", left,
                               " job(s) could not be cancelled now; run `elektronn-sched cancel ",
                               run_.id(), "` again when their daemons answer"));
  return left;
}

// Jobs an aborted start left behind on a daemon that did not answer: cancelled once it does.
void Runner::RetryUndo() {
  bool changed = false;
  for (int k = run_.undo_size() - 1; k >= 0; --k) {
    const v1::UndoLater& later = run_.undo(k);
    v1::MemberRun probe;
    probe.set_host(later.host());
    probe.set_job(later.job());
    if (std::string failed = Undo(probe, PollTimeout()); !failed.empty()) {
      if (failed != later.why()) {
        run_.mutable_undo(k)->set_why(failed);
        changed = true;
      }
      continue;
    }
    Say(absl::StrCat("cancelled ", later.host(), " ", later.job(), " (", later.member(),
                     "), left by a start that failed"));
    run_.mutable_undo()->DeleteSubrange(k, 1);
    changed = true;
  }
  if (changed) Save();
}

}  // namespace elektronn::sched
