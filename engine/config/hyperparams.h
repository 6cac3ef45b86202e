// The one table of live hyper-parameters (lr, mom, wd, beta2, dropout_rates, gradnet_rates,
// mixing, history_freq): name, aliases, type, valid range, proto field, job-file key, default,
// schedulability, shell shortcut, and how a running job's values are read and written (through
// HyperparameterTarget, which the Trainer implements, so the table links no training code: the
// thin client reads it too). Job files, schedules, the Trainer, the shell, the Trainer service,
// `elektronn set` and the Job resource all derive from it: adding a hyper-parameter is one entry
// in hyperparams.cc plus its test.
//
// Naming: `name` is ELEKTRONN2's (job files, schedules, the shell's `trainer.lr`, log lines);
// `proto_field` is the field in every message that carries the value (v1::Hyperparameters, and
// v1::OptimiserParams or v1::TrainingSpec for job-file keys). Both, and the aliases, are accepted
// wherever a name is read; output uses `name` for people and `proto_field` in protos and JSON.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "elektronn/v1/training.pb.h"

namespace elektronn {

class Graph;

// The optimiser's meta-parameters (reference §4), the values behind lr, mom, wd and beta2.
struct HyperParams {
  float lr = 1.0f;  // ELEKTRONN2's default; every job file sets it
  float mom = 0.9f;
  float wd = 0.0f;
  float beta2 = 0.999f;
};

// What the table's getters and setters act on: a running job. The Trainer implements it.
class HyperparameterTarget {
 public:
  virtual ~HyperparameterTarget() = default;
  virtual HyperParams& optimiser_hyper() = 0;
  virtual const HyperParams& optimiser_hyper() const = 0;
  virtual Graph& model_graph() = 0;  // its nodes carry the dropout and gradnet rates
  virtual const Graph& model_graph() const = 0;
  virtual int64_t history_freq() const = 0;
  virtual void set_history_freq(int64_t steps) = 0;
};

enum class HyperparameterType { kDouble, kInt };

// Where a job file sets a hyper-parameter's starting value.
enum class JobFileKey {
  kNone,             // not a job-file key (dropout rates are arguments of the layers)
  kOptimiserParams,  // optimiser_params = {lr = ...}: v1::OptimiserParams.<proto_field>
  kTopLevel,         // history_freq = ...: v1::TrainingSpec.<proto_field>
};

struct HyperparameterDef {
  std::string name;                  // ELEKTRONN2's name
  std::vector<std::string> aliases;  // more accepted spellings (proto_field is always accepted)
  HyperparameterType type = HyperparameterType::kDouble;
  double min = 0, max = 0;  // valid values: [min, max], or [min, max) with max_exclusive
  bool max_exclusive = false;
  std::string proto_field;  // field of v1::Hyperparameters (and of the job-file message)
  JobFileKey job_file = JobFileKey::kNone;
  double default_value = 0;  // when a job file leaves it out (NaN: required or from the model)
  bool schedulable = false;  // may appear in `schedules`
  std::string shortcut;      // the shell's shortcut that sets it ("setlr"), or empty
  std::string help;          // one line for the shell's banner and `elektronn set`
  // Read and write the live value; call at a step boundary. `set` gets a value already checked
  // against the range; both fail when the job has nothing to apply it to.
  std::function<absl::StatusOr<double>(const HyperparameterTarget&)> get;
  std::function<absl::Status(HyperparameterTarget&, double)> set;
};

// The table, in display order.
const std::vector<HyperparameterDef>& Hyperparameters();

// The entry with this name, proto field or alias; nullptr if none.
const HyperparameterDef* FindHyperparameter(absl::string_view name);
// The same, with an error that suggests the nearest name and lists every name.
absl::StatusOr<const HyperparameterDef*> LookupHyperparameter(absl::string_view name);
// The entry whose proto_field is `field` (field-mask paths); nullptr if none.
const HyperparameterDef* FindHyperparameterByProtoField(absl::string_view field);

// "lr, mom, wd, beta2, dropout_rates, history_freq" (only the schedulable ones if asked).
std::string HyperparameterNameList(bool schedulable_only = false);

// The valid range as text: "[0, 1]", "[0, 1)", ">= 0", "an integer >= 1".
std::string RangeText(const HyperparameterDef& d);
// OK if `v` is valid for `d`; else InvalidArgument "lr must be >= 0, got -1".
absl::Status CheckHyperparameterValue(const HyperparameterDef& d, double v);
// The nearest valid value (schedules clamp instead of failing, e.g. history_freq decaying to 0).
double ClampHyperparameterValue(const HyperparameterDef& d, double v);
// Parses "1e-4" (or "200" for an integer) and checks the range; errors name `d`.
absl::StatusOr<double> ParseHyperparameterValue(const HyperparameterDef& d, absl::string_view text);
// "1e-05" or "200": how messages and tables show a value.
std::string FormatHyperparameterValue(const HyperparameterDef& d, double v);

// The field `d.proto_field` of `m` (v1::Hyperparameters, v1::OptimiserParams, v1::TrainingSpec),
// by reflection. Get is NotFound when `m` has no such field or an optional field is unset.
absl::StatusOr<double> GetProtoValue(const HyperparameterDef& d,
                                     const google::protobuf::Message& m);
absl::Status SetProtoValue(const HyperparameterDef& d, double v, google::protobuf::Message* m);

// Reads every live value of `t` into the fields of `out` (a v1::Hyperparameters); a value the
// job does not have (no layer with dropout) stays 0. Call at a step boundary.
void WriteLiveValues(const HyperparameterTarget& t, google::protobuf::Message* out);
// The values a job starts with, from its TrainingSpec (job-file keys, else the defaults), into
// the fields of `out` (a v1::Hyperparameters). Model-dependent ones (dropout) stay 0.
void WriteStartValues(const v1::TrainingSpec& spec, google::protobuf::Message* out);

}  // namespace elektronn
