// elektronn-worker: the job process. Trains one job (a Lua file, or the JobSpec elektronnd
// hands it), serves the job's Trainer, Model and Shell services on its control socket, and
// reports progress to the daemon as protobuf events; `elektronn train` runs it too. `predict`
// (worker/predict_command.cc) applies a model densely to a volume, locally or as a daemon's job.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_join.h"
#include "engine/data/demo_data.h"
#include "engine/io/data_path.h"
#include "engine/io/one_step_file.h"
#include "engine/lua/job_file.h"
#include "engine/predict/slice_png.h"
#include "engine/trainer/trainer.h"
#include "kernels/backend.h"
#include "rpc/version.h"
#include "worker/event_channel.h"
#include "worker/local_shell.h"
#include "worker/predict_command.h"
#include "worker/profile_command.h"
#include "worker/worker_control.h"

namespace {

std::atomic<elektronn::Trainer*> g_trainer{nullptr};
std::atomic<int> g_interrupts{0};
std::atomic<bool> g_interactive{false};
std::atomic<bool> g_shell_requested{false};

void OnInterrupt(int sig) {
  if (sig == SIGINT && g_interactive.load() && !g_shell_requested.exchange(true)) {
    static const char msg[] = "\nInterrupted: the shell opens at the next step boundary\n";
    (void)!write(2, msg, sizeof(msg) - 1);
    return;
  }
  if (g_interrupts.fetch_add(1) > 0) {
    std::signal(SIGINT, SIG_DFL);
    std::raise(SIGINT);
    return;
  }
  if (elektronn::Trainer* t = g_trainer.load()) t->RequestStop();
  static const char msg[] =
      "\nInterrupted: saving a checkpoint at the next step boundary (Ctrl-C again to abort)\n";
  (void)!write(2, msg, sizeof(msg) - 1);
}

// The channel to elektronnd (--event-fd); without one, Send does nothing.
std::unique_ptr<elektronn::EventChannel> g_events;

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
  if (g_events) {
    elektronn::v1::WorkerEvent ev;
    ev.mutable_error()->set_message(std::string(s.message()));
    ev.mutable_error()->set_code(static_cast<int>(s.code()));
    g_events->Send(ev);
  }
  return s.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace elektronn;
  CLI::App app{
      "elektronn-worker: the process that trains (or predicts with) one job. elektronnd starts\n"
      "it for each job; `elektronn train`, `elektronn predict` and `elektronn make-demo-data`\n"
      "run it for you."};
  app.require_subcommand(1);
  app.set_version_flag("--version", VersionText("elektronn-worker"));

  // train
  auto* train =
      app.add_subcommand("train", "train a job file locally, in <save_path>/<save_name>/");
  std::string job_path;
  bool overwrite = false, resume = false;
  double status_interval = 1.0;
  std::string spec_path, data_dir;
  auto* job_opt =
      train->add_option("job", job_path, "the Lua job file (e.g. examples/neuro3d_lite.lua)")
          ->check(CLI::ExistingFile);
  auto* spec_opt = train
                       ->add_option("--job-spec", spec_path,
                                    "a serialised JobSpec instead of a Lua file (used by "
                                    "elektronnd's workers)")
                       ->check(CLI::ExistingFile);
  job_opt->excludes(spec_opt);
  std::string control_socket;
  train->add_option("--control-socket", control_socket,
                    "serve the Trainer and Model services on this Unix socket (elektronnd "
                    "forwards a job's calls there)");
  train->add_option("--data-dir", data_dir,
                    "data directory: the job's data paths resolve against it and may not "
                    "leave it (elektronnd passes its --data-dir; default: the job file's "
                    "directory, unconfined, or with --job-spec the working directory, "
                    "confined)");
  train->add_flag("--overwrite", overwrite, "replace an existing training directory");
  train->add_flag("--resume", resume, "continue the training directory from its -LAST checkpoint");
  bool no_shell = false;
  train->add_flag("--no-shell", no_shell,
                  "Ctrl-C saves and exits instead of opening the shell (the default off a "
                  "terminal)");
  std::string precision;
  train
      ->add_option("--precision", precision,
                   "arithmetic of convolutions, matrix products and pooling: fp32, or bf16 "
                   "(mixed precision, on CPUs with AVX512_BF16); overrides the job file's "
                   "`precision`")
      ->check(CLI::IsMember({"fp32", "bf16"}));
  std::vector<std::string> overrides;
  std::string device;
  bool tf32 = false, deterministic = false;
  train->add_option("--device", device,
                    "compute device, cpu or cuda:N (overrides the job's resources.device)");
  train->add_flag("--tf32", tf32, "CUDA: allow TF32 tensor cores (default: full FP32)");
  train->add_flag("--deterministic", deterministic,
                  "CUDA: deterministic cuDNN algorithms only (reproducible, maybe slower)");
  train->add_option("--set", overrides,
                    "override a training key, e.g. --set n_steps=500 --set lr=1e-4 (repeatable)");
  int event_fd = -1;
  train->add_option("--event-fd", event_fd,
                    "write progress, checkpoints, hyper-parameters and errors to this file "
                    "descriptor as length-delimited elektronn.v1.WorkerEvent messages (elektronnd "
                    "reads them)");
  train
      ->add_option("--status-interval", status_interval,
                   "seconds between progress lines (0: every step)")
      ->capture_default_str();

  // make-demo-data
  auto* demo = app.add_subcommand("make-demo-data",
                                  "write an EM-like training set (HDF5 raw/label cubes + preview)");
  std::string demo_dir;
  uint64_t demo_seed = 1;
  demo->add_option("dir", demo_dir, "output directory (created)")->required();
  demo->add_option("--seed", demo_seed, "random seed")->capture_default_str();

  // render-slice
  auto* render = app.add_subcommand(
      "render-slice", "write one z slice of a volume and its prediction side by side as a PNG");
  std::string render_raw, render_pred, render_png;
  SlicePngOptions render_options;
  render->add_option("raw", render_raw, "the input volume, e.g. data/raw_0.h5:/raw")->required();
  render->add_option("prediction", render_pred, "its prediction, e.g. pred.zarr")->required();
  render->add_option("png", render_png, "the PNG to write")->required();
  render->add_option("--z", render_options.z, "output slice (default: the middle one)");
  render->add_option("--channel", render_options.channel,
                     "output channel (default: the last, the boundary class of a 2-class net)");

  // one-step (engine/io/one_step_file.h): ELEKTRONN2's rebuild_rnn on a model file
  auto* one_step = app.add_subcommand(
      "one-step",
      "write the one-step model of a saved recurrent model (the Scan's step graph, its memories "
      "and the step input as inputs; ELEKTRONN2's rebuild_rnn)");
  std::string one_step_in, one_step_out;
  one_step->add_option("model", one_step_in, "a model file with one Scan node")
      ->required()
      ->check(CLI::ExistingFile);
  one_step->add_option("out", one_step_out, "the model file to write")->required();

  // predict (worker/predict_command.cc)
  PredictCommand predict;
  AddPredictCommand(app, &predict);

  // profile (worker/profile_command.cc)
  ProfileCommand profile;
  AddProfileCommand(app, &profile);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  if (*predict.app) {
    std::vector<std::string> args;
    bool after = false;
    for (int i = 1; i < argc; ++i) {
      if (after) args.emplace_back(argv[i]);
      after = after || std::string_view(argv[i]) == "predict";
    }
    return RunPredictCommand(predict, args);
  }
  if (*profile.app) return RunProfileCommand(profile);
  if (*one_step) {
    auto backend = kernels::CreateCpuBackend();
    auto report = WriteOneStepModelFile(one_step_in, one_step_out, backend.get());
    if (!report.ok()) return Fail(report.status());
    std::printf("%s: one-step model, inputs %s\n", one_step_out.c_str(),
                absl::StrJoin(report->inputs, ", ").c_str());
    if (!report->dropped_params.empty()) {
      std::printf("not in it (an initial memory is fed as that memory's input instead): %s\n",
                  absl::StrJoin(report->dropped_params, ", ").c_str());
    }
    return 0;
  }
  if (*render) {
    absl::StatusOr<SlicePngInfo> info =
        RenderSlicePng(render_raw, render_pred, render_png, render_options);
    if (!info.ok()) return Fail(info.status());
    std::printf("%s: slice z=%lld, channel %lld, raw | prediction, %dx%d\n", render_png.c_str(),
                static_cast<long long>(info->z), static_cast<long long>(info->channel), info->width,
                info->height);
    return 0;
  }
  if (*demo) {
    DemoDataOptions o;
    o.seed = demo_seed;
    absl::Status s = MakeDemoData(demo_dir, o);
    if (!s.ok()) return Fail(s);
    std::printf("demo data written to %s\n", demo_dir.c_str());
    return 0;
  }
  if (*train) {
    if (event_fd >= 0) g_events = std::make_unique<EventChannel>(event_fd);
    if (job_path.empty() && spec_path.empty()) {
      return Fail(absl::InvalidArgumentError("train needs a job file (or --job-spec)"));
    }
    absl::StatusOr<v1::JobSpec> job;
    if (!spec_path.empty()) {
      std::ifstream in(spec_path, std::ios::binary);
      v1::JobSpec parsed;
      if (!parsed.ParseFromIstream(&in)) {
        return Fail(absl::InvalidArgumentError("'" + spec_path + "' is not a serialised JobSpec"));
      }
      job = std::move(parsed);
    } else {
      job = LoadJobFile(job_path);
    }
    if (!job.ok()) return Fail(job.status());
    for (const std::string& kv : overrides) {
      absl::Status s = ApplyTrainingOverride(kv, job->mutable_training());
      if (!s.ok()) return Fail(s);
    }
    if (!precision.empty()) job->mutable_resources()->set_precision(precision);
    TrainerOptions o;
    o.job_dir = !data_dir.empty()   ? data_dir
                : !job_path.empty() ? std::filesystem::absolute(job_path).parent_path().string()
                                    : std::filesystem::current_path().string();
    // A daemon's job (or an explicit --data-dir) reads only inside its data directory: checked
    // again here, whatever the daemon checked, and rewritten to the resolved paths it opens.
    if (!spec_path.empty() || !data_dir.empty()) {
      if (absl::Status s = ConfineJobDataPaths(&*job, o.job_dir); !s.ok()) return Fail(s);
    }
    if (!device.empty()) job->mutable_resources()->set_device(device);
    if (tf32) job->mutable_resources()->set_allow_tf32(true);
    if (deterministic) job->mutable_resources()->set_deterministic(true);
    auto backend = kernels::CreateBackend(
        {.device = job->resources().device().empty() ? "cpu" : job->resources().device(),
         .threads = job->resources().cpu_threads(),
         .allow_tf32 = job->resources().allow_tf32(),
         .deterministic = job->resources().deterministic()});
    if (!backend.ok()) return Fail(backend.status());
    o.overwrite = overwrite;
    o.resume = resume;
    if (job->has_start_at()) {
      o.start_at_unix_s = job->start_at().seconds() + job->start_at().nanos() * 1e-9;
    }
    o.status_interval_s = status_interval;
    // The console format is free to change: elektronnd reads state from the event channel.
    if (const char* p = std::getenv("ELEKTRONN_LOG_PATTERN"); p != nullptr && *p != '\0') {
      o.console_pattern = p;
    }
    // Events may fire inside Create (none do today) and on every later step: the callback reads
    // the trainer through this pointer, set once Create returns.
    static Trainer* created = nullptr;
    if (g_events) o.on_event = g_events->TrainerCallback(&created);
    auto trainer = Trainer::Create(*job, backend->get(), o);
    if (trainer.ok()) created = trainer->get();
    if (!trainer.ok()) return Fail(trainer.status());
    std::unique_ptr<WorkerControl> control;
    if (!control_socket.empty()) {
      auto c = WorkerControl::Start(trainer->get(), control_socket);
      if (!c.ok()) return Fail(c.status());
      control = *std::move(c);
    }
    g_trainer.store(trainer->get());
    // On a terminal (and not as a daemon's worker) Ctrl-C and a NaN loss open the shell.
    g_interactive = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO) && control_socket.empty() &&
                    spec_path.empty() && !no_shell;
    std::signal(SIGINT, OnInterrupt);
    std::signal(SIGTERM, OnInterrupt);
    std::atomic<bool> running{true};
    std::thread shell_watcher([&] {
      while (running.load()) {
        if (g_shell_requested.load()) {
          (void)(*trainer)->AtStepBoundary([](Trainer& t) {
            if (RunLocalShell(
                    t, "Training paused at step " + std::to_string(t.step()) + " (Ctrl-C).")) {
              t.RequestStop();
            }
            return absl::OkStatus();
          });
          g_shell_requested = false;
          g_interrupts = 0;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    });
    absl::StatusOr<StopReason> reason;
    while (true) {
      reason = (*trainer)->Run();
      if (reason.ok() || reason.status().code() != absl::StatusCode::kDataLoss ||
          !g_interactive.load()) {
        break;
      }
      // NaN: the last good state is back in place; inspect and fix, then q trains on.
      if (RunLocalShell(**trainer, std::string(reason.status().message()) +
                                       "\nThe last good state is restored. q continues "
                                       "training from it, kill stops.")) {
        break;
      }
    }
    running = false;
    shell_watcher.join();
    g_trainer.store(nullptr);
    if (!reason.ok()) return Fail(reason.status());
    if (*reason == StopReason::kRequested) {
      std::fprintf(stderr, "stopped at step %lld; continue with: elektronn train %s --resume\n",
                   static_cast<long long>((*trainer)->step()),
                   job_path.empty() ? ("--job-spec " + spec_path).c_str() : job_path.c_str());
      return 130;
    }
    return 0;
  }
  return 0;
}
