// A tiny training job on a tiny generated data set, shared by the trainer, shell and worker
// tests: a 2-layer 3-D net on (3,17,17) patches of one (8,40,40) demo cube.
#pragma once

#include <filesystem>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_replace.h"
#include "engine/data/demo_data.h"
#include "engine/lua/job_file.h"

namespace elektronn::testing {

struct TinyJobOptions {
  std::string save_name = "tiny";
  std::string optimiser = "SGD";
  bool dropout = false;  // dropout_rate 0.2 on the first layer
  int64_t history_freq = 100000;
};

// Writes the demo cube into <dir>/data and returns the job, saving under <dir>/runs.
inline absl::StatusOr<v1::JobSpec> MakeTinyJob(const std::filesystem::path& dir,
                                               const TinyJobOptions& o = {}) {
  DemoDataOptions data;
  data.num_cubes = 1;
  data.shape = {8, 40, 40};
  if (absl::Status s = MakeDemoData((dir / "data").string(), data); !s.ok()) return s;
  static constexpr char kJob[] = R"(
save_path = 'SAVE'
save_name = 'NAME'
data_class = 'BatchCreatorImage'
data_init_kwargs = {d_path = 'DATA', l_path = 'DATA',
  d_files = {{'raw_0.h5', 'raw'}}, l_files = {{'barrier_0.h5', 'lab'}}}
n_steps = 1000000
max_runtime = 600
history_freq = HISTORY
monitor_batch_size = 1
optimiser = 'OPTIMISER'
optimiser_params = {lr = 1e-3, mom = 0.9}
batch_size = 1
function create_model()
  local inp = nm.Input{{None, 1, 3, 17, 17}, 'b,f,z,x,y', name = 'raw'}
  local out = nm.Conv{inp, 4, {1, 3, 3}DROPOUT}
  out = nm.Conv{out, 2, {1, 1, 1}, activation_func = 'lin'}
  local probs = nm.Softmax{out}
  local target = nm.Input_like{probs, override_f = 1, name = 'target'}
  local loss = nm.AggregateLoss{nm.MultinoulliNLL{probs, target, target_is_sparse = true}}
  return nm.designate_nodes{input_node = inp, target_node = target, loss_node = loss,
                            prediction_node = probs}
end
)";
  return LoadJobSource(
      absl::StrReplaceAll(kJob, {{"SAVE", (dir / "runs").string()},
                                 {"DATA", (dir / "data").string()},
                                 {"NAME", o.save_name},
                                 {"OPTIMISER", o.optimiser},
                                 {"HISTORY", std::to_string(o.history_freq)},
                                 {"DROPOUT", o.dropout ? ", dropout_rate = 0.2" : ""}}),
      o.save_name + ".lua");
}

}  // namespace elektronn::testing
