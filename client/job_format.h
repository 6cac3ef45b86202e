// How `elektronn` shows jobs and hosts: tables and status lines for people, JSON for scripts,
// and the parsing of `set`'s arguments. Pure functions of the daemon's messages (no RPC), so
// tests check them without a daemon; client/remote_commands.cc calls them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "elektronn/v1/control.pb.h"
#include "elektronn/v1/jobs.pb.h"
#include "google/protobuf/message.h"

namespace elektronn {

// Proto JSON with the proto's field names and every primitive field (one line).
std::string ProtoToJson(const google::protobuf::Message& m);
// "2026-12-03 04:09:14 UTC" ("-" when unset).
std::string FormatUtc(int64_t unix_s);
// The job's n_steps (0 for prediction jobs and unbounded training).
int64_t NStepsOf(const v1::Job& job);
// "7", "jobs/7" and "jobs/000007" -> "jobs/000007" (elektronnd's ids have at least six
// digits); anything else is an InvalidArgument error.
absl::StatusOr<std::string> NormaliseJobName(const std::string& job);
// "QUEUED", "RUNNING", ... ("UNKNOWN(9)" for values this client does not know).
std::string JobStateName(v1::JobState state);
bool IsFinalState(v1::JobState state);
// The exit code `watch` ends with for a final state: 0 SUCCEEDED, 1 FAILED, 4 CANCELLED.
int ExitCodeForFinalState(v1::JobState state);
// "[#####.....]" with `width` cells; all dots when n_steps <= 0.
std::string RenderProgressBar(int64_t step, int64_t n_steps, int width = 20);
// "12s ago", "5m ago", "3h ago", "2d ago" ("-" when unset), relative to `now_unix_s`.
std::string FormatAge(int64_t then_unix_s, int64_t now_unix_s);
// "1.5 GiB", "512 MiB", ...
std::string FormatBytes(int64_t bytes);
bool IsPredictionJob(const v1::Job& job);
// The `ls` table: NAME, STATE, PROGRESS (step/n_steps, or a prediction's % of voxels), LOSS,
// UPDATED.
std::string FormatJobTable(const std::vector<v1::Job>& jobs, int64_t now_unix_s);
// `status` for people: one "key: value" line per field.
std::string FormatJobDetails(const v1::Job& job, int64_t now_unix_s);
// "lr=0.0001 mom=0.9 wd=0 beta2=0.999 dropout_rates=0 history_freq=200": every entry of the
// hyper-parameter table by its name.
std::string FormatHyperparameters(const v1::Hyperparameters& h);
// "lr: mode=mult, decay-factor=0.99, every 1000 steps; ..." or "none".
std::string FormatSchedules(const v1::Hyperparameters& h);
// `set`'s KEY=VALUE arguments as an UpdateHyperparametersRequest: names, proto fields or aliases
// with values checked against their ranges; schedule.NAME={...} in job-file syntax, or =none to
// remove it. Errors name the key and the valid range.
absl::Status ParseSetArguments(const std::vector<std::string>& key_values,
                               v1::UpdateHyperparametersRequest* req);
// Proto JSON of a job (one line). `brief` drops the model and the job file source (ls).
std::string JobToJson(const v1::Job& job, bool brief = false);
// The `hosts` table: HOST, NAME, VERSION (daemon release and revision), CPUS, LOAD, RAM
// (available/total), DISK FREE, GPUS, JOBS.
struct HostResources {
  std::string host;  // as dialled
  v1::Resources resources;
  std::string error;  // non-empty: the host did not answer
};
std::string FormatResourcesTable(const std::vector<HostResources>& hosts);
// The reservations of the answering hosts (client/reservations_table.cc): HOST, RESERVATION,
// OWNER, STATE, GPUS, CPUS, MEMORY, LEASE ("expires in 12s" as of `now`, or the consuming job);
// empty when no host holds any.
std::string FormatReservationsTable(const std::vector<HostResources>& hosts, absl::Time now);
// A warning when a host's daemon speaks another protocol (rpc/version.h) than this client;
// nullopt when they match or the host did not answer.
std::optional<std::string> ProtocolMismatchWarning(const HostResources& host);
std::string ResourcesToJson(const std::vector<HostResources>& hosts);
// One live status line: "jobs/7 RUNNING [####......] 1200/5000 24% loss 0.1234 ...".
std::string FormatStatusLine(const std::string& name, v1::JobState state,
                             const v1::StatusUpdate& status);
// A prediction job's live line: "jobs/7 RUNNING  42.0% [########............] 1.23M/2.92M voxels
// 3.45M voxels/s  ETA 0m12s  chunks 12/27".
std::string FormatStatusLine(const std::string& name, v1::JobState state,
                             const v1::PredictionProgress& progress);

}  // namespace elektronn
