// What elektronnd keeps on disk: a job's step and loss as of its last checkpoint survive a
// daemon killed outright, and each job's event log stays bounded however long the job runs.
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "engine/io/model_file.h"
#include "server/job_store.h"
#include "tests/server/daemon_fixture.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;

int64_t CheckpointStep(const v1::Job& job) {
  auto f = ReadModelFile(job.training_dir() + "/train-LAST.h5");
  return f.ok() ? static_cast<int64_t>(f->step) : -1;
}

TEST_F(DaemonTest, CheckpointedStepAndLossSurviveADaemonKill) {
  StartDaemon();
  v1::Job job = Create(TinySpec(10'000'000, /*history_freq=*/5));
  // Past a checkpoint that the daemon has heard of: the progress lines after it have arrived.
  int64_t known = -1;
  job = WaitFor(job.name(), [&](const v1::Job& j) {
    known = CheckpointStep(j);
    return j.state() == v1::RUNNING && known >= 10 && j.step() > known;
  });
  ASSERT_GE(known, 10);
  // Freeze the worker, so that it writes nothing more (not even on its parent-death signal),
  // then kill the daemon and the worker outright.
  const int worker = WorkerPid(job);
  ASSERT_GT(worker, 0);
  ASSERT_EQ(kill(worker, SIGSTOP), 0);
  const int64_t saved = CheckpointStep(job);
  kill(pid_, SIGKILL);
  WaitDaemon();
  kill(worker, SIGKILL);
  ASSERT_GE(saved, known);

  // Restarted on the same state directory with a worker that never reports progress, so that
  // what the daemon shows is what it had persisted.
  const fs::path silent = dir_ / "silent-worker";
  std::ofstream(silent) << "#!/bin/sh\nexec sleep 600\n";
  fs::permissions(silent, fs::perms::owner_all);
  worker_binary_ = silent.string();
  StartDaemon();
  v1::ListJobsResponse list;
  ASSERT_TRUE(jobs_->ListJobs(Ctx().get(), {}, &list).ok());
  ASSERT_EQ(list.jobs_size(), 1);
  for (const v1::Job& j : {list.jobs(0), Get(job.name())}) {
    const std::string shown = absl::StrCat(j.name(), " ", v1::JobState_Name(j.state()), " step ",
                                           j.step(), " loss ", j.loss());
    // The last checkpoint it reported: the one the test saw, or the one written just before the
    // worker was frozen (if its progress line reached the daemon).
    EXPECT_GE(j.step(), known) << shown;
    EXPECT_LE(j.step(), saved) << shown;
    EXPECT_EQ(j.step() % 5, 0) << shown;
    EXPECT_GT(j.loss(), 0) << shown;
    EXPECT_GT(j.update_time().seconds(), 0) << shown;
    EXPECT_EQ(j.restarts(), 1) << shown;
  }
}

// Events of one job: many status updates and log lines, a few state changes and errors.
v1::JobEvent StatusEvent(int64_t step) {
  v1::JobEvent e;
  e.mutable_status()->set_step(step);
  e.mutable_status()->set_loss(0.5);
  return e;
}
v1::JobEvent LogEvent(const std::string& line) {
  v1::JobEvent e;
  e.set_log_line(line);
  return e;
}
v1::JobEvent StateEvent(v1::JobState s) {
  v1::JobEvent e;
  e.set_state(s);
  return e;
}

TEST(JobEventLog, StaysBoundedKeepsStateChangesAndSequenceNumbers) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("elk_events_" + std::to_string(getpid()));
  fs::remove_all(dir);
  JobStore store(dir.string());
  ASSERT_TRUE(store.Init().ok());
  ASSERT_TRUE(store.CreateJobDir("000001").ok());
  v1::Job job;
  job.set_name("jobs/000001");
  ASSERT_TRUE(store.WriteJob("000001", job).ok());
  EXPECT_EQ(EventLogLimits().keep, 1000u);
  const EventLogLimits limits{.keep = 50};
  JobEventLog log(&store, "000001", limits);

  // A long job: 6000 steps, a status update and a log line each, a state change every 300 steps
  // and an error every 1000; far more than the limits.
  std::vector<int64_t> state_sequences;
  size_t most_in_memory = 0;
  uintmax_t largest_file = 0;
  int64_t first_error_sequence = 0;
  for (int64_t step = 1; step <= 6000; ++step) {
    log.Append(StatusEvent(step), false);
    log.Append(LogEvent("step " + std::to_string(step)), false);
    if (step % 300 == 0) {
      const v1::JobState s = step % 600 == 0 ? v1::RUNNING : v1::PAUSED;
      state_sequences.push_back(log.Append(StateEvent(s), true));
    }
    if (step % 1000 == 0) {
      const int64_t seq =
          log.Append(LogEvent("error: disk full at step " + std::to_string(step)), false);
      if (first_error_sequence == 0) first_error_sequence = seq;
    }
    most_in_memory = std::max(most_in_memory, log.events().size());
    if (step % 100 == 0)
      largest_file = std::max(largest_file, fs::file_size(store.EventsPath("000001")));
  }
  // 20 state changes, and fewer than 2 * 50 of each other kind.
  EXPECT_LE(most_in_memory, 20u + 3 * 2 * 50);
  EXPECT_LT(largest_file, 20'000u);  // records of some 20 bytes
  EXPECT_EQ(log.next_sequence(), 6000 * 2 + 20 + 6 + 1);
  // Every state change is still there, with its sequence number; the newest 50 status updates
  // are; sequence numbers only grow.
  auto check = [&](const std::vector<v1::JobEvent>& events) {
    std::vector<int64_t> states;
    int64_t last = 0, last_status_step = 0;
    size_t statuses = 0, errors = 0;
    for (const v1::JobEvent& e : events) {
      EXPECT_GT(e.sequence(), last);
      last = e.sequence();
      if (e.has_state()) states.push_back(e.sequence());
      if (e.has_status()) {
        ++statuses;
        last_status_step = e.status().step();
      }
      if (e.has_log_line() && e.log_line().rfind("error: ", 0) == 0) ++errors;
    }
    EXPECT_EQ(states, state_sequences);
    EXPECT_GE(statuses, 50u);
    EXPECT_LT(statuses, 100u);
    EXPECT_EQ(last_status_step, 6000);
    EXPECT_EQ(errors, 6u);  // fewer than the limit: all kept
    EXPECT_EQ(last, log.next_sequence() - 1);
  };
  check(log.events());

  // A watcher that resumes from a dropped sequence number gets the oldest retained event on;
  // one that is up to date gets nothing.
  std::vector<v1::JobEvent> from_start, up_to_date;
  log.CopyFrom(1, &from_start);
  EXPECT_EQ(from_start.size(), log.events().size());
  log.CopyFrom(log.next_sequence(), &up_to_date);
  EXPECT_TRUE(up_to_date.empty());
  EXPECT_FALSE(log.HasFrom(log.next_sequence()));
  std::vector<v1::JobEvent> from_dropped;
  log.CopyFrom(2, &from_dropped);  // the first log line: long dropped
  ASSERT_FALSE(from_dropped.empty());
  EXPECT_GT(from_dropped.front().sequence(), 2);
  EXPECT_EQ(from_dropped.front().sequence(), log.events().front().sequence());
  std::vector<v1::JobEvent> from_error;
  log.CopyFrom(first_error_sequence, &from_error);
  ASSERT_FALSE(from_error.empty());
  EXPECT_EQ(from_error.front().sequence(), first_error_sequence);

  // After a restart: the same events, the same numbers, and numbering goes on.
  std::vector<StoredJob> stored = store.LoadAll();
  ASSERT_EQ(stored.size(), 1u);
  JobEventLog reloaded(&store, "000001", limits);
  reloaded.Restore(stored[0].events);
  check(reloaded.events());
  ASSERT_EQ(reloaded.events().size(), log.events().size());
  EXPECT_EQ(reloaded.next_sequence(), log.next_sequence());
  EXPECT_EQ(reloaded.Append(StateEvent(v1::SUCCEEDED), true), log.next_sequence());

  // A torn last record (a crash mid-append) is cut off on load, so that the events appended
  // after it survive the next load.
  {
    std::ofstream torn(store.EventsPath("000001"), std::ios::app | std::ios::binary);
    torn << std::string("\x40\x00\x00\x00partial", 11);
  }
  JobEventLog after_crash(&store, "000001", limits);
  after_crash.Restore(store.LoadAll()[0].events);
  EXPECT_EQ(after_crash.events().size(), reloaded.events().size());
  const int64_t failed_at = after_crash.Append(StateEvent(v1::FAILED), true);
  const std::vector<v1::JobEvent> after = store.LoadAll()[0].events;
  ASSERT_FALSE(after.empty());
  EXPECT_EQ(after.back().sequence(), failed_at);
  EXPECT_EQ(after.back().state(), v1::FAILED);

  // An oversized log left by an older daemon is compacted on load.
  std::vector<v1::JobEvent> big;
  for (int i = 0; i < 1000; ++i) {
    big.push_back(StatusEvent(i));
    big.back().set_sequence(i + 1);
  }
  ASSERT_TRUE(store.RewriteEvents("000001", big).ok());
  JobEventLog old(&store, "000001", limits);
  old.Restore(store.LoadAll()[0].events);
  EXPECT_EQ(old.events().size(), 50u);
  EXPECT_EQ(old.events().front().sequence(), 951);
  EXPECT_EQ(store.LoadAll()[0].events.size(), 50u);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace elektronn
