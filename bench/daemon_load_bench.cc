// Load on elektronnd: many concurrent WatchJob streams and a steady stream of GetJob/ListJobs
// calls while a job trains. Prints RPC latency percentiles, failures, and the job's training
// step rate without and with that load. Starts its own daemon on a free loopback port.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/str_replace.h"
#include "elektronn/v1/jobs.grpc.pb.h"
#include "elektronn/v1/shell.grpc.pb.h"
#include "engine/data/demo_data.h"
#include "engine/lua/job_file.h"
#include "tests/support/tiny_job.h"

namespace fs = std::filesystem;
using namespace elektronn;
using Clock = std::chrono::steady_clock;

namespace {

// The tests' tiny job (tests/support/tiny_job.h), wider and on larger patches so each step
// takes long enough for the daemon's load to show in the step rate.
std::string LoadJobText() {
  testing::TinyJobOptions o;
  o.save_path = "x";
  o.save_name = "load";
  o.n_steps = 100000000;
  o.max_runtime = 36000;
  o.history_freq = 1000000;
  o.optimiser = "Adam";
  o.optimiser_params = "lr = 1e-3";
  o.input_zxy = {9, 51, 51};
  o.hidden =
      "out = nm.Conv{out, 16, {1, 4, 4}, {1, 2, 2}}\n  out = nm.Conv{out, 32, {3, 3, 3}}\n"
      "  out = nm.Conv{out, 32, {3, 3, 3}}";
  return testing::TinyJobSource(o);
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * v.size()))];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Drive elektronnd with watchers and Get/List calls while a job trains."};
  std::string elektronnd = fs::path(argv[0]).parent_path().parent_path() / "server/elektronnd";
  int watchers = 32, callers = 4, seconds = 20;
  double rate = 100;
  app.add_option("--elektronnd", elektronnd, "daemon binary")->capture_default_str();
  app.add_option("--watchers", watchers, "concurrent WatchJob streams")->capture_default_str();
  app.add_option("--callers", callers, "threads calling GetJob/ListJobs back to back")
      ->capture_default_str();
  app.add_option("--seconds", seconds, "length of each phase")->capture_default_str();
  app.add_option("--rate", rate, "GetJob+ListJobs calls per second, all callers together")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  const fs::path dir = fs::temp_directory_path() / ("elk_load_" + std::to_string(getpid()));
  fs::create_directories(dir / "data");
  DemoDataOptions o;
  o.num_cubes = 1;
  o.shape = {16, 64, 64};
  if (auto s = MakeDemoData((dir / "data").string(), o); !s.ok()) {
    std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
    return 1;
  }
  const int port = FreePort();
  const std::string addr = "127.0.0.1:" + std::to_string(port);
  pid_t daemon = fork();
  if (daemon == 0) {
    FILE* f = std::freopen((dir / "daemon.log").c_str(), "w", stderr);
    (void)f;
    execl(elektronnd.c_str(), elektronnd.c_str(), "--listen", addr.c_str(), "--state-dir",
          (dir / "state").c_str(), "--data-dir", dir.c_str(), "--worker-threads", "1", "--capacity",
          "2", nullptr);
    _exit(127);
  }
  auto channel = grpc::CreateChannel(addr, grpc::InsecureChannelCredentials());
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(30))) {
    std::fprintf(stderr, "daemon did not start; see %s\n", (dir / "daemon.log").c_str());
    kill(daemon, SIGTERM);
    return 1;
  }
  std::string token;
  for (int i = 0; i < 100 && token.empty(); ++i) {
    std::ifstream(dir / "state/token") >> token;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  auto stub = v1::Jobs::NewStub(channel);
  auto ctx = [&](int s = 10) {
    auto c = std::make_unique<grpc::ClientContext>();
    c->AddMetadata("authorization", "Bearer " + token);
    c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(s));
    return c;
  };
  auto spec = LoadJobSource(LoadJobText(), "load.lua");
  v1::CreateJobRequest create;
  *create.mutable_job() = *spec;
  v1::Job job;
  if (auto s = stub->CreateJob(ctx().get(), create, &job); !s.ok()) {
    std::fprintf(stderr, "CreateJob: %s\n", s.error_message().c_str());
    kill(daemon, SIGTERM);
    return 1;
  }
  auto step_of = [&] {
    v1::GetJobRequest g;
    g.set_name(job.name());
    v1::Job j;
    (void)stub->GetJob(ctx().get(), g, &j);
    return j.step();
  };
  while (step_of() < 5) std::this_thread::sleep_for(std::chrono::milliseconds(100));

  // The step rate comes from the job's own status events (step and time stamp, about one per
  // second), recorded by one watcher for the whole run: exact, and independent of RPC latency.
  std::mutex rate_mu;
  std::vector<std::pair<double, int64_t>> samples;  // (unix seconds, step)
  auto rate_ctx = ctx(3600);
  std::thread recorder([&] {
    v1::WatchJobRequest w;
    w.set_name(job.name());
    w.set_follow(true);
    auto r = stub->WatchJob(rate_ctx.get(), w);
    v1::JobEvent e;
    while (r->Read(&e)) {
      if (!e.has_status()) continue;
      std::lock_guard<std::mutex> l(rate_mu);
      samples.emplace_back(e.time().seconds() + 1e-9 * e.time().nanos(), e.status().step());
    }
  });
  auto unix_now = [] {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
  auto measure_rate = [&] {
    const double t0 = unix_now();
    std::this_thread::sleep_for(std::chrono::seconds(seconds));
    const double t1 = unix_now();
    std::lock_guard<std::mutex> l(rate_mu);
    std::pair<double, int64_t> first{0, 0}, last{0, 0};
    for (const auto& s : samples) {
      if (s.first < t0 || s.first > t1) continue;
      if (first.first == 0) first = s;
      last = s;
    }
    return last.first > first.first ? (last.second - first.second) / (last.first - first.first)
                                    : 0.0;
  };
  const double quiet_before = measure_rate();

  std::atomic<bool> stop{false};
  std::atomic<int64_t> failures{0}, watch_events{0};
  std::mutex mu;
  std::vector<double> get_ms, list_ms;
  std::vector<std::thread> threads;
  std::vector<std::unique_ptr<grpc::ClientContext>> watch_ctx(watchers);
  for (int i = 0; i < watchers; ++i) {
    watch_ctx[i] = ctx(3600);
    threads.emplace_back([&, i] {
      v1::WatchJobRequest w;
      w.set_name(job.name());
      w.set_follow(true);
      auto r = stub->WatchJob(watch_ctx[i].get(), w);
      v1::JobEvent e;
      while (r->Read(&e)) watch_events.fetch_add(1);
      grpc::Status s = r->Finish();
      if (!stop.load() && !s.ok()) failures.fetch_add(1);
    });
  }
  for (int i = 0; i < callers; ++i) {
    threads.emplace_back([&, i] {
      const auto period = std::chrono::duration<double>(callers / rate);
      auto next = Clock::now();
      while (!stop.load()) {
        next += std::chrono::duration_cast<Clock::duration>(period);
        std::this_thread::sleep_until(next);
        auto t0 = Clock::now();
        grpc::Status s;
        if (i % 2 == 0) {
          v1::GetJobRequest g;
          g.set_name(job.name());
          v1::Job j;
          s = stub->GetJob(ctx().get(), g, &j);
        } else {
          v1::ListJobsResponse l;
          s = stub->ListJobs(ctx().get(), v1::ListJobsRequest(), &l);
        }
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        if (!s.ok()) failures.fetch_add(1);
        std::lock_guard<std::mutex> l(mu);
        (i % 2 == 0 ? get_ms : list_ms).push_back(ms);
      }
    });
  }
  const double loaded_rate = measure_rate();
  stop.store(true);
  for (auto& c : watch_ctx) c->TryCancel();
  for (auto& t : threads) t.join();
  // Unloaded again, so drift (thermal, other processes) shows and averages out.
  const double quiet_after = measure_rate();
  const double quiet_rate = 0.5 * (quiet_before + quiet_after);

  std::printf("daemon_load watchers=%d callers=%d rate=%.0f/s seconds=%d\n", watchers, callers,
              rate, seconds);
  std::printf("GetJob   calls=%zu p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f\n", get_ms.size(),
              Percentile(get_ms, 50), Percentile(get_ms, 90), Percentile(get_ms, 99));
  std::printf("ListJobs calls=%zu p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f\n", list_ms.size(),
              Percentile(list_ms, 50), Percentile(list_ms, 90), Percentile(list_ms, 99));
  std::printf("watch_events=%lld failures=%lld\n", static_cast<long long>(watch_events.load()),
              static_cast<long long>(failures.load()));
  std::printf("training steps_per_s quiet=%.2f (before %.2f, after %.2f) loaded=%.2f ratio=%.3f\n",
              quiet_rate, quiet_before, quiet_after, loaded_rate,
              loaded_rate / std::max(1e-9, quiet_rate));
  // Shell round trips (a no-op Lua statement) on a second, paused job while the first trains.
  v1::Job second;
  if (auto st = stub->CreateJob(ctx().get(), create, &second); st.ok()) {
    for (int i = 0; i < 300; ++i) {
      v1::GetJobRequest g;
      g.set_name(second.name());
      v1::Job j;
      (void)stub->GetJob(ctx().get(), g, &j);
      if (j.state() == v1::RUNNING && j.step() > 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    auto shell = v1::Shell::NewStub(channel);
    auto sctx = ctx(600);
    auto stream = shell->Attach(sctx.get());
    v1::ShellRequest attach;
    attach.mutable_attach()->set_name(second.name());
    v1::ShellResponse r;
    std::vector<double> rtt;
    if (stream->Write(attach) && stream->Read(&r)) {
      for (int i = 0; i < 300; ++i) {
        v1::ShellRequest q;
        q.set_line("x = 1");
        auto t0 = Clock::now();
        if (!stream->Write(q)) break;
        while (stream->Read(&r) && !r.has_prompt()) {
        }
        rtt.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      }
      v1::ShellRequest q;
      q.set_line("q");
      stream->Write(q);
      while (stream->Read(&r) && !(r.has_prompt() && r.prompt().closed())) {
      }
      stream->WritesDone();
      (void)stream->Finish();
    }
    std::printf(
        "shell no-op round trip (another job training) n=%zu p50_ms=%.2f p90_ms=%.2f "
        "p99_ms=%.2f\n",
        rtt.size(), Percentile(rtt, 50), Percentile(rtt, 90), Percentile(rtt, 99));
  }
  rate_ctx->TryCancel();
  recorder.join();
  kill(daemon, SIGTERM);
  int status = 0;
  waitpid(daemon, &status, 0);
  fs::remove_all(dir);
  return 0;
}
