// A training process serves the Trainer and Model services on its control socket: read and
// change hyper-parameters, inspect the model, read/write a parameter, statistics, export.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_replace.h"
#include "elektronn/v1/control.grpc.pb.h"
#include "elektronn/v1/shell.grpc.pb.h"
#include "engine/data/demo_data.h"
#include "engine/io/model_file.h"
#include "engine/lua/job_file.h"
#include "tests/support/tiny_job.h"
#include "tests/support/wait.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;

TEST(WorkerControl, ServesTrainerAndModelServices) {
  // The calls below have no deadlines of their own, nor has waiting for the worker to exit.
  testing::Watchdog dog(std::chrono::seconds(180), "WorkerControl: a call to the worker hangs");
  const fs::path dir = fs::path(::testing::TempDir()) / ("elk_ctl_" + std::to_string(getpid()));
  fs::remove_all(dir);
  auto job = testing::MakeTinyJob(dir, {"ctl", "Adam", /*dropout=*/false});
  ASSERT_TRUE(job.ok()) << job.status();
  {
    std::ofstream out(dir / "job.pb", std::ios::binary);
    ASSERT_TRUE(job->SerializeToOstream(&out));
  }
  const std::string socket = (dir / "ctl.sock").string();
  const std::string log = (dir / "stderr.txt").string();
  pid_t pid = fork();
  if (pid == 0) {
    FILE* f = std::freopen(log.c_str(), "w", stderr);
    (void)f;
    setenv("OMP_NUM_THREADS", "1", 1);
    execl(ELK_WORKER_BIN, ELK_WORKER_BIN, "train", "--job-spec", (dir / "job.pb").c_str(),
          "--data-dir", dir.c_str(), "--control-socket", socket.c_str(), "--status-interval", "0",
          nullptr);
    _exit(127);
  }
  auto channel = grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials());
  ASSERT_TRUE(
      channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(30)))
      << "worker did not open its control socket";
  auto trainer = v1::Trainer::NewStub(channel);
  auto model = v1::Model::NewStub(channel);

  {  // hyper-parameters: read, change lr, read back
    grpc::ClientContext c;
    v1::GetHyperparametersRequest req;
    v1::Hyperparameters h;
    ASSERT_TRUE(trainer->GetHyperparameters(&c, req, &h).ok());
    EXPECT_FLOAT_EQ(h.learning_rate(), 1e-3);
    grpc::ClientContext c2;
    v1::UpdateHyperparametersRequest up;
    up.mutable_hyperparameters()->set_learning_rate(1e-5);
    up.mutable_update_mask()->add_paths("learning_rate");
    v1::Hyperparameters after;
    ASSERT_TRUE(trainer->UpdateHyperparameters(&c2, up, &after).ok());
    EXPECT_FLOAT_EQ(after.learning_rate(), 1e-5);
    grpc::ClientContext c3;
    up.mutable_update_mask()->set_paths(0, "batch_size");
    grpc::Status bad = trainer->UpdateHyperparameters(&c3, up, &after);
    EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(bad.error_message().find("batch_size"), std::string::npos);
    // Out of range: refused, naming the hyper-parameter and its range; nothing changes.
    grpc::ClientContext c4;
    v1::UpdateHyperparametersRequest neg;
    neg.mutable_hyperparameters()->set_learning_rate(-1);
    neg.mutable_hyperparameters()->set_momentum(0.5);
    neg.mutable_update_mask()->add_paths("momentum");
    neg.mutable_update_mask()->add_paths("learning_rate");
    bad = trainer->UpdateHyperparameters(&c4, neg, &after);
    EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(bad.error_message().find("lr must be >= 0, got -1"), std::string::npos)
        << bad.error_message();
    grpc::ClientContext c5;
    ASSERT_TRUE(trainer->GetHyperparameters(&c5, req, &h).ok());
    EXPECT_FLOAT_EQ(h.momentum(), 0.9);
  }
  {  // a schedule set over gRPC fires at its step boundaries: lr halves at every even step
    v1::UpdateHyperparametersRequest up;
    v1::Schedule& s = (*up.mutable_hyperparameters()->mutable_schedules())["lr"];
    s.set_dec(0.5);
    s.set_granularity(2);
    up.mutable_update_mask()->add_paths("schedules.lr");
    grpc::ClientContext c;
    v1::Hyperparameters set;
    grpc::Status st = trainer->UpdateHyperparameters(&c, up, &set);
    ASSERT_TRUE(st.ok()) << st.error_message();
    ASSERT_EQ(set.schedules().count("lr"), 1u);
    EXPECT_EQ(set.schedules().at("lr").granularity(), 2);
    // The value at step s0 (when the schedule arrived) halves at each even step after it.
    auto expected = [&](int64_t step) {
      double lr = set.learning_rate();
      for (int64_t i = set.step() + 1; i <= step; ++i)
        if (i % 2 == 0) lr *= 0.5;
      return lr;
    };
    v1::Hyperparameters now;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    do {
      grpc::ClientContext g;
      ASSERT_TRUE(trainer->GetHyperparameters(&g, v1::GetHyperparametersRequest(), &now).ok());
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "training reached " << now.step();
    } while (now.step() < set.step() + 6);
    EXPECT_FLOAT_EQ(now.learning_rate(), expected(now.step()))
        << "set at step " << set.step() << ", read at " << now.step();
    EXPECT_LT(now.learning_rate(), set.learning_rate() / 4);
    EXPECT_EQ(now.schedules().count("lr"), 1u);
    // Bad schedules and names are refused.
    s.set_dec(-1);
    grpc::ClientContext c2;
    EXPECT_EQ(trainer->UpdateHyperparameters(&c2, up, &set).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
    up.mutable_update_mask()->set_paths(0, "schedules.batch_size");
    grpc::ClientContext c3;
    EXPECT_EQ(trainer->UpdateHyperparameters(&c3, up, &set).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
    // The path without a map entry removes the schedule: lr holds still.
    v1::UpdateHyperparametersRequest off;
    off.mutable_update_mask()->add_paths("schedules.lr");
    grpc::ClientContext c4;
    ASSERT_TRUE(trainer->UpdateHyperparameters(&c4, off, &set).ok());
    EXPECT_TRUE(set.schedules().empty());
    do {
      grpc::ClientContext g;
      ASSERT_TRUE(trainer->GetHyperparameters(&g, v1::GetHyperparametersRequest(), &now).ok());
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "training reached " << now.step();
    } while (now.step() < set.step() + 4);
    EXPECT_FLOAT_EQ(now.learning_rate(), set.learning_rate());
  }
  {  // model summary and parameters
    grpc::ClientContext c;
    v1::ModelInfo m;
    ASSERT_TRUE(model->GetModel(&c, v1::GetModelRequest(), &m).ok());
    ASSERT_GE(m.nodes_size(), 4);
    EXPECT_EQ(m.nodes(1).name(), "conv");
    EXPECT_EQ(m.total_params(), 4 * 9 + 4 + 2 * 4 + 2);
    grpc::ClientContext c2;
    v1::ListParametersResponse ps;
    ASSERT_TRUE(model->ListParameters(&c2, v1::ListParametersRequest(), &ps).ok());
    EXPECT_EQ(ps.parameters_size(), 4);
  }
  {  // write conv/b, read it back
    grpc::ClientContext c;
    v1::ParameterInfo info;
    auto w = model->SetParameter(&c, &info);
    v1::SetParameterChunk chunk;
    chunk.set_node("conv");
    chunk.set_param("b");
    chunk.mutable_chunk()->mutable_tensor()->add_shape(4);
    chunk.mutable_chunk()->mutable_tensor()->set_dtype(v1::FLOAT32);
    const float values[4] = {0.25f, -1.f, 2.f, 0.5f};
    chunk.mutable_chunk()->set_data(reinterpret_cast<const char*>(values), sizeof(values));
    ASSERT_TRUE(w->Write(chunk));
    w->WritesDone();
    ASSERT_TRUE(w->Finish().ok());
    grpc::ClientContext c2;
    v1::GetParameterRequest get;
    get.set_node("conv");
    get.set_param("b");
    auto r = model->GetParameter(&c2, get);
    v1::TensorChunk t;
    std::string data;
    while (r->Read(&t)) data += t.data();
    ASSERT_TRUE(r->Finish().ok());
    ASSERT_EQ(data.size(), sizeof(values));
    // Training continues between the two calls, so the bias may have moved by a few Adam
    // steps of lr 1e-5 at most.
    const float* got = reinterpret_cast<const float*>(data.data());
    for (int i = 0; i < 4; ++i) EXPECT_NEAR(got[i], values[i], 1e-3);
  }
  {  // statistics and export
    grpc::ClientContext c;
    v1::GetStatisticsRequest req;
    req.set_kind(v1::PARAMETERS);
    v1::Statistics s;
    ASSERT_TRUE(model->GetStatistics(&c, req, &s).ok());
    EXPECT_EQ(s.tensors_size(), 4);
    grpc::ClientContext c2;
    auto r = model->ExportModel(&c2, v1::ExportModelRequest());
    v1::FileChunk chunk;
    std::string file;
    while (r->Read(&chunk)) file += chunk.data();
    ASSERT_TRUE(r->Finish().ok());
    std::ofstream(dir / "export.h5", std::ios::binary) << file;
    auto f = ReadModelFile((dir / "export.h5").string());
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_TRUE(f->has_optimiser);
  }
  {  // a shell session pauses training until q; lines run on the live job
    auto shell = v1::Shell::NewStub(channel);
    grpc::ClientContext c;
    auto stream = shell->Attach(&c);
    v1::ShellRequest attach;
    attach.mutable_attach()->set_user("tester");
    ASSERT_TRUE(stream->Write(attach));
    v1::ShellResponse r;
    ASSERT_TRUE(stream->Read(&r));
    ASSERT_TRUE(r.has_prompt()) << r.ShortDebugString();
    EXPECT_TRUE(r.prompt().paused());
    auto run = [&](const std::string& line) {
      v1::ShellRequest q;
      q.set_line(line);
      EXPECT_TRUE(stream->Write(q));
      std::string text;
      while (stream->Read(&r) && !r.has_prompt()) text += r.output() + r.error();
      return text;
    };
    const std::string step1 = run("trainer.step");
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_EQ(run("trainer.step"), step1);  // paused: the step stays still
    EXPECT_NE(run("setlr 2e-5").find("lr = 2e-05"), std::string::npos);
    EXPECT_NE(run("io.open('x')").find("sandbox"), std::string::npos);
    {  // a backtracking pattern is refused at once, and the session and the job answer on
      const std::string hostile =
          run("s = ('a'):rep(32); s:find(('a?'):rep(32)..('a'):rep(32)..'b')");
      EXPECT_NE(hostile.find("the sandbox refuses"), std::string::npos) << hostile;
      EXPECT_EQ(run("trainer.step"), step1);
    }
    v1::ShellRequest comp;
    comp.set_complete("model.");
    ASSERT_TRUE(stream->Write(comp));
    ASSERT_TRUE(stream->Read(&r));
    ASSERT_TRUE(r.has_completions());
    EXPECT_GT(r.completions().candidates_size(), 0);
    run("q");
    EXPECT_TRUE(r.prompt().closed());
    stream->WritesDone();
    EXPECT_TRUE(stream->Finish().ok());
  }
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 130);
  std::ifstream in(log);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_NE(ss.str().find("lr changed from 0.001 to 1e-05 at step"), std::string::npos) << ss.str();
  EXPECT_NE(ss.str().find("parameter conv/b set at step"), std::string::npos);
  EXPECT_NE(ss.str().find("training paused by shell of tester"), std::string::npos);
  // From what the schedule above left (1e-05 halved a few times).
  EXPECT_NE(ss.str().find(" to 2e-05 at step"), std::string::npos) << ss.str();
  EXPECT_NE(ss.str().find("Schedule for lr: mode=mult, decay-factor=0.5, every 2 steps from step"),
            std::string::npos);
  EXPECT_NE(ss.str().find("Schedule for lr removed at step"), std::string::npos);
  fs::remove_all(dir);
}

// The worker checks the data paths again, whatever the daemon checked: a JobSpec reading a
// file outside --data-dir never gets to open it.
TEST(WorkerControl, WorkerRefusesDataPathsOutsideItsDataDirectory) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("elk_conf_" + std::to_string(getpid()));
  fs::remove_all(dir);
  auto job = testing::MakeTinyJob(dir, {"conf", "Adam", /*dropout=*/false});
  ASSERT_TRUE(job.ok()) << job.status();
  fs::create_directories(dir / "data");
  job->mutable_training()->mutable_batch_creator_image()->set_d_path("");
  job->mutable_training()->mutable_batch_creator_image()->mutable_d_files(0)->set_file(
      (dir / "raw_0.h5").string());  // outside dir/data
  {
    std::ofstream out(dir / "job.pb", std::ios::binary);
    ASSERT_TRUE(job->SerializeToOstream(&out));
  }
  const std::string cmd = std::string(ELK_WORKER_BIN) + " train --job-spec " +
                          (dir / "job.pb").string() + " --data-dir " + (dir / "data").string() +
                          " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = pclose(p);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << out;
  EXPECT_NE(out.find("job.training.batch_creator_image.d_files[0].file is"), std::string::npos)
      << out;
  EXPECT_NE(out.find("outside"), std::string::npos) << out;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace elektronn
