// elektronnd end to end: real daemons on loopback training tiny jobs in worker processes.
#include <gtest/gtest.h>

#include <numeric>

#include "elektronn/v1/control.grpc.pb.h"
#include "engine/io/model_file.h"
#include "rpc/status.h"
#include "tests/server/daemon_fixture.h"

namespace elektronn {
namespace {

std::string Checkpoint(const v1::Job& job) { return job.training_dir() + "/train-LAST.h5"; }

int64_t CheckpointStep(const v1::Job& job) {
  auto f = ReadModelFile(Checkpoint(job));
  return f.ok() ? static_cast<int64_t>(f->step) : -1;
}

TEST_F(DaemonTest, AuthValidationQueueAndBadStates) {
  StartDaemon();
  ASSERT_TRUE(HealthServing());  // health needs no token

  v1::ListJobsResponse list;
  grpc::Status s = jobs_->ListJobs(Ctx("").get(), {}, &list);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
  s = jobs_->ListJobs(Ctx(std::string(64, 'a')).get(), {}, &list);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
  ASSERT_TRUE(ErrorInfoOf(s).has_value());
  EXPECT_EQ(ErrorInfoOf(s)->reason(), "UNAUTHENTICATED");
  v1::Resources res;
  s = host_->GetResources(Ctx("").get(), {}, &res);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  s = host_->GetResources(Ctx().get(), {}, &res);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_GT(res.cpu_count(), 0);
  EXPECT_GT(res.memory_total_bytes(), 0);
  EXPECT_GT(res.state_dir_free_bytes(), 0);
  EXPECT_FALSE(res.gpu_status().empty());
  if (res.gpus_size() == 0) {
    EXPECT_EQ(res.gpu_status().rfind("no GPU", 0), 0u) << res.gpu_status();
  }
  EXPECT_EQ(res.capacity(), 1);

  // Malformed or inconsistent specs: INVALID_ARGUMENT naming the field.
  auto expect_invalid = [&](const v1::JobSpec& spec, const std::string& field) {
    v1::CreateJobRequest req;
    *req.mutable_job() = spec;
    v1::Job job;
    grpc::Status st = jobs_->CreateJob(Ctx().get(), req, &job);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
    EXPECT_NE(st.error_message().find(field), std::string::npos) << st.error_message();
    auto info = ErrorInfoOf(st);
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->reason(), "INVALID_JOB_SPEC");
    EXPECT_EQ(info->domain(), "elektronn.dev");
  };
  v1::JobSpec bad = TinySpec(100);
  bad.mutable_training()->set_n_steps(0);
  expect_invalid(bad, "job.training.n_steps");
  bad = TinySpec(100);
  bad.mutable_model()->mutable_designations()->set_input_node("no_such_node");
  expect_invalid(bad, "no_such_node");
  bad = TinySpec(100);
  for (auto& node : *bad.mutable_model()->mutable_nodes()) {
    if (node.has_input()) node.mutable_input()->set_shape(2, 2);  // z=2: too small for 3x3x3
  }
  expect_invalid(bad, "job.model");
  bad = TinySpec(100);
  bad.mutable_training()->mutable_batch_creator_image()->set_d_path("/etc/");
  expect_invalid(bad, "job.training.batch_creator_image.d_path");
  // Every way out of --data-dir (engine/io/data_path_test.cc has the full list).
  bad = TinySpec(100);
  bad.mutable_training()->mutable_batch_creator_image()->mutable_d_files(0)->set_file("/etc/hosts");
  expect_invalid(bad, "job.training.batch_creator_image.d_files[0].file");
  bad = TinySpec(100);
  bad.mutable_training()->mutable_batch_creator_image()->mutable_l_files(0)->set_file(
      "../../../../../../../../etc/passwd");
  expect_invalid(bad, "job.training.batch_creator_image.l_files[0].file");
  bad = TinySpec(100);
  bad.mutable_training()->mutable_batch_creator_image()->set_l_path("~/");
  expect_invalid(bad, "job.training.batch_creator_image.l_path");
  bad = TinySpec(100);
  bad.mutable_training()->set_preview_data_path("~/preview.h5");
  expect_invalid(bad, "job.training.preview_data_path");
  std::filesystem::create_directory_symlink("/usr", dir_ / "usr-link");
  bad = TinySpec(100);
  bad.mutable_training()->mutable_batch_creator_image()->set_d_path("usr-link");
  expect_invalid(bad, "job.training.batch_creator_image.d_path");

  v1::GetJobRequest get;
  get.set_name("jobs/999999");
  v1::Job job;
  s = jobs_->GetJob(Ctx().get(), get, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);

  // A short job succeeds; a second one queues behind a long one (capacity 1).
  v1::Job quick = Create(TinySpec(20));
  quick = WaitState(quick.name(), v1::SUCCEEDED);
  EXPECT_GT(quick.step(), 0);
  EXPECT_LE(quick.step(), 20);
  EXPECT_TRUE(std::filesystem::exists(quick.training_dir() + "/train-FINAL.h5"));
  v1::PauseJobRequest pause;
  pause.set_name(quick.name());
  s = jobs_->PauseJob(Ctx().get(), pause, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  ASSERT_TRUE(ErrorInfoOf(s).has_value());
  EXPECT_EQ(ErrorInfoOf(s)->reason(), "BAD_STATE");

  v1::Job long_job = Create(TinySpec(10'000'000, 500));
  WaitState(long_job.name(), v1::RUNNING);
  v1::Job queued = Create(TinySpec(10'000'000, 500));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(Get(queued.name()).state(), v1::QUEUED);
  v1::CancelJobRequest cancel;
  cancel.set_name(queued.name());
  ASSERT_TRUE(jobs_->CancelJob(Ctx().get(), cancel, &job).ok());
  EXPECT_EQ(job.state(), v1::CANCELLED);
  v1::ResumeJobRequest resume;
  resume.set_name(queued.name());
  s = jobs_->ResumeJob(Ctx().get(), resume, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);

  // Paging: three jobs, two per page.
  v1::ListJobsRequest lreq;
  lreq.set_page_size(2);
  ASSERT_TRUE(jobs_->ListJobs(Ctx().get(), lreq, &list).ok());
  ASSERT_EQ(list.jobs_size(), 2);
  ASSERT_FALSE(list.next_page_token().empty());
  lreq.set_page_token(list.next_page_token());
  v1::ListJobsResponse page2;
  ASSERT_TRUE(jobs_->ListJobs(Ctx().get(), lreq, &page2).ok());
  ASSERT_EQ(page2.jobs_size(), 1);
  EXPECT_EQ(page2.jobs(0).name(), queued.name());
  EXPECT_TRUE(page2.next_page_token().empty());

  cancel.set_name(long_job.name());
  ASSERT_TRUE(jobs_->CancelJob(Ctx().get(), cancel, &job).ok());
  WaitState(long_job.name(), v1::CANCELLED);
  kill(pid_, SIGTERM);
  const int status = WaitDaemon();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << DaemonLog();
}

TEST_F(DaemonTest, TrainWatchPauseResumeCancel) {
  StartDaemon();
  const v1::JobSpec spec = TinySpec(10'000'000, 20);
  v1::Job job = Create(spec, "request-1");
  ASSERT_EQ(job.name(), "jobs/000001");
  EXPECT_EQ(Create(spec, "request-1").name(), job.name());  // a retried CreateJob
  v1::ListJobsResponse list;
  ASSERT_TRUE(jobs_->ListJobs(Ctx().get(), {}, &list).ok());
  EXPECT_EQ(list.jobs_size(), 1);

  // Watch until the smoothed loss has clearly fallen; then hang up mid-stream.
  std::vector<double> losses;
  int64_t last_seq = 0;
  bool saw_running = false;
  {
    auto ctx = Ctx("<own>", 60);
    v1::WatchJobRequest watch;
    watch.set_name(job.name());
    watch.set_follow(true);
    auto reader = jobs_->WatchJob(ctx.get(), watch);
    v1::JobEvent e;
    while (reader->Read(&e)) {
      EXPECT_EQ(e.sequence(), last_seq + 1);
      last_seq = e.sequence();
      if (e.has_state() && e.state() == v1::RUNNING) saw_running = true;
      if (e.has_status()) losses.push_back(e.status().smoothed_loss());
      if (losses.size() >= 40 && losses.back() < losses.front() - 0.05) break;
    }
    ctx->TryCancel();  // the client goes away mid-stream
  }
  EXPECT_TRUE(saw_running);
  ASSERT_GE(losses.size(), 10u) << DaemonLog();
  EXPECT_LT(losses.back(), losses.front() - 0.05);
  EXPECT_TRUE(HealthServing());

  // Steer it over gRPC: a schedule and history_freq, which the checkpoint does not hold.
  auto trainer = v1::Trainer::NewStub(channel_);
  {
    v1::UpdateHyperparametersRequest up;
    up.set_name(job.name());
    up.mutable_hyperparameters()->set_history_freq(7);
    (*up.mutable_hyperparameters()->mutable_schedules())["lr"].set_dec(0.5);
    up.mutable_update_mask()->add_paths("history_freq");
    up.mutable_update_mask()->add_paths("schedules.lr");
    v1::Hyperparameters out;
    grpc::Status st = trainer->UpdateHyperparameters(Ctx().get(), up, &out);
    ASSERT_TRUE(st.ok()) << st.error_message();
    ASSERT_EQ(out.history_freq(), 7);
  }
  // The daemon keeps the live values the worker reports.
  job = WaitFor(job.name(), [](const v1::Job& j) {
    return j.hyperparameters().history_freq() == 7 &&
           j.hyperparameters().schedules().contains("lr");
  });

  // Pause: the worker checkpoints and ends.
  v1::PauseJobRequest pause;
  pause.set_name(job.name());
  ASSERT_TRUE(jobs_->PauseJob(Ctx().get(), pause, &job).ok());
  job = WaitState(job.name(), v1::PAUSED);
  const int64_t saved = CheckpointStep(job);
  ASSERT_GT(saved, 0);
  EXPECT_GE(saved, job.step());
  EXPECT_EQ(WorkerPid(job), 0);

  // Resume: training continues from the checkpoint.
  v1::ResumeJobRequest resume;
  resume.set_name(job.name());
  ASSERT_TRUE(jobs_->ResumeJob(Ctx().get(), resume, &job).ok());
  job = WaitFor(job.name(),
                [&](const v1::Job& j) { return j.state() == v1::RUNNING && j.step() > saved; });
  {
    // Events since the pause, without following: a resume log line and steps after `saved`.
    auto ctx = Ctx();
    v1::WatchJobRequest watch;
    watch.set_name(job.name());
    watch.set_from_sequence(last_seq + 1);
    auto reader = jobs_->WatchJob(ctx.get(), watch);
    v1::JobEvent e;
    bool resumed_line = false, paused = false;
    int64_t first_step_after = -1;
    while (reader->Read(&e)) {
      EXPECT_GT(e.sequence(), last_seq);
      if (e.has_state() && e.state() == v1::PAUSED) paused = true;
      if (paused && e.has_log_line() && e.log_line().find("Resumed from") != std::string::npos) {
        resumed_line = true;
      }
      if (resumed_line && e.has_status() && first_step_after < 0) {
        first_step_after = e.status().step();
      }
    }
    EXPECT_TRUE(reader->Finish().ok());
    EXPECT_TRUE(resumed_line);
    EXPECT_GT(first_step_after, saved);
  }
  {
    // What was steered survived the pause: the resumed worker runs with it.
    v1::GetHyperparametersRequest get;
    get.set_name(job.name());
    v1::Hyperparameters h;
    grpc::Status st = trainer->GetHyperparameters(Ctx().get(), get, &h);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(h.history_freq(), 7);
    ASSERT_TRUE(h.schedules().contains("lr")) << h.ShortDebugString();
    EXPECT_EQ(h.schedules().at("lr").dec(), 0.5);
  }

  v1::CancelJobRequest cancel;
  cancel.set_name(job.name());
  ASSERT_TRUE(jobs_->CancelJob(Ctx().get(), cancel, &job).ok());
  job = WaitState(job.name(), v1::CANCELLED);
  v1::PauseJobRequest pause_again;
  pause_again.set_name(job.name());
  grpc::Status s = jobs_->PauseJob(Ctx().get(), pause_again, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_TRUE(HealthServing());
}

TEST_F(DaemonTest, WorkerCrashAndDaemonKilledAndRestarted) {
  StartDaemon({"--capacity", "2"});
  v1::Job a = Create(TinySpec(10'000'000, 200));
  v1::Job b = Create(TinySpec(10'000'000, 200));
  a = WaitFor(a.name(), [](const v1::Job& j) { return j.state() == v1::RUNNING && j.step() > 0; });
  b = WaitFor(b.name(), [](const v1::Job& j) { return j.state() == v1::RUNNING && j.step() > 0; });

  // A worker killed outright: its job FAILED with the reason, the other keeps training.
  const int worker = WorkerPid(a);
  ASSERT_GT(worker, 0);
  ASSERT_EQ(kill(worker, SIGKILL), 0);
  a = WaitState(a.name(), v1::FAILED);
  EXPECT_NE(a.error().find("killed by signal 9"), std::string::npos) << a.error();
  const int64_t b_step = Get(b.name()).step();
  b = WaitFor(b.name(), [&](const v1::Job& j) { return j.step() > b_step + 50; });
  EXPECT_EQ(b.state(), v1::RUNNING);
  EXPECT_TRUE(HealthServing());

  // The daemon killed outright; restarted on the same state directory, job B resumes from its
  // checkpoint and loses nothing that was checkpointed.
  WaitFor(b.name(), [&](const v1::Job& j) { return CheckpointStep(j) >= 400; });
  kill(pid_, SIGKILL);
  WaitDaemon();
  const int64_t saved_before_restart = CheckpointStep(b);
  ASSERT_GE(saved_before_restart, 400);
  StartDaemon({"--capacity", "2"});
  b = WaitFor(b.name(), [&](const v1::Job& j) {
    return j.state() == v1::RUNNING && j.restarts() == 1 && j.step() > saved_before_restart;
  });
  EXPECT_EQ(Get(a.name()).state(), v1::FAILED);
  {
    // Its orphaned worker checkpointed on its parent-death signal before the new one resumed
    // from that checkpoint: nothing checkpointed is lost, and steps continue from there.
    auto ctx = Ctx();
    v1::WatchJobRequest watch;
    watch.set_name(b.name());
    auto reader = jobs_->WatchJob(ctx.get(), watch);
    v1::JobEvent e;
    int64_t resumed_at = -1, first_after = -1;
    while (reader->Read(&e)) {
      const size_t at = e.has_log_line() ? e.log_line().find(" at step ") : std::string::npos;
      if (at != std::string::npos && e.log_line().find("Resumed from") != std::string::npos) {
        resumed_at = std::stoll(e.log_line().substr(at + 9));
      }
      if (e.has_status() && resumed_at >= 0 && first_after < 0) first_after = e.status().step();
    }
    EXPECT_GE(resumed_at, saved_before_restart);
    EXPECT_GT(first_after, resumed_at);
  }
  v1::Resources res;
  ASSERT_TRUE(host_->GetResources(Ctx().get(), {}, &res).ok());
  ASSERT_EQ(res.running_jobs_size(), 1);
  EXPECT_EQ(res.running_jobs(0), b.name());

  // SIGTERM: the daemon checkpoints its running job and exits cleanly.
  kill(pid_, SIGTERM);
  const int status = WaitDaemon();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << DaemonLog();
  EXPECT_GE(CheckpointStep(b), b.step());
}

}  // namespace
}  // namespace elektronn
