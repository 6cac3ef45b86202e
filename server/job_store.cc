// The state directory layout of elektronnd's jobs and its crash-safe writes.
#include "server/job_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;

absl::Status Errno(const std::string& what, const std::string& path) {
  return absl::UnavailableError(absl::StrCat(what, " '", path, "': ", std::strerror(errno)));
}

}  // namespace

namespace {

// One events.log record: the payload's length (4 bytes, little endian), then the payload.
void AppendRecord(const v1::JobEvent& event, std::string* out) {
  const std::string payload = event.SerializeAsString();
  const uint32_t n = static_cast<uint32_t>(payload.size());
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  *out += payload;
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

std::string JobStore::ControlSocketPath(const std::string& id) const {
  return JobDir(id) + "/control.sock";
}

std::string JobStore::ModelCopyPath(const std::string& id) const {
  return (fs::path(JobDir(id)) / "model.h5").string();
}

std::string JobStore::TrainedModelPath(const std::string& id) const {
  std::error_code ec;
  const fs::path final_model = fs::path(TrainingDir(id)) / "train-FINAL.h5";
  if (fs::is_regular_file(final_model, ec)) return final_model.string();
  if (fs::is_regular_file(CheckpointPath(id), ec)) return CheckpointPath(id);
  return "";
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

std::string JobStore::EventsPath(const std::string& id) const {
  return (fs::path(JobDir(id)) / "events.log").string();
}

absl::Status JobStore::AppendEvent(const std::string& id, const v1::JobEvent& event, bool sync) {
  const std::string path = EventsPath(id);
  std::string record;
  AppendRecord(event, &record);
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("cannot open", path);
  bool ok = write(fd, record.data(), record.size()) == static_cast<ssize_t>(record.size());
  if (ok && sync) ok = fsync(fd) == 0;
  close(fd);
  if (!ok) return Errno("cannot append to", path);
  return absl::OkStatus();
}

absl::Status JobStore::RewriteEvents(const std::string& id,
                                     const std::vector<v1::JobEvent>& events) {
  std::string bytes;
  for (const v1::JobEvent& e : events) AppendRecord(e, &bytes);
  return WriteAtomically(EventsPath(id), bytes);
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
      if (n > log.size() - pos - 4) break;  // torn last record
      v1::JobEvent e;
      if (!e.ParseFromArray(log.data() + pos + 4, static_cast<int>(n))) break;
      s.events.push_back(std::move(e));
      pos += 4 + n;
    }
    if (pos < log.size()) {
      // A torn or damaged tail: cut it off, or the records appended after it would be lost with
      // it at the next load.
      spdlog::warn("'{}/events.log': dropping {} bytes of a torn last record", dir,
                   log.size() - pos);
      if (truncate((dir + "/events.log").c_str(), static_cast<off_t>(pos)) != 0) {
        spdlog::error("{}", Errno("cannot truncate", dir + "/events.log").ToString());
      }
    }
    out.push_back(std::move(s));
  }
  std::sort(out.begin(), out.end(),
            [](const StoredJob& a, const StoredJob& b) { return a.job.name() < b.job.name(); });
  return out;
}

JobEventLog::JobEventLog(JobStore* store, std::string id, EventLogLimits limits)
    : store_(store), id_(std::move(id)), limits_(limits) {
  limits_.keep = std::max<size_t>(1, limits_.keep);
}

JobEventLog::Kind JobEventLog::KindOf(const v1::JobEvent& e) {
  switch (e.kind_case()) {
    case v1::JobEvent::kState:
      return kState;
    case v1::JobEvent::kStatus:
    case v1::JobEvent::kPrediction:
      return kStatus;
    case v1::JobEvent::kLogLine:
      return e.log_line().rfind("error: ", 0) == 0 ||
                     e.log_line().find("[error]") != std::string::npos
                 ? kError
                 : kLog;
    default:
      return kLog;
  }
}

bool JobEventLog::OverLimit() const {
  return count_[kError] >= 2 * limits_.keep || count_[kStatus] >= 2 * limits_.keep ||
         count_[kLog] >= 2 * limits_.keep;
}

void JobEventLog::Restore(std::vector<v1::JobEvent> events) {
  events_ = std::move(events);
  std::fill(std::begin(count_), std::end(count_), 0);
  int64_t last = 0;
  bool renumbered = false;
  for (v1::JobEvent& e : events_) {
    // Increasing, as written; a damaged file (or one from before sequence numbers were stored)
    // is renumbered after the last good one.
    if (e.sequence() <= last) {
      e.set_sequence(last + 1);
      renumbered = true;
    }
    last = e.sequence();
    ++count_[KindOf(e)];
  }
  next_sequence_ = last + 1;
  if (OverLimit()) {
    Compact();
  } else if (renumbered) {
    absl::Status s = store_->RewriteEvents(id_, events_);
    if (!s.ok()) spdlog::error("{}", s.ToString());
  }
}

int64_t JobEventLog::Append(v1::JobEvent event, bool sync) {
  const int64_t seq = next_sequence_++;
  event.set_sequence(seq);
  absl::Status s = store_->AppendEvent(id_, event, sync);
  if (!s.ok()) spdlog::error("{}", s.ToString());
  ++count_[KindOf(event)];
  events_.push_back(std::move(event));
  if (OverLimit()) Compact();
  return seq;
}

void JobEventLog::Compact() {
  // Walk from the newest: keep every state change and the newest `keep` of each other kind.
  size_t seen[kKinds] = {};
  std::vector<bool> kept(events_.size());
  for (size_t i = events_.size(); i-- > 0;) {
    const Kind k = KindOf(events_[i]);
    kept[i] = k == kState || seen[k] < limits_.keep;
    ++seen[k];
  }
  std::vector<v1::JobEvent> out;
  std::fill(std::begin(count_), std::end(count_), 0);
  for (size_t i = 0; i < events_.size(); ++i) {
    if (!kept[i]) continue;
    ++count_[KindOf(events_[i])];
    out.push_back(std::move(events_[i]));
  }
  events_ = std::move(out);
  absl::Status s = store_->RewriteEvents(id_, events_);
  if (!s.ok()) spdlog::error("{}", s.ToString());
}

void JobEventLog::CopyFrom(int64_t from_sequence, std::vector<v1::JobEvent>* out) const {
  auto it = std::lower_bound(events_.begin(), events_.end(), from_sequence,
                             [](const v1::JobEvent& e, int64_t seq) { return e.sequence() < seq; });
  out->insert(out->end(), it, events_.end());
}

}  // namespace elektronn
