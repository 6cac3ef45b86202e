// Top-level job-file keys → TrainingSpec: one reader per key, errors with file:line and the
// key path ("job.lua:30: data_batch_args.warp_args.lock_z must be true or false, got number 1").
#include "engine/lua/internal/training_keys.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "engine/config/hyperparams.h"
#include "engine/config/schedule.h"
#include "engine/core/status.h"
#include "engine/lua/internal/data_keys.h"
#include "engine/lua/internal/key_reader.h"
#include "engine/lua/internal/nm_functions.h"

namespace elektronn::lua {
namespace {

using Spec = v1::TrainingSpec;
using Handler = std::function<absl::Status(const KeyReader&, Spec*)>;

// A hyper-parameter's value (hyperparams.h) on top of the stack, checked against its range.
absl::StatusOr<double> ReadHyperparameter(const KeyReader& r, const HyperparameterDef& d) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  if (d.type == HyperparameterType::kInt && lua_type(r.L(), -1) != LUA_TNUMBER) {
    return r.Int(0).status();  // "must be an integer, got string 'often'"
  }
  ASSIGN_OR_RETURN(double v, r.Number(-kInf, kInf));
  if (!CheckHyperparameterValue(d, v).ok()) {
    return r.Error(absl::StrFormat("must be %s, got %g", RangeText(d), v));
  }
  return v;
}

// Names and aliases of the hyper-parameters `pick` selects; `canonical` maps each to its entry.
std::vector<std::string> HyperparameterKeys(
    const std::function<bool(const HyperparameterDef&)>& pick,
    std::map<std::string, const HyperparameterDef*>* canonical) {
  std::vector<std::string> keys;
  for (const HyperparameterDef& d : Hyperparameters()) {
    if (!pick(d)) continue;
    std::vector<std::string> all = {d.name, d.proto_field};
    all.insert(all.end(), d.aliases.begin(), d.aliases.end());
    for (const std::string& k : all) {
      if (canonical->emplace(k, &d).second) keys.push_back(k);
    }
  }
  return keys;
}

// Two spellings of one hyper-parameter in the same table ({lr = 1, learning_rate = 2}).
absl::Status CheckOnce(const KeyReader& r, const HyperparameterDef& d, const std::string& key,
                       std::map<std::string, std::string>* seen) {
  auto [it, fresh] = seen->emplace(d.name, key);
  if (fresh) return absl::OkStatus();
  return r.Error(absl::StrFormat("sets %s twice, as '%s' and as '%s'", d.name, it->second, key));
}

absl::Status ReadOptimiserParams(const KeyReader& r, Spec* spec) {
  v1::OptimiserParams* p = spec->mutable_optimiser_params();
  std::map<std::string, const HyperparameterDef*> defs;
  const std::vector<std::string> keys = HyperparameterKeys(
      [](const HyperparameterDef& d) { return d.job_file == JobFileKey::kOptimiserParams; }, &defs);
  std::map<std::string, std::string> seen;
  return r.Fields(keys, {}, [&](const std::string& key, const KeyReader& f) -> absl::Status {
    const HyperparameterDef& d = *defs.at(key);
    RETURN_IF_ERROR(CheckOnce(r, d, key, &seen));
    ASSIGN_OR_RETURN(double v, ReadHyperparameter(f, d));
    return SetProtoValue(d, v, p);
  });
}

absl::Status ReadSchedule(const KeyReader& r, const std::string& name, v1::Schedule* s) {
  RETURN_IF_ERROR(r.Fields({"dec", "lindec", "updates", "granularity"},
                           {{"permut", "ELEKTRONN2's 'permut' schedule never worked; use updates"}},
                           [&](const std::string& key, const KeyReader& f) -> absl::Status {
                             if (s->kind_case() != v1::Schedule::KIND_NOT_SET &&
                                 key != "granularity") {
                               return r.Error("must have only one of dec, lindec and updates");
                             }
                             if (key == "dec") {
                               ASSIGN_OR_RETURN(double v, f.Number(0));
                               s->set_dec(v);
                             } else if (key == "lindec") {
                               ASSIGN_OR_RETURN(int n, f.Length());
                               if (n != 2)
                                 return f.Error(
                                     absl::StrFormat("must be {n_steps, initial_value}, got a "
                                                     "list of %d",
                                                     n));
                               lua_rawgeti(f.L(), -1, 1);
                               auto steps = f.Entry(1).Int(1);
                               lua_pop(f.L(), 1);
                               RETURN_IF_ERROR(steps.status());
                               lua_rawgeti(f.L(), -1, 2);
                               auto v0 = f.Entry(2).Number(-1e300);
                               lua_pop(f.L(), 1);
                               RETURN_IF_ERROR(v0.status());
                               s->mutable_lindec()->set_n(*steps);
                               s->mutable_lindec()->set_v0(*v0);
                             } else if (key == "updates") {
                               ASSIGN_OR_RETURN(int n, f.Length());
                               v1::Schedule::Updates* u = s->mutable_updates();
                               for (int i = 1; i <= n; ++i) {
                                 lua_rawgeti(f.L(), -1, i);
                                 const KeyReader e = f.Entry(i);
                                 auto len = e.Length();
                                 absl::StatusOr<int64_t> step = absl::UnknownError("");
                                 absl::StatusOr<double> value = absl::UnknownError("");
                                 if (len.ok() && *len == 2) {
                                   lua_rawgeti(f.L(), -1, 1);
                                   step = e.Int(0);
                                   lua_pop(f.L(), 1);
                                   lua_rawgeti(f.L(), -1, 2);
                                   value = e.Number(-1e300);
                                   lua_pop(f.L(), 1);
                                 }
                                 const std::string found = Describe(f.L(), -1);
                                 lua_pop(f.L(), 1);
                                 if (!len.ok() || *len != 2) {
                                   return e.Error("must be a pair {step, value}, got " + found);
                                 }
                                 RETURN_IF_ERROR(step.status());
                                 RETURN_IF_ERROR(value.status());
                                 v1::Schedule::Update* up = u->add_updates();
                                 up->set_step(*step);
                                 up->set_value(*value);
                               }
                             } else {
                               ASSIGN_OR_RETURN(int64_t g, f.Int(1));
                               s->set_granularity(g);
                             }
                             return absl::OkStatus();
                           }));
  if (s->kind_case() == v1::Schedule::KIND_NOT_SET) {
    return r.Error(
        "needs one of dec = factor, lindec = {n_steps, value} or updates = "
        "{{step, value}, ...}");
  }
  absl::Status valid = Schedule::Create(name, *s).status();
  if (valid.ok()) return valid;
  std::string msg(valid.message());
  const std::string prefix = absl::StrFormat("schedule '%s': ", name);
  if (msg.rfind(prefix, 0) == 0) msg = msg.substr(prefix.size());
  return r.Error(msg);
}

absl::Status ReadSchedules(const KeyReader& r, Spec* spec) {
  std::map<std::string, const HyperparameterDef*> defs;
  const std::vector<std::string> keys =
      HyperparameterKeys([](const HyperparameterDef& d) { return d.schedulable; }, &defs);
  std::map<std::string, std::string> seen;
  // gradnet_rates and mixing are schedulable entries of the table now (the gradnet rates of
  // 'fadeout' layers; the AggregateLoss weights), so no key is refused with a reason here.
  return r.Fields(keys, {}, [&](const std::string& key, const KeyReader& f) {
    const HyperparameterDef& d = *defs.at(key);
    RETURN_IF_ERROR(CheckOnce(r, d, key, &seen));
    v1::Schedule s;
    RETURN_IF_ERROR(ReadSchedule(f, d.name, &s));
    (*spec->mutable_schedules())[d.name] = s;
    return absl::OkStatus();
  });
}

absl::Status ReadPreviewDataPath(const KeyReader& r, Spec* spec) {
  if (lua_type(r.L(), -1) == LUA_TSTRING) {
    ASSIGN_OR_RETURN(std::string path, r.String());
    spec->set_preview_data_path(path);
    return absl::OkStatus();
  }
  auto n = SequenceLength(r.L(), -1);
  bool ok = n.ok() && *n == 2;
  if (ok) {
    lua_rawgeti(r.L(), -1, 1);
    lua_rawgeti(r.L(), -2, 2);
    ok = lua_type(r.L(), -2) == LUA_TSTRING && lua_type(r.L(), -1) == LUA_TSTRING;
    if (ok) {
      spec->set_preview_data_path(lua_tostring(r.L(), -2));
      spec->set_preview_data_key(lua_tostring(r.L(), -1));
    }
    lua_pop(r.L(), 2);
  }
  if (!ok || spec->preview_data_path().empty()) {
    return r.Error("must be a file name or a pair {file_name, dataset_key}, got " +
                   Describe(r.L(), -1));
  }
  return absl::OkStatus();
}

absl::Status ReadPreviewKwargs(const KeyReader& r, Spec* spec) {
  v1::PreviewKwargs* p = spec->mutable_preview_kwargs();
  return r.Fields({"export_class", "max_z_pred"}, {{"number", "the trainer sets it"}},
                  [&](const std::string& key, const KeyReader& f) -> absl::Status {
                    if (key == "max_z_pred") {
                      ASSIGN_OR_RETURN(int64_t v, f.Int(1));
                      p->set_max_z_pred(v);
                    } else if (lua_type(f.L(), -1) == LUA_TSTRING) {
                      ASSIGN_OR_RETURN(std::string v, f.String());
                      if (v == "malis" || v == "affinity") {
                        return f.Error("is not supported: affinity previews are not implemented");
                      }
                      if (v != "all") {
                        return f.Error(
                            absl::StrFormat("must be 'all', a class index or a list of class "
                                            "indices, got '%s'",
                                            v));
                      }
                    } else if (lua_type(f.L(), -1) == LUA_TNUMBER) {
                      ASSIGN_OR_RETURN(int64_t v, f.Int(0));
                      p->add_export_class(v);
                    } else {
                      ASSIGN_OR_RETURN(auto v, f.Ints(0));
                      for (int64_t c : v) p->add_export_class(c);
                    }
                    return absl::OkStatus();
                  });
}

// batch_norm family: ELEKTRONN2's modelload options that make sense for training.
absl::Status ReadModelLoadArgs(const KeyReader& r, Spec* spec) {
  v1::ModelLoadArgs* m = spec->mutable_model_load_args();
  return r.Fields(
      {"lock_trainable_params", "replace_bn", "unlock_all_params", "imposed_batch_size",
       "imposed_patch_size"},
      {{"override_mfp_to_active", "max-fragment-pooling is for prediction, not training"},
       {"make_weights_constant", "a model with only constant weights cannot be trained"}},
      [&](const std::string& key, const KeyReader& f) -> absl::Status {
        lua_State* L = f.L();
        if (key == "lock_trainable_params") {
          if (lua_type(L, -1) == LUA_TNUMBER) {
            ASSIGN_OR_RETURN(int64_t v, f.Int(0));
            m->set_lock_first_n(v);
            return absl::OkStatus();
          }
          if (lua_type(L, -1) != LUA_TTABLE) {
            return f.Error("must be a number of nodes or a list of node names, got " +
                           Describe(L, -1));
          }
          const int64_t n = static_cast<int64_t>(lua_rawlen(L, -1));
          for (int64_t i = 1; i <= n; ++i) {
            lua_rawgeti(L, -1, i);
            auto v = f.Entry(static_cast<int>(i)).String();
            lua_pop(L, 1);
            if (!v.ok()) return v.status();
            m->add_lock_nodes(*v);
          }
        } else if (key == "replace_bn") {
          ASSIGN_OR_RETURN(std::string v, f.Choice({"remove", "predict", "const"}));
          m->set_replace_bn(v);
        } else if (key == "unlock_all_params") {
          ASSIGN_OR_RETURN(bool v, f.Bool());
          m->set_unlock_all_params(v);
        } else if (key == "imposed_batch_size") {
          ASSIGN_OR_RETURN(int64_t v, f.Int(1));
          m->set_imposed_batch_size(v);
        } else {
          ASSIGN_OR_RETURN(auto v, f.Ints(1));
          for (int64_t x : v) m->add_imposed_patch_size(x);
        }
        return absl::OkStatus();
      });
}

template <typename Setter>
Handler IntKey(int64_t min, Setter set) {
  return [=](const KeyReader& r, Spec* spec) -> absl::Status {
    ASSIGN_OR_RETURN(int64_t v, r.Int(min));
    set(spec, v);
    return absl::OkStatus();
  };
}

template <typename Setter>
Handler NumberKey(double min, Setter set) {
  return [=](const KeyReader& r, Spec* spec) -> absl::Status {
    ASSIGN_OR_RETURN(double v, r.Number(min));
    set(spec, v);
    return absl::OkStatus();
  };
}

std::map<std::string, Handler> OtherHandlers();

const std::map<std::string, Handler>& Handlers() {
  static const auto* handlers = [] {
    auto* h = new std::map<std::string, Handler>(OtherHandlers());
    // Top-level hyper-parameters (history_freq) come from the table.
    for (const HyperparameterDef& d : Hyperparameters()) {
      if (d.job_file != JobFileKey::kTopLevel) continue;
      (*h)[d.name] = [&d](const KeyReader& r, Spec* s) -> absl::Status {
        ASSIGN_OR_RETURN(double v, ReadHyperparameter(r, d));
        return SetProtoValue(d, v, s);
      };
    }
    return h;
  }();
  return *handlers;
}

std::map<std::string, Handler> OtherHandlers() {
  return {
      {"create_model",
       [](const KeyReader& r, Spec*) -> absl::Status {
         if (lua_type(r.L(), -1) != LUA_TFUNCTION) {
           return r.Error("must be a function that builds the model, got " + Describe(r.L(), -1));
         }
         return absl::OkStatus();
       }},
      {"save_path",
       [](const KeyReader& r, Spec* s) -> absl::Status {
         ASSIGN_OR_RETURN(std::string v, r.String());
         s->set_save_path(v);
         return absl::OkStatus();
       }},
      {"save_name",
       [](const KeyReader& r, Spec* s) -> absl::Status {
         ASSIGN_OR_RETURN(std::string v, r.String());
         if (v.find('/') != std::string::npos || v == "." || v == "..") {
           return r.Error(absl::StrFormat("must be a directory name without '/', got '%s'", v));
         }
         s->set_save_name(v);
         return absl::OkStatus();
       }},
      {"n_steps", IntKey(1, [](Spec* s, int64_t v) { s->set_n_steps(v); })},
      {"max_runtime", NumberKey(1e-9, [](Spec* s, double v) { s->set_max_runtime(v); })},
      {"monitor_batch_size", IntKey(1, [](Spec* s, int64_t v) { s->set_monitor_batch_size(v); })},
      {"optimiser",
       [](const KeyReader& r, Spec* s) -> absl::Status {
         ASSIGN_OR_RETURN(std::string v, r.Choice({"SGD", "Adam", "AdaGrad", "AdaDelta"}));
         s->set_optimiser(v);
         return absl::OkStatus();
       }},
      {"optimiser_params", ReadOptimiserParams},
      {"schedules", ReadSchedules},
      {"batch_size", IntKey(1, [](Spec* s, int64_t v) { s->set_batch_size(v); })},
      {"data_class",
       [](const KeyReader& r, Spec* s) -> absl::Status {
         if (lua_type(r.L(), -1) == LUA_TTABLE) {
           return r.Error(
               "is not supported as {file, class}: data classes from Python files "
               "cannot run here; use 'BatchCreatorImage', 'MNISTData' or 'PianoRollData'");
         }
         ASSIGN_OR_RETURN(std::string v,
                          r.Choice({"BatchCreatorImage", "MNISTData", "PianoRollData"}));
         s->set_data_class(v);
         return absl::OkStatus();
       }},
      {"data_init_kwargs", ReadDataInitKwargs},
      {"data_batch_args", ReadDataBatchArgs},
      {"preview_data_path", ReadPreviewDataPath},
      {"preview_kwargs", ReadPreviewKwargs},
      {"initial_prev_h", NumberKey(0, [](Spec* s, double v) { s->set_initial_prev_h(v); })},
      {"prev_save_h", NumberKey(1e-9, [](Spec* s, double v) { s->set_prev_save_h(v); })},
      {"background_processes",
       [](const KeyReader& r, Spec* s) -> absl::Status {
         // ELEKTRONN2: False = batches made in the training process, True = 2 workers. Batches
         // here are always made by threads; False becomes one thread.
         if (lua_type(r.L(), -1) == LUA_TBOOLEAN) {
           s->set_background_processes(lua_toboolean(r.L(), -1) ? 2 : 1);
           return absl::OkStatus();
         }
         ASSIGN_OR_RETURN(int64_t v, r.Int(1));
         s->set_background_processes(v);
         return absl::OkStatus();
       }},
      {"param_save_it", IntKey(1, [](Spec* s, int64_t v) { s->set_param_save_it(v); })},
      {"class_weights",
       [](const KeyReader& r, Spec* s) -> absl::Status {
         ASSIGN_OR_RETURN(auto v, r.Numbers());
         for (double w : v) s->add_class_weights(static_cast<float>(w));
         return absl::OkStatus();
       }},
      {"seed", IntKey(0, [](Spec* s, int64_t v) { s->set_seed(static_cast<uint64_t>(v)); })},
      // batch_norm family: fine-tuning from a saved model (reference §3.4).
      {"model_load_path",
       [](const KeyReader& r, Spec* s) -> absl::Status {
         ASSIGN_OR_RETURN(std::string v, r.String());
         s->set_model_load_path(v);
         return absl::OkStatus();
       }},
      {"model_load_args", ReadModelLoadArgs},
  };
}

// ELEKTRONN2 keys that job files here do not take, and why.
const std::map<std::string, std::string>& Elektronn2OnlyKeys() {
  static const auto* keys = [] {
    auto* m = new std::map<std::string, std::string>{
        {"lazy_labels", "lazy labels are not implemented in this engine"},
        {"sequence_training", "sequence training is not implemented in this engine"},
        {"device", "the device is chosen when the job runs, not in the job file"},
        {"overwrite", "use 'elektronn train --overwrite'"},
    };
    for (const char* k :
         {"lr_schedule", "wd_schedule", "mom_schedule", "dropout_schedule", "gradnet_schedule"}) {
      (*m)[k] =
          "this legacy key had no effect in ELEKTRONN2 either; use schedules = {lr = {dec "
          "= 0.995}, ...}";
    }
    for (const char* k :
         {"plot_on", "print_status", "time_per_step_smoothing_length", "loss_smoothing_length",
          "use_manual_cudnn_conv", "use_manual_cudnn_conv_not_w1", "use_manual_cudnn_pool",
          "allow_floatX_downcast", "show_axis_order_warning", "pad_b_warning_display",
          "use_ortho_init", "inspection", "backupsrc", "gui_plot", "param_save_h"}) {
      (*m)[k] = "it is an ELEKTRONN2 installation setting (~/.elektronn2rc), not a job setting";
    }
    return m;
  }();
  return *keys;
}

const std::vector<std::string>& RequiredKeys() {
  static const auto* keys = new std::vector<std::string>{
      "create_model", "n_steps",          "max_runtime", "history_freq", "monitor_batch_size",
      "optimiser",    "optimiser_params", "batch_size",  "data_class"};
  return *keys;
}

}  // namespace

absl::Status ReadScheduleValue(lua_State* L, const std::string& path, const std::string& name,
                               v1::Schedule* out) {
  absl::Status s = ReadSchedule(KeyReader(L, "", path), name, out);
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StripLeadingAsciiWhitespace(s.message()));
}

const std::vector<std::string>& TrainingKeyNames() {
  static const auto* names = [] {
    auto* v = new std::vector<std::string>;
    for (const auto& [k, h] : Handlers()) v->push_back(k);
    v->push_back("precision");
    std::sort(v->begin(), v->end());
    return v;
  }();
  return *names;
}

absl::Status ReadTrainingKeys(SandboxedLua& lua, v1::TrainingSpec* spec,
                              v1::JobResources* resources) {
  lua_State* L = lua.state();
  const auto& defs = lua.definitions();
  struct Key {
    std::string name, where;
    int order;
  };
  std::vector<Key> keys;
  lua_pushglobaltable(L);
  const int globals = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, globals) != 0) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) continue;
    const std::string name = lua_tostring(L, -1);
    auto it = defs.find(name);
    if (it != defs.end() && it->second.phase == kCreateModel) continue;  // create_model's own
    const bool known_where = it != defs.end() && !it->second.where.empty();
    keys.push_back({name, known_where ? it->second.where : lua.chunk_name() + ":",
                    it != defs.end() ? it->second.order : 1 << 30});
  }
  std::sort(keys.begin(), keys.end(), [](const Key& a, const Key& b) {
    return a.order != b.order ? a.order < b.order : a.name < b.name;
  });

  std::set<std::string> seen;
  const Key* data_init_kwargs = nullptr;
  for (const Key& k : keys) {
    lua_getfield(L, globals, k.name.c_str());
    const KeyReader r(L, k.where, k.name);
    absl::Status s;
    if (k.name == "precision") {  // a JobResources field (kernels::DataType)
      seen.insert(k.name);
      absl::StatusOr<std::string> v = r.Choice({"fp32", "bf16"});
      if (!v.ok()) {
        s = v.status();
      } else if (resources != nullptr) {
        resources->set_precision(*v);
      }
    } else if (auto h = Handlers().find(k.name); h != Handlers().end()) {
      seen.insert(k.name);
      if (k.name == "data_init_kwargs") {
        data_init_kwargs = &k;  // needs data_class, which may come later in the file
      } else {
        s = h->second(r, spec);
      }
    } else if (auto e = Elektronn2OnlyKeys().find(k.name); e != Elektronn2OnlyKeys().end()) {
      s = r.Error("is not supported: " + e->second);
    } else if (lua_type(L, -1) != LUA_TFUNCTION) {
      const std::string hint = Suggestion(k.name, TrainingKeyNames());
      s = absl::InvalidArgumentError(absl::StrFormat(
          "%s unknown key '%s'%s", k.where, k.name,
          hint.empty()
              ? "; a helper value must be declared local (local " + k.name +
                    " = ...); trainer settings are: " + absl::StrJoin(TrainingKeyNames(), ", ")
              : hint));
    }
    lua_pop(L, 1);
    RETURN_IF_ERROR(s);
  }

  std::vector<std::string> missing;
  for (const std::string& k : RequiredKeys()) {
    // batch_norm family: a job that fine-tunes a saved model needs no create_model (QUIRK 17).
    if (k == "create_model" && seen.contains("model_load_path")) continue;
    if (!seen.contains(k)) missing.push_back(k);
  }
  if (!missing.empty()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: missing required key%s %s (every job file sets %s)", lua.chunk_name(),
                        missing.size() > 1 ? "s" : "", absl::StrJoin(missing, ", "),
                        absl::StrJoin(RequiredKeys(), ", ")));
  }

  if (data_init_kwargs != nullptr) {
    lua_getfield(L, globals, "data_init_kwargs");
    absl::Status s =
        ReadDataInitKwargs(KeyReader(L, data_init_kwargs->where, "data_init_kwargs"), spec);
    lua_pop(L, 1);
    RETURN_IF_ERROR(s);
  } else if (spec->data_class() == "BatchCreatorImage") {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: data_class 'BatchCreatorImage' needs data_init_kwargs = {d_path = ..., l_path = ..., "
        "d_files = {{'raw_0.h5', 'raw'}, ...}, l_files = {{'barrier_0.h5', 'lab'}, ...}}",
        lua.chunk_name()));
  } else {
    spec->mutable_mnist();
  }
  lua_pop(L, 1);  // globals
  return absl::OkStatus();
}

}  // namespace elektronn::lua
