// The table of live hyper-parameters and the helpers every consumer reads it through.
#include "engine/config/hyperparams.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "engine/graph/graph.h"
#include "engine/nodes/neural.h"
#include "engine/nodes/registry.h"  // losses family: AggregateLossMixingWeights
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"

namespace elektronn {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNone = std::numeric_limits<double>::quiet_NaN();

// A float as the double of its shortest decimal form (0.9f -> 0.9, not 0.8999999761581421), so
// protos, JSON and messages show the value that was set; it converts back to the same float.
double FloatValue(float f) {
  char buf[32];
  const char* end = std::to_chars(buf, buf + sizeof(buf), f).ptr;
  double d = f;
  std::from_chars(buf, end, d);
  return d;
}

// Getter and setter of an optimiser meta-parameter (reference §4): a float of HyperParams.
std::function<absl::StatusOr<double>(const HyperparameterTarget&)> OptimiserGet(
    float HyperParams::*field) {
  return [field](const HyperparameterTarget& t) -> absl::StatusOr<double> {
    return FloatValue(t.optimiser_hyper().*field);
  };
}
std::function<absl::Status(HyperparameterTarget&, double)> OptimiserSet(float HyperParams::*field) {
  return [field](HyperparameterTarget& t, double v) {
    t.optimiser_hyper().*field = static_cast<float>(v);
    return absl::OkStatus();
  };
}

absl::Status NoDropout() {
  return absl::FailedPreconditionError(
      "dropout_rates: no layer was built with dropout (give nm.Conv or nm.Perceptron a "
      "dropout_rate > 0 in create_model)");
}

absl::StatusOr<double> GetDropout(const HyperparameterTarget& t) {
  for (const auto& n : t.model_graph().nodes()) {
    const auto* nn = dynamic_cast<const NeuralNode*>(n.get());
    if (nn != nullptr && nn->has_dropout()) return FloatValue(nn->dropout_rate());
  }
  return NoDropout();
}

absl::Status SetDropout(HyperparameterTarget& t, double v) {
  bool any = false;
  for (const auto& n : t.model_graph().nodes()) {
    auto* nn = dynamic_cast<NeuralNode*>(n.get());
    if (nn == nullptr || !nn->has_dropout()) continue;
    any = true;
    if (absl::Status s = nn->set_dropout_rate(static_cast<float>(v)); !s.ok()) return s;
  }
  return any ? absl::OkStatus() : NoDropout();
}

// ELEKTRONN2's gradnet_rates: the rate of every batch_normalisation='fadeout' layer (the only
// layers with one here; see NeuralNode::has_gradnet).
absl::Status NoGradnet() {
  return absl::FailedPreconditionError(
      "gradnet_rates: no layer uses batch_normalisation='fadeout' (the only layers with a "
      "gradnet rate)");
}

absl::StatusOr<double> GetGradnet(const HyperparameterTarget& t) {
  for (const auto& n : t.model_graph().nodes()) {
    const auto* nn = dynamic_cast<const NeuralNode*>(n.get());
    if (nn != nullptr && nn->has_gradnet()) return FloatValue(nn->gradnet_rate());
  }
  return NoGradnet();
}

absl::Status SetGradnet(HyperparameterTarget& t, double v) {
  bool any = false;
  for (const auto& n : t.model_graph().nodes()) {
    auto* nn = dynamic_cast<NeuralNode*>(n.get());
    if (nn == nullptr || !nn->has_gradnet()) continue;
    any = true;
    if (absl::Status s = nn->set_gradnet_rate(static_cast<float>(v)); !s.ok()) return s;
  }
  return any ? absl::OkStatus() : NoGradnet();
}

// losses family (issue 11): ELEKTRONN2's model.mixing, the weights of the first AggregateLoss
// node (a vector there). As one number of this table: get = the first weight; set v = every
// weight equal to v when they are all equal (numpy's broadcast of a scalar, ELEKTRONN2's
// behaviour), else every weight scaled by v / first weight (ratios kept, which is what
// ELEKTRONN2's `dec` schedule does to the vector). Per-component weights are set in the job
// file (nm.AggregateLoss{..., mixing_weights = {...}}).
std::vector<float>* MixingWeights(const HyperparameterTarget& t) {
  for (const auto& n : t.model_graph().nodes()) {
    if (std::vector<float>* w = AggregateLossMixingWeights(*n)) return w;
  }
  return nullptr;
}

absl::Status NoMixing() {
  return absl::FailedPreconditionError(
      "mixing: the model has no AggregateLoss node (nm.AggregateLoss) to mix");
}

absl::StatusOr<double> GetMixing(const HyperparameterTarget& t) {
  std::vector<float>* w = MixingWeights(t);
  if (w == nullptr || w->empty()) return NoMixing();
  return FloatValue(w->front());
}

absl::Status SetMixing(HyperparameterTarget& t, double v) {
  std::vector<float>* w = MixingWeights(t);
  if (w == nullptr || w->empty()) return NoMixing();
  const bool all_equal =
      std::all_of(w->begin(), w->end(), [&](float x) { return x == w->front(); });
  if (all_equal || w->front() == 0.f) {
    std::fill(w->begin(), w->end(), static_cast<float>(v));
  } else {
    const double k = v / w->front();
    for (float& x : *w) x = static_cast<float>(x * k);
    w->front() = static_cast<float>(v);
  }
  return absl::OkStatus();
}

// One entry per hyper-parameter; every column spelled out (see HyperparameterDef).
std::vector<HyperparameterDef> MakeTable() {
  using T = HyperparameterType;
  using J = JobFileKey;
  return {
      {.name = "lr",
       .aliases = {},
       .type = T::kDouble,
       .min = 0,
       .max = kInf,
       .max_exclusive = false,
       .proto_field = "learning_rate",
       .job_file = J::kOptimiserParams,
       .default_value = 1.0,  // ELEKTRONN2's; every job file sets it
       .schedulable = true,
       .shortcut = "setlr",
       .help = "learning rate",
       .get = OptimiserGet(&HyperParams::lr),
       .set = OptimiserSet(&HyperParams::lr)},
      {.name = "mom",
       .aliases = {},
       .type = T::kDouble,
       .min = 0,
       .max = 1,
       .max_exclusive = false,
       .proto_field = "momentum",
       .job_file = J::kOptimiserParams,
       .default_value = 0.9,
       .schedulable = true,
       .shortcut = "setmom",
       .help = "momentum (Adam beta1, AdaDelta rho)",
       .get = OptimiserGet(&HyperParams::mom),
       .set = OptimiserSet(&HyperParams::mom)},
      {.name = "wd",
       .aliases = {},
       .type = T::kDouble,
       .min = 0,
       .max = kInf,
       .max_exclusive = false,
       .proto_field = "weight_decay",
       .job_file = J::kOptimiserParams,
       .default_value = 0.0,
       .schedulable = true,
       .shortcut = "setwd",
       .help = "weight decay",
       .get = OptimiserGet(&HyperParams::wd),
       .set = OptimiserSet(&HyperParams::wd)},
      {.name = "beta2",
       .aliases = {},
       .type = T::kDouble,
       .min = 0,
       .max = 1,
       .max_exclusive = false,
       .proto_field = "beta2",
       .job_file = J::kOptimiserParams,
       .default_value = 0.999,
       .schedulable = true,
       .shortcut = "",
       .help = "Adam's second-moment decay",
       .get = OptimiserGet(&HyperParams::beta2),
       .set = OptimiserSet(&HyperParams::beta2)},
      {.name = "dropout_rates",
       .aliases = {"dropout"},
       .type = T::kDouble,
       .min = 0,
       .max = 1,
       .max_exclusive = true,
       .proto_field = "dropout_rate",
       .job_file = J::kNone,  // a layer argument: nm.Conv{..., dropout_rate = 0.2}
       .default_value = kNone,
       .schedulable = true,
       .shortcut = "",
       .help = "dropout rate of every layer built with dropout",
       .get = GetDropout,
       .set = SetDropout},
      {.name = "gradnet_rates",
       .aliases = {"gradnet"},
       .type = T::kDouble,
       .min = 0,
       .max = 1,
       .max_exclusive = false,
       .proto_field = "gradnet_rate",
       .job_file = J::kNone,  // starts at the layers' gradnet_rate (1 unless set)
       .default_value = kNone,
       .schedulable = true,
       .shortcut = "",
       .help = "gradnet rate of every batch_normalisation='fadeout' layer (1 = 'train')",
       .get = GetGradnet,
       .set = SetGradnet},
      // losses family (issue 11)
      {.name = "mixing",
       .aliases = {"mixing_weights"},
       .type = T::kDouble,
       .min = 0,
       .max = kInf,
       .max_exclusive = false,
       .proto_field = "mixing",
       .job_file = J::kNone,  // a node argument: nm.AggregateLoss{..., mixing_weights = {...}}
       .default_value = kNone,
       .schedulable = true,
       .shortcut = "",
       .help = "AggregateLoss mixing weights (first weight; all scaled together)",
       .get = GetMixing,
       .set = SetMixing},
      {.name = "history_freq",
       .aliases = {},
       .type = T::kInt,
       .min = 1,
       .max = kInf,
       .max_exclusive = false,
       .proto_field = "history_freq",
       .job_file = J::kTopLevel,
       .default_value = kNone,  // required
       .schedulable = true,
       .shortcut = "sethist",
       .help = "steps between monitoring records and checkpoints",
       .get = [](const HyperparameterTarget& t) -> absl::StatusOr<double> {
         return static_cast<double>(t.history_freq());
       },
       .set =
           [](HyperparameterTarget& t, double v) {
             t.set_history_freq(std::llround(v));
             return absl::OkStatus();
           }},
  };
}

const google::protobuf::FieldDescriptor* NumberField(const HyperparameterDef& d,
                                                     const google::protobuf::Message& m) {
  const auto* f = m.GetDescriptor()->FindFieldByName(d.proto_field);
  if (f == nullptr || f->is_repeated()) return nullptr;
  using FD = google::protobuf::FieldDescriptor;
  switch (f->cpp_type()) {
    case FD::CPPTYPE_DOUBLE:
    case FD::CPPTYPE_FLOAT:
    case FD::CPPTYPE_INT64:
    case FD::CPPTYPE_INT32:
      return f;
    default:
      return nullptr;
  }
}

}  // namespace

const std::vector<HyperparameterDef>& Hyperparameters() {
  static const auto* table = new std::vector<HyperparameterDef>(MakeTable());
  return *table;
}

const HyperparameterDef* FindHyperparameter(absl::string_view name) {
  for (const HyperparameterDef& d : Hyperparameters()) {
    if (d.name == name || d.proto_field == name) return &d;
    for (const std::string& a : d.aliases)
      if (a == name) return &d;
  }
  return nullptr;
}

const HyperparameterDef* FindHyperparameterByProtoField(absl::string_view field) {
  for (const HyperparameterDef& d : Hyperparameters())
    if (d.proto_field == field) return &d;
  return nullptr;
}

std::string HyperparameterNameList(bool schedulable_only) {
  std::vector<std::string> names;
  for (const HyperparameterDef& d : Hyperparameters())
    if (d.schedulable || !schedulable_only) names.push_back(d.name);
  return absl::StrJoin(names, ", ");
}

absl::StatusOr<const HyperparameterDef*> LookupHyperparameter(absl::string_view name) {
  if (const HyperparameterDef* d = FindHyperparameter(name)) return d;
  std::vector<std::string> all;
  for (const HyperparameterDef& d : Hyperparameters()) {
    std::vector<std::string> other = {d.proto_field};
    other.insert(other.end(), d.aliases.begin(), d.aliases.end());
    other.erase(std::remove(other.begin(), other.end(), d.name), other.end());
    all.push_back(other.empty() ? d.name
                                : absl::StrCat(d.name, " (", absl::StrJoin(other, ", "), ")"));
  }
  return absl::InvalidArgumentError(
      absl::StrFormat("'%s' is not a hyper-parameter; known: %s", name, absl::StrJoin(all, ", ")));
}

std::string RangeText(const HyperparameterDef& d) {
  const std::string what = d.type == HyperparameterType::kInt ? "an integer " : "";
  if (d.max == kInf) {
    return absl::StrFormat("%s>= %g", what, d.min);
  }
  return absl::StrFormat("%sin [%g, %g%s", what, d.min, d.max, d.max_exclusive ? ")" : "]");
}

absl::Status CheckHyperparameterValue(const HyperparameterDef& d, double v) {
  const bool integral = d.type != HyperparameterType::kInt || v == std::floor(v);
  const bool in_range = v >= d.min && (d.max_exclusive ? v < d.max : v <= d.max);
  if (std::isfinite(v) && integral && in_range) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrFormat("%s must be %s, got %g", d.name, RangeText(d), v));
}

double ClampHyperparameterValue(const HyperparameterDef& d, double v) {
  if (d.type == HyperparameterType::kInt) v = std::round(v);
  if (!(v >= d.min)) return d.min;  // NaN too
  if (v > d.max) v = d.max;
  if (d.max_exclusive && v >= d.max) v = std::nextafter(d.max, d.min);
  return v;
}

absl::StatusOr<double> ParseHyperparameterValue(const HyperparameterDef& d,
                                                absl::string_view text) {
  text = absl::StripAsciiWhitespace(text);
  double v = 0;
  if (d.type == HyperparameterType::kInt) {
    int64_t i = 0;
    if (!absl::SimpleAtoi(text, &i)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s must be %s, got '%s'", d.name, RangeText(d), text));
    }
    v = static_cast<double>(i);
  } else if (!absl::SimpleAtod(text, &v)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s must be a number %s, got '%s'", d.name, RangeText(d), text));
  }
  if (absl::Status s = CheckHyperparameterValue(d, v); !s.ok()) return s;
  return v;
}

std::string FormatHyperparameterValue(const HyperparameterDef& d, double v) {
  if (d.type == HyperparameterType::kInt) return absl::StrCat(std::llround(v));
  return absl::StrFormat("%g", v);
}

absl::StatusOr<double> GetProtoValue(const HyperparameterDef& d,
                                     const google::protobuf::Message& m) {
  const auto* f = NumberField(d, m);
  if (f == nullptr) {
    return absl::NotFoundError(absl::StrFormat("%s has no numeric field '%s'",
                                               m.GetDescriptor()->full_name(), d.proto_field));
  }
  const auto* r = m.GetReflection();
  if (f->has_presence() && !r->HasField(m, f)) {
    return absl::NotFoundError(absl::StrFormat("%s is not set", d.proto_field));
  }
  using FD = google::protobuf::FieldDescriptor;
  switch (f->cpp_type()) {
    case FD::CPPTYPE_DOUBLE:
      return r->GetDouble(m, f);
    case FD::CPPTYPE_FLOAT:
      return r->GetFloat(m, f);
    case FD::CPPTYPE_INT64:
      return static_cast<double>(r->GetInt64(m, f));
    default:
      return static_cast<double>(r->GetInt32(m, f));
  }
}

absl::Status SetProtoValue(const HyperparameterDef& d, double v, google::protobuf::Message* m) {
  const auto* f = NumberField(d, *m);
  if (f == nullptr) {
    return absl::NotFoundError(absl::StrFormat("%s has no numeric field '%s'",
                                               m->GetDescriptor()->full_name(), d.proto_field));
  }
  const auto* r = m->GetReflection();
  using FD = google::protobuf::FieldDescriptor;
  switch (f->cpp_type()) {
    case FD::CPPTYPE_DOUBLE:
      r->SetDouble(m, f, v);
      break;
    case FD::CPPTYPE_FLOAT:
      r->SetFloat(m, f, static_cast<float>(v));
      break;
    case FD::CPPTYPE_INT64:
      r->SetInt64(m, f, std::llround(v));
      break;
    default:
      r->SetInt32(m, f, static_cast<int32_t>(std::lround(v)));
  }
  return absl::OkStatus();
}

void WriteLiveValues(const HyperparameterTarget& t, google::protobuf::Message* out) {
  for (const HyperparameterDef& d : Hyperparameters()) {
    absl::StatusOr<double> v = d.get(t);
    (void)SetProtoValue(d, v.ok() ? *v : 0.0, out);
  }
}

void WriteStartValues(const v1::TrainingSpec& spec, google::protobuf::Message* out) {
  for (const HyperparameterDef& d : Hyperparameters()) {
    absl::StatusOr<double> v = absl::NotFoundError("");
    if (d.job_file == JobFileKey::kOptimiserParams) v = GetProtoValue(d, spec.optimiser_params());
    if (d.job_file == JobFileKey::kTopLevel) v = GetProtoValue(d, spec);
    const double value = v.ok() ? *v : d.default_value;
    (void)SetProtoValue(d, std::isnan(value) ? 0.0 : value, out);
  }
}

}  // namespace elektronn
