// The daemon forwards a running job's Trainer and Model calls to its worker: set lr and see it
// in the next status line; read a parameter; a paused job refuses with FAILED_PRECONDITION.
#include "elektronn/v1/control.grpc.pb.h"
#include "elektronn/v1/shell.grpc.pb.h"
#include "rpc/status.h"
#include "tests/server/daemon_fixture.h"

namespace elektronn {
namespace {

TEST_F(DaemonTest, TrainerAndModelServicesReachTheWorker) {
  StartDaemon();
  v1::Job job = Create(TinySpec(10'000'000, 20));
  // Before its worker reports, the Job shows the values the job file sets.
  EXPECT_FLOAT_EQ(job.hyperparameters().learning_rate(), 5e-3);
  EXPECT_EQ(job.hyperparameters().history_freq(), 20);
  WaitFor(job.name(), [](const v1::Job& j) { return j.state() == v1::RUNNING && j.step() > 2; });
  auto trainer = v1::Trainer::NewStub(channel_);
  auto model = v1::Model::NewStub(channel_);

  // Without the token: UNAUTHENTICATED, as every other service.
  v1::GetHyperparametersRequest get;
  get.set_name(job.name());
  v1::Hyperparameters h;
  EXPECT_EQ(trainer->GetHyperparameters(Ctx("").get(), get, &h).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  ASSERT_TRUE(trainer->GetHyperparameters(Ctx().get(), get, &h).ok());
  EXPECT_FLOAT_EQ(h.learning_rate(), 5e-3);  // the tiny job's lr

  v1::UpdateHyperparametersRequest up;
  up.set_name(job.name());
  up.mutable_hyperparameters()->set_learning_rate(1e-5);
  up.mutable_update_mask()->add_paths("learning_rate");
  v1::Hyperparameters after;
  grpc::Status s = trainer->UpdateHyperparameters(Ctx().get(), up, &after);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_FLOAT_EQ(after.learning_rate(), 1e-5);

  // The next status lines carry the new rate.
  {
    auto ctx = Ctx("<own>", 60);
    v1::WatchJobRequest watch;
    watch.set_name(job.name());
    watch.set_follow(true);
    watch.set_from_sequence(1);
    auto reader = jobs_->WatchJob(ctx.get(), watch);
    v1::JobEvent e;
    bool seen = false;
    while (!seen && reader->Read(&e)) {
      if (e.has_status() && e.status().step() > after.step()) {
        EXPECT_NEAR(e.status().learning_rate(), 1e-5, 1e-9);
        seen = true;
      }
    }
    ctx->TryCancel();
    EXPECT_TRUE(seen);
  }

  // A schedule set over gRPC: the Job resource shows it with the live lr in the next status.
  {
    v1::UpdateHyperparametersRequest sch;
    sch.set_name(job.name());
    v1::Schedule& dec = (*sch.mutable_hyperparameters()->mutable_schedules())["learning_rate"];
    dec.set_dec(0.5);
    dec.set_granularity(1'000'000'000);  // never fires here: lr stays as set
    sch.mutable_update_mask()->add_paths("schedules.lr");
    v1::Hyperparameters got;
    grpc::Status ss = trainer->UpdateHyperparameters(Ctx().get(), sch, &got);
    ASSERT_TRUE(ss.ok()) << ss.error_message();
    ASSERT_EQ(got.schedules().count("lr"), 1u);  // stored under the name
    v1::Job j = WaitFor(job.name(), [](const v1::Job& j) {
      return j.hyperparameters().schedules().count("lr") == 1;
    });
    EXPECT_DOUBLE_EQ(j.hyperparameters().schedules().at("lr").dec(), 0.5);
    EXPECT_FLOAT_EQ(j.hyperparameters().learning_rate(), 1e-5);
    EXPECT_GE(j.hyperparameters().step(), got.step());
  }

  // A parameter, streamed through the daemon.
  v1::GetParameterRequest gp;
  gp.set_name(job.name());
  gp.set_node("conv");
  gp.set_param("w");
  auto ctx = Ctx();
  auto reader = model->GetParameter(ctx.get(), gp);
  v1::TensorChunk chunk;
  std::string bytes;
  std::vector<int64_t> shape;
  while (reader->Read(&chunk)) {
    if (chunk.has_tensor())
      shape.assign(chunk.tensor().shape().begin(), chunk.tensor().shape().end());
    bytes += chunk.data();
  }
  ASSERT_TRUE(reader->Finish().ok());
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  EXPECT_GT(n, 1);
  EXPECT_EQ(bytes.size(), static_cast<size_t>(n) * sizeof(float));

  v1::GetStatisticsRequest st;
  st.set_name(job.name());
  st.set_kind(v1::GRADIENTS);
  v1::Statistics stats;
  ASSERT_TRUE(model->GetStatistics(Ctx().get(), st, &stats).ok());
  EXPECT_GT(stats.tensors_size(), 0);

  // A shell through the daemon: training holds still while it is attached.
  {
    auto shell = v1::Shell::NewStub(channel_);
    auto sctx = Ctx("<own>", 60);
    auto stream = shell->Attach(sctx.get());
    v1::ShellRequest attach;
    attach.mutable_attach()->set_name(job.name());
    attach.mutable_attach()->set_user("tester");
    ASSERT_TRUE(stream->Write(attach));
    v1::ShellResponse r;
    ASSERT_TRUE(stream->Read(&r));
    ASSERT_TRUE(r.has_prompt()) << r.ShortDebugString();
    auto run = [&](const std::string& line) {
      v1::ShellRequest q;
      q.set_line(line);
      EXPECT_TRUE(stream->Write(q));
      std::string text;
      while (stream->Read(&r) && !r.has_prompt()) text += r.output() + r.error();
      return text;
    };
    const std::string step = run("trainer.step");
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_EQ(run("trainer.step"), step);
    EXPECT_NE(run("setlr 3e-5").find("lr = 3e-05"), std::string::npos);
    // The picture and parameter tools work remotely, inside the job's training directory.
    EXPECT_NE(run("debugbatch").find("Batch_test_image.png"), std::string::npos);
    EXPECT_NE(run("sf").find("filters.png"), std::string::npos);
    EXPECT_NE(run("save remote.h5").find("saved"), std::string::npos);
    EXPECT_NE(run("load remote.h5").find("parameters loaded from remote.h5"), std::string::npos);
    EXPECT_NE(run("load /etc/passwd").find("outside the training directory"), std::string::npos);
    EXPECT_NE(run("preview").find("preview_data_path"), std::string::npos);
    run("q");
    EXPECT_TRUE(r.prompt().closed());
    stream->WritesDone();
    grpc::Status fs = stream->Finish();
    EXPECT_TRUE(fs.ok()) << fs.error_message();
  }
  ASSERT_TRUE(trainer->GetHyperparameters(Ctx().get(), get, &h).ok());
  EXPECT_FLOAT_EQ(h.learning_rate(), 3e-5);

  // Paused: no worker to ask.
  v1::PauseJobRequest pause;
  pause.set_name(job.name());
  v1::Job paused;
  ASSERT_TRUE(jobs_->PauseJob(Ctx().get(), pause, &paused).ok());
  WaitState(job.name(), v1::PAUSED);
  grpc::Status refused = trainer->GetHyperparameters(Ctx().get(), get, &h);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << refused.error_message();
  auto info = ErrorInfoOf(refused);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->reason(), "BAD_STATE");
}

}  // namespace
}  // namespace elektronn
