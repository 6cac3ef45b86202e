#include "scheduler/member_spec.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

extern char** environ;

namespace elektronn::sched {
namespace fs = std::filesystem;

std::string FindClientBinary() {
  if (const char* env = std::getenv("ELEKTRONN_CLIENT"); env != nullptr && *env != '\0') {
    return env;
  }
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (const fs::path& p : {self.parent_path() / "elektronn",
                              self.parent_path().parent_path() / "client" / "elektronn"}) {
      if (access(p.c_str(), X_OK) == 0) return p.string();
    }
  }
  return "elektronn";
}

namespace {
std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}
}  // namespace

absl::StatusOr<std::string> BuildMemberSpec(const v1::ExperimentMember& m,
                                            const std::string& client_binary) {
  char dir_template[] = "/tmp/elektronn-sched-spec.XXXXXX";
  if (mkdtemp(dir_template) == nullptr) {
    return absl::InternalError(
        absl::StrCat("cannot make a temporary directory: ", strerror(errno)));
  }
  const fs::path dir = dir_template;
  const std::string out = (dir / "spec.pb").string(), err = (dir / "stderr").string();
  std::vector<std::string> args = {client_binary, "spec", m.job_file(), "-o", out};
  // --set=k=v: one argument, so that a key starting with '-' cannot read as an option.
  for (const std::string& kv : m.overrides()) args.push_back("--set=" + kv);
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, err.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  pid_t pid = 0;
  const int spawned =
      posix_spawnp(&pid, client_binary.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  auto cleanup = [&] {
    std::error_code ec;
    fs::remove_all(dir, ec);
  };
  if (spawned != 0) {
    cleanup();
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot run the client '", client_binary, "' to read member '", m.name(), "''s job file: ",
        strerror(spawned), "; install elektronn or point $ELEKTRONN_CLIENT at it"));
  }
  // The job file runs sandboxed with an instruction limit; the deadline is a last resort.
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  pid_t waited = 0;
  while ((waited = waitpid(pid, &status, WNOHANG)) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      cleanup();
      return absl::DeadlineExceededError(absl::StrCat("reading member '", m.name(), "''s job file ",
                                                      m.job_file(), " took over 120 s"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (waited < 0) {
    cleanup();
    return absl::InternalError(
        absl::StrCat("waiting for the client (member '", m.name(), "'): ", strerror(errno)));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string said(absl::StripAsciiWhitespace(ReadAll(err)));
    if (absl::StartsWith(said, "error: ")) said.erase(0, 7);
    cleanup();
    return absl::InvalidArgumentError(
        absl::StrCat("member '", m.name(), "': job file ", m.job_file(), ": ", said));
  }
  std::string bytes = ReadAll(out);
  cleanup();
  if (bytes.empty()) {
    return absl::InternalError(absl::StrCat("the client wrote no JobSpec for member '", m.name(),
                                            "' (", client_binary, ")"));
  }
  return bytes;
}

}  // namespace elektronn::sched
