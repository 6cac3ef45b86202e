// Test fixture: a real elektronnd child process on 127.0.0.1 (ephemeral port, temporary state
// directory, demo data), its token, stubs, and a tiny JobSpec that trains in well under a second
// per hundred steps.
#pragma once

#include <arpa/inet.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_replace.h"
#include "elektronn/v1/jobs.grpc.pb.h"
#include "engine/data/demo_data.h"
#include "engine/lua/job_file.h"
#include "tests/support/tiny_job.h"
#include "tests/support/wait.h"

namespace elektronn {

class DaemonTest : public ::testing::Test {
 protected:
  using Clock = std::chrono::steady_clock;

  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           ("elkd_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ / "data");
    DemoDataOptions o;
    o.num_cubes = 2;
    o.shape = {16, 64, 64};
    ASSERT_TRUE(MakeDemoData((dir_ / "data").string(), o).ok());
  }
  void TearDown() override {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      WaitDaemon();
    }
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }

  std::string StateDir() const { return (dir_ / "state").string(); }
  std::string DaemonLog() const {
    std::ifstream in(dir_ / "daemon.log");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  static int FreePort() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof(a);
    int port = 0;
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
        getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
      port = ntohs(a.sin_port);
    }
    close(fd);
    return port;
  }

  // Starts elektronnd and waits until its health check answers; retries with another port.
  void StartDaemon(std::vector<std::string> extra = {}) {
    for (int attempt = 0; attempt < 3; ++attempt) {
      port_ = FreePort();
      std::vector<std::string> args = {ELK_ELEKTRONND_BIN,
                                       "--listen",
                                       listen_host_ + ":" + std::to_string(port_),
                                       "--state-dir",
                                       StateDir(),
                                       "--data-dir",
                                       dir_.string(),
                                       "--worker-binary",
                                       worker_binary_,
                                       "--worker-threads",
                                       "1",
                                       "--worker-status-interval",
                                       "0.05"};
      args.insert(args.end(), extra.begin(), extra.end());
      const std::string log = (dir_ / "daemon.log").string();
      pid_ = fork();
      if (pid_ == 0) {
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        FILE* f = std::freopen(log.c_str(), "a", stderr);
        (void)f;
        execv(argv[0], argv.data());
        _exit(127);
      }
      channel_ =
          grpc::CreateChannel("127.0.0.1:" + std::to_string(port_),
                              client_creds_ ? client_creds_ : grpc::InsecureChannelCredentials());
      jobs_ = v1::Jobs::NewStub(channel_);
      host_ = v1::Host::NewStub(channel_);
      const auto deadline = Clock::now() + std::chrono::seconds(40);
      while (Clock::now() < deadline) {
        int status = 0;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
          pid_ = 0;
          break;  // died (port taken?): try again
        }
        if (HealthServing()) {
          std::ifstream in(std::filesystem::path(StateDir()) / "token");
          in >> token_;
          return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      if (pid_ > 0) {  // alive but not serving (e.g. unreachable with client_creds_): stop it
        kill(pid_, SIGKILL);
        WaitDaemon();
      }
    }
    FAIL() << "elektronnd did not come up:\n" << DaemonLog();
  }

  // The daemon's wait status; a daemon that does not exit within 90 s (it gives its workers 60 s
  // to checkpoint) is killed and fails the test.
  int WaitDaemon() {
    const std::optional<int> status = testing::WaitPidFor(pid_, std::chrono::seconds(90));
    pid_ = 0;
    if (!status.has_value()) {
      ADD_FAILURE() << "elektronnd did not exit within 90 s (killed)\n" << DaemonLog();
      return -1;
    }
    return *status;
  }

  // grpc.health.v1.Health/Check with an empty request; SERVING is the bytes 08 01.
  bool HealthServing() {
    grpc::GenericStub stub(channel_);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
    grpc::CompletionQueue cq;
    grpc::Slice empty("");
    grpc::ByteBuffer request(&empty, 1), response;
    auto call = stub.PrepareUnaryCall(&ctx, "/grpc.health.v1.Health/Check", request, &cq);
    call->StartCall();
    grpc::Status status;
    call->Finish(&response, &status, reinterpret_cast<void*>(1));
    void* tag;
    bool ok;
    cq.Next(&tag, &ok);
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
    if (!status.ok()) return false;
    std::vector<grpc::Slice> slices;
    (void)response.Dump(&slices);
    std::string bytes;
    for (auto& s : slices) bytes += std::string(reinterpret_cast<const char*>(s.begin()), s.size());
    return bytes == std::string("\x08\x01", 2);
  }

  std::unique_ptr<grpc::ClientContext> Ctx(const std::string& token = "<own>", int seconds = 10) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
    const std::string t = token == "<own>" ? token_ : token;
    if (!t.empty()) ctx->AddMetadata("authorization", "Bearer " + t);
    return ctx;
  }

  // The tiny job (tests/support/tiny_job.h) as the daemon suites run it: 3 layers with pooling,
  // Adam, two demo cubes (the second validates), augmentation.
  static v1::JobSpec TinySpec(int64_t n_steps, int history_freq = 5, int z_size = 5) {
    testing::TinyJobOptions o;
    o.optimiser = "Adam";
    o.optimiser_params = "lr = 5e-3, mom = 0.9, beta2 = 0.999, wd = 1e-5";
    o.n_steps = n_steps;
    o.history_freq = history_freq;
    o.max_runtime = 3600;
    o.batch_size = 2;
    o.monitor_batch_size = 2;
    o.cubes = 2;
    o.aniso_factor = 2;
    o.augment = "data_batch_args = {warp = 0.5, grey_augment_channels = {0}}";
    o.input_zxy = {z_size, 27, 27};
    o.hidden = "out = nm.Conv{out, 6, {1, 4, 4}, {1, 2, 2}}\n  out = nm.Conv{out, 6, {3, 3, 3}}";
    o.errors = true;
    auto job = testing::TinyJob(o);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? *job : v1::JobSpec();
  }

  v1::Job Create(const v1::JobSpec& spec, const std::string& request_id = "") {
    v1::CreateJobRequest req;
    *req.mutable_job() = spec;
    req.set_request_id(request_id);
    v1::Job job;
    grpc::Status s = jobs_->CreateJob(Ctx().get(), req, &job);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return job;
  }

  v1::Job Get(const std::string& name) {
    v1::GetJobRequest req;
    req.set_name(name);
    v1::Job job;
    grpc::Status s = jobs_->GetJob(Ctx().get(), req, &job);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return job;
  }

  // Polls GetJob until `pred` holds (or fails the test after `seconds`).
  v1::Job WaitFor(const std::string& name, const std::function<bool(const v1::Job&)>& pred,
                  int seconds = 30) {
    const auto deadline = Clock::now() + std::chrono::seconds(seconds);
    v1::Job job;
    while (Clock::now() < deadline) {
      job = Get(name);
      if (pred(job)) return job;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "timed out; job is " << job.ShortDebugString() << "\n" << DaemonLog();
    return job;
  }
  v1::Job WaitState(const std::string& name, v1::JobState state, int seconds = 30) {
    return WaitFor(
        name, [state](const v1::Job& j) { return j.state() == state; }, seconds);
  }

  int WorkerPid(const v1::Job& job) {
    std::ifstream in(std::filesystem::path(StateDir()) / job.name() / "worker.pid");
    int pid = 0;
    in >> pid;
    return pid;
  }

  std::filesystem::path dir_;
  std::string worker_binary_ = ELK_WORKER_BIN;  // --worker-binary of the next StartDaemon
  // Set before StartDaemon: the host part of --listen (the test still dials 127.0.0.1), and the
  // credentials of the fixture's channel (null: plaintext) for a daemon started with TLS flags.
  std::string listen_host_ = "127.0.0.1";
  std::shared_ptr<grpc::ChannelCredentials> client_creds_;
  pid_t pid_ = 0;
  int port_ = 0;
  std::string token_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Jobs::Stub> jobs_;
  std::unique_ptr<v1::Host::Stub> host_;
};

}  // namespace elektronn
