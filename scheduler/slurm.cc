// Slurm back end of elektronn-sched: one heterogeneous job per start group (scheduler/slurm.h).
#include "scheduler/slurm.h"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "elektronn/v1/training.pb.h"
#include "scheduler/placement.h"

extern char** environ;

namespace elektronn::sched {
namespace fs = std::filesystem;

std::string ShellQuote(const std::string& word) {
  std::string out = "'";
  for (char c : word) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string SlurmSafeName(const std::string& name) {
  std::string out = name;
  for (char& c : out) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && !absl::StrContains("._=+-", c)) {
      c = '_';
    }
  }
  return out.empty() ? "_" : out;
}

namespace {

// The #SBATCH resource options of one component.
std::string ComponentOptions(const v1::MemberNeeds& needs, const std::string& partition) {
  std::string s =
      absl::StrFormat("#SBATCH --ntasks=1 --cpus-per-task=%d", std::max(1, needs.cpu_threads()));
  if (needs.memory_bytes() > 0) {
    const int64_t mib = (needs.memory_bytes() + (int64_t{1} << 20) - 1) >> 20;
    absl::StrAppend(&s, " --mem=", mib, "M");
  }
  if (needs.gpus() > 0) absl::StrAppend(&s, " --gpus-per-task=", needs.gpus());
  if (!partition.empty()) absl::StrAppend(&s, " --partition=", partition);
  return s + "\n";
}

}  // namespace

std::string SlurmGroupScript(const std::string& experiment, const std::string& label,
                             const std::vector<SlurmComponent>& components,
                             const SlurmOptions& options) {
  std::string s = absl::StrCat(
      "#!/bin/bash\n", "# elektronn-sched: experiment '", SlurmSafeName(experiment), "', group '",
      label, "', as one Slurm heterogeneous job\n",
      "# (its members start together or not at all). Resubmit with: sbatch --chdir DIR THIS\n",
      "#SBATCH --job-name=", SlurmSafeName(experiment), ".", label, "\n",
      "#SBATCH --output=groups/", label, ".out\n");
  for (size_t i = 0; i < components.size(); ++i) {
    if (i > 0) s += "#SBATCH hetjob\n";
    s += ComponentOptions(components[i].member.needs(), options.partition);
  }
  absl::StrAppend(&s, "cd ", ShellQuote(options.dir), " || exit 1\n");
  // A requeued job (node failure) continues each member from its last checkpoint.
  s += "mode() { if [ -e \"$1\" ]; then echo --resume; else echo --overwrite; fi; }\n";
  std::vector<std::string> exits;
  for (const SlurmComponent& c : components) {
    exits.push_back(ShellQuote(SlurmSafeName(c.member.name()) + ".exit"));
  }
  absl::StrAppend(&s, "rm -f ", absl::StrJoin(exits, " "), "\n");
  for (size_t i = 0; i < components.size(); ++i) {
    const SlurmComponent& c = components[i];
    const std::string name = SlurmSafeName(c.member.name());
    const int threads = std::max(1, c.member.needs().cpu_threads());
    std::string srun =
        absl::StrFormat("srun --het-group=%d --ntasks=1 --cpus-per-task=%d", i, threads);
    if (c.member.needs().gpus() > 0) {
      absl::StrAppend(&srun, " --gpus-per-task=", c.member.needs().gpus());
    }
    const std::string last = (fs::path(c.training_dir) / (name + "-LAST.h5")).string();
    absl::StrAppend(&s, "# member '", c.member.name(), "'\n", "( OMP_NUM_THREADS=", threads, " ",
                    srun, " --output=", ShellQuote(name + ".out"), " \\\n    ",
                    ShellQuote(options.worker_binary), " train --job-spec ",
                    ShellQuote(c.spec_path), " --data-dir ", ShellQuote(c.data_dir),
                    " --no-shell --status-interval 30 $(mode ", ShellQuote(last), ")\n",
                    "  echo $? >", ShellQuote(name + ".exit"), " ) &\n");
  }
  absl::StrAppend(&s, "wait\nstatus=0\nfor f in ", absl::StrJoin(exits, " "), "; do\n",
                  "  read -r rc <\"$f\" || rc=1\n", "  [ \"$rc\" = 0 ] || status=1\n", "done\n",
                  "exit $status\n");
  return s;
}

absl::StatusOr<std::string> SlurmMemberSpec(const std::string& spec_bytes,
                                            const v1::ExperimentMember& member,
                                            const std::string& dir) {
  v1::JobSpec spec;
  if (!spec.ParseFromString(spec_bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("member '", member.name(), "': its JobSpec does not parse"));
  }
  spec.mutable_training()->set_save_path(dir);
  spec.mutable_training()->set_save_name(SlurmSafeName(member.name()));
  v1::JobResources* r = spec.mutable_resources();
  r->set_device(member.needs().gpus() > 0 ? "cuda:0" : "cpu");
  if (member.needs().cpu_threads() > 0) r->set_cpu_threads(member.needs().cpu_threads());
  if (member.needs().memory_bytes() > 0) r->set_memory_bytes(member.needs().memory_bytes());
  return spec.SerializeAsString();
}

std::vector<SlurmJobState> ParseScontrolJobs(const std::string& text) {
  std::vector<SlurmJobState> out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipWhitespace())) {
    SlurmJobState j;
    for (absl::string_view word : absl::StrSplit(line, ' ', absl::SkipEmpty())) {
      if (absl::ConsumePrefix(&word, "JobId=")) j.job_id = std::string(word);
      if (absl::ConsumePrefix(&word, "JobState=")) j.state = std::string(word);
      if (absl::ConsumePrefix(&word, "ExitCode=")) j.exit_code = std::string(word);
      if (absl::ConsumePrefix(&word, "Reason=")) j.reason = std::string(word);
    }
    if (!j.job_id.empty() && !j.state.empty()) out.push_back(std::move(j));
  }
  return out;
}

bool SlurmJobEnded(const std::vector<SlurmJobState>& components) {
  static const char* const kEnded[] = {"COMPLETED", "FAILED",        "CANCELLED",
                                       "TIMEOUT",   "NODE_FAIL",     "PREEMPTED",
                                       "BOOT_FAIL", "OUT_OF_MEMORY", "DEADLINE"};
  if (components.empty()) return false;
  for (const SlurmJobState& c : components) {
    if (std::none_of(std::begin(kEnded), std::end(kEnded),
                     [&](const char* s) { return absl::StartsWith(c.state, s); })) {
      return false;
    }
  }
  return true;
}

bool SlurmJobSucceeded(const std::vector<SlurmJobState>& components) {
  return !components.empty() &&
         std::all_of(components.begin(), components.end(), [](const SlurmJobState& c) {
           return c.state == "COMPLETED" && (c.exit_code.empty() || c.exit_code == "0:0");
         });
}

absl::StatusOr<int> RunProgram(const std::vector<std::string>& args, std::string* out,
                               std::string* err) {
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return absl::InternalError(strerror(errno));
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    close(out_pipe[0]);
    close(out_pipe[1]);
    return absl::InternalError(strerror(errno));
  }
  std::vector<std::string> copy = args;
  std::vector<char*> argv;
  for (std::string& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], STDERR_FILENO);
  pid_t pid = 0;
  const int spawned = posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (spawned != 0) {
    close(out_pipe[0]);
    close(err_pipe[0]);
    return absl::FailedPreconditionError(
        absl::StrCat("cannot run '", args[0], "': ", strerror(spawned)));
  }
  out->clear();
  err->clear();
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {out, err};
  int open_fds = 2;
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      const ssize_t n = read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (const pollfd& p : fds) {
    if (p.fd >= 0) close(p.fd);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

absl::StatusOr<std::string> SubmitSlurmScript(const std::string& script_path,
                                              const std::string& dir) {
  std::string out, err;
  auto rc = RunProgram({"sbatch", "--parsable", "--chdir", dir, script_path}, &out, &err);
  if (!rc.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat(rc.status().message(), " (is Slurm's client, slurm-client, installed?)"));
  }
  if (*rc != 0) {
    return absl::UnavailableError(absl::StrCat("sbatch ", script_path, " failed (exit ", *rc,
                                               "): ", absl::StripAsciiWhitespace(err)));
  }
  // --parsable: "<id>" or "<id>;<cluster>".
  std::string id(absl::StripAsciiWhitespace(out));
  id = id.substr(0, id.find(';'));
  if (id.empty() || !std::all_of(id.begin(), id.end(), absl::ascii_isdigit)) {
    return absl::InternalError(absl::StrCat("sbatch printed no job id but '", out, "'"));
  }
  return id;
}

std::string FindWorkerBinary() {
  std::error_code ec;
  if (const char* env = std::getenv("ELEKTRONN_WORKER"); env != nullptr && *env != '\0') {
    // The batch script runs elsewhere: a relative path would not resolve there.
    const std::string w = env;
    return w.find('/') == std::string::npos ? w : fs::absolute(w, ec).string();
  }
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (const fs::path& p : {self.parent_path() / "elektronn-worker",
                              self.parent_path().parent_path() / "worker" / "elektronn-worker"}) {
      if (access(p.c_str(), X_OK) == 0) return p.string();
    }
  }
  return "elektronn-worker";
}

namespace {

absl::Status WriteFile(const std::string& path, const std::string& bytes, mode_t mode) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) return absl::UnavailableError(absl::StrCat("cannot write '", path, "'"));
  chmod(path.c_str(), mode);
  return absl::OkStatus();
}

struct SubmittedGroup {
  std::string label;
  std::vector<std::string> members;  // safe names
  std::string job_id;
  bool running_reported = false;
  std::string pending_reason;  // the last reported
  int failed_queries = 0;      // in a row
  bool ended = false;
};

// The states of a job's components: scontrol while slurmctld remembers the job (MinJobAge),
// else the accounting database (sacct); an error quoting scontrol when neither knows it.
absl::StatusOr<std::vector<SlurmJobState>> QueryJob(const std::string& id) {
  std::string out, err;
  auto rc = RunProgram({"scontrol", "show", "job", "-o", id}, &out, &err);
  if (rc.ok() && *rc == 0) return ParseScontrolJobs(out);
  const std::string scontrol_said =
      rc.ok() ? std::string(absl::StripAsciiWhitespace(err)) : std::string(rc.status().message());
  rc = RunProgram({"sacct", "-n", "-P", "-X", "-j", id, "--format=JobID,State,ExitCode"}, &out,
                  &err);
  std::vector<SlurmJobState> states;
  if (rc.ok() && *rc == 0) {
    for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipWhitespace())) {
      std::vector<std::string> f = absl::StrSplit(line, '|');
      if (f.size() < 3) continue;
      // "CANCELLED by 0": the first word is the state.
      states.push_back({f[0], std::string(f[1].substr(0, f[1].find(' '))), f[2], ""});
    }
  }
  if (states.empty()) return absl::UnavailableError(scontrol_said);
  return states;
}

std::string MemberOutcome(const std::string& dir, const std::string& member) {
  std::ifstream in(fs::path(dir) / (member + ".exit"));
  std::string rc;
  if (!(in >> rc)) return absl::StrCat(member, ": did not run");
  return absl::StrCat(member, ": exit ", rc);
}

absl::Status WaitForGroups(std::vector<SubmittedGroup>& groups, const SlurmOptions& options) {
  std::vector<std::string> failed;
  size_t left = groups.size();
  while (left > 0) {
    for (SubmittedGroup& g : groups) {
      if (g.ended) continue;
      auto queried = QueryJob(g.job_id);
      if (!queried.ok()) {
        // slurmctld restarting, or the job forgotten without accounting: give up after a while.
        if (++g.failed_queries >= options.max_failed_queries) {
          return absl::UnavailableError(absl::StrCat("cannot learn the state of slurm job ",
                                                     g.job_id, " (group ", g.label,
                                                     "): ", queried.status().message()));
        }
        continue;
      }
      g.failed_queries = 0;
      const std::vector<SlurmJobState>& states = *queried;
      // Why a group waits, once per reason: Slurm 22.05 never starts a group whose members all
      // fit on one node only (each component gets nodes of its own): "Resources" forever.
      for (const SlurmJobState& s : states) {
        if (s.state == "PENDING" && !s.reason.empty() && s.reason != "None" &&
            s.reason != g.pending_reason) {
          g.pending_reason = s.reason;
          std::printf("group %s: slurm job %s pending (%s)\n", g.label.c_str(), g.job_id.c_str(),
                      s.reason.c_str());
          std::fflush(stdout);
          break;
        }
      }
      if (!g.running_reported &&
          std::any_of(states.begin(), states.end(),
                      [](const SlurmJobState& s) { return s.state == "RUNNING"; })) {
        std::printf("group %s: slurm job %s running\n", g.label.c_str(), g.job_id.c_str());
        std::fflush(stdout);
        g.running_reported = true;
      }
      if (!SlurmJobEnded(states)) continue;
      g.ended = true;
      --left;
      std::vector<std::string> component_states, outcomes;
      for (const SlurmJobState& s : states) {
        component_states.push_back(absl::StrCat(s.state, " ", s.exit_code));
      }
      for (const std::string& m : g.members) outcomes.push_back(MemberOutcome(options.dir, m));
      const bool ok = SlurmJobSucceeded(states);
      std::printf("group %s: slurm job %s %s (%s; %s)\n", g.label.c_str(), g.job_id.c_str(),
                  ok ? "succeeded" : "failed", absl::StrJoin(component_states, ", ").c_str(),
                  absl::StrJoin(outcomes, ", ").c_str());
      std::fflush(stdout);
      if (!ok) failed.push_back(absl::StrCat(g.label, " (slurm job ", g.job_id, ")"));
    }
    if (left > 0) {
      std::this_thread::sleep_for(std::chrono::duration<double>(options.poll_s));
    }
  }
  if (!failed.empty()) {
    return absl::AbortedError(absl::StrCat("these groups failed: ", absl::StrJoin(failed, ", "),
                                           "; see their members' .out files in ", options.dir));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RunSlurm(const v1::Experiment& e, const SlurmOptions& options,
                      const MemberSpecBuilder& build_spec) {
  std::error_code ec;
  fs::create_directories(options.dir, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot make the Slurm directory '", options.dir, "': ", ec.message()));
  }
  // An earlier run's training directories stay: a new run would overwrite them.
  for (const v1::ExperimentMember& m : e.members()) {
    const fs::path dir = fs::path(options.dir) / SlurmSafeName(m.name());
    if (fs::exists(dir)) {
      return absl::FailedPreconditionError(
          absl::StrCat("member '", m.name(), "': its training directory ", dir.string(),
                       " exists (an earlier run?); remove it or choose another --slurm-dir"));
    }
  }
  std::vector<SubmittedGroup> submitted;
  // A group's script and output live in groups/, apart from the members' files (a member may
  // be called like a group); group names that map to one safe label get a numbered suffix.
  std::set<std::string> labels;
  fs::create_directories(fs::path(options.dir) / "groups", ec);
  for (const std::vector<int>& group : GroupsInOrder(e)) {
    const v1::ExperimentMember& first = e.members(group[0]);
    SubmittedGroup g;
    g.label = SlurmSafeName(first.group().empty() ? first.name() : first.group());
    for (int n = 2; labels.count(g.label) > 0; ++n) {
      g.label =
          absl::StrCat(SlurmSafeName(first.group().empty() ? first.name() : first.group()), "-", n);
    }
    labels.insert(g.label);
    std::vector<SlurmComponent> components;
    for (int i : group) {
      const v1::ExperimentMember& m = e.members(i);
      auto bytes = build_spec(m);
      if (!bytes.ok()) return bytes.status();
      auto spec = SlurmMemberSpec(*bytes, m, options.dir);
      if (!spec.ok()) return spec.status();
      SlurmComponent c;
      c.member = m;
      const std::string name = SlurmSafeName(m.name());
      c.spec_path = (fs::path(options.dir) / (name + ".pb")).string();
      c.training_dir = (fs::path(options.dir) / name).string();
      c.data_dir = !options.data_dir.empty() ? options.data_dir
                                             : fs::path(m.job_file()).parent_path().string();
      if (absl::Status s = WriteFile(c.spec_path, *spec, 0644); !s.ok()) return s;
      components.push_back(std::move(c));
      g.members.push_back(name);
    }
    const std::string script = (fs::path(options.dir) / "groups" / (g.label + ".sbatch")).string();
    if (absl::Status s =
            WriteFile(script, SlurmGroupScript(e.name(), g.label, components, options), 0755);
        !s.ok()) {
      return s;
    }
    auto id = SubmitSlurmScript(script, options.dir);
    if (!id.ok()) {
      if (!submitted.empty()) {
        std::fprintf(stderr, "note: the groups submitted before stay queued (scancel to stop)\n");
      }
      return id.status();
    }
    g.job_id = *id;
    std::vector<std::string> names;
    for (int i : group) names.push_back(e.members(i).name());
    std::printf("group %s: slurm job %s (members %s)\n", g.label.c_str(), g.job_id.c_str(),
                absl::StrJoin(names, ", ").c_str());
    std::fflush(stdout);
    submitted.push_back(std::move(g));
  }
  if (!options.wait) return absl::OkStatus();
  return WaitForGroups(submitted, options);
}

}  // namespace elektronn::sched
