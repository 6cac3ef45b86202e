// `elektronn-worker predict`: options -> PredictionSpec -> PredictOptions, the backend, signals
// that stop at a durable chunk, a progress line for people and typed progress for elektronnd.
#include "worker/predict_command.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "engine/io/data_path.h"
#include "kernels/backend.h"
#include "worker/event_channel.h"

namespace elektronn {
namespace {

std::atomic<bool> g_stop{false};

void OnStopSignal(int sig) {
  if (g_stop.exchange(true)) {
    // A second signal: stop now. Every chunk already marked done stays done.
    std::signal(sig, SIG_DFL);
    std::raise(sig);
    return;
  }
  static const char msg[] =
      "\nStopping once the output chunks in flight are written (again to stop at once)\n";
  (void)!write(2, msg, sizeof(msg) - 1);
}

std::string ShellQuote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                        "0123456789_-.,/:=+@%") == std::string::npos) {
    return s;
  }
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// The progress of one run: a redrawn line on a terminal, a plain line every 10 s otherwise, and
// a typed event for elektronnd every `event_interval_s`. Called from the predictor's writer
// thread; the first and the final state are always shown and sent.
class ProgressReporter {
 public:
  ProgressReporter(EventChannel* events, double event_interval_s)
      : events_(events),
        event_interval_(event_interval_s),
        tty_(isatty(STDERR_FILENO) != 0 && events == nullptr) {}

  void Update(const PredictProgress& p) {
    absl::MutexLock lock(&mu_);
    last_ = ToProgressMessage(p);
    const auto now = Clock::now();
    const bool final = p.chunks_total > 0 && p.chunks_done >= p.chunks_total;
    const bool first = !shown_;
    if (events_ != nullptr && (first || final || Seconds(now - last_event_) >= event_interval_)) {
      v1::WorkerEvent ev;
      *ev.mutable_prediction() = last_;
      events_->Send(ev);
      last_event_ = now;
      unsent_ = false;
    } else {
      unsent_ = true;
    }
    if (first && p.chunks_done > 0) {
      std::fprintf(stderr, "Resuming: %lld of %lld chunks done by an earlier run\n",
                   static_cast<long long>(p.chunks_done), static_cast<long long>(p.chunks_total));
    }
    const double gap = tty_ ? 0.2 : 10.0;
    if (first || final || Seconds(now - last_line_) >= gap) {
      const std::string line = FormatPredictionProgress(last_);
      if (tty_) {
        std::fprintf(stderr, "\r\033[K%s", line.c_str());
        line_open_ = true;
      } else {
        std::fprintf(stderr, "%s\n", line.c_str());
      }
      std::fflush(stderr);
      last_line_ = now;
      shown_ = true;
    }
  }

  // Sends the last progress if the interval held it back (a stopped run's last chunks), and
  // ends the redrawn line, so what follows starts on its own line.
  void Finish() {
    absl::MutexLock lock(&mu_);
    if (events_ != nullptr && unsent_) {
      v1::WorkerEvent ev;
      *ev.mutable_prediction() = last_;
      events_->Send(ev);
      unsent_ = false;
    }
    if (line_open_) std::fprintf(stderr, "\n");
    line_open_ = false;
  }

  v1::PredictionProgress last() {
    absl::MutexLock lock(&mu_);
    return last_;
  }

 private:
  using Clock = std::chrono::steady_clock;
  static double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

  absl::Mutex mu_;
  EventChannel* events_;
  const double event_interval_;
  const bool tty_;
  v1::PredictionProgress last_ ABSL_GUARDED_BY(mu_);
  Clock::time_point last_event_ ABSL_GUARDED_BY(mu_){}, last_line_ ABSL_GUARDED_BY(mu_){};
  bool shown_ ABSL_GUARDED_BY(mu_) = false;
  bool line_open_ ABSL_GUARDED_BY(mu_) = false;
  bool unsent_ ABSL_GUARDED_BY(mu_) = false;  // last_ has not been sent
};

// The JobSpec of this run: read from --job-spec (elektronnd's workers), else built from the
// command line; its paths confined to the data directory when one applies.
absl::StatusOr<v1::JobSpec> LoadSpec(const PredictCommand& c) {
  v1::JobSpec job;
  if (!c.spec_path.empty()) {
    std::ifstream in(c.spec_path, std::ios::binary);
    if (!in || !job.ParseFromIstream(&in)) {
      return absl::InvalidArgumentError("'" + c.spec_path + "' is not a serialised JobSpec");
    }
    if (!job.has_prediction() || job.has_model() || job.has_training()) {
      return absl::InvalidArgumentError(
          "'" + c.spec_path +
          "' is not a prediction job: it needs job.prediction and no job.model or job.training");
    }
  } else {
    auto built = PredictionJobSpec(c.flags);
    if (!built.ok()) return built.status();
    job = *std::move(built);
    if (IsJobModelReference(job.prediction().model())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "MODEL '", job.prediction().model(),
          "' names a job of a daemon: add --host HOST to predict there, or fetch its model "
          "first with `elektronn export ",
          job.prediction().model().substr(5), " -o model.h5`"));
    }
  }
  // A daemon's job (or an explicit --data-dir) reads and writes only inside its data directory:
  // checked again here, whatever the daemon checked, and rewritten to the resolved paths.
  if (!c.spec_path.empty() || !c.data_dir.empty()) {
    const std::string dir =
        c.data_dir.empty() ? std::filesystem::current_path().string() : c.data_dir;
    if (absl::Status s = ConfineJobDataPaths(&job, dir); !s.ok()) return s;
  }
  v1::PredictionSpec* p = job.mutable_prediction();
  if (!c.model_file.empty()) {
    // Only elektronnd passes --model-file: its own copy of a training job's model, in the job's
    // directory (a file no client named). It stands for a "jobs/N" model only.
    if (c.spec_path.empty() || !IsJobModelReference(p->model())) {
      return absl::InvalidArgumentError(
          "--model-file is set by elektronnd for a job whose model is 'jobs/N'; pass the model "
          "file as MODEL instead");
    }
    p->set_model(c.model_file);
  } else if (IsJobModelReference(p->model())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "job.prediction.model is '", p->model(),
        "': a training job of elektronnd, which resolves it (run this job through the daemon)"));
  }
  return job;
}

void SendError(EventChannel* events, const absl::Status& s) {
  if (events == nullptr) return;
  v1::WorkerEvent ev;
  ev.mutable_error()->set_message(std::string(s.message()));
  ev.mutable_error()->set_code(static_cast<int>(s.code()));
  events->Send(ev);
}

int Fail(EventChannel* events, const absl::Status& s) {
  std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
  SendError(events, s);
  return s.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

std::string Zxy(const std::array<int64_t, 3>& a) { return absl::StrJoin(a, ","); }

}  // namespace

CLI::App* AddPredictCommand(CLI::App& app, PredictCommand* c) {
  CLI::App* sub = app.add_subcommand(
      "predict",
      "dense prediction: apply a trained model to a whole volume, tile by tile, into a chunked "
      "HDF5 or Zarr output that a stopped or killed run continues (`elektronn predict` runs "
      "this)");
  c->app = sub;
  AddPredictionFlags(sub, &c->flags, /*positionals_required=*/false);
  auto* spec = sub->add_option("--job-spec", c->spec_path,
                               "a serialised JobSpec with `prediction` instead of MODEL INPUT "
                               "OUTPUT and the options (used by elektronnd's workers)")
                   ->check(CLI::ExistingFile);
  sub->add_option("--data-dir", c->data_dir,
                  "data directory: MODEL, INPUT and OUTPUT resolve against it and may not leave "
                  "it (elektronnd passes its --data-dir; default: unconfined, or with --job-spec "
                  "the working directory)");
  sub->add_option("--model-file", c->model_file,
                  "with --job-spec whose model is 'jobs/N': the daemon's copy of that job's "
                  "model (set by elektronnd only)")
      ->needs(spec);
  sub->add_option("--event-fd", c->event_fd,
                  "write progress and errors to this file descriptor as length-delimited "
                  "elektronn.v1.WorkerEvent messages (elektronnd reads them)");
  sub->add_option("--status-interval", c->status_interval_s,
                  "seconds between progress events on --event-fd")
      ->capture_default_str();
  sub->footer(PredictionHelpFooter());
  return sub;
}

absl::StatusOr<PredictOptions> ToPredictOptions(const v1::PredictionSpec& spec,
                                                const v1::JobResources& resources) {
  PredictOptions o;
  o.model = spec.model();
  o.input = spec.input();
  o.output = spec.output();
  auto count = [](const std::string& field, int have, std::initializer_list<int> valid) {
    for (int v : valid) {
      if (have == v) return absl::OkStatus();
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "job.prediction.", field, " has ", have, " values; valid: ", absl::StrJoin(valid, " or ")));
  };
  if (auto s = count("patch", spec.patch_size(), {0, 3}); !s.ok()) return s;
  if (auto s = count("roi", spec.roi_size(), {0, 6}); !s.ok()) return s;
  if (auto s = count("chunk", spec.chunk_size(), {0, 3}); !s.ok()) return s;
  o.patch.assign(spec.patch().begin(), spec.patch().end());
  switch (spec.mfp()) {
    case v1::PredictionSpec::MFP_ON:
      o.mfp = PredictOptions::Mfp::kOn;
      break;
    case v1::PredictionSpec::MFP_OFF:
      o.mfp = PredictOptions::Mfp::kOff;
      break;
    default:
      o.mfp = PredictOptions::Mfp::kAuto;
      break;
  }
  switch (spec.pad()) {
    case v1::PredictionSpec::PAD_ZERO:
      o.pad = PadMode::kZero;
      break;
    case v1::PredictionSpec::PAD_NONE:
      o.pad = PadMode::kError;
      break;
    default:
      o.pad = PadMode::kMirror;
      break;
  }
  o.as_uint8 = spec.as_uint8();
  o.channels.assign(spec.channels().begin(), spec.channels().end());
  if (spec.roi_size() == 6) {
    o.roi = Box{.z0 = spec.roi(0),
                .x0 = spec.roi(1),
                .y0 = spec.roi(2),
                .dz = spec.roi(3),
                .dx = spec.roi(4),
                .dy = spec.roi(5)};
  }
  o.threads = resources.cpu_threads();
  auto precision = kernels::ParseDataType("job.resources.precision", resources.precision());
  if (!precision.ok()) return precision.status();
  o.precision = *precision;
  o.memory_limit = spec.memory_limit();
  if (spec.compression() == "zlib") {
    o.compression.kind = Compression::Kind::kZlib;
  } else if (spec.compression() == "blosc") {
    o.compression.kind = Compression::Kind::kBlosc;
  } else if (!spec.compression().empty() && spec.compression() != "none") {
    return absl::InvalidArgumentError(absl::StrCat(
        "job.prediction.compression is '", spec.compression(), "'; valid: none, zlib, blosc"));
  }
  for (int i = 0; i < spec.chunk_size(); ++i) o.chunk[i] = spec.chunk(i);
  return o;
}

v1::PredictionProgress ToProgressMessage(const PredictProgress& p) {
  v1::PredictionProgress m;
  m.set_voxels_done(p.voxels_done);
  m.set_voxels_total(p.voxels_total);
  m.set_chunks_done(p.chunks_done);
  m.set_chunks_total(p.chunks_total);
  m.set_voxels_per_second(p.voxels_per_s);
  m.set_eta_seconds(p.eta_s);
  return m;
}

int RunPredictCommand(const PredictCommand& c, const std::vector<std::string>& args) {
  std::unique_ptr<EventChannel> events;
  if (c.event_fd >= 0) events = std::make_unique<EventChannel>(c.event_fd);
  if (!c.spec_path.empty() &&
      (!c.flags.model.empty() || !c.flags.input.empty() || !c.flags.output.empty())) {
    return Fail(events.get(), absl::InvalidArgumentError(
                                  "give either --job-spec or MODEL INPUT OUTPUT, not both"));
  }
  auto job = LoadSpec(c);
  if (!job.ok()) return Fail(events.get(), job.status());
  auto options = ToPredictOptions(job->prediction(), job->resources());
  if (!options.ok()) return Fail(events.get(), options.status());
  // A daemon's job always continues its own output (pause/resume, restarts).
  options->resume = !c.flags.no_resume || !c.spec_path.empty();
  auto backend = kernels::CreateBackend(
      {.device = job->resources().device().empty() ? "cpu" : job->resources().device(),
       .threads = job->resources().cpu_threads(),
       .allow_tf32 = job->resources().allow_tf32()});
  if (!backend.ok()) return Fail(events.get(), backend.status());

  std::printf("Predicting %s with %s into %s (%s)\n", options->input.c_str(),
              options->model.c_str(), options->output.c_str(),
              kernels::DataTypeName(options->precision));
  std::fflush(stdout);
  g_stop = false;
  std::signal(SIGINT, OnStopSignal);
  std::signal(SIGTERM, OnStopSignal);
  ProgressReporter reporter(events.get(), c.status_interval_s);
  absl::StatusOr<PredictSummary> summary = PredictVolume(
      *options, backend->get(), [&](const PredictProgress& p) { reporter.Update(p); }, &g_stop);
  reporter.Finish();
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);

  if (!summary.ok() && g_stop.load() && summary.status().code() == absl::StatusCode::kCancelled) {
    const v1::PredictionProgress last = reporter.last();
    std::vector<std::string> again;
    for (const std::string& a : args) {
      if (a != "--no-resume") again.push_back(ShellQuote(a));
    }
    std::fprintf(
        stderr, "stopped with %lld of %lld output chunks written; the output is resumable.\n",
        static_cast<long long>(last.chunks_done()), static_cast<long long>(last.chunks_total()));
    if (c.spec_path.empty()) {
      std::fprintf(stderr, "continue with: elektronn predict %s\n",
                   absl::StrJoin(again, " ").c_str());
    } else {
      std::fprintf(stderr, "resuming the job continues it from there\n");
    }
    return 130;
  }
  if (!summary.ok()) return Fail(events.get(), summary.status());
  for (const std::string& note : summary->notes) std::printf("note: %s\n", note.c_str());
  std::printf(
      "Predicted %s %s into %s in %.1f s: patch %s%s, %lld chunks computed, %lld done by an "
      "earlier run; output voxel 0 is input voxel (%s)\n",
      summary->output_shape.ToString().c_str(), options->as_uint8 ? "uint8" : "float32",
      options->output.c_str(), summary->seconds, Zxy(summary->patch).c_str(),
      summary->mfp ? " with max-fragment-pooling" : "",
      static_cast<long long>(summary->chunks_computed),
      static_cast<long long>(summary->chunks_skipped), Zxy(summary->output_offset).c_str());
  return 0;
}

}  // namespace elektronn
