// elektronnd: the per-host training daemon (Jobs and Host services, health, reflection).
#include <arpa/inet.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "rpc/version.h"
#include "server/auth.h"
#include "server/control_proxy.h"
#include "server/host_service.h"
#include "server/job_manager.h"
#include "server/job_store.h"
#include "server/jobs_service.h"
#include "server/options.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"
#include "worker/locate.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;

// Largest request message accepted (gRPC's own default, stated so it cannot silently grow):
// parameter and file chunks are 1 MiB, job specs a few KiB.
constexpr int kMaxReceiveMessageBytes = 4 << 20;

// True only for unix: sockets, "localhost" and numeric 127.0.0.0/8 or [::1] addresses; any
// other host (0.0.0.0, [::], a DNS name such as 127.example.org) needs TLS or --insecure.
bool IsLoopback(const std::string& address) {
  if (absl::StartsWith(address, "unix:")) return true;
  std::string host = address;
  if (absl::StartsWith(host, "ipv4:")) host = host.substr(5);
  if (absl::StartsWith(host, "ipv6:")) host = host.substr(5);
  if (absl::StartsWith(host, "[")) return absl::StartsWith(host, "[::1]:");
  const size_t colon = host.rfind(':');
  if (colon == std::string::npos) return false;
  host = host.substr(0, colon);
  in_addr v4{};
  return host == "localhost" ||
         (inet_pton(AF_INET, host.c_str(), &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int Fail(const std::string& message) {
  spdlog::error("{}", message);
  return 2;
}

int Main(int argc, char** argv) {
  CLI::App app{"elektronnd: trains ELEKTRONN jobs on this host for remote clients"};
  app.set_version_flag("--version", VersionText("elektronnd"));
  ListenOptions listen;
  DaemonOptions daemon;
  std::string token_file;
  const char* home = std::getenv("HOME");
  daemon.state_dir = home ? absl::StrCat(home, "/.local/state/elektronnd") : "";
  app.add_option("--listen", listen.address, "host:port or unix:PATH")->capture_default_str();
  app.add_option("--state-dir", daemon.state_dir, "jobs, token and checkpoints live here")
      ->capture_default_str();
  app.add_option("--token-file", token_file, "bearer token file (default: <state-dir>/token)");
  app.add_option("--tls-cert", listen.tls.cert_file, "PEM server certificate chain");
  app.add_option("--tls-key", listen.tls.key_file, "PEM private key");
  app.add_option("--tls-client-ca", listen.tls.client_ca_file,
                 "PEM CA that client certificates must be signed by (then required)");
  app.add_flag("--insecure", listen.insecure,
               "allow plaintext on a non-loopback address (the token travels in clear)");
  bool reflection = false;
  app.add_flag("--reflection", reflection,
               "serve gRPC server reflection (for grpcurl and the like); its calls need the token");
  app.add_option("--capacity", daemon.capacity, "jobs that may run at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  app.add_option("--max-restarts", daemon.max_restarts,
                 "restarts of a crashed worker from its checkpoint before the job is FAILED")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000));
  app.add_option("--data-dir", daemon.data_dir,
                 "relative data paths of jobs resolve against it (default: the state dir)");
  app.add_option("--worker-binary", daemon.worker_binary,
                 "the elektronn-worker executable (default: $ELEKTRONN_WORKER, else next to "
                 "elektronnd)");
  app.add_option("--worker-status-interval", daemon.status_interval_s,
                 "seconds between workers' progress lines (0: every step)")
      ->capture_default_str();
  app.add_option("--worker-threads", daemon.worker_omp_threads,
                 "OMP_NUM_THREADS for workers (0: inherit)")
      ->capture_default_str();
  std::string fake_gpus;
  app.add_option("--fake-gpus", fake_gpus,
                 "TEST ONLY: take the GPUs from this JSON file instead of NVML, re-read on every "
                 "call: {\"gpus\": [{\"uuid\": \"GPU-fake-0\", \"name\": ..., "
                 "\"memory_total_bytes\": ..., \"memory_used_bytes\": ..., "
                 "\"utilization_percent\": ..., \"processes\": [{\"pid\": 4711, "
                 "\"used_memory_bytes\": ...}]}]} (edit it to add or remove foreign processes); "
                 "jobs on these GPUs run on the CPU");
  CLI11_PARSE(app, argc, argv);

  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("elektronnd", sink));
  spdlog::set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%l] %v");

  if (daemon.state_dir.empty()) return Fail("--state-dir is empty and $HOME is not set");
  if (listen.tls.enabled() != !listen.tls.key_file.empty()) {
    return Fail("--tls-cert and --tls-key go together; give both or neither");
  }
  if (!listen.tls.client_ca_file.empty() && !listen.tls.enabled()) {
    return Fail(
        "--tls-client-ca requires client certificates over TLS; give --tls-cert and --tls-key "
        "too");
  }
  if (!IsLoopback(listen.address) && !listen.tls.enabled()) {
    if (!listen.insecure) {
      return Fail(absl::StrCat("--listen ", listen.address,
                               " is not a loopback address: give --tls-cert and --tls-key, or "
                               "--insecure to accept plaintext"));
    }
    spdlog::warn(
        "listening on {} WITHOUT TLS (--insecure): the token and all data travel in "
        "clear text",
        listen.address);
  }
  std::error_code ec;
  fs::create_directories(daemon.state_dir, ec);
  if (ec)
    return Fail(absl::StrCat("cannot create --state-dir '", daemon.state_dir, "': ", ec.message()));
  daemon.state_dir = fs::canonical(daemon.state_dir).string();
  chmod(daemon.state_dir.c_str(), 0700);
  if (token_file.empty()) token_file = (fs::path(daemon.state_dir) / "token").string();
  if (daemon.data_dir.empty()) daemon.data_dir = daemon.state_dir;
  daemon.data_dir = fs::absolute(daemon.data_dir).string();
  if (daemon.worker_binary.empty()) daemon.worker_binary = LocateWorkerBinary();
  if (access(daemon.worker_binary.c_str(), X_OK) != 0) {
    return Fail(absl::StrCat("--worker-binary '", daemon.worker_binary,
                             "' is not an executable file; point it at elektronn-worker"));
  }
  daemon.worker_binary = fs::absolute(daemon.worker_binary).string();

  auto token = LoadOrCreateToken(token_file);
  if (!token.ok()) return Fail(std::string(token.status().message()));
  TokenChecker auth(*token);

  // Signals are taken by sigwait below; every thread inherits this mask (workers reset it).
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  JobStore store(daemon.state_dir);
  if (auto s = store.Init(); !s.ok()) return Fail(std::string(s.message()));
  if (!fake_gpus.empty()) {
    fake_gpus = fs::absolute(fake_gpus).string();
    spdlog::warn("--fake-gpus {}: GPUs come from this file, not from NVML (for tests only)",
                 fake_gpus);
  }
  const GpuSource gpus(fake_gpus);
  // Reservations survive restarts (their leases are absolute times); see reservation_book.h.
  ReservationBook reservations(daemon.state_dir);
  if (auto s = reservations.Load(); !s.ok()) return Fail(std::string(s.message()));
  JobManager manager(daemon, &store, &reservations);
  if (auto s = manager.Start(); !s.ok()) return Fail(std::string(s.message()));

  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (listen.tls.enabled()) {
    grpc::SslServerCredentialsOptions ssl(
        listen.tls.client_ca_file.empty()
            ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
            : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    const std::string cert = ReadFile(listen.tls.cert_file), key = ReadFile(listen.tls.key_file);
    if (cert.empty() || key.empty()) {
      return Fail(absl::StrCat("cannot read --tls-cert '", listen.tls.cert_file, "' or --tls-key '",
                               listen.tls.key_file, "'"));
    }
    ssl.pem_key_cert_pairs.push_back({key, cert});
    if (!listen.tls.client_ca_file.empty()) {
      ssl.pem_root_certs = ReadFile(listen.tls.client_ca_file);
      if (ssl.pem_root_certs.empty()) {
        return Fail(absl::StrCat("cannot read --tls-client-ca '", listen.tls.client_ca_file, "'"));
      }
    }
    creds = grpc::SslServerCredentials(ssl);
  }

  grpc::EnableDefaultHealthCheckService(true);
  // Linking the reflection library registers its plugin in every server; the gate below decides.
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  JobsService jobs(&manager, &auth, daemon.data_dir, daemon.state_dir, &reservations, &gpus);
  HostService host(&manager, &auth, daemon.state_dir, &gpus, &reservations);
  ReservationsService reservations_service(&manager, &auth, daemon.state_dir, &gpus, &reservations);
  WorkerChannels channels(&manager, &store);
  TrainerProxy trainer_proxy(&channels, &auth);
  ModelProxy model_proxy(&channels, &auth);
  ShellProxy shell_proxy(&channels, &auth);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen.address, creds, &port);
  builder.SetMaxReceiveMessageSize(kMaxReceiveMessageBytes);
  {
    // The reflection service's handlers are gRPC's: gated by their method names.
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> gates;
    gates.push_back(MakeServiceGate(
        &auth, "/grpc.reflection.", reflection,
        "server reflection is off; start elektronnd with --reflection to serve it"));
    builder.experimental().SetInterceptorCreators(std::move(gates));
  }
  builder.RegisterService(&jobs);
  builder.RegisterService(&host);
  builder.RegisterService(&reservations_service);
  builder.RegisterService(&trainer_proxy);
  builder.RegisterService(&model_proxy);
  builder.RegisterService(&shell_proxy);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || (port == 0 && !absl::StartsWith(listen.address, "unix:"))) {
    manager.Shutdown();
    return Fail(absl::StrCat("cannot listen on --listen ", listen.address,
                             " (in use, or not a valid host:port / unix:PATH)"));
  }
  manager.StartScheduling();
  spdlog::info(
      "{} listening on {} (port {}; state {}, data {}, worker {}, capacity {}, TLS {}{}{})",
      VersionText("elektronnd"), listen.address, port, daemon.state_dir, daemon.data_dir,
      daemon.worker_binary, daemon.capacity, listen.tls.enabled() ? "on" : "off",
      listen.tls.client_ca_file.empty() ? "" : ", client certificates required",
      reflection ? ", reflection on" : "");

  int sig = 0;
  sigwait(&stop_signals, &sig);
  spdlog::info("received {}; checkpointing running jobs and stopping", strsignal(sig));
  manager.BeginShutdown();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(3));
  manager.Shutdown();
  spdlog::info("elektronnd stopped");
  return 0;
}

}  // namespace
}  // namespace elektronn

int main(int argc, char** argv) { return elektronn::Main(argc, argv); }
