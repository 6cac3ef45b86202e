// Running a job file: sandbox, nm, create_model(), top-level keys → JobSpec; model summaries.
#include "engine/lua/job_file.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/config/hyperparams.h"
#include "engine/core/status.h"
#include "engine/graph/graph.h"
#include "engine/lua/internal/lua_state.h"
#include "engine/lua/internal/nm_functions.h"
#include "engine/lua/internal/training_keys.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"

namespace elektronn {
namespace {

// Cross-checks between the model and the trainer settings.
absl::Status CheckJob(const v1::JobSpec& job, const lua::SandboxedLua& lua) {
  const v1::Designations& d = job.model().designations();
  const std::string& file = job.job_file_name();
  for (const auto& [what, name] : {std::pair{"loss_node", &d.loss_node()},
                                   std::pair{"prediction_node", &d.prediction_node()}}) {
    if (name->empty()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: create_model() designated no %s; a training job needs nm.designate_nodes{..., "
          "%s = ...}",
          file, what, what));
    }
  }
  ASSIGN_OR_RETURN(auto graph, Graph::Create(job.model()));
  const Node* input = graph->Find(d.input_node());
  const int64_t b = input == nullptr ? kUnknownSize : input->shape().SizeOf('b');
  if (b != kUnknownSize && b != job.training().batch_size()) {
    auto it = lua.definitions().find("batch_size");
    const std::string where =
        it != lua.definitions().end() && !it->second.where.empty() ? it->second.where : file + ":";
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s batch_size = %d, but the model's input '%s' has the fixed batch size %d; make them "
        "equal or give the input None as batch size",
        where, job.training().batch_size(), d.input_node(), b));
  }
  return absl::OkStatus();
}

// Length of the UTF-8 sequence starting at s[i], or 0 if none starts there (overlong forms,
// surrogates and code points above U+10FFFF are refused, as protobuf's parser does).
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const auto cont = [&](size_t k) { return i + k < s.size() && (b(k) & 0xC0) == 0x80; };
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if ((c == 0xE0 && b(1) < 0xA0) || (c == 0xED && b(1) > 0x9F)) return 0;
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if ((c == 0xF0 && b(1) < 0x90) || (c == 0xF4 && b(1) > 0x8F)) return 0;
    return 4;
  }
  return 0;
}

// Offset of the first byte of `s` that is not valid UTF-8, or npos.
size_t FirstNonUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = Utf8SequenceLength(s, i);
    if (n == 0) return i;
    i += n;
  }
  return std::string_view::npos;
}

// JobSpec is proto3: its string fields must hold UTF-8, or the daemon's parser refuses the whole
// message (and a model file's /spec could not be read back). Lua strings are bytes, so a node
// name written as 'a\xa5' must be refused here, naming the field.
absl::Status CheckUtf8Fields(const google::protobuf::Message& m, const std::string& where,
                             const std::string& file) {
  using google::protobuf::FieldDescriptor;
  const auto* d = m.GetDescriptor();
  const auto* r = m.GetReflection();
  auto bad = [&](const std::string& field) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: %s is not valid UTF-8 text; names, tags and paths must be UTF-8", file, field));
  };
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    const std::string name = where.empty() ? f->name() : absl::StrCat(where, ".", f->name());
    if (f->type() == FieldDescriptor::TYPE_STRING) {
      if (!f->is_repeated()) {
        if (FirstNonUtf8(r->GetString(m, f)) != std::string_view::npos) return bad(name);
        continue;
      }
      for (int j = 0; j < r->FieldSize(m, f); ++j) {
        if (FirstNonUtf8(r->GetRepeatedString(m, f, j)) != std::string_view::npos) {
          return bad(absl::StrCat(name, "[", j, "]"));
        }
      }
    } else if (f->type() == FieldDescriptor::TYPE_MESSAGE) {
      if (!f->is_repeated()) {
        if (r->HasField(m, f)) RETURN_IF_ERROR(CheckUtf8Fields(r->GetMessage(m, f), name, file));
        continue;
      }
      for (int j = 0; j < r->FieldSize(m, f); ++j) {
        RETURN_IF_ERROR(
            CheckUtf8Fields(r->GetRepeatedMessage(m, f, j), absl::StrCat(name, "[", j, "]"), file));
      }
    }
  }
  return absl::OkStatus();
}

std::string ModelName(const std::string& chunk_name) {
  std::string stem = std::filesystem::path(chunk_name).stem().string();
  return stem.empty() ? "model" : stem;
}

}  // namespace

absl::StatusOr<v1::JobSpec> LoadJobSource(const std::string& source, const std::string& chunk_name,
                                          const JobFileOptions& options) {
  if (const size_t bad = FirstNonUtf8(source); bad != std::string_view::npos) {
    const int64_t line = 1 + std::count(source.begin(), source.begin() + bad, '\n');
    return absl::InvalidArgumentError(
        absl::StrFormat("%s:%d: the job file is not UTF-8 text (byte %d); save it as UTF-8",
                        chunk_name, line, bad));
  }
  lua::SandboxLimits limits;
  limits.max_instructions = options.max_instructions;
  limits.max_bytes = options.max_bytes;
  ASSIGN_OR_RETURN(std::unique_ptr<lua::SandboxedLua> lua, lua::SandboxedLua::Create(limits));
  if (options.print) lua->set_print(options.print);
  lua::ModelRecorder recorder(ModelName(chunk_name));
  RETURN_IF_ERROR(lua->Protected([&] {
    recorder.Install(*lua);
    return absl::OkStatus();
  }));

  lua->set_phase(lua::kTopLevel);
  RETURN_IF_ERROR(lua->Run(source, chunk_name));

  v1::JobSpec job;
  job.set_job_file_name(chunk_name);
  job.set_job_file_source(source);
  lua->set_phase(lua::kReadingKeys);
  RETURN_IF_ERROR(lua->Protected(
      [&] { return ReadTrainingKeys(*lua, job.mutable_training(), job.mutable_resources()); }));

  lua_State* L = lua->state();
  // batch_norm family: fine-tuning (reference §3.4). The model comes from the file at
  // model_load_path when the job runs (inside the data directory, which only the worker sees);
  // ELEKTRONN2 crashed on a config without create_model (QUIRK 17), here that is the way.
  if (!job.training().model_load_path().empty()) {
    lua_pushglobaltable(L);
    lua_pushliteral(L, "create_model");
    lua_rawget(L, -2);  // raw: the sandbox refuses reads of undefined globals
    const bool has_create_model = !lua_isnil(L, -1);
    lua_pop(L, 2);
    if (has_create_model) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: the job sets both model_load_path and create_model(); keep one (model_load_path "
          "starts from the saved model '%s')",
          chunk_name, job.training().model_load_path()));
    }
    RETURN_IF_ERROR(CheckUtf8Fields(job, "job", chunk_name));
    return job;
  }
  lua->set_phase(lua::kCreateModel);
  lua_pushglobaltable(L);
  lua_getfield(L, -1, "create_model");
  lua_remove(L, -2);
  absl::Status ran = lua->Call(0, 1);
  RETURN_IF_ERROR(recorder.deferred_error());  // earlier in the file than anything after it
  RETURN_IF_ERROR(ran);
  const bool is_model = lua::ModelRecorder::IsModel(L, -1);
  lua_pop(L, 1);
  lua->set_phase(lua::kReadingKeys);
  if (!is_model) {
    const auto& defs = lua->definitions();
    auto it = defs.find("create_model");
    const std::string where =
        it != defs.end() && !it->second.where.empty() ? it->second.where : chunk_name + ":";
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s create_model() must end with 'return nm.designate_nodes{input_node = ..., "
        "target_node = ..., loss_node = ..., prediction_node = ..., prediction_ext = {...}}'%s",
        where, recorder.designated() ? "" : " (nm.designate_nodes was never called)"));
  }
  *job.mutable_model() = recorder.spec();
  if (job.training().seed() != 0) job.mutable_model()->set_seed(job.training().seed());
  RETURN_IF_ERROR(CheckUtf8Fields(job, "job", chunk_name));
  RETURN_IF_ERROR(CheckJob(job, *lua));
  return job;
}

absl::StatusOr<v1::JobSpec> LoadJobFile(const std::string& path, const JobFileOptions& options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrFormat("cannot read the job file '%s'", path));
  }
  std::stringstream buf;
  buf << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrFormat("error reading '%s'", path));
  return LoadJobSource(buf.str(), path, options);
}

absl::StatusOr<std::string> CheckJson(const v1::JobSpec& job) {
  if (!job.training().model_load_path().empty()) {
    // batch_norm family: a fine-tuning job's model is read from the file when the job runs.
    nlohmann::ordered_json out = {{"nodes", nlohmann::ordered_json::array()},
                                  {"prediction", nullptr},
                                  {"total_params", 0},
                                  {"warnings", nlohmann::ordered_json::array()},
                                  {"model_load_path", job.training().model_load_path()}};
    return out.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  }
  ASSIGN_OR_RETURN(auto graph, Graph::Create(job.model()));
  const ModelSummary summary = graph->Summary();
  nlohmann::ordered_json nodes = nlohmann::ordered_json::array();
  for (const NodeSummary& n : summary.nodes) {
    nlohmann::ordered_json shape = nlohmann::ordered_json::array();
    for (int64_t s : n.shape.sizes()) {
      shape.push_back(s == kUnknownSize ? nlohmann::ordered_json(nullptr)
                                        : nlohmann::ordered_json(s));
    }
    nodes.push_back({{"name", n.name},
                     {"op", n.op},
                     {"shape", shape},
                     {"tags", n.shape.tags_string()},
                     {"fov", n.shape.fov()},
                     {"strides", n.shape.strides()},
                     {"offsets", n.shape.offsets()},
                     {"params", n.params}});
  }
  nlohmann::ordered_json prediction = nullptr;
  if (const Node* p = graph->Find(summary.prediction_node); p != nullptr) {
    prediction = {{"name", p->name()},
                  {"fov", p->shape().fov()},
                  {"offsets", p->shape().offsets()},
                  {"strides", p->shape().strides()}};
  }
  nlohmann::ordered_json warnings = nlohmann::ordered_json::array();
  if (!graph->fov_warning().empty()) warnings.push_back(graph->fov_warning());
  nlohmann::ordered_json out = {{"nodes", nodes},
                                {"prediction", prediction},
                                {"total_params", summary.total_params},
                                {"warnings", warnings}};
  // One line, keys in the documented order; a JobSpec that did not come from LoadJobSource may
  // hold non-UTF-8 names, which dump() would throw on, so they are replaced (U+FFFD).
  return out.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

absl::StatusOr<std::string> CheckTable(const v1::JobSpec& job) {
  ASSIGN_OR_RETURN(auto graph, Graph::Create(job.model()));
  std::string table = graph->Summary().ToString();
  if (!graph->fov_warning().empty())
    absl::StrAppend(&table, "warning: ", graph->fov_warning(), "\n");
  return table;
}

absl::Status ApplyTrainingOverride(const std::string& kv, v1::TrainingSpec* spec) {
  const size_t eq = kv.find('=');
  if (eq == std::string::npos) {
    return absl::InvalidArgumentError("--set needs KEY=VALUE, got '" + kv + "'");
  }
  const std::string key = kv.substr(0, eq), value = kv.substr(eq + 1);
  google::protobuf::Message* msg = spec;
  std::string field_name = key;
  // Hyper-parameters by name or alias (hyperparams.h): lr=... sets optimiser_params.learning_rate.
  if (const HyperparameterDef* d = FindHyperparameter(key);
      d != nullptr && d->job_file != JobFileKey::kNone) {
    if (d->job_file == JobFileKey::kOptimiserParams) msg = spec->mutable_optimiser_params();
    field_name = d->proto_field;
    absl::StatusOr<double> v = ParseHyperparameterValue(*d, value);
    if (!v.ok()) return absl::InvalidArgumentError(absl::StrCat("--set: ", v.status().message()));
  }
  const auto* field = msg->GetDescriptor()->FindFieldByName(field_name);
  if (field == nullptr || field->is_repeated() || field->is_map() ||
      field->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) {
    return absl::InvalidArgumentError("--set: '" + key + "' is not a scalar training key");
  }
  const auto* r = msg->GetReflection();
  auto not_a = [&](absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat("--set: '", value, "' is not ", what, " (for ", key, ")"));
  };
  // Whole-string parses only ("12abc", "nan", "1e30" for an integer are errors, not UB).
  double d = 0;
  const bool is_number = absl::SimpleAtod(value, &d) && std::isfinite(d);
  switch (field->cpp_type()) {
    case google::protobuf::FieldDescriptor::CPPTYPE_INT64: {
      int64_t i = 0;
      if (!absl::SimpleAtoi(value, &i)) {
        // 1e6 is fine; 1.5 or 1e30 is not.
        if (!is_number || d != std::floor(d) || std::fabs(d) >= 9.2e18) {
          return not_a("an integer");
        }
        i = static_cast<int64_t>(d);
      }
      r->SetInt64(msg, field, i);
      break;
    }
    case google::protobuf::FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t u = 0;
      if (!absl::SimpleAtoi(value, &u)) {
        if (!is_number || d < 0 || d != std::floor(d) || d >= 1.8e19) {
          return not_a("a non-negative integer");
        }
        u = static_cast<uint64_t>(d);
      }
      r->SetUInt64(msg, field, u);
      break;
    }
    case google::protobuf::FieldDescriptor::CPPTYPE_DOUBLE:
      if (!is_number) return not_a("a finite number");
      r->SetDouble(msg, field, d);
      break;
    case google::protobuf::FieldDescriptor::CPPTYPE_FLOAT:
      if (!is_number || std::fabs(d) > std::numeric_limits<float>::max()) {
        return not_a("a finite number");
      }
      r->SetFloat(msg, field, static_cast<float>(d));
      break;
    case google::protobuf::FieldDescriptor::CPPTYPE_STRING:
      r->SetString(msg, field, value);
      break;
    case google::protobuf::FieldDescriptor::CPPTYPE_BOOL: {
      bool b = false;
      if (!absl::SimpleAtob(value, &b)) return not_a("true or false");
      r->SetBool(msg, field, b);
      break;
    }
    default:
      return absl::InvalidArgumentError("--set: '" + key + "' has an unsupported type");
  }
  return absl::OkStatus();
}

}  // namespace elektronn
