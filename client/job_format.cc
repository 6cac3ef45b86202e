// How `elektronn` shows jobs and hosts to people (tables, status lines) and scripts (JSON):
// pure functions of the daemon's messages, tested without a daemon (remote_commands_test).
#include "client/job_format.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <functional>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "client/connection.h"
#include "client/prediction_cli.h"
#include "client/table.h"
#include "engine/config/hyperparams.h"
#include "engine/config/schedule.h"
#include "engine/core/status.h"
#include "engine/lua/schedule_text.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"
#include "rpc/version.h"

namespace elektronn {
namespace {

std::string FormatLoss(double loss) { return absl::StrFormat("%.4g", loss); }

std::string StepColumn(int64_t step, int64_t n_steps) {
  return n_steps > 0 ? absl::StrFormat("%d/%d", step, n_steps) : absl::StrFormat("%d", step);
}

// A prediction's column in `ls`: "predict 42% of 2.92M voxels" ("predict" before any progress).
std::string PredictionColumn(const v1::PredictionProgress& p) {
  if (p.voxels_total() <= 0) return "predict";
  return absl::StrFormat("predict %.0f%% of %s voxels",
                         100.0 * std::min(p.voxels_done(), p.voxels_total()) / p.voxels_total(),
                         FormatCount(static_cast<double>(p.voxels_total())));
}

// The training part of `status`: progress, loss, hyper-parameters, where it saves.
void AddTrainingDetails(const v1::Job& job,
                        const std::function<void(const std::string&, const std::string&)>& add) {
  const int64_t n = NStepsOf(job);
  std::string progress = StepColumn(job.step(), n);
  if (n > 0) {
    progress = RenderProgressBar(job.step(), n) + " " + progress +
               absl::StrFormat(" (%.0f%%)", 100.0 * std::min(job.step(), n) / n);
  }
  add("progress", progress);
  add("loss", job.step() > 0 ? FormatLoss(job.loss()) : "-");
  if (!job.waiting_for().empty()) add("waiting for", job.waiting_for());
  if (!job.error().empty()) add("error", job.error());
  if (job.has_hyperparameters()) {
    add("hyperparameters", FormatHyperparameters(job.hyperparameters()));
    add("schedules", FormatSchedules(job.hyperparameters()));
  }
  const std::string& precision = job.spec().resources().precision();
  add("precision", precision.empty() ? "fp32" : precision);
  const std::string& save_name = job.spec().training().save_name();
  if (!save_name.empty()) add("save_name", save_name);
  if (!job.spec().job_file_name().empty()) add("job_file", job.spec().job_file_name());
  add("training_dir", job.training_dir().empty() ? "-" : job.training_dir());
}

}  // namespace

int64_t NStepsOf(const v1::Job& job) { return job.spec().training().n_steps(); }

std::string ProtoToJson(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  o.always_print_primitive_fields = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  return out;
}

std::string FormatUtc(int64_t unix_s) {
  if (unix_s <= 0) return "-";
  std::time_t t = static_cast<std::time_t>(unix_s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

// ---- Formatting ----

absl::StatusOr<std::string> NormaliseJobName(const std::string& job) {
  std::string id = job;
  if (absl::StartsWith(id, "jobs/")) id = id.substr(5);
  const bool digits =
      !id.empty() && std::all_of(id.begin(), id.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits) {
    return absl::InvalidArgumentError("'" + job +
                                      "' is not a job name: expected jobs/ID or ID, e.g. jobs/7 "
                                      "or 7 (see `elektronn ls`)");
  }
  // elektronnd names jobs with at least six digits ("jobs/000007"); accept any zero padding.
  const size_t first = id.find_first_not_of('0');
  id = first == std::string::npos ? "0" : id.substr(first);
  if (id.size() < 6) id.insert(0, 6 - id.size(), '0');
  return "jobs/" + id;
}

std::string JobStateName(v1::JobState state) {
  if (!v1::JobState_IsValid(state)) return absl::StrFormat("UNKNOWN(%d)", static_cast<int>(state));
  if (state == v1::JOB_STATE_UNSPECIFIED) return "UNSPECIFIED";
  return v1::JobState_Name(state);
}

bool IsFinalState(v1::JobState state) {
  return state == v1::SUCCEEDED || state == v1::FAILED || state == v1::CANCELLED;
}

int ExitCodeForFinalState(v1::JobState state) {
  switch (state) {
    case v1::SUCCEEDED:
      return kExitOk;
    case v1::CANCELLED:
      return kExitPrecondition;
    default:
      return kExitOther;
  }
}

std::string RenderProgressBar(int64_t step, int64_t n_steps, int width) {
  int filled = 0;
  if (n_steps > 0 && width > 0) {
    const int64_t s = std::clamp<int64_t>(step, 0, n_steps);
    filled = static_cast<int>(s * width / n_steps);
  }
  return "[" + std::string(filled, '#') + std::string(std::max(width - filled, 0), '.') + "]";
}

std::string FormatAge(int64_t then_unix_s, int64_t now_unix_s) {
  if (then_unix_s <= 0) return "-";
  const int64_t d = std::max<int64_t>(now_unix_s - then_unix_s, 0);
  if (d < 60) return absl::StrFormat("%ds ago", d);
  if (d < 3600) return absl::StrFormat("%dm ago", d / 60);
  if (d < 86400) return absl::StrFormat("%dh ago", d / 3600);
  return absl::StrFormat("%dd ago", d / 86400);
}

std::string FormatBytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (std::abs(v) >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  if (u == 0) return absl::StrFormat("%d B", bytes);
  return absl::StrFormat(v < 10 ? "%.1f %s" : "%.0f %s", v, units[u]);
}

bool IsPredictionJob(const v1::Job& job) { return job.spec().has_prediction(); }

std::string FormatJobTable(const std::vector<v1::Job>& jobs, int64_t now_unix_s) {
  std::vector<std::vector<std::string>> rows = {{"NAME", "STATE", "PROGRESS", "LOSS", "UPDATED"}};
  for (const auto& j : jobs) {
    const bool predict = IsPredictionJob(j);
    rows.push_back(
        {j.name(), JobStateName(j.state()),
         predict ? PredictionColumn(j.prediction_progress()) : StepColumn(j.step(), NStepsOf(j)),
         !predict && j.step() > 0 ? FormatLoss(j.loss()) : "-",
         FormatAge(j.update_time().seconds(), now_unix_s)});
  }
  return FormatTable(rows);
}

std::string FormatJobDetails(const v1::Job& job, int64_t now_unix_s) {
  std::vector<std::vector<std::string>> rows;
  auto add = [&](const std::string& k, const std::string& v) { rows.push_back({k + ":", v}); };
  add("name", job.name());
  add("state", JobStateName(job.state()));
  if (IsPredictionJob(job)) {
    const v1::PredictionSpec& p = job.spec().prediction();
    add("kind", "prediction");
    add("progress", job.prediction_progress().voxels_total() > 0
                        ? FormatPredictionProgress(job.prediction_progress())
                        : "-");
    add("model", p.model());
    add("input", p.input());
    add("output", p.output());
    if (!job.error().empty()) add("error", job.error());
  } else {
    AddTrainingDetails(job, add);
  }
  add("restarts", std::to_string(job.restarts()));
  add("created", FormatUtc(job.create_time().seconds()) + " (" +
                     FormatAge(job.create_time().seconds(), now_unix_s) + ")");
  add("updated", FormatUtc(job.update_time().seconds()) + " (" +
                     FormatAge(job.update_time().seconds(), now_unix_s) + ")");
  if (!job.request_id().empty()) add("request_id", job.request_id());
  return FormatTable(rows);
}

std::string FormatHyperparameters(const v1::Hyperparameters& h) {
  std::vector<std::string> parts;
  for (const HyperparameterDef& d : Hyperparameters()) {
    absl::StatusOr<double> v = GetProtoValue(d, h);
    if (v.ok()) parts.push_back(absl::StrCat(d.name, "=", FormatHyperparameterValue(d, *v)));
  }
  return absl::StrJoin(parts, " ");
}

std::string FormatSchedules(const v1::Hyperparameters& h) {
  std::map<std::string, std::string> lines;  // sorted by name
  for (const auto& [name, spec] : h.schedules()) {
    absl::StatusOr<Schedule> s = Schedule::Create(name, spec);
    lines[name] = s.ok() ? s->Describe() : absl::StrCat(name, ": ", s.status().message());
  }
  if (lines.empty()) return "none";
  std::vector<std::string> out;
  for (const auto& [name, line] : lines) out.push_back(line);
  return absl::StrJoin(out, "; ");
}

absl::Status ParseSetArguments(const std::vector<std::string>& key_values,
                               v1::UpdateHyperparametersRequest* req) {
  const std::string usage = absl::StrCat(
      "set takes KEY=VALUE pairs: ", HyperparameterNameList(),
      " (or their proto field names), and schedule.NAME={dec=0.99} or schedule.NAME=none");
  if (key_values.empty()) return absl::InvalidArgumentError(usage);
  v1::Hyperparameters* h = req->mutable_hyperparameters();
  std::set<std::string> seen;
  for (const std::string& kv : key_values) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("'", kv, "' is not KEY=VALUE; ", usage));
    }
    absl::string_view key = absl::string_view(kv).substr(0, eq);
    const std::string value(absl::StripAsciiWhitespace(absl::string_view(kv).substr(eq + 1)));
    if (absl::ConsumePrefix(&key, "schedules.") || absl::ConsumePrefix(&key, "schedule.")) {
      ASSIGN_OR_RETURN(const HyperparameterDef* d, LookupHyperparameter(key));
      if (!d->schedulable) {
        return absl::InvalidArgumentError(absl::StrCat(
            d->name, " cannot be scheduled; schedulable are ", HyperparameterNameList(true)));
      }
      if (!seen.insert("schedules." + d->name).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("the schedule of ", d->name, " is set twice"));
      }
      if (value != "none" && value != "nil") {
        ASSIGN_OR_RETURN(v1::Schedule spec, ParseScheduleText(d->name, value));
        (*h->mutable_schedules())[d->name] = spec;
      }
      req->mutable_update_mask()->add_paths("schedules." + d->name);
      continue;
    }
    ASSIGN_OR_RETURN(const HyperparameterDef* d, LookupHyperparameter(key));
    if (!seen.insert(d->name).second) {
      return absl::InvalidArgumentError(absl::StrCat(d->name, " is set twice"));
    }
    ASSIGN_OR_RETURN(double v, ParseHyperparameterValue(*d, value));
    RETURN_IF_ERROR(SetProtoValue(*d, v, h));
    req->mutable_update_mask()->add_paths(d->proto_field);
  }
  return absl::OkStatus();
}

std::string JobToJson(const v1::Job& job, bool brief) {
  if (!brief) return ProtoToJson(job);
  v1::Job copy = job;
  copy.mutable_spec()->clear_model();
  copy.mutable_spec()->clear_job_file_source();
  return ProtoToJson(copy);
}

std::string FormatResourcesTable(const std::vector<HostResources>& hosts) {
  std::vector<std::vector<std::string>> rows = {
      {"HOST", "NAME", "VERSION", "CPUS", "LOAD", "RAM FREE/TOTAL", "DISK FREE", "GPUS", "JOBS"}};
  for (const auto& h : hosts) {
    if (!h.error.empty()) {
      rows.push_back({h.host, "-", "-", "-", "-", "-", "-", "unreachable", "-"});
      continue;
    }
    const v1::Resources& r = h.resources;
    std::string gpus;
    if (r.gpus_size() == 0) {
      gpus = r.gpu_status().empty() ? "0" : "0 (" + r.gpu_status() + ")";
    } else {
      std::vector<std::string> each;
      for (const auto& g : r.gpus()) {
        std::string e = absl::StrFormat("%s %d%% %s/%s", g.name(), g.utilization_percent(),
                                        FormatBytes(g.memory_used_bytes()),
                                        FormatBytes(g.memory_total_bytes()));
        if (g.foreign_pids_size() > 0) e += absl::StrFormat(" (%d foreign)", g.foreign_pids_size());
        if (!g.held_by().empty()) e += " [" + g.held_by() + "]";
        each.push_back(e);
      }
      gpus = absl::StrFormat("%d: %s", r.gpus_size(), absl::StrJoin(each, "; "));
    }
    std::string jobs = absl::StrFormat("%d", r.running_jobs_size());
    if (r.capacity() > 0) jobs += absl::StrFormat("/%d", r.capacity());
    if (r.running_jobs_size() > 0) jobs += " (" + absl::StrJoin(r.running_jobs(), ", ") + ")";
    const v1::BuildInfo& d = r.daemon();
    std::string version = d.version().empty() ? "?" : d.version();
    if (!d.revision().empty()) version += " (" + d.revision() + ")";
    rows.push_back(
        {h.host, r.hostname(), version,
         std::to_string(r.cpu_count()) + (r.cpu_bf16() ? " (bf16)" : ""),
         absl::StrFormat("%.2f", r.load_average_1m()),
         FormatBytes(r.memory_available_bytes()) + "/" + FormatBytes(r.memory_total_bytes()),
         FormatBytes(r.state_dir_free_bytes()), gpus, jobs});
  }
  return FormatTable(rows);
}

std::optional<std::string> ProtocolMismatchWarning(const HostResources& host) {
  if (!host.error.empty()) return std::nullopt;
  const int theirs = host.resources.daemon().protocol_version();
  if (theirs == kProtocolVersion) return std::nullopt;
  return absl::StrFormat(
      "%s: elektronnd %s speaks protocol %d, this elektronn (%s) speaks %d; some calls may "
      "fail or be misread: install the same release on both (elektronn --version, "
      "elektronnd --version)",
      host.host,
      host.resources.daemon().version().empty() ? "(older than 0.1)"
                                                : host.resources.daemon().version(),
      theirs, std::string(ReleaseVersion()), kProtocolVersion);
}

std::string ResourcesToJson(const std::vector<HostResources>& hosts) {
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& h : hosts) {
    nlohmann::json item;
    item["host"] = h.host;
    if (!h.error.empty()) {
      item["error"] = h.error;
    } else {
      item["resources"] = nlohmann::json::parse(ProtoToJson(h.resources));
    }
    arr.push_back(std::move(item));
  }
  return nlohmann::json{{"hosts", std::move(arr)}}.dump();
}

std::string FormatStatusLine(const std::string& name, v1::JobState state,
                             const v1::StatusUpdate& status) {
  const int64_t n = status.n_steps();
  std::string line = name + " " + JobStateName(state) + " " + RenderProgressBar(status.step(), n) +
                     " " + StepColumn(status.step(), n);
  if (n > 0) line += absl::StrFormat(" %.0f%%", 100.0 * std::min(status.step(), n) / n);
  if (status.step() > 0) line += " loss " + FormatLoss(status.loss());
  if (status.smoothed_loss() != 0) line += " (smoothed " + FormatLoss(status.smoothed_loss()) + ")";
  if (status.errors() != 0) line += absl::StrFormat(" err %.2f%%", status.errors());
  if (status.learning_rate() != 0) line += absl::StrFormat(" lr %.3g", status.learning_rate());
  if (status.steps_per_second() > 0) {
    line += absl::StrFormat(" %.3g steps/s", status.steps_per_second());
    if (n > status.step()) {
      const int64_t eta = static_cast<int64_t>((n - status.step()) / status.steps_per_second());
      line += eta >= 3600 ? absl::StrFormat(" ETA %dh%02dm", eta / 3600, eta % 3600 / 60)
                          : absl::StrFormat(" ETA %dm%02ds", eta / 60, eta % 60);
    }
  }
  return line;
}

std::string FormatStatusLine(const std::string& name, v1::JobState state,
                             const v1::PredictionProgress& progress) {
  return name + " " + JobStateName(state) + " " + FormatPredictionProgress(progress);
}

}  // namespace elektronn
