// The one tiny training job of the tests and benchmarks: a small 3-D net on generated demo
// cubes (engine/data/demo_data.h). The defaults are the trainer, shell and worker tests' job
// (2 layers on (3,17,17) patches); the daemon suites and the load benchmark set the other knobs.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "engine/data/demo_data.h"
#include "engine/lua/job_file.h"

namespace elektronn::testing {

struct TinyJobOptions {
  std::string save_name = "tiny";
  std::string optimiser = "SGD";
  bool dropout = false;  // dropout_rate 0.2 on the first hidden layer
  int64_t history_freq = 100000;
  int64_t n_steps = 1000000;
  int64_t max_runtime = 600;
  std::string optimiser_params = "lr = 1e-3, mom = 0.9";
  int64_t batch_size = 1;
  int64_t monitor_batch_size = 1;
  std::string save_path = "ignored";  // MakeTinyJob and the daemon set it
  std::string data_dir = "data/";     // relative to the daemon's --data-dir, or absolute
  int cubes = 1;                      // raw_i.h5 / barrier_i.h5; with 2 the second validates
  int aniso_factor = 0;               // 0: not set
  std::string augment;                // e.g. "data_batch_args = {warp = 0.5}"
  std::vector<int64_t> input_zxy = {3, 17, 17};
  // The hidden layers, as Lua on `out` (DROPOUT marks where the dropout argument goes); a
  // final 1x1x1 conv to 2 classes, softmax and the loss follow.
  std::string hidden = "out = nm.Conv{out, 4, {1, 3, 3}DROPOUT}";
  bool errors = false;  // an Errors node, and prediction_ext = {loss, errors, probs}
};

inline std::string TinyJobSource(const TinyJobOptions& o) {
  std::vector<std::string> d_files, l_files;
  for (int i = 0; i < o.cubes; ++i) {
    d_files.push_back(absl::StrCat("{'raw_", i, ".h5', 'raw'}"));
    l_files.push_back(absl::StrCat("{'barrier_", i, ".h5', 'lab'}"));
  }
  std::string kwargs = absl::StrCat("d_path = '", o.data_dir, "', l_path = '", o.data_dir,
                                    "',\n  d_files = {", absl::StrJoin(d_files, ", "),
                                    "},\n  l_files = {", absl::StrJoin(l_files, ", "), "}");
  if (o.aniso_factor > 0) absl::StrAppend(&kwargs, ",\n  aniso_factor = ", o.aniso_factor);
  if (o.cubes > 1) absl::StrAppend(&kwargs, ", valid_cubes = {", o.cubes - 1, "}");
  static constexpr char kJob[] = R"(
save_path = 'SAVE'
save_name = 'NAME'
data_class = 'BatchCreatorImage'
data_init_kwargs = {KWARGS}
AUGMENT
n_steps = N_STEPS
max_runtime = MAX_RUNTIME
history_freq = HISTORY
monitor_batch_size = MONITOR
optimiser = 'OPTIMISER'
optimiser_params = {OPT_PARAMS}
batch_size = BATCH
function create_model()
  local inp = nm.Input{{None, 1, INPUT}, 'b,f,z,x,y', name = 'raw'}
  local out = inp
  HIDDEN
  out = nm.Conv{out, 2, {1, 1, 1}, activation_func = 'lin'}
  local probs = nm.Softmax{out}
  local target = nm.Input_like{probs, override_f = 1, name = 'target'}
  local loss = nm.AggregateLoss{nm.MultinoulliNLL{probs, target, target_is_sparse = true},
                                name = 'loss'}
  DESIGNATE
end
)";
  const std::string designate =
      o.errors ? "local errors = nm.Errors{probs, target, target_is_sparse = true}\n"
                 "  return nm.designate_nodes{input_node = inp, target_node = target, "
                 "loss_node = loss,\n    prediction_node = probs, prediction_ext = {loss, "
                 "errors, probs}}"
               : "return nm.designate_nodes{input_node = inp, target_node = target, "
                 "loss_node = loss,\n    prediction_node = probs}";
  return absl::StrReplaceAll(
      kJob, {{"SAVE", o.save_path},
             {"NAME", o.save_name},
             {"KWARGS", kwargs},
             {"AUGMENT", o.augment},
             {"N_STEPS", absl::StrCat(o.n_steps)},
             {"MAX_RUNTIME", absl::StrCat(o.max_runtime)},
             {"HISTORY", absl::StrCat(o.history_freq)},
             {"MONITOR", absl::StrCat(o.monitor_batch_size)},
             {"OPTIMISER", o.optimiser},
             {"OPT_PARAMS", o.optimiser_params},
             {"BATCH", absl::StrCat(o.batch_size)},
             {"INPUT", absl::StrJoin(o.input_zxy, ", ")},
             {"HIDDEN", absl::StrReplaceAll(
                            o.hidden, {{"DROPOUT", o.dropout ? ", dropout_rate = 0.2" : ""}})},
             {"DESIGNATE", designate}});
}

inline absl::StatusOr<v1::JobSpec> TinyJob(const TinyJobOptions& o = {}) {
  return LoadJobSource(TinyJobSource(o), o.save_name + ".lua");
}

// Writes the demo cube into <dir>/data and returns the job, saving under <dir>/runs.
inline absl::StatusOr<v1::JobSpec> MakeTinyJob(const std::filesystem::path& dir,
                                               TinyJobOptions o = {}) {
  DemoDataOptions data;
  data.num_cubes = 1;
  data.shape = {8, 40, 40};
  if (absl::Status s = MakeDemoData((dir / "data").string(), data); !s.ok()) return s;
  o.save_path = (dir / "runs").string();
  o.data_dir = (dir / "data").string();
  return TinyJob(o);
}

}  // namespace elektronn::testing
