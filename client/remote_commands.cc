// The daemon commands of `elektronn`: each one RPC (or one stream) against elektronnd's Jobs and
// Host services; the tables for people and the JSON for scripts come from client/job_format.h.
#include "client/remote_commands.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "client/shell_client.h"
#include "elektronn/v1/control.grpc.pb.h"
#include "elektronn/v1/jobs.grpc.pb.h"
#include "engine/config/hyperparams.h"
#include "engine/core/status.h"
#include "engine/lua/job_file.h"
#include "google/protobuf/message.h"

namespace elektronn {
namespace {

using Clock = std::chrono::steady_clock;

int64_t NowUnix() { return static_cast<int64_t>(std::time(nullptr)); }

std::string RandomRequestId() {
  std::random_device rd;
  return absl::StrFormat("%08x%08x%08x%08x", rd(), rd(), rd(), rd());
}

}  // namespace

namespace {

// ---- Commands ----

struct Context {
  const RemoteCommands& state;
  Connection connection;
  std::unique_ptr<v1::Jobs::Stub> jobs;
};

absl::StatusOr<Context> Open(const RemoteCommands& state) {
  auto c = Connect(state.connection, ProcessEnvironment());
  if (!c.ok()) return c.status();
  Context ctx{state, *c, nullptr};
  ctx.jobs = v1::Jobs::NewStub(ctx.connection.channel);
  return ctx;
}

enum class WatchMode { kStatus, kLogs };

// Follows WatchJob: state changes on their own lines, a live status line (TTY) or one line every
// 10 s (pipe), or log lines; reconnects from the last sequence seen when the stream breaks.
int Watch(Context& ctx, const std::string& name, WatchMode mode, bool follow, bool json) {
  const bool tty = isatty(fileno(stdout)) && !json;
  v1::Job job;
  {
    v1::GetJobRequest req;
    req.set_name(name);
    auto cc = MakeContext(ctx.connection);
    grpc::Status s = ctx.jobs->GetJob(cc.get(), req, &job);
    if (!s.ok()) return ReportError(s, ctx.connection);
  }
  v1::JobState state = job.state();
  const bool prediction = IsPredictionJob(job);
  v1::StatusUpdate last_status;
  last_status.set_step(job.step());
  last_status.set_loss(job.loss());
  last_status.set_n_steps(NStepsOf(job));
  v1::PredictionProgress last_progress = job.prediction_progress();
  int64_t next_sequence = 0;
  bool line_drawn = false, line_pending = false;
  Clock::time_point last_draw{}, last_event = Clock::now();
  auto draw = [&](bool force) {
    if (mode != WatchMode::kStatus || json) return;
    const auto now = Clock::now();
    const auto min_gap = tty ? std::chrono::milliseconds(100) : std::chrono::milliseconds(10000);
    if (!force && line_drawn && now - last_draw < min_gap) {
      line_pending = true;
      return;
    }
    const std::string line = prediction ? FormatStatusLine(name, state, last_progress)
                                        : FormatStatusLine(name, state, last_status);
    if (tty) {
      std::printf("\r\033[K%s", line.c_str());
    } else {
      std::printf("%s\n", line.c_str());
    }
    std::fflush(stdout);
    line_drawn = true;
    line_pending = false;
    last_draw = now;
  };
  auto end_line = [&] {
    if (line_pending) draw(true);
    if (tty && line_drawn) std::printf("\n");
    line_drawn = false;
    std::fflush(stdout);
  };

  std::chrono::milliseconds backoff(500);
  for (;;) {
    auto cc = MakeContext(ctx.connection, /*streaming=*/true);
    v1::WatchJobRequest req;
    req.set_name(name);
    req.set_from_sequence(next_sequence);
    req.set_follow(follow);
    auto reader = ctx.jobs->WatchJob(cc.get(), req);
    v1::JobEvent ev;
    bool done = false;
    while (!done && reader->Read(&ev)) {
      last_event = Clock::now();
      backoff = std::chrono::milliseconds(500);
      next_sequence = ev.sequence() + 1;
      if (json) {
        if (mode == WatchMode::kStatus || ev.kind_case() == v1::JobEvent::kLogLine) {
          std::printf("%s\n", ProtoToJson(ev).c_str());
          std::fflush(stdout);
        }
      }
      switch (ev.kind_case()) {
        case v1::JobEvent::kState:
          end_line();  // the pending status line belongs to the previous state
          state = ev.state();
          if (mode == WatchMode::kStatus && !json) {
            std::printf("%s  %s: %s\n", FormatUtc(ev.time().seconds()).c_str(), name.c_str(),
                        JobStateName(state).c_str());
            std::fflush(stdout);
          }
          if (follow && IsFinalState(state)) done = true;
          break;
        case v1::JobEvent::kStatus:
          last_status = ev.status();
          if (last_status.n_steps() <= 0) last_status.set_n_steps(NStepsOf(job));
          draw(false);
          break;
        case v1::JobEvent::kPrediction:
          last_progress = ev.prediction();
          draw(false);
          break;
        case v1::JobEvent::kLogLine:
          if (mode == WatchMode::kLogs && !json) {
            std::printf("%s\n", ev.log_line().c_str());
            std::fflush(stdout);
          }
          break;
        default:
          break;
      }
    }
    if (done) {
      cc->TryCancel();
      (void)reader->Finish();
      end_line();
      if (mode == WatchMode::kStatus && !json && state == v1::FAILED) {
        v1::GetJobRequest greq;
        greq.set_name(name);
        auto gc = MakeContext(ctx.connection);
        if (ctx.jobs->GetJob(gc.get(), greq, &job).ok() && !job.error().empty()) {
          std::fprintf(stderr, "%s failed: %s\n", name.c_str(), job.error().c_str());
        }
      }
      return ExitCodeForFinalState(state);
    }
    grpc::Status s = reader->Finish();
    if (s.ok() && !follow) {
      end_line();
      return kExitOk;
    }
    const grpc::StatusCode code = s.error_code();
    const bool transient =
        s.ok() || code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::INTERNAL ||
        code == grpc::StatusCode::UNKNOWN || code == grpc::StatusCode::ABORTED ||
        code == grpc::StatusCode::DEADLINE_EXCEEDED || code == grpc::StatusCode::RESOURCE_EXHAUSTED;
    if (!transient) {
      end_line();
      return ReportError(s, ctx.connection);
    }
    if (s.ok()) {
      // The daemon closed a followed stream: finished without a state event, or shutting down.
      v1::GetJobRequest greq;
      greq.set_name(name);
      auto gc = MakeContext(ctx.connection);
      if (ctx.jobs->GetJob(gc.get(), greq, &job).ok() && IsFinalState(job.state())) {
        state = job.state();
        end_line();
        return ExitCodeForFinalState(state);
      }
    }
    if (Clock::now() - last_event > std::chrono::seconds(120)) {
      end_line();
      std::fprintf(stderr, "giving up after 120 s without contact\n");
      return ReportError(s.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "stream closed") : s,
                         ctx.connection);
    }
    if (!json) {
      end_line();
      std::fprintf(stderr, "stream interrupted (%s); reconnecting in %.1f s\n",
                   s.ok() ? "closed by the daemon" : s.error_message().c_str(),
                   backoff.count() / 1e3);
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(8000));
  }
}

// The JobSpec that `submit` sends and `spec` writes: the job file run here (its print() goes to
// stderr), then the --set and resource overrides, then the job file's absolute name.
absl::StatusOr<v1::JobSpec> BuildJobSpec(const RemoteCommands& state) {
  JobFileOptions lua;
  lua.print = [](std::string_view s) {
    std::fwrite(s.data(), 1, s.size(), stderr);
    std::fputc('\n', stderr);
  };
  auto spec = LoadJobFile(state.job_file, lua);
  if (!spec.ok()) return spec.status();
  for (const std::string& kv : state.overrides) {
    absl::Status s = ApplyTrainingOverride(kv, spec->mutable_training());
    if (!s.ok()) return s;
  }
  v1::JobResources* r = spec->mutable_resources();
  if (!state.precision.empty()) r->set_precision(state.precision);
  if (!state.device.empty()) r->set_device(state.device);
  if (state.tf32) r->set_allow_tf32(true);
  if (state.deterministic) r->set_deterministic(true);
  // The daemon may resolve relative data paths against the job file's directory.
  spec->set_job_file_name(std::filesystem::absolute(state.job_file).lexically_normal().string());
  return spec;
}

// `spec JOB.lua [-o FILE] [--set K=V...]`: the serialised JobSpec for clients that cannot run
// Lua (python/elektronn_client); no daemon is contacted.
int RunSpec(const RemoteCommands& state) {
  auto spec = BuildJobSpec(state);
  if (!spec.ok()) return ReportError(spec.status());
  std::string bytes;
  if (!spec->SerializeToString(&bytes)) {
    return ReportError(absl::InternalError("cannot serialise the JobSpec"));
  }
  if (state.output.empty()) {
    if (isatty(STDOUT_FILENO)) {
      return ReportError(absl::InvalidArgumentError(
          "the JobSpec is binary protobuf: pass -o FILE or redirect standard output"));
    }
    if (std::fwrite(bytes.data(), 1, bytes.size(), stdout) != bytes.size() ||
        std::fflush(stdout) != 0) {
      return ReportError(absl::InternalError("cannot write the JobSpec to standard output"));
    }
    return kExitOk;
  }
  std::ofstream out(state.output, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) {
    return ReportError(absl::InternalError("cannot write '" + state.output + "'"));
  }
  return kExitOk;
}

// Creates the job `spec` on the daemon, prints its name (or JSON) and follows it if asked:
// `submit` (a training job) and `predict --host` (a prediction job).
int CreateAndReport(const RemoteCommands& state, absl::StatusOr<v1::JobSpec> spec) {
  if (!spec.ok()) return ReportError(spec.status());
  auto ctx = Open(state);
  if (!ctx.ok()) return ReportError(ctx.status());
  v1::CreateJobRequest req;
  *req.mutable_job() = *std::move(spec);
  req.set_request_id(state.request_id.empty() ? RandomRequestId() : state.request_id);
  v1::Job job;
  auto cc = MakeContext(ctx->connection);
  grpc::Status s = ctx->jobs->CreateJob(cc.get(), req, &job);
  if (!s.ok()) return ReportError(s, ctx->connection);
  if (state.json) {
    std::printf("%s\n", JobToJson(job, /*brief=*/true).c_str());
  } else {
    std::printf("%s\n", job.name().c_str());
  }
  std::fflush(stdout);
  if (state.follow) return Watch(*ctx, job.name(), WatchMode::kStatus, true, state.json);
  return kExitOk;
}

int RunSubmit(const RemoteCommands& state) { return CreateAndReport(state, BuildJobSpec(state)); }

// `predict MODEL INPUT OUTPUT --host H`: a prediction job on that daemon.
int RunPredict(const RemoteCommands& state) {
  return CreateAndReport(state, RemotePredictionSpec(state.prediction));
}

int RunList(const RemoteCommands& state) {
  auto ctx = Open(state);
  if (!ctx.ok()) return ReportError(ctx.status());
  std::vector<v1::Job> jobs;
  v1::ListJobsRequest req;
  req.set_page_size(static_cast<int32_t>(std::clamp<int64_t>(state.page_size, 1, 1000)));
  for (;;) {
    v1::ListJobsResponse resp;
    auto cc = MakeContext(ctx->connection);
    grpc::Status s = ctx->jobs->ListJobs(cc.get(), req, &resp);
    if (!s.ok()) return ReportError(s, ctx->connection);
    for (auto& j : *resp.mutable_jobs()) jobs.push_back(std::move(j));
    if (resp.next_page_token().empty()) break;
    req.set_page_token(resp.next_page_token());
  }
  if (state.json) {
    std::vector<std::string> items;
    for (const auto& j : jobs) items.push_back(JobToJson(j, /*brief=*/true));
    std::printf("{\"jobs\":[%s]}\n", absl::StrJoin(items, ",").c_str());
  } else if (jobs.empty()) {
    std::printf("no jobs\n");
  } else {
    std::printf("%s", FormatJobTable(jobs, NowUnix()).c_str());
  }
  return kExitOk;
}

int RunStatus(const RemoteCommands& state) {
  auto name = NormaliseJobName(state.job);
  if (!name.ok()) return ReportError(name.status());
  auto ctx = Open(state);
  if (!ctx.ok()) return ReportError(ctx.status());
  v1::GetJobRequest req;
  req.set_name(*name);
  v1::Job job;
  auto cc = MakeContext(ctx->connection);
  grpc::Status s = ctx->jobs->GetJob(cc.get(), req, &job);
  if (!s.ok()) return ReportError(s, ctx->connection);
  if (state.json) {
    std::printf("%s\n", JobToJson(job).c_str());
  } else {
    std::printf("%s", FormatJobDetails(job, NowUnix()).c_str());
  }
  return kExitOk;
}

int RunWatch(const RemoteCommands& state, WatchMode mode, bool follow) {
  auto name = NormaliseJobName(state.job);
  if (!name.ok()) return ReportError(name.status());
  auto ctx = Open(state);
  if (!ctx.ok()) return ReportError(ctx.status());
  const int code = Watch(*ctx, *name, mode, follow, state.json);
  // logs: a job's end is not an error of the command.
  return mode == WatchMode::kLogs && code != kExitUsage && code != kExitNotFound &&
                 code != kExitAuth && code != kExitUnavailable
             ? kExitOk
             : code;
}

int RunStateChange(const RemoteCommands& state, const std::string& verb) {
  auto name = NormaliseJobName(state.job);
  if (!name.ok()) return ReportError(name.status());
  auto ctx = Open(state);
  if (!ctx.ok()) return ReportError(ctx.status());
  v1::Job job;
  auto cc = MakeContext(ctx->connection);
  grpc::Status s;
  if (verb == "pause") {
    v1::PauseJobRequest req;
    req.set_name(*name);
    s = ctx->jobs->PauseJob(cc.get(), req, &job);
  } else if (verb == "resume") {
    v1::ResumeJobRequest req;
    req.set_name(*name);
    s = ctx->jobs->ResumeJob(cc.get(), req, &job);
  } else {
    v1::CancelJobRequest req;
    req.set_name(*name);
    s = ctx->jobs->CancelJob(cc.get(), req, &job);
  }
  if (!s.ok()) return ReportError(s, ctx->connection);
  if (state.json) {
    std::printf("%s\n", JobToJson(job, /*brief=*/true).c_str());
  } else {
    std::printf("%s: %s\n", job.name().c_str(), JobStateName(job.state()).c_str());
  }
  return kExitOk;
}

int RunHosts(const RemoteCommands& state) {
  const EnvLookup env = ProcessEnvironment();
  std::vector<std::string> targets = state.hosts;
  if (targets.empty()) targets.push_back(ResolveHost(state.connection, env));
  std::vector<HostResources> out;
  int code = kExitOk;
  for (const std::string& host : targets) {
    HostResources h;
    h.host = host;
    auto c = Connect(state.connection, env, host);
    if (!c.ok()) {
      h.error = std::string(c.status().message());
      if (code == kExitOk) code = ExitCodeFor(static_cast<grpc::StatusCode>(c.status().code()));
    } else {
      auto stub = v1::Host::NewStub(c->channel);
      auto cc = MakeContext(*c);
      grpc::Status s = stub->GetResources(cc.get(), v1::GetResourcesRequest(), &h.resources);
      if (!s.ok()) {
        h.error = DescribeError(s, *c);
        if (code == kExitOk) code = ExitCodeFor(s.error_code());
      }
    }
    out.push_back(std::move(h));
  }
  if (state.json) {
    std::printf("%s\n", ResourcesToJson(out).c_str());
    for (const auto& h : out) {
      if (auto w = ProtocolMismatchWarning(h)) std::fprintf(stderr, "warning: %s\n", w->c_str());
    }
    return code;
  }
  if (out.size() == 1 && !out[0].error.empty()) {
    std::fprintf(stderr, "error: %s\n", out[0].error.c_str());
    return code;
  }
  std::printf("%s", FormatResourcesTable(out).c_str());
  if (const std::string r = FormatReservationsTable(out, absl::Now()); !r.empty()) {
    std::printf("\n%s", r.c_str());
  }
  for (const auto& h : out) {
    if (!h.error.empty()) std::fprintf(stderr, "%s: %s\n", h.host.c_str(), h.error.c_str());
    if (auto w = ProtocolMismatchWarning(h)) std::fprintf(stderr, "warning: %s\n", w->c_str());
  }
  return code;
}

// `set JOB KEY=VALUE...` -> UpdateHyperparameters with a field mask.
int RunSet(const RemoteCommands& state) {
  auto name = NormaliseJobName(state.job);
  if (!name.ok()) return ReportError(name.status());
  v1::UpdateHyperparametersRequest req;
  req.set_name(*name);
  if (absl::Status p = ParseSetArguments(state.key_values, &req); !p.ok()) return ReportError(p);
  auto ctx = Open(state);
  if (!ctx.ok()) return ReportError(ctx.status());
  auto stub = v1::Trainer::NewStub(ctx->connection.channel);
  v1::Hyperparameters out;
  auto cc = MakeContext(ctx->connection);
  grpc::Status s = stub->UpdateHyperparameters(cc.get(), req, &out);
  if (!s.ok()) return ReportError(s, ctx->connection);
  if (state.json) {
    std::printf("%s\n", ProtoToJson(out).c_str());
    return kExitOk;
  }
  std::printf("%s at step %lld: %s\n  schedules: %s\n", name->c_str(),
              static_cast<long long>(out.step()), FormatHyperparameters(out).c_str(),
              FormatSchedules(out).c_str());
  return kExitOk;
}

// `params JOB`: the live hyper-parameters and the model's parameter tensors.
int RunParams(const RemoteCommands& state) {
  auto name = NormaliseJobName(state.job);
  if (!name.ok()) return ReportError(name.status());
  auto ctx = Open(state);
  if (!ctx.ok()) return ReportError(ctx.status());
  auto trainer = v1::Trainer::NewStub(ctx->connection.channel);
  auto model = v1::Model::NewStub(ctx->connection.channel);
  v1::GetHyperparametersRequest hreq;
  hreq.set_name(*name);
  v1::Hyperparameters h;
  auto c1 = MakeContext(ctx->connection);
  grpc::Status s = trainer->GetHyperparameters(c1.get(), hreq, &h);
  if (!s.ok()) return ReportError(s, ctx->connection);
  v1::ListParametersRequest preq;
  preq.set_name(*name);
  v1::ListParametersResponse ps;
  auto c2 = MakeContext(ctx->connection);
  s = model->ListParameters(c2.get(), preq, &ps);
  if (!s.ok()) return ReportError(s, ctx->connection);
  if (state.json) {
    std::printf("{\"hyperparameters\":%s,\"parameters\":%s}\n", ProtoToJson(h).c_str(),
                ProtoToJson(ps).c_str());
    return kExitOk;
  }
  std::printf("%s at step %lld\n  %s\n  schedules: %s\n", name->c_str(),
              static_cast<long long>(h.step()), FormatHyperparameters(h).c_str(),
              FormatSchedules(h).c_str());
  std::printf("%-24s %-20s %s\n", "PARAMETER", "SHAPE", "TRAINABLE");
  for (const auto& p : ps.parameters()) {
    std::printf("%-24s %-20s %s\n", (p.node() + "/" + p.param()).c_str(),
                ("(" + absl::StrJoin(p.shape(), ",") + ")").c_str(), p.trainable() ? "yes" : "no");
  }
  return kExitOk;
}

// `stats JOB [--gradients|--activations]`: mean, std, median |x| per tensor.
int RunStats(const RemoteCommands& state) {
  auto name = NormaliseJobName(state.job);
  if (!name.ok()) return ReportError(name.status());
  auto ctx = Open(state);
  if (!ctx.ok()) return ReportError(ctx.status());
  auto model = v1::Model::NewStub(ctx->connection.channel);
  v1::GetStatisticsRequest req;
  req.set_name(*name);
  req.set_kind(state.stats_kind == "gradients"     ? v1::GRADIENTS
               : state.stats_kind == "activations" ? v1::ACTIVATIONS
                                                   : v1::PARAMETERS);
  v1::Statistics st;
  auto cc = MakeContext(ctx->connection);
  grpc::Status s = model->GetStatistics(cc.get(), req, &st);
  if (!s.ok()) return ReportError(s, ctx->connection);
  if (state.json) {
    std::printf("%s\n", ProtoToJson(st).c_str());
    return kExitOk;
  }
  std::printf("%s %s at step %lld\n", name->c_str(), state.stats_kind.c_str(),
              static_cast<long long>(st.step()));
  for (const auto& t : st.tensors()) {
    std::printf("%-24s (%s)  mean=%+.3e  std=%.3e  median|x|=%.3e%s\n", t.name().c_str(),
                absl::StrJoin(t.shape(), ",").c_str(), t.mean(), t.std(), t.median_abs(),
                t.non_finite() ? absl::StrFormat("  non-finite=%d", t.non_finite()).c_str() : "");
  }
  return kExitOk;
}

// `export JOB [-o FILE]`: the live model as an HDF5 model file.
int RunExport(const RemoteCommands& state) {
  auto name = NormaliseJobName(state.job);
  if (!name.ok()) return ReportError(name.status());
  auto ctx = Open(state);
  if (!ctx.ok()) return ReportError(ctx.status());
  auto model = v1::Model::NewStub(ctx->connection.channel);
  v1::ExportModelRequest req;
  req.set_name(*name);
  grpc::ClientContext cc;
  cc.AddMetadata("authorization", "Bearer " + ctx->connection.token);
  auto reader = model->ExportModel(&cc, req);
  std::string out_path =
      state.output.empty() ? std::string(absl::StripPrefix(*name, "jobs/")) + ".h5" : state.output;
  const std::string tmp = out_path + ".part";
  std::ofstream out(tmp, std::ios::binary);
  if (!out) return ReportError(absl::UnavailableError("cannot write '" + tmp + "'"));
  v1::FileChunk chunk;
  int64_t written = 0;
  while (reader->Read(&chunk)) {
    out.write(chunk.data().data(), static_cast<std::streamsize>(chunk.data().size()));
    written += static_cast<int64_t>(chunk.data().size());
  }
  out.close();
  grpc::Status s = reader->Finish();
  if (!s.ok()) {
    std::remove(tmp.c_str());
    return ReportError(s, ctx->connection);
  }
  if (std::rename(tmp.c_str(), out_path.c_str()) != 0) {
    return ReportError(absl::UnavailableError("cannot rename '" + tmp + "'"));
  }
  std::printf("%s (%lld bytes)\n", out_path.c_str(), static_cast<long long>(written));
  return kExitOk;
}

void AddConnectionOptions(CLI::App* sub, RemoteCommands* s) {
  auto* g = sub->add_option_group("connection", "how to reach elektronnd");
  g->add_option("--host", s->connection.host,
                "daemon address: HOST:PORT or unix:/path (default $ELEKTRONN_HOST, else " +
                    std::string(kDefaultHost) + ")");
  g->add_option("--token", s->connection.token,
                "bearer token (default $ELEKTRONN_TOKEN, else the token file)");
  g->add_option("--token-file", s->connection.token_file,
                "file holding the token (default ~/.local/state/elektronnd/token; the daemon "
                "writes <state-dir>/token)");
  g->add_option("--tls-ca", s->connection.tls_ca,
                "PEM file of the CA that signed the daemon's certificate: use TLS (required for "
                "non-loopback hosts)");
  g->add_flag("--insecure", s->connection.insecure,
              "allow plaintext to a non-loopback host (the token travels unencrypted)");
  g->add_option("--timeout", s->connection.timeout_s, "seconds before a request gives up")
      ->capture_default_str();
}

}  // namespace

absl::StatusOr<v1::JobSpec> RemotePredictionSpec(const PredictionFlags& flags) {
  if (flags.no_resume) {
    return absl::InvalidArgumentError(
        "--no-resume is for local runs: a prediction job always continues its own output "
        "(after pause, resume or a restart); choose a new OUTPUT instead");
  }
  ASSIGN_OR_RETURN(v1::JobSpec spec, PredictionJobSpec(flags));
  const std::string& model = flags.model;
  const bool job_like = absl::StartsWith(model, "jobs/") ||
                        (!model.empty() && std::all_of(model.begin(), model.end(), [](char c) {
                          return c >= '0' && c <= '9';
                        }));
  if (job_like) {
    ASSIGN_OR_RETURN(std::string name, NormaliseJobName(model));
    spec.mutable_prediction()->set_model(name);
  }
  return spec;
}

absl::StatusOr<bool> PredictRunsLocally(const RemoteCommands& state) {
  for (const auto& [name, sub] : state.commands) {
    if (name != "predict" || !sub->parsed()) continue;
    if (!state.connection.host.empty()) return false;
    for (const char* remote_only : {"--follow", "--json", "--request-id", "--token", "--token-file",
                                    "--tls-ca", "--insecure", "--timeout"}) {
      if (sub->count(remote_only) > 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(remote_only,
                         " is for a prediction job on a daemon: add --host HOST (without it, "
                         "predict runs here)"));
      }
    }
    return true;
  }
  return false;
}

// ---- Registration ----

void AddRemoteCommands(CLI::App& app, RemoteCommands* s) {
  auto add = [&](const std::string& name, const std::string& help) {
    CLI::App* sub = app.add_subcommand(name, help);
    s->commands.emplace_back(name, sub);
    AddConnectionOptions(sub, s);
    return sub;
  };
  const std::string job_help = "the job: jobs/000007, or just 7";
  const std::string json_help = "print JSON for scripts instead of a table";

  auto* submit = add("submit",
                     "run a Lua job file here and submit its spec to elektronnd (the daemon never "
                     "runs Lua); prints the job name");
  submit->add_option("job", s->job_file, "the Lua job file")->required()->check(CLI::ExistingFile);
  submit->add_option("--request-id", s->request_id,
                     "idempotency key: resubmitting with the same ID returns the same job "
                     "(default: random)");
  submit->add_option("--set", s->overrides,
                     "override a training key, e.g. --set n_steps=500 --set lr=1e-4 (repeatable)");
  // The job's resources, for submit and spec alike.
  auto add_resource_options = [s](CLI::App* sub) {
    sub->add_option("--precision", s->precision,
                    "arithmetic of convolutions, matrix products and pooling: fp32, or bf16 "
                    "(mixed precision, on CPUs with AVX512_BF16; `elektronn hosts` marks them); "
                    "overrides the job file's `precision`")
        ->check(CLI::IsMember({"fp32", "bf16"}));
    sub->add_option("--device", s->device,
                    "compute device: cpu (default) or cuda:N, NVML's GPU N on the daemon's host "
                    "(`elektronn hosts` lists them; a GPU runs one job at a time)")
        ->check([](const std::string& d) -> std::string {
          int n = 0;
          if (d == "cpu" ||
              (absl::StartsWith(d, "cuda:") && absl::SimpleAtoi(d.substr(5), &n) && n >= 0)) {
            return "";
          }
          return "'" + d + "' is not a device: cpu or cuda:N";
        });
    sub->add_flag("--tf32", s->tf32, "CUDA: allow TF32 tensor cores (default: full FP32)");
    sub->add_flag("--deterministic", s->deterministic,
                  "CUDA: deterministic cuDNN algorithms only (reproducible, maybe slower)");
  };
  add_resource_options(submit);
  submit->add_flag("--follow,-f", s->follow, "then watch the job like `elektronn watch`");
  submit->add_flag("--json", s->json,
                   "print the created job as JSON (with -f: events as JSON lines)");
  // No daemon involved, so no connection options.
  auto* spec = app.add_subcommand("spec",
                                  "run a Lua job file here and write the JobSpec that submit "
                                  "would send, as binary protobuf (for clients such as Python)");
  s->commands.emplace_back("spec", spec);
  spec->add_option("job", s->job_file, "the Lua job file")->required()->check(CLI::ExistingFile);
  spec->add_option("--set", s->overrides, "override a training key, as for submit (repeatable)");
  add_resource_options(spec);
  spec->add_option("-o,--output", s->output, "file to write (default: standard output)");

  auto* predict =
      add("predict",
          "dense prediction of a volume with a trained model: here (runs elektronn-worker "
          "predict), or with --host as a prediction job on that daemon (prints the job name)");
  AddPredictionFlags(predict, &s->prediction);
  predict->add_option("--request-id", s->request_id,
                      "with --host: idempotency key, as for submit (default: random)");
  predict->add_flag("--follow,-f", s->follow, "with --host: then watch the job");
  predict->add_flag("--json", s->json,
                    "with --host: print the created job as JSON (with -f: events as JSON lines)");
  predict->footer(PredictionHelpFooter());

  auto* ls = add("ls", "list jobs: NAME, STATE, PROGRESS, LOSS, UPDATED");
  ls->add_flag("--json", s->json,
               "print {\"jobs\": [...]} (proto JSON; without each spec's model and source)");
  ls->add_option("--page-size", s->page_size, "jobs per request (all pages are fetched)")
      ->capture_default_str();

  auto* status = add("status", "show one job in detail");
  status->add_option("job", s->job, job_help)->required();
  status->add_flag("--json", s->json, "print the job as proto JSON");

  auto* watch = add("watch",
                    "follow a job until it ends: a live status line with a progress bar; exit 0 "
                    "if SUCCEEDED, 1 if FAILED, 4 if CANCELLED");
  watch->add_option("job", s->job, job_help)->required();
  watch->add_flag("--json", s->json, "print every event as one JSON line");

  auto* logs = add("logs", "print a job's log lines");
  logs->add_option("job", s->job, job_help)->required();
  logs->add_flag("--follow,-f", s->follow, "keep printing new lines until the job ends");
  logs->add_flag("--json", s->json, "print log events as JSON lines");

  for (const auto& [verb, help] : std::vector<std::pair<std::string, std::string>>{
           {"pause", "checkpoint a running job and stop it at the next step boundary"},
           {"resume", "restart a paused job from its checkpoint"},
           {"cancel", "stop a job for good"}}) {
    auto* sub = add(verb, help + "; prints the job's new state");
    sub->add_option("job", s->job, job_help)->required();
    sub->add_flag("--json", s->json, "print the job as JSON");
  }

  auto* set =
      add("set", absl::StrCat("change hyper-parameters or schedules of a running job at its "
                              "next step boundary, e.g. set 7 lr=1e-4 mom=0.95 "
                              "'schedule.lr={dec=0.99}' (",
                              HyperparameterNameList(), ")"));
  set->add_option("job", s->job, job_help)->required();
  set->add_option("key_values", s->key_values,
                  "KEY=VALUE pairs; schedule.KEY={dec=f} | {lindec={n, v0}} | "
                  "{updates={{step, v}, ...}} (optionally granularity=steps), or none")
      ->required();
  set->add_flag("--json", s->json, "print the new hyper-parameters as proto JSON");
  auto* params = add("params", "show a running job's hyper-parameters and parameter tensors");
  params->add_option("job", s->job, job_help)->required();
  params->add_flag("--json", s->json, json_help);
  auto* stats = add("stats",
                    "mean, std and median |x| of a running job's parameters, "
                    "gradients or activations");
  stats->add_option("job", s->job, job_help)->required();
  stats->add_option("--of", s->stats_kind, "parameters, gradients or activations")
      ->check(CLI::IsMember({"parameters", "gradients", "activations"}))
      ->capture_default_str();
  stats->add_flag("--json", s->json, json_help);
  auto* exp = add("export", "download a running job's model (HDF5, with optimiser state)");
  exp->add_option("job", s->job, job_help)->required();
  exp->add_option("-o,--output", s->output, "file to write (default: <id>.h5)");

  auto* shell = add("shell",
                    "open an interactive shell in a running job: training pauses at "
                    "the next step boundary until q (unless --live); shortcuts and Lua");
  shell->add_option("job", s->job, job_help)->required();
  shell->add_flag("--live", s->live, "keep training while the shell is open");

  auto* hosts = add("hosts",
                    "show the resources of one or more daemons: CPUs, load, RAM, disk, "
                    "GPUs, running jobs");
  hosts->add_option("hosts", s->hosts,
                    "daemon addresses (default: --host); all use the same token and TLS options");
  hosts->add_flag("--json", s->json, "print {\"hosts\": [{\"host\", \"resources\" | \"error\"}]}");
}

std::optional<int> RunRemoteCommands(const RemoteCommands& state) {
  for (const auto& [name, sub] : state.commands) {
    if (!sub->parsed()) continue;
    if (name == "submit") return RunSubmit(state);
    if (name == "spec") return RunSpec(state);
    if (name == "predict") return RunPredict(state);
    if (name == "ls") return RunList(state);
    if (name == "status") return RunStatus(state);
    if (name == "watch") return RunWatch(state, WatchMode::kStatus, true);
    if (name == "logs") return RunWatch(state, WatchMode::kLogs, state.follow);
    if (name == "pause" || name == "resume" || name == "cancel") {
      return RunStateChange(state, name);
    }
    if (name == "hosts") return RunHosts(state);
    if (name == "shell") {
      auto job = NormaliseJobName(state.job);
      if (!job.ok()) return ReportError(job.status());
      auto ctx = Open(state);
      if (!ctx.ok()) return ReportError(ctx.status());
      ShellClientOptions o;
      o.job = *job;
      o.live = state.live;
      return RunShell(ctx->connection, o);
    }
    if (name == "set") return RunSet(state);
    if (name == "params") return RunParams(state);
    if (name == "stats") return RunStats(state);
    if (name == "export") return RunExport(state);
  }
  return std::nullopt;
}

}  // namespace elektronn
