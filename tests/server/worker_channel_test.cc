// The daemon learns a job's state only from the worker's typed channel: with the worker's log
// lines made unreadable, progress, checkpoints, live hyper-parameters and errors still arrive.
#include <stdlib.h>

#include <fstream>
#include <iterator>
#include <string>
#include <tuple>
#include <vector>

#include "tests/server/daemon_fixture.h"

namespace elektronn {
namespace {

class WorkerChannelTest : public DaemonTest {
 protected:
  void SetUp() override {
    // Inherited by the daemon and its workers: every console line loses its message.
    setenv("ELEKTRONN_LOG_PATTERN", "[%l] (message withheld)", 1);
    DaemonTest::SetUp();
  }
  void TearDown() override {
    DaemonTest::TearDown();
    unsetenv("ELEKTRONN_LOG_PATTERN");
  }

  std::vector<v1::JobEvent> Events(const std::string& name) {
    auto ctx = Ctx();
    v1::WatchJobRequest watch;
    watch.set_name(name);
    auto reader = jobs_->WatchJob(ctx.get(), watch);
    std::vector<v1::JobEvent> events;
    v1::JobEvent e;
    while (reader->Read(&e)) events.push_back(e);
    return events;
  }
};

TEST_F(WorkerChannelTest, StateArrivesWhateverTheLogSays) {
  StartDaemon();
  v1::Job job = Create(TinySpec(30, /*history_freq=*/10));
  job = WaitState(job.name(), v1::SUCCEEDED, 120);
  EXPECT_EQ(job.step(), 30);
  EXPECT_GT(job.loss(), 0);
  EXPECT_GT(job.hyperparameters().learning_rate(), 0) << job.ShortDebugString();
  EXPECT_EQ(job.hyperparameters().step(), 30);
  int statuses = 0, log_lines = 0;
  for (const v1::JobEvent& e : Events(job.name())) {
    if (e.has_status()) {
      ++statuses;
      EXPECT_GT(e.status().step(), 0);
      EXPECT_EQ(e.status().n_steps(), 30);
    }
    if (e.has_log_line()) {
      ++log_lines;
      EXPECT_EQ(e.log_line().find("loss"), std::string::npos) << e.log_line();
    }
  }
  EXPECT_GT(statuses, 0);
  EXPECT_GT(log_lines, 0);  // the log still reaches watchers, as the worker wrote it

  // A failing worker's reason comes through the channel too (here: its data file is gone).
  v1::JobSpec bad = TinySpec(30);
  bad.mutable_training()->mutable_batch_creator_image()->mutable_d_files(0)->set_key("no_such");
  v1::Job failed = WaitState(Create(bad).name(), v1::FAILED, 120);
  EXPECT_NE(failed.error().find("no_such"), std::string::npos) << failed.error();
}

// A job's resources: devices this daemon lacks are refused at submission, naming the field;
// the worker runs with the job's CPU threads and memory limit.
TEST_F(WorkerChannelTest, ResourcesAreCheckedAndEnforced) {
  StartDaemon();
  for (const auto& [device, threads, memory] : std::vector<std::tuple<std::string, int, int64_t>>{
           {"cuda:0", 0, 0}, {"tpu", 0, 0}, {"cpu", -1, 0}, {"cpu", 0, 1000}}) {
    v1::JobSpec spec = TinySpec(30);
    spec.mutable_resources()->set_device(device);
    spec.mutable_resources()->set_cpu_threads(threads);
    spec.mutable_resources()->set_memory_bytes(memory);
    v1::CreateJobRequest req;
    *req.mutable_job() = spec;
    v1::Job job;
    grpc::Status st = jobs_->CreateJob(Ctx().get(), req, &job);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << device << " " << threads;
    EXPECT_NE(st.error_message().find("job.resources."), std::string::npos) << st.error_message();
  }
  v1::JobSpec spec = TinySpec(10'000'000);
  spec.mutable_resources()->set_cpu_threads(3);
  spec.mutable_resources()->set_memory_bytes(int64_t{8} << 30);
  v1::Job job = Create(spec);
  job = WaitFor(job.name(), [](const v1::Job& j) { return j.step() > 0; });
  const int pid = WorkerPid(job);
  ASSERT_GT(pid, 0);
  std::ifstream env_file("/proc/" + std::to_string(pid) + "/environ", std::ios::binary);
  std::string env((std::istreambuf_iterator<char>(env_file)), {});
  EXPECT_NE(env.find(std::string("OMP_NUM_THREADS=3") + '\0'), std::string::npos);
  std::ifstream limits_file("/proc/" + std::to_string(pid) + "/limits");
  std::string limits((std::istreambuf_iterator<char>(limits_file)), {});
  EXPECT_NE(limits.find("8589934592"), std::string::npos) << limits;
  v1::CancelJobRequest cancel;
  cancel.set_name(job.name());
  ASSERT_TRUE(jobs_->CancelJob(Ctx().get(), cancel, &job).ok());
  WaitState(job.name(), v1::CANCELLED, 60);
}

}  // namespace
}  // namespace elektronn
