#include "scheduler/run_state.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "rpc/atomic_file.h"

namespace elektronn::sched {
namespace fs = std::filesystem;

std::string DefaultStateDir() {
  if (const char* d = std::getenv("ELEKTRONN_SCHED_STATE"); d != nullptr && *d != '\0') return d;
  if (const char* x = std::getenv("XDG_STATE_HOME"); x != nullptr && *x != '\0') {
    return absl::StrCat(x, "/elektronn-sched");
  }
  const char* home = std::getenv("HOME");
  return absl::StrCat(home != nullptr ? home : ".", "/.local/state/elektronn-sched");
}

std::string StateDir::Path(const std::string& id, const char* ext) const {
  return absl::StrCat(dir_, "/", id, ext);
}

absl::Status StateDir::Init() {
  std::error_code ec;
  const bool made = fs::create_directories(dir_, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot create the state directory '", dir_, "': ", ec.message()));
  }
  // Private when we made it; a directory that existed keeps its mode (it may be shared).
  if (made) fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::replace, ec);
  return absl::OkStatus();
}

bool StateDir::Exists(const std::string& id) const { return fs::exists(Path(id, ".pb")); }

absl::StatusOr<v1::ExperimentRun> StateDir::Load(const std::string& id) const {
  std::ifstream in(Path(id, ".pb"), std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("no experiment '", id, "' in ", dir_, " (see `elektronn-sched ls`)"));
  }
  std::ostringstream bytes;
  bytes << in.rdbuf();
  v1::ExperimentRun run;
  if (!run.ParseFromString(bytes.str()) || run.id() != id ||
      run.members_size() != run.experiment().members_size()) {
    return absl::DataLossError(
        absl::StrCat("the state of experiment '", id, "' (", Path(id, ".pb"), ") is damaged"));
  }
  return run;
}

absl::Status StateDir::Save(v1::ExperimentRun* run) const {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  run->mutable_update_time()->set_seconds(ns / 1'000'000'000);
  run->mutable_update_time()->set_nanos(static_cast<int32_t>(ns % 1'000'000'000));
  return WriteAtomically(Path(run->id(), ".pb"), run->SerializeAsString());
}

absl::Status StateDir::Forget(const std::string& id) const {
  if (!Exists(id)) return absl::NotFoundError(absl::StrCat("no experiment '", id, "' in ", dir_));
  // Holding the lock, so that no `run` starts meanwhile; the lock file stays (removing a file
  // another process may be about to lock would let two runs lock two different files).
  auto fd = Lock(id);
  if (!fd.ok()) return fd.status();
  std::error_code ec;
  fs::remove(Path(id, ".pb"), ec);
  fs::remove(Path(id, ".cancel"), ec);
  close(*fd);
  return absl::OkStatus();
}

std::vector<std::string> StateDir::Ids() const {
  std::vector<std::string> ids;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    if (entry.path().extension() == ".pb") ids.push_back(entry.path().stem().string());
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

absl::StatusOr<int> StateDir::Lock(const std::string& id) const {
  const std::string path = Path(id, ".lock");
  // Kept open (and locked) until the process exits: close-on-exec, so workers do not inherit it.
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("cannot open '", path, "': ", strerror(errno)));
  }
  // A moment's retry: `status`, `ls` and `cancel` probe the lock (Runner) with a shared lock.
  int locked = -1;
  for (int i = 0; i < 20 && (locked = flock(fd, LOCK_EX | LOCK_NB)) != 0; ++i) {
    usleep(25'000);
  }
  if (locked != 0) {
    close(fd);
    const auto pid = Runner(id);
    return absl::FailedPreconditionError(
        absl::StrCat("experiment '", id, "' is already being run by process ",
                     pid ? absl::StrCat(*pid) : "?", " (see `elektronn-sched status ", id, "`)"));
  }
  const std::string pid = absl::StrCat(getpid(), "\n");
  if (ftruncate(fd, 0) != 0 || pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    close(fd);
    return absl::UnavailableError(absl::StrCat("cannot write '", path, "'"));
  }
  return fd;
}

std::optional<int> StateDir::Runner(const std::string& id) const {
  const std::string path = Path(id, ".lock");
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  // Free to take: nobody runs it.
  if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
    close(fd);
    return std::nullopt;
  }
  char buf[32] = {};
  const ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  close(fd);
  int pid = 0;
  if (n <= 0 || !absl::SimpleAtoi(absl::StripAsciiWhitespace(buf), &pid)) return -1;
  return pid;
}

absl::Status StateDir::RequestCancel(const std::string& id) const {
  return WriteAtomically(Path(id, ".cancel"), "cancel\n");
}

bool StateDir::CancelRequested(const std::string& id) const {
  return fs::exists(Path(id, ".cancel"));
}

}  // namespace elektronn::sched
