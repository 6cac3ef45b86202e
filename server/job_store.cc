// The state directory layout of elektronnd's jobs and its crash-safe writes.
#include "server/job_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;

absl::Status Errno(const std::string& what, const std::string& path) {
  return absl::UnavailableError(absl::StrCat(what, " '", path, "': ", std::strerror(errno)));
}

absl::Status WriteAtomically(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("cannot create", tmp);
  const bool ok =
      write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()) && fsync(fd) == 0;
  close(fd);
  if (!ok) return Errno("cannot write", tmp);
  if (rename(tmp.c_str(), path.c_str()) != 0) return Errno("cannot rename to", path);
  return absl::OkStatus();
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

JobStore::JobStore(std::string state_dir) : jobs_dir_((fs::path(state_dir) / "jobs").string()) {}

absl::Status JobStore::Init() {
  std::error_code ec;
  fs::create_directories(jobs_dir_, ec);
  if (ec)
    return absl::UnavailableError(absl::StrCat("cannot create '", jobs_dir_, "': ", ec.message()));
  return absl::OkStatus();
}

std::string JobStore::JobDir(const std::string& id) const {
  return (fs::path(jobs_dir_) / id).string();
}
std::string JobStore::SpecPath(const std::string& id) const {
  return (fs::path(JobDir(id)) / "spec.pb").string();
}
std::string JobStore::TrainingDir(const std::string& id) const {
  return (fs::path(JobDir(id)) / "train").string();
}
std::string JobStore::CheckpointPath(const std::string& id) const {
  return (fs::path(TrainingDir(id)) / "train-LAST.h5").string();
}
std::string JobStore::PidPath(const std::string& id) const {
  return (fs::path(JobDir(id)) / "worker.pid").string();
}

absl::Status JobStore::CreateJobDir(const std::string& id) {
  std::error_code ec;
  fs::create_directories(JobDir(id), ec);
  if (ec)
    return absl::UnavailableError(absl::StrCat("cannot create '", JobDir(id), "': ", ec.message()));
  return absl::OkStatus();
}

absl::Status JobStore::WriteJob(const std::string& id, const v1::Job& job) {
  return WriteAtomically((fs::path(JobDir(id)) / "job.pb").string(), job.SerializeAsString());
}

absl::Status JobStore::WriteSpec(const std::string& id, const v1::JobSpec& spec) {
  return WriteAtomically(SpecPath(id), spec.SerializeAsString());
}

absl::Status JobStore::AppendEvent(const std::string& id, const v1::JobEvent& event, bool sync) {
  const std::string path = (fs::path(JobDir(id)) / "events.log").string();
  const std::string payload = event.SerializeAsString();
  std::string record(4, '\0');
  const uint32_t n = static_cast<uint32_t>(payload.size());
  for (int i = 0; i < 4; ++i) record[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  record += payload;
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("cannot open", path);
  bool ok = write(fd, record.data(), record.size()) == static_cast<ssize_t>(record.size());
  if (ok && sync) ok = fsync(fd) == 0;
  close(fd);
  if (!ok) return Errno("cannot append to", path);
  return absl::OkStatus();
}

std::vector<StoredJob> JobStore::LoadAll() const {
  std::vector<StoredJob> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(jobs_dir_, ec)) {
    if (!entry.is_directory()) continue;
    const std::string dir = entry.path().string();
    StoredJob s;
    if (!s.job.ParseFromString(ReadAll(dir + "/job.pb")) || s.job.name().empty()) {
      spdlog::warn("skipping '{}': no readable job.pb", dir);
      continue;
    }
    const std::string log = ReadAll(dir + "/events.log");
    size_t pos = 0;
    while (pos + 4 <= log.size()) {
      uint32_t n = 0;
      for (int i = 0; i < 4; ++i)
        n |= static_cast<uint32_t>(static_cast<unsigned char>(log[pos + i])) << (8 * i);
      if (pos + 4 + n > log.size()) break;  // torn last record
      v1::JobEvent e;
      if (!e.ParseFromArray(log.data() + pos + 4, static_cast<int>(n))) break;
      s.events.push_back(std::move(e));
      pos += 4 + n;
    }
    // Sequences must stay dense: renumber in case a torn record was dropped mid-file.
    for (size_t i = 0; i < s.events.size(); ++i)
      s.events[i].set_sequence(static_cast<int64_t>(i + 1));
    out.push_back(std::move(s));
  }
  std::sort(out.begin(), out.end(),
            [](const StoredJob& a, const StoredJob& b) { return a.job.name() < b.job.name(); });
  return out;
}

}  // namespace elektronn
