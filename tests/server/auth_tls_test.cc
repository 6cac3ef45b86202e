// Auth and TLS of elektronnd end to end: TLS, refusals, tokens, reflection and stream bounds.
#include <grpcpp/generic/generic_stub.h>
#include <sys/stat.h>

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "elektronn/v1/control.grpc.pb.h"
#include "elektronn/v1/shell.grpc.pb.h"
#include "rpc/status.h"
#include "tests/server/daemon_fixture.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;

// Idle channels (the fixture's, while it polls the daemon's health) advance their connections
// only on gRPC's backup poller, every 5 s by default; set before gRPC starts, in this process.
const int kFastBackupPoll = setenv("GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS", "50", 0);

constexpr char kWrongToken[] = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

std::string Slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Output {
  int code = -1;  // exit code; -1 when it did not exit normally
  std::string text;
};

// Runs a shell command (it must end by itself: every command here has a timeout).
Output RunShell(const std::string& command) {
  Output o;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return o;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof(buf), p)) o.text.append(buf, n);
  const int status = pclose(p);
  if (WIFEXITED(status)) o.code = WEXITSTATUS(status);
  return o;
}

std::shared_ptr<grpc::ChannelCredentials> Tls(const fs::path& ca, const fs::path& key = {},
                                              const fs::path& cert = {}) {
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = Slurp(ca);
  if (!key.empty()) {
    ssl.pem_private_key = Slurp(key);
    ssl.pem_cert_chain = Slurp(cert);
  }
  return grpc::SslCredentials(ssl);
}

class AuthTlsTest : public DaemonTest {
 protected:
  std::string Target() const { return "127.0.0.1:" + std::to_string(port_); }

  // A CA, a server certificate for 127.0.0.1 and client certificates, in dir_/name.
  fs::path MakeCerts(const std::string& name, const std::vector<std::string>& clients = {}) {
    const fs::path out = dir_ / name;
    const Output o = RunShell(absl::StrCat("EXTRA_SANS=IP:127.0.0.1 timeout 60 bash ",
                                           ELK_SOURCE_DIR, "/deploy/tls/make-certs.sh localhost ",
                                           out.string(), " ", absl::StrJoin(clients, " ")));
    EXPECT_EQ(o.code, 0) << o.text;
    EXPECT_TRUE(fs::exists(out / "server.crt")) << o.text;
    return out;
  }

  // Runs elektronnd with `args` and waits (at most `seconds`) for it to exit, for daemons that
  // must refuse to start. Returns its wait status and what it logged; kills it on timeout.
  std::pair<int, std::string> RunDaemonToExit(const std::vector<std::string>& args,
                                              int seconds = 20) {
    const fs::path log = dir_ / ("refused_" + std::to_string(++refused_runs_) + ".log");
    std::vector<std::string> argv_s = {ELK_ELEKTRONND_BIN};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    const pid_t pid = fork();
    if (pid == 0) {
      std::vector<char*> argv;
      for (auto& a : argv_s) argv.push_back(a.data());
      argv.push_back(nullptr);
      FILE* f = std::freopen(log.c_str(), "w", stderr);
      (void)f;
      execv(argv[0], argv.data());
      _exit(127);
    }
    const auto deadline = Clock::now() + std::chrono::seconds(seconds);
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) != pid) {
      const bool serving = Slurp(log).find("elektronnd listening on") != std::string::npos;
      if (serving || Clock::now() > deadline) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        ADD_FAILURE() << "elektronnd " << absl::StrJoin(args, " ")
                      << (serving ? " started"
                                  : " did not exit within " + std::to_string(seconds) + " s")
                      << ":\n"
                      << Slurp(log);
        return {-1, Slurp(log)};
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return {status, Slurp(log)};
  }

  std::vector<std::string> BaseArgs(const std::string& listen) {
    return {"--listen",   listen,        "--state-dir",     StateDir(),
            "--data-dir", dir_.string(), "--worker-binary", ELK_WORKER_BIN};
  }

  grpc::Status List(const std::shared_ptr<grpc::Channel>& channel,
                    const std::string& token = "<own>") {
    v1::ListJobsResponse list;
    return v1::Jobs::NewStub(channel)->ListJobs(Ctx(token).get(), {}, &list);
  }

  v1::Job StartRunningJob() {
    v1::Job job = Create(TinySpec(10'000'000, 20));
    return WaitFor(job.name(),
                   [](const v1::Job& j) { return j.state() == v1::RUNNING && j.step() > 2; });
  }

  // The parameter's shape and bytes, streamed through the daemon.
  std::pair<std::vector<int64_t>, std::string> GetParam(const std::string& job,
                                                        const std::string& node,
                                                        const std::string& param) {
    v1::GetParameterRequest req;
    req.set_name(job);
    req.set_node(node);
    req.set_param(param);
    auto ctx = Ctx();
    auto reader = v1::Model::NewStub(channel_)->GetParameter(ctx.get(), req);
    v1::TensorChunk chunk;
    std::vector<int64_t> shape;
    std::string bytes;
    while (reader->Read(&chunk)) {
      if (chunk.has_tensor()) {
        shape.assign(chunk.tensor().shape().begin(), chunk.tensor().shape().end());
      }
      bytes += chunk.data();
    }
    grpc::Status s = reader->Finish();
    EXPECT_TRUE(s.ok()) << s.error_message();
    return {shape, bytes};
  }

  // SetParameter with the header in the first chunk and `data` cut into `chunk_bytes` pieces.
  grpc::Status SetParam(const std::string& job, const std::string& node, const std::string& param,
                        const std::vector<int64_t>& shape, const std::string& data,
                        size_t chunk_bytes = 1 << 20) {
    auto ctx = Ctx("<own>", 30);
    v1::ParameterInfo info;
    auto writer = v1::Model::NewStub(channel_)->SetParameter(ctx.get(), &info);
    size_t sent = 0;
    do {
      v1::SetParameterChunk c;
      if (sent == 0) {
        c.set_name(job);
        c.set_node(node);
        c.set_param(param);
        for (int64_t d : shape) c.mutable_chunk()->mutable_tensor()->add_shape(d);
        c.mutable_chunk()->mutable_tensor()->set_dtype(v1::FLOAT32);
      }
      const size_t n = std::min(chunk_bytes, data.size() - sent);
      c.mutable_chunk()->set_data(data.substr(sent, n));
      sent += n;
      if (!writer->Write(c)) break;
    } while (sent < data.size());
    writer->WritesDone();
    return writer->Finish();
  }

  // Reads the job's events (following) until a status line of a step beyond `step` arrives.
  bool StatusArrivesAfter(const std::string& job, int64_t step) {
    auto ctx = Ctx("<own>", 30);
    v1::WatchJobRequest watch;
    watch.set_name(job);
    watch.set_follow(true);
    auto reader = jobs_->WatchJob(ctx.get(), watch);
    v1::JobEvent e;
    while (reader->Read(&e)) {
      if (e.has_status() && e.status().step() > step) {
        ctx->TryCancel();
        return true;
      }
    }
    return false;
  }

  int refused_runs_ = 0;
};

void ExpectUnauthenticated(const grpc::Status& s, const std::string& what) {
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED)
      << what << ": " << s.error_code() << " " << s.error_message();
  auto info = ErrorInfoOf(s);
  EXPECT_TRUE(info.has_value() && info->reason() == "UNAUTHENTICATED") << what;
}

// One round of grpc.reflection.v1alpha's ServerReflectionInfo: list_services. Returns the call's
// status and the raw response bytes (which name the services).
std::pair<grpc::Status, std::string> ListServicesByReflection(
    const std::shared_ptr<grpc::Channel>& channel, const std::string& token) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  const auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(10);
  ctx.set_deadline(deadline);
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  grpc::CompletionQueue cq;
  auto call =
      stub.PrepareCall(&ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  // Waits for the operation tagged `want`; false when it failed (or the deadline passed).
  auto wait = [&](intptr_t want) {
    void* tag = nullptr;
    bool ok = false;
    while (cq.AsyncNext(&tag, &ok, deadline + std::chrono::seconds(1)) ==
           grpc::CompletionQueue::GOT_EVENT) {
      if (reinterpret_cast<intptr_t>(tag) == want) return ok;
    }
    return false;
  };
  std::string response;
  call->StartCall(reinterpret_cast<void*>(1));
  if (wait(1)) {
    const std::string request("\x3a\x01*", 3);  // ServerReflectionRequest{list_services: "*"}
    grpc::Slice slice(request);
    grpc::ByteBuffer out(&slice, 1), in;
    call->Write(out, reinterpret_cast<void*>(2));
    if (wait(2)) {
      call->WritesDone(reinterpret_cast<void*>(3));
      if (wait(3)) {
        call->Read(&in, reinterpret_cast<void*>(4));
        if (wait(4)) {
          std::vector<grpc::Slice> slices;
          (void)in.Dump(&slices);
          for (auto& s : slices) {
            response.append(reinterpret_cast<const char*>(s.begin()), s.size());
          }
        }
      }
    }
  }
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  wait(5);
  cq.Shutdown();
  void* tag;
  bool ok;
  while (cq.Next(&tag, &ok)) {
  }
  return {status, response};
}

TEST_F(AuthTlsTest, TlsServerAcceptsClientsWithItsCaOnly) {
  const fs::path certs = MakeCerts("tls");
  listen_host_ = "0.0.0.0";  // not loopback: allowed because of TLS
  client_creds_ = Tls(certs / "ca.crt");
  StartDaemon({"--tls-cert", (certs / "server.crt").string(), "--tls-key",
               (certs / "server.key").string()});
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_NE(DaemonLog().find("TLS on"), std::string::npos) << DaemonLog();
  grpc::Status s = List(channel_);
  EXPECT_TRUE(s.ok()) << s.error_message();
  ExpectUnauthenticated(List(channel_, ""), "TLS without the token");
  ExpectUnauthenticated(List(channel_, kWrongToken), "TLS with a wrong token");

  // Plaintext to the TLS port, and TLS trusting another CA: no connection.
  s = List(grpc::CreateChannel(Target(), grpc::InsecureChannelCredentials()));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  const fs::path other = MakeCerts("other");
  s = List(grpc::CreateChannel(Target(), Tls(other / "ca.crt")));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();

  // The elektronn client: --tls-ca connects; without it (plaintext to loopback) it cannot.
  const std::string cli = absl::StrCat("timeout 60 ", ELK_ELEKTRONN_BIN, " ls --host ", Target(),
                                       " --token-file ", StateDir(), "/token");
  Output o = RunShell(cli + " --tls-ca " + (certs / "ca.crt").string());
  EXPECT_EQ(o.code, 0) << o.text;
  o = RunShell(cli + " --tls-ca " + (other / "ca.crt").string());
  EXPECT_EQ(o.code, 6) << o.text;  // unreachable
  o = RunShell(cli);
  EXPECT_EQ(o.code, 6) << o.text;
}

TEST_F(AuthTlsTest, MutualTlsRefusesClientsWithoutACertificateOfItsCa) {
  const fs::path certs = MakeCerts("mtls", {"alice"});
  const fs::path rogue = MakeCerts("rogue", {"mallory"});
  client_creds_ = Tls(certs / "ca.crt", certs / "client-alice.key", certs / "client-alice.crt");
  StartDaemon({"--tls-cert", (certs / "server.crt").string(), "--tls-key",
               (certs / "server.key").string(), "--tls-client-ca", (certs / "ca.crt").string()});
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_NE(DaemonLog().find("client certificates required"), std::string::npos) << DaemonLog();
  grpc::Status s = List(channel_);
  EXPECT_TRUE(s.ok()) << s.error_message();
  ExpectUnauthenticated(List(channel_, kWrongToken), "a client certificate but a wrong token");

  s = List(grpc::CreateChannel(Target(), Tls(certs / "ca.crt")));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE)
      << "no client certificate: " << s.error_message();
  s = List(grpc::CreateChannel(
      Target(), Tls(certs / "ca.crt", rogue / "client-mallory.key", rogue / "client-mallory.crt")));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE)
      << "another CA's client certificate: " << s.error_message();
  s = List(grpc::CreateChannel(Target(), grpc::InsecureChannelCredentials()));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
}

TEST_F(AuthTlsTest, RefusesPlaintextOnNonLoopbackAddressesAndHalfTlsFlags) {
  const std::string port = std::to_string(FreePort());
  for (const std::string& listen :
       {"0.0.0.0:" + port, "[::]:" + port, "127.example.org:" + port, "ipv4:0.0.0.0:" + port}) {
    SCOPED_TRACE(listen);
    auto [status, log] = RunDaemonToExit(BaseArgs(listen));
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << status << "\n" << log;
    EXPECT_NE(log.find("--listen " + listen + " is not a loopback address"), std::string::npos)
        << log;
    EXPECT_NE(log.find("--tls-cert and --tls-key, or --insecure"), std::string::npos) << log;
  }
  const fs::path certs = MakeCerts("half");
  const std::string loopback = "127.0.0.1:" + port;
  std::vector<std::string> args = BaseArgs(loopback);
  args.insert(args.end(), {"--tls-client-ca", (certs / "ca.crt").string()});
  auto [status, log] = RunDaemonToExit(args);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << log;
  EXPECT_NE(log.find("--tls-client-ca requires"), std::string::npos) << log;
  args = BaseArgs(loopback);
  args.insert(args.end(), {"--tls-cert", (certs / "server.crt").string()});
  std::tie(status, log) = RunDaemonToExit(args);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << log;
  EXPECT_NE(log.find("--tls-cert and --tls-key go together"), std::string::npos) << log;

  // --insecure is the explicit way to accept plaintext, with a warning.
  listen_host_ = "0.0.0.0";
  StartDaemon({"--insecure"});
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_NE(DaemonLog().find("WITHOUT TLS (--insecure)"), std::string::npos) << DaemonLog();
  EXPECT_TRUE(List(channel_).ok());
}

TEST_F(AuthTlsTest, TokenFileReadableByOthersIsRefused) {
  const std::string token = "0123456789abcdef0123456789abcdef";
  fs::create_directories(StateDir());
  const fs::path token_file = fs::path(StateDir()) / "token";
  std::ofstream(token_file) << token << "\n";
  const fs::path other_file = dir_ / "elsewhere.token";
  std::ofstream(other_file) << token << "\n";
  const std::string port = std::to_string(FreePort());
  for (mode_t mode : {0640, 0644, 0604, 0660, 0602}) {
    char octal[8];
    std::snprintf(octal, sizeof(octal), "%04o", static_cast<unsigned>(mode));
    SCOPED_TRACE(octal);
    for (const fs::path& file : {token_file, other_file}) {
      ASSERT_EQ(chmod(file.c_str(), mode), 0);
      std::vector<std::string> args = BaseArgs("127.0.0.1:" + port);
      if (file == other_file) args.insert(args.end(), {"--token-file", file.string()});
      auto [status, log] = RunDaemonToExit(args);
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << file << "\n" << log;
      EXPECT_NE(log.find("token file '" + file.string() +
                         "' is accessible by group or others (mode " + octal + ")"),
                std::string::npos)
          << log;
      EXPECT_NE(log.find("chmod 600 '" + file.string() + "'"), std::string::npos) << log;
    }
  }
  // 0600: accepted, and it is this token the daemon checks.
  ASSERT_EQ(chmod(token_file.c_str(), 0600), 0);
  StartDaemon();
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(token_, token);
  EXPECT_TRUE(List(channel_, token).ok());

  // The client warns about a loose token file (and still uses it: it is the user's own copy).
  ASSERT_EQ(chmod(other_file.c_str(), 0644), 0);
  Output o = RunShell(absl::StrCat("timeout 60 ", ELK_ELEKTRONN_BIN, " ls --host ", Target(),
                                   " --token-file ", other_file.string()));
  EXPECT_EQ(o.code, 0) << o.text;
  EXPECT_NE(o.text.find("warning: token file '" + other_file.string() +
                        "' is accessible by group or others (mode 0644)"),
            std::string::npos)
      << o.text;
  EXPECT_NE(o.text.find("chmod 600 '" + other_file.string() + "'"), std::string::npos) << o.text;
  ASSERT_EQ(chmod(other_file.c_str(), 0600), 0);
  o = RunShell(absl::StrCat("timeout 60 ", ELK_ELEKTRONN_BIN, " ls --host ", Target(),
                            " --token-file ", other_file.string()));
  EXPECT_EQ(o.code, 0) << o.text;
  EXPECT_EQ(o.text.find("warning"), std::string::npos) << o.text;
}

// Each call names the running job and is well formed, so without the token check it would
// succeed; the streams send nothing at all, so a handler that reads before it checks the token
// hangs until the deadline instead of answering UNAUTHENTICATED.
TEST_F(AuthTlsTest, EveryServiceRefusesCallsWithoutTheRightToken) {
  StartDaemon();
  ASSERT_FALSE(HasFatalFailure());
  const v1::Job job = StartRunningJob();
  ASSERT_EQ(job.state(), v1::RUNNING);
  EXPECT_TRUE(HealthServing());  // the health check stays tokenless (README)
  auto trainer = v1::Trainer::NewStub(channel_);
  auto model = v1::Model::NewStub(channel_);
  auto shell = v1::Shell::NewStub(channel_);
  for (const std::string& token : {std::string(), std::string(kWrongToken)}) {
    SCOPED_TRACE(token.empty() ? "no token" : "wrong token");
    v1::Job out;
    {
      v1::CreateJobRequest req;
      *req.mutable_job() = TinySpec(10);
      ExpectUnauthenticated(jobs_->CreateJob(Ctx(token).get(), req, &out), "Jobs.CreateJob");
    }
    v1::GetJobRequest get;
    get.set_name(job.name());
    ExpectUnauthenticated(jobs_->GetJob(Ctx(token).get(), get, &out), "Jobs.GetJob");
    v1::ListJobsResponse list;
    ExpectUnauthenticated(jobs_->ListJobs(Ctx(token).get(), {}, &list), "Jobs.ListJobs");
    v1::PauseJobRequest pause;
    pause.set_name(job.name());
    ExpectUnauthenticated(jobs_->PauseJob(Ctx(token).get(), pause, &out), "Jobs.PauseJob");
    v1::ResumeJobRequest resume;
    resume.set_name(job.name());
    ExpectUnauthenticated(jobs_->ResumeJob(Ctx(token).get(), resume, &out), "Jobs.ResumeJob");
    v1::CancelJobRequest cancel;
    cancel.set_name(job.name());
    ExpectUnauthenticated(jobs_->CancelJob(Ctx(token).get(), cancel, &out), "Jobs.CancelJob");
    {
      v1::WatchJobRequest watch;
      watch.set_name(job.name());
      auto ctx = Ctx(token);
      auto reader = jobs_->WatchJob(ctx.get(), watch);
      v1::JobEvent e;
      EXPECT_FALSE(reader->Read(&e)) << "an event reached a caller without the token";
      ExpectUnauthenticated(reader->Finish(), "Jobs.WatchJob");
    }
    v1::Resources res;
    ExpectUnauthenticated(host_->GetResources(Ctx(token).get(), {}, &res), "Host.GetResources");

    v1::GetHyperparametersRequest gh;
    gh.set_name(job.name());
    v1::Hyperparameters h;
    ExpectUnauthenticated(trainer->GetHyperparameters(Ctx(token).get(), gh, &h),
                          "Trainer.GetHyperparameters");
    v1::UpdateHyperparametersRequest uh;
    uh.set_name(job.name());
    uh.mutable_hyperparameters()->set_learning_rate(0.5);
    uh.mutable_update_mask()->add_paths("learning_rate");
    ExpectUnauthenticated(trainer->UpdateHyperparameters(Ctx(token).get(), uh, &h),
                          "Trainer.UpdateHyperparameters");

    v1::GetModelRequest gm;
    gm.set_name(job.name());
    v1::ModelInfo mi;
    ExpectUnauthenticated(model->GetModel(Ctx(token).get(), gm, &mi), "Model.GetModel");
    v1::ListParametersRequest lp;
    lp.set_name(job.name());
    v1::ListParametersResponse lpr;
    ExpectUnauthenticated(model->ListParameters(Ctx(token).get(), lp, &lpr),
                          "Model.ListParameters");
    v1::GetStatisticsRequest gs;
    gs.set_name(job.name());
    v1::Statistics st;
    ExpectUnauthenticated(model->GetStatistics(Ctx(token).get(), gs, &st), "Model.GetStatistics");
    {
      v1::GetParameterRequest gp;
      gp.set_name(job.name());
      gp.set_node("conv");
      gp.set_param("w");
      auto ctx = Ctx(token);
      auto reader = model->GetParameter(ctx.get(), gp);
      v1::TensorChunk chunk;
      EXPECT_FALSE(reader->Read(&chunk)) << "parameter data reached a caller without the token";
      ExpectUnauthenticated(reader->Finish(), "Model.GetParameter");
    }
    {
      v1::ExportModelRequest em;
      em.set_name(job.name());
      auto ctx = Ctx(token);
      auto reader = model->ExportModel(ctx.get(), em);
      v1::FileChunk chunk;
      EXPECT_FALSE(reader->Read(&chunk)) << "a model file reached a caller without the token";
      ExpectUnauthenticated(reader->Finish(), "Model.ExportModel");
    }
    {  // client stream: opened, nothing sent, not even half-closed
      auto ctx = Ctx(token, 5);
      v1::ParameterInfo info;
      auto writer = model->SetParameter(ctx.get(), &info);
      ExpectUnauthenticated(writer->Finish(), "Model.SetParameter before its first chunk");
    }
    {  // bidi stream: opened, nothing sent
      auto ctx = Ctx(token, 5);
      auto stream = shell->Attach(ctx.get());
      ExpectUnauthenticated(stream->Finish(), "Shell.Attach before its first message");
    }
  }
  // Nothing of the above had an effect: still one job, still running, at the same rate.
  v1::ListJobsResponse list;
  ASSERT_TRUE(jobs_->ListJobs(Ctx().get(), {}, &list).ok());
  EXPECT_EQ(list.jobs_size(), 1);
  EXPECT_EQ(Get(job.name()).state(), v1::RUNNING);
  v1::GetHyperparametersRequest gh;
  gh.set_name(job.name());
  v1::Hyperparameters h;
  ASSERT_TRUE(trainer->GetHyperparameters(Ctx().get(), gh, &h).ok());
  EXPECT_FLOAT_EQ(h.learning_rate(), 5e-3);
}

TEST_F(AuthTlsTest, ReflectionIsOffUnlessAskedForAndThenNeedsTheToken) {
  StartDaemon();
  ASSERT_FALSE(HasFatalFailure());
  auto [off, listed] = ListServicesByReflection(channel_, token_);
  EXPECT_EQ(off.error_code(), grpc::StatusCode::UNIMPLEMENTED) << off.error_message();
  EXPECT_NE(off.error_message().find("start elektronnd with --reflection"), std::string::npos)
      << off.error_message();
  EXPECT_EQ(listed.find("elektronn.v1"), std::string::npos) << "services listed while off";
  kill(pid_, SIGTERM);
  WaitDaemon();

  StartDaemon({"--reflection"});
  ASSERT_FALSE(HasFatalFailure());
  for (const std::string& token : {std::string(), std::string(kWrongToken)}) {
    auto [s, response] = ListServicesByReflection(channel_, token);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << (token.empty() ? "no token: " : "wrong token: ") << s.error_message();
    EXPECT_EQ(response.find("elektronn.v1"), std::string::npos) << "services leaked";
  }
  auto [s, response] = ListServicesByReflection(channel_, token_);
  EXPECT_TRUE(s.ok()) << s.error_code() << " " << s.error_message();
  EXPECT_NE(response.find("elektronn.v1.Jobs"), std::string::npos) << response;
}

TEST_F(AuthTlsTest, SetParameterWithAWrongShapeOrSizeIsRefusedAndTrainingGoesOn) {
  StartDaemon();
  ASSERT_FALSE(HasFatalFailure());
  const v1::Job job = StartRunningJob();
  // lr 0: the parameters stand still while training goes on, so they compare bit for bit.
  v1::UpdateHyperparametersRequest up;
  up.set_name(job.name());
  up.mutable_hyperparameters()->set_learning_rate(0);
  up.mutable_update_mask()->add_paths("learning_rate");
  v1::Hyperparameters h;
  ASSERT_TRUE(v1::Trainer::NewStub(channel_)->UpdateHyperparameters(Ctx().get(), up, &h).ok());
  auto [shape, before] = GetParam(job.name(), "conv", "w");
  ASSERT_GE(shape.size(), 2u);
  ASSERT_FALSE(before.empty());
  const std::string want = "(" + absl::StrJoin(shape, ",") + ")";

  std::vector<int64_t> longer = shape;
  longer.push_back(1);  // same number of values, another shape
  grpc::Status s = SetParam(job.name(), "conv", "w", longer, before);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_NE(s.error_message().find("conv/w has shape " + want + ", the tensor sent has (" +
                                   absl::StrJoin(longer, ",") + ")"),
            std::string::npos)
      << s.error_message();
  std::vector<int64_t> swapped = shape;
  std::swap(swapped[0], swapped[1]);
  if (swapped == shape) swapped[0] += 1;
  s = SetParam(job.name(), "conv", "w", swapped, before);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_NE(s.error_message().find("(" + absl::StrJoin(swapped, ",") + ")"), std::string::npos)
      << s.error_message();
  // The right shape with too few and too many bytes.
  s = SetParam(job.name(), "conv", "w", shape, before.substr(0, before.size() / 2));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_NE(s.error_message().find("conv/w of shape " + want + " needs " +
                                   std::to_string(before.size()) + " bytes"),
            std::string::npos)
      << s.error_message();
  s = SetParam(job.name(), "conv", "w", shape, before + std::string(8, '\0'), 64);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_NE(s.error_message().find("conv/w of shape " + want + " holds " +
                                   std::to_string(before.size()) + " bytes"),
            std::string::npos)
      << s.error_message();

  EXPECT_EQ(GetParam(job.name(), "conv", "w").second, before) << "a refused set changed values";
  // The right shape and size is accepted (so the refusals above were about shape and size).
  s = SetParam(job.name(), "conv", "w", shape, before, 64);
  EXPECT_TRUE(s.ok()) << s.error_message();
  const v1::Job now = Get(job.name());
  EXPECT_EQ(now.state(), v1::RUNNING);
  EXPECT_TRUE(StatusArrivesAfter(job.name(), now.step() + 3)) << DaemonLog();
  EXPECT_EQ(GetParam(job.name(), "conv", "w").second, before);
}

TEST_F(AuthTlsTest, StreamsTheWorkerBuffersAreBounded) {
  StartDaemon();
  ASSERT_FALSE(HasFatalFailure());
  const v1::Job job = StartRunningJob();
  auto [shape, values] = GetParam(job.name(), "conv", "w");
  ASSERT_FALSE(values.empty());
  auto model = v1::Model::NewStub(channel_);
  auto header = [&](const std::string& data) {
    v1::SetParameterChunk c;
    c.set_name(job.name());
    c.set_node("conv");
    c.set_param("w");
    for (int64_t d : shape) c.mutable_chunk()->mutable_tensor()->add_shape(d);
    c.mutable_chunk()->mutable_tensor()->set_dtype(v1::FLOAT32);
    c.mutable_chunk()->set_data(data);
    return c;
  };

  {  // Endless data after the parameter's bytes: refused once they are exceeded.
    constexpr size_t kCap = size_t{96} << 20;
    auto ctx = Ctx("<own>", 30);
    v1::ParameterInfo info;
    auto writer = model->SetParameter(ctx.get(), &info);
    size_t sent = 0;
    bool open = writer->Write(header(values));
    v1::SetParameterChunk more;
    more.mutable_chunk()->set_data(std::string(1 << 20, '\0'));
    while (open && sent < kCap) {
      open = writer->Write(more);
      sent += more.chunk().data().size();
    }
    EXPECT_LT(sent, kCap) << "the worker took " << sent << " bytes for a " << values.size()
                          << "-byte parameter";
    writer->WritesDone();
    grpc::Status s = writer->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    EXPECT_NE(s.error_message().find("the stream sent more"), std::string::npos)
        << s.error_message();
  }
  {  // Endless empty chunks (which buffer nothing, but would keep the worker busy): refused at
     // the first; the client may have sent many more into the transport's buffers by then.
    constexpr int kCap = 20'000;
    auto ctx = Ctx("<own>", 30);
    v1::ParameterInfo info;
    auto writer = model->SetParameter(ctx.get(), &info);
    bool open = writer->Write(header(values.substr(0, 4)));
    const v1::SetParameterChunk empty;
    int sent = 0;
    while (open && sent < kCap) {
      open = writer->Write(empty);
      ++sent;
    }
    writer->WritesDone();
    grpc::Status s = writer->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    EXPECT_NE(s.error_message().find("carries no data"), std::string::npos) << s.error_message();
  }
  {  // One message above the receive limit.
    auto ctx = Ctx("<own>", 30);
    v1::ParameterInfo info;
    auto writer = model->SetParameter(ctx.get(), &info);
    writer->Write(header(std::string(size_t{5} << 20, '\0')));
    writer->WritesDone();
    grpc::Status s = writer->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  }
  {  // A shell client that sends lines without waiting for their prompts: its session ends.
    constexpr int kCap = 4096;
    auto ctx = Ctx("<own>", 30);
    auto stream = v1::Shell::NewStub(channel_)->Attach(ctx.get());
    v1::ShellRequest attach;
    attach.mutable_attach()->set_name(job.name());
    attach.mutable_attach()->set_user("flood");
    attach.mutable_attach()->set_live(true);
    ASSERT_TRUE(stream->Write(attach));
    v1::ShellResponse r;
    ASSERT_TRUE(stream->Read(&r));
    ASSERT_TRUE(r.has_prompt()) << r.ShortDebugString();
    v1::ShellRequest busy;
    busy.set_line("local x = 0; for i = 1, 2e7 do x = x + i end");
    bool open = stream->Write(busy);
    v1::ShellRequest line;
    line.set_line("--" + std::string(32 << 10, 'x'));  // a 32 KiB comment
    int sent = 0;
    while (open && sent < kCap) {
      open = stream->Write(line);
      ++sent;
    }
    EXPECT_LT(sent, kCap) << "the worker queued " << sent << " lines of 32 KiB";
    stream->WritesDone();
    grpc::Status s = stream->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
    EXPECT_NE(s.error_message().find("shell input overflow"), std::string::npos)
        << s.error_message();
  }
  // The job trained on through all of it.
  const v1::Job now = Get(job.name());
  EXPECT_EQ(now.state(), v1::RUNNING);
  EXPECT_TRUE(StatusArrivesAfter(job.name(), now.step() + 3)) << DaemonLog();
}

}  // namespace
}  // namespace elektronn
