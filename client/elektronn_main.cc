// elektronn: the command-line client: check, submit and steer jobs on elektronnd (submit, ls,
// watch, shell, ...); `train`, `make-demo-data` and a local `predict` run in elektronn-worker,
// exec'd in place.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "client/remote_commands.h"
#include "engine/lua/job_file.h"
#include "engine/report/model_graph.h"
#include "engine/util/cnn_calculator.h"
#include "rpc/version.h"
#include "worker/locate.h"

namespace {

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
  return s.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

// `elektronn train ...`, `elektronn make-demo-data ...`, `elektronn render-slice ...` and
// `elektronn predict ...` without --host are elektronn-worker's commands: the worker replaces
// this process (same pid, terminal and signals), so there is one code path.
int ForwardToWorker(int argc, char** argv) {
  const std::string worker = elektronn::LocateWorkerBinary();
  std::vector<char*> args;
  args.push_back(const_cast<char*>(worker.c_str()));
  for (int i = 1; i < argc; ++i) args.push_back(argv[i]);
  args.push_back(nullptr);
  execvp(args[0], args.data());
  std::fprintf(stderr,
               "error: cannot run the worker '%s': %s (install elektronn-worker next to "
               "elektronn, or set $ELEKTRONN_WORKER)\n",
               worker.c_str(), std::strerror(errno));
  return 127;
}

// `elektronn calc`: the calculator on --filters/--poolings, or on a job file's model.
int RunCalc(const std::string& job_path, const elektronn::CnnCalculatorArgs& args, int64_t max_size,
            bool json) {
  using namespace elektronn;
  const bool chain = !args.filters.empty() || !args.poolings.empty();
  if (job_path.empty() == !chain) {
    return Fail(absl::InvalidArgumentError(
        "calc takes either a job file or --filters and --poolings (e.g. elektronn calc "
        "--filters 3,3,3 --poolings 2,2,1)"));
  }
  if (!job_path.empty()) {
    if (args.mfp || !args.mfp_layers.empty() || args.force_center || args.ndim != 0) {
      return Fail(absl::InvalidArgumentError(
          "--mfp, --mfp-layers, --force-center and --ndim describe a --filters chain; a job "
          "file's model has its own (set mfp in its Conv nodes)"));
    }
    std::vector<int64_t> desired;
    if (!args.desired.empty()) {
      for (absl::string_view part : absl::StrSplit(args.desired, ',')) {
        int64_t v = 0;
        if (!absl::SimpleAtoi(part, &v) || v < 1) {
          return Fail(absl::InvalidArgumentError(
              absl::StrFormat("--desired: '%s' is not a positive size", part)));
        }
        desired.push_back(v);
      }
    }
    auto job = LoadJobFile(job_path);
    if (!job.ok()) return Fail(job.status());
    auto c = CalculateModel(job->model(), desired, 2, max_size);
    if (!c.ok()) return Fail(c.status());
    if (json) {
      std::printf("%s\n", ModelCalculationJson(*c).c_str());
    } else {
      std::printf("%s", ModelCalculationText(*c).c_str());
    }
    return 0;
  }
  auto options = ParseCnnCalculatorArgs(args);
  if (!options.ok()) return Fail(options.status());
  options->max_size = max_size;
  auto c = CalculateCnn(*options);
  if (!c.ok()) return Fail(c.status());
  if (json) {
    std::printf("%s\n", CnnCalculationJson(*c).c_str());
  } else {
    std::printf("%s", CnnCalculationText(*c).c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace elektronn;
  if (argc > 1 &&
      (std::string_view(argv[1]) == "train" || std::string_view(argv[1]) == "make-demo-data" ||
       std::string_view(argv[1]) == "render-slice" || std::string_view(argv[1]) == "profile" ||
       std::string_view(argv[1]) == "one-step")) {
    return ForwardToWorker(argc, argv);
  }
  CLI::App app{
      "ELEKTRONN: train 3-D convolutional networks on EM volumes.\n"
      "Run 'elektronn <command> --help' for a command's options."};
  app.require_subcommand(1);
  app.set_version_flag("--version", VersionText("elektronn"));

  // train and make-demo-data run in elektronn-worker (ForwardToWorker); listed here for --help.
  app.add_subcommand("train",
                     "train a job file locally, in <save_path>/<save_name>/ (runs "
                     "elektronn-worker train; see 'elektronn train --help')")
      ->allow_extras()
      ->prefix_command();
  // check
  auto* check = app.add_subcommand("check", "print the model summary of a job file; no training");
  std::string check_path;
  bool json = false;
  check->add_option("job", check_path, "the Lua job file")->required()->check(CLI::ExistingFile);
  check->add_flag("--json", json, "print one JSON object instead of a table");
  std::string graph_path;
  check->add_option("--graph", graph_path,
                    "also draw the model as a picture (Graphviz) to this file: .svg or .png");

  // calc (engine/util/cnn_calculator.h)
  auto* calc = app.add_subcommand(
      "calc",
      "the CNN calculator: valid patch sizes, receptive fields, strides and overlaps of a "
      "conv+pool chain (--filters/--poolings) or of a job file's model");
  std::string calc_job;
  CnnCalculatorArgs calc_args;
  bool calc_json = false;
  int64_t calc_max = 4999;
  calc->add_option("job", calc_job, "a Lua job file: ask its model (instead of --filters)")
      ->check(CLI::ExistingFile);
  calc->add_option(
      "--filters", calc_args.filters,
      "filter size per layer: 3,3,3 (every axis alike) or 1x6x6,4x4x4 (one per axis, z first)");
  calc->add_option("--poolings", calc_args.poolings, "pooling factor per layer, same form");
  calc->add_option("--desired", calc_args.desired,
                   "desired patch size: 100 or per axis 8,211,211 (default: the largest valid "
                   "one; with a job file: the model's own)");
  calc->add_flag("--mfp", calc_args.mfp, "every pooling is max-fragment-pooling");
  calc->add_option("--mfp-layers", calc_args.mfp_layers, "MFP per layer: 1,1,0,0");
  calc->add_flag("--force-center", calc_args.force_center,
                 "an even field of view (output not centred on an input voxel) is an error");
  calc->add_option("--ndim", calc_args.ndim,
                   "spatial axes when every layer gives one value (default 1)")
      ->check(CLI::Range(1, 3));
  calc->add_option("--max-size", calc_max, "largest input size tried")->capture_default_str();
  calc->add_flag("--json", calc_json, "print one JSON object instead of the report");

  app.add_subcommand("make-demo-data",
                     "write an EM-like training set (HDF5 raw/label cubes + preview) (runs "
                     "elektronn-worker)")
      ->allow_extras()
      ->prefix_command();

  app.add_subcommand("profile",
                     "time every node's forward and backward pass of a job file's model on "
                     "random input, CPU backend (runs elektronn-worker; see 'elektronn profile "
                     "--help')")
      ->allow_extras()
      ->prefix_command();

  app.add_subcommand("one-step",
                     "write the one-step model of a saved recurrent model: its Scan's step "
                     "graph with the memories and the step input as inputs (ELEKTRONN2's "
                     "rebuild_rnn; runs elektronn-worker)")
      ->allow_extras()
      ->prefix_command();

  app.add_subcommand("render-slice",
                     "write one z slice of a volume and its prediction side by side as a PNG "
                     "(runs elektronn-worker)")
      ->allow_extras()
      ->prefix_command();

  // submit, ls, status, watch, logs, pause, resume, cancel, hosts, ... (client/remote_commands.h)
  RemoteCommands remote;
  AddRemoteCommands(app, &remote);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help exits 0; every usage error exits 2, as scripts expect.
    return app.exit(e) == 0 ? 0 : 2;
  }

  // predict without --host: options checked here (one table, client/prediction_cli.h), run by
  // the worker with the same words.
  absl::StatusOr<bool> local_predict = PredictRunsLocally(remote);
  if (!local_predict.ok()) return Fail(local_predict.status());
  if (*local_predict) return ForwardToWorker(argc, argv);
  if (auto code = RunRemoteCommands(remote)) return *code;

  if (*calc) return RunCalc(calc_job, calc_args, calc_max, calc_json);
  if (*check) {
    // A wrong picture type is a usage error, found before the job file runs.
    if (!graph_path.empty()) {
      if (auto format = ModelGraphFormatOf(graph_path); !format.ok()) return Fail(format.status());
    }
    auto job = LoadJobFile(check_path);
    if (!job.ok()) return Fail(job.status());
    if (!graph_path.empty()) {
      if (absl::Status s = WriteModelGraph(job->model(), graph_path); !s.ok()) return Fail(s);
      std::fprintf(stderr, "model graph written to %s\n", graph_path.c_str());
    }
    if (json) {
      auto j = CheckJson(*job);
      if (!j.ok()) return Fail(j.status());
      std::printf("%s\n", j->c_str());
      return 0;
    }
    auto table = CheckTable(*job);
    if (!table.ok()) return Fail(table.status());
    std::printf("%s", table->c_str());
    return 0;
  }
  return 0;
}
