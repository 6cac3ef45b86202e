// The daemon commands of `elektronn` without a daemon: names, exit codes, token and host
// resolution, the plaintext refusal, tables, JSON and the progress bar; then, when the binaries
// are built, `elektronn` against a closed port and against a real elektronnd.
#include "client/remote_commands.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>
#include <tuple>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/connection.h"
#include "engine/config/hyperparams.h"
#include "google/protobuf/any.pb.h"
#include "nlohmann/json.hpp"
#include "rpc/version.h"
#include "tests/e2e/predict_fixture.h"
#include "tests/support/tiny_job.h"
#include "tests/support/wait.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;

EnvLookup FakeEnv(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

fs::path TempDir(const std::string& name) {
  fs::path d =
      fs::temp_directory_path() / ("elk_remote_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void WriteFile(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

TEST(NormaliseJobName, AcceptsIdAndName) {
  EXPECT_EQ(*NormaliseJobName("7"), "jobs/000007");
  EXPECT_EQ(*NormaliseJobName("jobs/7"), "jobs/000007");
  EXPECT_EQ(*NormaliseJobName("jobs/000007"), "jobs/000007");
  EXPECT_EQ(*NormaliseJobName("0000123"), "jobs/000123");
  EXPECT_EQ(*NormaliseJobName("1234567"), "jobs/1234567");
  for (const char* bad : {"", "jobs/", "abc", "jobs/7/x", "-1", "job/7"}) {
    auto r = NormaliseJobName(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("jobs/7"), std::string::npos);
  }
}

TEST(ExitCodes, MapGrpcStatus) {
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::OK), 0);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::INVALID_ARGUMENT), 2);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::NOT_FOUND), 3);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::FAILED_PRECONDITION), 4);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::UNAUTHENTICATED), 5);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::PERMISSION_DENIED), 5);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::UNAVAILABLE), 6);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::INTERNAL), 1);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::DEADLINE_EXCEEDED), 1);
  EXPECT_EQ(ExitCodeForFinalState(v1::SUCCEEDED), 0);
  EXPECT_EQ(ExitCodeForFinalState(v1::FAILED), 1);
  EXPECT_EQ(ExitCodeForFinalState(v1::CANCELLED), 4);
  EXPECT_TRUE(IsFinalState(v1::CANCELLED));
  EXPECT_FALSE(IsFinalState(v1::PAUSED));
}

std::string Varint(uint64_t v) {
  std::string out;
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  return out + static_cast<char>(v);
}

TEST(ExitCodes, ErrorReasonFromRpcStatusDetails) {
  v1::ErrorInfo info;
  info.set_reason("BAD_STATE");
  info.set_domain("elektronn.dev");
  google::protobuf::Any any;
  any.set_type_url("type.googleapis.com/google.rpc.ErrorInfo");
  any.set_value(info.SerializeAsString());
  const std::string msg = "job is SUCCEEDED";
  const std::string any_bytes = any.SerializeAsString();
  const std::string rpc_status = "\x08" + Varint(9) + "\x12" + Varint(msg.size()) + msg + "\x1a" +
                                 Varint(any_bytes.size()) + any_bytes;
  grpc::Status s(grpc::StatusCode::FAILED_PRECONDITION, msg, rpc_status);
  EXPECT_EQ(ErrorReason(s), "BAD_STATE");
  Connection c;
  c.host = "127.0.0.1:7077";
  EXPECT_EQ(DescribeError(s, c), "job is SUCCEEDED (BAD_STATE)");
  // A bare ErrorInfo is understood too; no details gives no reason.
  EXPECT_EQ(ErrorReason(grpc::Status(grpc::StatusCode::INTERNAL, "x", info.SerializeAsString())),
            "BAD_STATE");
  EXPECT_EQ(ErrorReason(grpc::Status(grpc::StatusCode::INTERNAL, "x")), "");
}

TEST(ExitCodes, UnavailableSaysHowToStartTheDaemon) {
  Connection c;
  c.host = "127.0.0.1:7077";
  c.state_dir = "/home/u/.local/state/elektronnd";
  const std::string text =
      DescribeError(grpc::Status(grpc::StatusCode::UNAVAILABLE, "failed to connect"), c);
  EXPECT_NE(text.find("cannot reach elektronnd at 127.0.0.1:7077"), std::string::npos) << text;
  EXPECT_NE(text.find("is it running? start it with: elektronnd --state-dir "
                      "/home/u/.local/state/elektronnd"),
            std::string::npos)
      << text;
}

TEST(Connection, TokenFlagBeatsEnvBeatsFile) {
  const fs::path dir = TempDir("token");
  WriteFile(dir / "token", "from-file\n");
  WriteFile(dir / "home/.local/state/elektronnd/token", "from-default-file\n");
  ConnectionOptions o;
  o.token_file = (dir / "token").string();
  const auto env = FakeEnv({{"ELEKTRONN_TOKEN", "from-env"}, {"HOME", (dir / "home").string()}});
  const auto no_token_env = FakeEnv({{"HOME", (dir / "home").string()}});

  o.token = "from-flag";
  EXPECT_EQ(*ResolveToken(o, env), "from-flag");
  o.token.clear();
  EXPECT_EQ(*ResolveToken(o, env), "from-env");
  EXPECT_EQ(*ResolveToken(o, no_token_env), "from-file");
  o.token_file.clear();
  EXPECT_EQ(*ResolveToken(o, no_token_env), "from-default-file");
  EXPECT_EQ(ResolveTokenFile(o, no_token_env),
            (dir / "home/.local/state/elektronnd/token").string());

  o.token_file = (dir / "missing").string();
  auto missing = ResolveToken(o, no_token_env);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_NE(missing.status().message().find((dir / "missing").string()), std::string::npos);
  fs::remove_all(dir);
}

TEST(Connection, HostFlagBeatsEnvBeatsDefault) {
  ConnectionOptions o;
  EXPECT_EQ(ResolveHost(o, FakeEnv({})), "127.0.0.1:7077");
  EXPECT_EQ(ResolveHost(o, FakeEnv({{"ELEKTRONN_HOST", "gpu1:7077"}})), "gpu1:7077");
  o.host = "unix:/tmp/elk.sock";
  EXPECT_EQ(ResolveHost(o, FakeEnv({{"ELEKTRONN_HOST", "gpu1:7077"}})), "unix:/tmp/elk.sock");
}

TEST(Connection, LoopbackDetection) {
  for (const char* h : {"127.0.0.1:7077", "localhost:7077", "[::1]:7077", "unix:/tmp/x.sock",
                        "127.0.1.1:1", "LOCALHOST:1"}) {
    EXPECT_TRUE(IsLoopbackHost(h)) << h;
  }
  for (const char* h : {"gpu1:7077", "10.0.0.5:7077", "[2001:db8::1]:7077", "example.org:1"}) {
    EXPECT_FALSE(IsLoopbackHost(h)) << h;
  }
}

TEST(Connection, RefusesPlaintextToRemoteHosts) {
  ConnectionOptions o;
  auto refused = MakeChannelCredentials(o, "gpu1:7077");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("gpu1:7077"), std::string::npos);
  EXPECT_NE(refused.status().message().find("--tls-ca"), std::string::npos);
  EXPECT_NE(refused.status().message().find("--insecure"), std::string::npos);
  EXPECT_TRUE(MakeChannelCredentials(o, "127.0.0.1:7077").ok());
  EXPECT_TRUE(MakeChannelCredentials(o, "unix:/tmp/x.sock").ok());
  o.insecure = true;
  EXPECT_TRUE(MakeChannelCredentials(o, "gpu1:7077").ok());
  o.insecure = false;
  o.tls_ca = "/nonexistent/ca.pem";
  auto bad_ca = MakeChannelCredentials(o, "gpu1:7077");
  ASSERT_FALSE(bad_ca.ok());
  EXPECT_NE(bad_ca.status().message().find("/nonexistent/ca.pem"), std::string::npos);
}

TEST(Formatting, ProgressBar) {
  EXPECT_EQ(RenderProgressBar(0, 100, 10), "[..........]");
  EXPECT_EQ(RenderProgressBar(50, 100, 10), "[#####.....]");
  EXPECT_EQ(RenderProgressBar(99, 100, 10), "[#########.]");
  EXPECT_EQ(RenderProgressBar(100, 100, 10), "[##########]");
  EXPECT_EQ(RenderProgressBar(250, 100, 10), "[##########]");
  EXPECT_EQ(RenderProgressBar(5, 0, 4), "[....]");
  EXPECT_EQ(RenderProgressBar(1, 3, 20).size(), 22u);
}

TEST(Formatting, AgeAndBytes) {
  EXPECT_EQ(FormatAge(0, 1000), "-");
  EXPECT_EQ(FormatAge(990, 1000), "10s ago");
  EXPECT_EQ(FormatAge(1000 - 300, 1000), "5m ago");
  EXPECT_EQ(FormatAge(100000 - 7200, 100000), "2h ago");
  EXPECT_EQ(FormatAge(1000000 - 3 * 86400, 1000000), "3d ago");
  EXPECT_EQ(FormatBytes(512), "512 B");
  EXPECT_EQ(FormatBytes(int64_t{3} << 29), "1.5 GiB");
  EXPECT_EQ(FormatBytes(int64_t{64} << 30), "64 GiB");
}

// Every --json output uses the proto field names (snake_case): no key with an upper-case letter,
// at any depth (map keys in these outputs are job names and hyper-parameter names).
void ExpectSnakeCaseKeys(const nlohmann::json& j, const std::string& where,
                         const std::string& path = "") {
  if (j.is_object()) {
    for (const auto& [key, value] : j.items()) {
      EXPECT_EQ(key.find_first_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ"), std::string::npos)
          << where << ": key '" << path << key << "' is not snake_case";
      ExpectSnakeCaseKeys(value, where, path + key + ".");
    }
  } else if (j.is_array()) {
    for (const auto& v : j) ExpectSnakeCaseKeys(v, where, path + "[].");
  }
}

v1::Job MakeJob() {
  v1::Job job;
  job.set_name("jobs/7");
  job.set_state(v1::RUNNING);
  job.set_step(1200);
  job.set_loss(0.1234);
  job.mutable_spec()->mutable_training()->set_n_steps(5000);
  job.mutable_spec()->mutable_training()->set_save_name("neuro3d");
  job.mutable_spec()->set_job_file_source("n_steps = 5000");
  job.mutable_update_time()->set_seconds(1'700'000'000);
  job.mutable_create_time()->set_seconds(1'699'999'000);
  job.set_training_dir("/srv/elk/neuro3d");
  return job;
}

TEST(Formatting, JobTable) {
  v1::Job queued;
  queued.set_name("jobs/12");
  queued.set_state(v1::QUEUED);
  const std::string table = FormatJobTable({MakeJob(), queued}, 1'700'000'030);
  EXPECT_EQ(table,
            "NAME     STATE    PROGRESS   LOSS    UPDATED\n"
            "jobs/7   RUNNING  1200/5000  0.1234  30s ago\n"
            "jobs/12  QUEUED   0          -       -\n");
}

v1::Job MakePredictionJob() {
  v1::Job job;
  job.set_name("jobs/8");
  job.set_state(v1::RUNNING);
  v1::PredictionSpec* p = job.mutable_spec()->mutable_prediction();
  p->set_model("jobs/000007");
  p->set_input("raw_0.h5:/raw");
  p->set_output("pred.zarr");
  v1::PredictionProgress* g = job.mutable_prediction_progress();
  g->set_voxels_done(1'250'000);
  g->set_voxels_total(2'500'000);
  g->set_chunks_done(12);
  g->set_chunks_total(24);
  g->set_voxels_per_second(345'000);
  g->set_eta_seconds(72.5);
  job.mutable_update_time()->set_seconds(1'700'000'000);
  return job;
}

// A prediction job shows voxels, %, voxels/s and ETA where a training job shows step and loss.
TEST(Formatting, PredictionJobs) {
  const v1::Job job = MakePredictionJob();
  EXPECT_EQ(FormatJobTable({job}, 1'700'000'030),
            "NAME    STATE    PROGRESS                    LOSS  UPDATED\n"
            "jobs/8  RUNNING  predict 50% of 2.5M voxels  -     30s ago\n");
  const std::string d = FormatJobDetails(job, 1'700'000'060);
  EXPECT_NE(d.find("kind:"), std::string::npos) << d;
  EXPECT_NE(d.find("prediction"), std::string::npos) << d;
  EXPECT_NE(d.find(" 50.0% [##########..........] 1.25M/2.5M voxels  345k voxels/s  ETA 1m13s  "
                   "chunks 12/24"),
            std::string::npos)
      << d;
  EXPECT_NE(d.find("pred.zarr"), std::string::npos) << d;
  EXPECT_EQ(d.find("loss:"), std::string::npos) << d;
  EXPECT_EQ(FormatStatusLine("jobs/8", v1::RUNNING, job.prediction_progress()),
            "jobs/8 RUNNING  50.0% [##########..........] 1.25M/2.5M voxels  345k voxels/s  ETA "
            "1m13s  chunks 12/24");
  const auto j = nlohmann::json::parse(JobToJson(job));
  ExpectSnakeCaseKeys(j, "a prediction job's JSON");
  EXPECT_EQ(j["prediction_progress"]["voxels_done"], "1250000");
  EXPECT_DOUBLE_EQ(j["prediction_progress"]["voxels_per_second"].get<double>(), 345000);
  EXPECT_EQ(j["spec"]["prediction"]["model"], "jobs/000007");
}

TEST(Registration, PredictBuildsTheSpecAndRunsLocallyWithoutHost) {
  auto parse = [](RemoteCommands* state, CLI::App* app, std::vector<std::string> words) {
    AddRemoteCommands(*app, state);
    std::vector<char*> argv;
    for (auto& w : words) argv.push_back(w.data());
    app->parse(static_cast<int>(argv.size()), argv.data());
  };
  {
    CLI::App app{"test"};
    RemoteCommands state;
    parse(&state, &app, {"elektronn",     "predict",
                         "m.h5",          "in.h5:/raw",
                         "out.zarr",      "--patch",
                         "5,25,25",       "--roi",
                         "0,0,0,8,64,64", "--memory-limit",
                         "1.5G",          "--as-uint8",
                         "--channels",    "1",
                         "--threads",     "3",
                         "--mfp",         "off",
                         "--pad",         "zero",
                         "--compression", "blosc",
                         "--chunk",       "3,36,36",
                         "--device",      "cuda:1",
                         "--tf32",        "--precision",
                         "bf16"});
    EXPECT_EQ(PredictRunsLocally(state).value_or(false), true);
    auto spec = PredictionJobSpec(state.prediction);
    ASSERT_TRUE(spec.ok()) << spec.status();
    const v1::PredictionSpec& p = spec->prediction();
    EXPECT_EQ(p.model(), "m.h5");
    EXPECT_EQ(absl::StrJoin(p.patch(), ","), "5,25,25");
    EXPECT_EQ(absl::StrJoin(p.roi(), ","), "0,0,0,8,64,64");
    EXPECT_EQ(absl::StrJoin(p.chunk(), ","), "3,36,36");
    EXPECT_EQ(p.memory_limit(), int64_t{3} << 29);
    EXPECT_TRUE(p.as_uint8());
    EXPECT_EQ(absl::StrJoin(p.channels(), ","), "1");
    EXPECT_EQ(p.mfp(), v1::PredictionSpec::MFP_OFF);
    EXPECT_EQ(p.pad(), v1::PredictionSpec::PAD_ZERO);
    EXPECT_EQ(p.compression(), "blosc");
    EXPECT_EQ(spec->resources().cpu_threads(), 3);
    EXPECT_EQ(spec->resources().device(), "cuda:1");
    EXPECT_TRUE(spec->resources().allow_tf32());
    EXPECT_EQ(spec->resources().precision(), "bf16");
  }
  {
    CLI::App app{"test"};
    RemoteCommands state;
    parse(&state, &app, {"elektronn", "predict", "7", "in.h5:/raw", "out.zarr", "--follow"});
    absl::StatusOr<bool> local = PredictRunsLocally(state);
    EXPECT_EQ(local.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(local.status().message().find("--follow"), std::string::npos) << local.status();
  }
  {
    CLI::App app{"test"};
    RemoteCommands state;
    parse(&state, &app,
          {"elektronn", "predict", "7", "in.h5:/raw", "out.zarr", "--host", "127.0.0.1:1"});
    EXPECT_EQ(PredictRunsLocally(state).value_or(true), false);
    auto spec = RemotePredictionSpec(state.prediction);
    ASSERT_TRUE(spec.ok()) << spec.status();
    EXPECT_EQ(spec->prediction().model(), "jobs/000007");
    state.prediction.model = "jobs/12";
    EXPECT_EQ(RemotePredictionSpec(state.prediction)->prediction().model(), "jobs/000012");
    state.prediction.model = "runs/x-FINAL.h5";
    EXPECT_EQ(RemotePredictionSpec(state.prediction)->prediction().model(), "runs/x-FINAL.h5");
    state.prediction.no_resume = true;
    EXPECT_NE(RemotePredictionSpec(state.prediction).status().message().find("--no-resume"),
              std::string::npos);
  }
  for (const auto& [flag, value, message] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"--roi", "1,2,3", "--roi is '1,2,3'; expected 6 comma-separated integers >= 0"},
           {"--roi", "0,0,0,0,4,4", "sizes >= 1"},
           {"--patch", "5,-1,5", "--patch is '5,-1,5'"},
           {"--memory-limit", "4Q", "--memory-limit is '4Q'"},
           {"--memory-limit", "1K", "at least 16M"},
           {"--channels", "1,1", "distinct"}}) {
    PredictionFlags f;
    f.model = "m.h5";
    f.input = "in.zarr";
    f.output = "out.zarr";
    if (flag == "--roi") f.roi = value;
    if (flag == "--patch") f.patch = value;
    if (flag == "--memory-limit") f.memory_limit = value;
    if (flag == "--channels") f.channels = value;
    auto spec = PredictionJobSpec(f);
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument) << flag << " " << value;
    EXPECT_NE(spec.status().message().find(message), std::string::npos) << spec.status();
  }
  EXPECT_EQ(ParseByteSize("x", "4G").value_or(0), int64_t{4} << 30);
  EXPECT_EQ(ParseByteSize("x", "512M").value_or(0), int64_t{512} << 20);
  EXPECT_EQ(ParseByteSize("x", "100k").value_or(0), 102400);
  EXPECT_EQ(ParseByteSize("x", "4GiB").value_or(0), int64_t{4} << 30);
  EXPECT_EQ(ParseByteSize("x", "1000").value_or(0), 1000);
  EXPECT_FALSE(ParseByteSize("x", "-1G").ok());
  EXPECT_FALSE(ParseByteSize("x", "G").ok());
}

TEST(Formatting, JobDetails) {
  v1::Job job = MakeJob();
  job.set_state(v1::FAILED);
  job.set_error("worker exited with signal 9");
  const std::string d = FormatJobDetails(job, 1'700'000'060);
  EXPECT_NE(d.find("name:"), std::string::npos) << d;
  EXPECT_NE(d.find("FAILED"), std::string::npos) << d;
  EXPECT_NE(d.find("[####................] 1200/5000 (24%)"), std::string::npos) << d;
  EXPECT_NE(d.find("worker exited with signal 9"), std::string::npos) << d;
  EXPECT_NE(d.find("2023-11-14 22:13:20 UTC (1m ago)"), std::string::npos) << d;
  EXPECT_NE(d.find("precision:"), std::string::npos) << d;
  EXPECT_NE(d.find("fp32"), std::string::npos) << d;  // the default, shown
  job.mutable_spec()->mutable_resources()->set_precision("bf16");
  const std::string b = FormatJobDetails(job, 1'700'000'060);
  EXPECT_NE(b.find("bf16"), std::string::npos) << b;
}

TEST(Formatting, JobJson) {
  const auto full = nlohmann::json::parse(JobToJson(MakeJob()));
  EXPECT_EQ(full["name"], "jobs/7");
  EXPECT_EQ(full["state"], "RUNNING");
  EXPECT_EQ(full["step"], "1200");  // proto JSON: int64 as a string
  EXPECT_DOUBLE_EQ(full["loss"].get<double>(), 0.1234);
  EXPECT_EQ(full["spec"]["training"]["n_steps"], "5000");
  EXPECT_EQ(full["spec"]["job_file_source"], "n_steps = 5000");
  EXPECT_EQ(full["update_time"], "2023-11-14T22:13:20Z");
  const auto brief = nlohmann::json::parse(JobToJson(MakeJob(), /*brief=*/true));
  EXPECT_EQ(brief["spec"]["job_file_source"], "");
  EXPECT_EQ(brief["spec"]["training"]["save_name"], "neuro3d");
}

HostResources MakeHost() {
  HostResources h;
  h.host = "127.0.0.1:7077";
  v1::Resources& r = h.resources;
  r.set_hostname("lab1");
  r.set_cpu_count(16);
  r.set_load_average_1m(2.5);
  r.set_memory_total_bytes(int64_t{128} << 30);
  r.set_memory_available_bytes(int64_t{100} << 30);
  r.set_state_dir_free_bytes(int64_t{3} << 39);
  auto* g = r.add_gpus();
  g->set_name("NVIDIA H100");
  g->set_uuid("GPU-1");
  g->set_utilization_percent(87);
  g->set_memory_used_bytes(int64_t{40} << 30);
  g->set_memory_total_bytes(int64_t{80} << 30);
  r.add_running_jobs("jobs/7");
  r.set_capacity(2);
  return h;
}

TEST(Formatting, ResourcesTable) {
  HostResources down;
  down.host = "gpu9:7077";
  down.error = "cannot reach elektronnd";
  HostResources nogpu = MakeHost();
  nogpu.resources.clear_gpus();
  nogpu.resources.set_gpu_status("no GPU: libnvidia-ml.so.1 not found");
  const std::string t = FormatResourcesTable({MakeHost(), nogpu, down});
  EXPECT_NE(t.find("HOST"), std::string::npos) << t;
  EXPECT_NE(t.find("lab1"), std::string::npos) << t;
  EXPECT_NE(t.find("2.50"), std::string::npos) << t;
  EXPECT_NE(t.find("100 GiB/128 GiB"), std::string::npos) << t;
  EXPECT_NE(t.find("1.5 TiB"), std::string::npos) << t;
  EXPECT_NE(t.find("1: NVIDIA H100 87% 40 GiB/80 GiB"), std::string::npos) << t;
  EXPECT_NE(t.find("1/2 (jobs/7)"), std::string::npos) << t;
  EXPECT_NE(t.find("0 (no GPU: libnvidia-ml.so.1 not found)"), std::string::npos) << t;
  EXPECT_NE(t.find("unreachable"), std::string::npos) << t;
  EXPECT_EQ(t.find("(bf16)"), std::string::npos) << t;
  HostResources bf16 = MakeHost();
  bf16.resources.set_cpu_bf16(true);
  const std::string b = FormatResourcesTable({bf16});
  EXPECT_NE(b.find("16 (bf16)"), std::string::npos) << b;
}

TEST(Formatting, HostsShowReservationsAndTheGpusTheyHold) {
  EXPECT_EQ(FormatReservationsTable({MakeHost()}, absl::FromUnixSeconds(1000)), "");
  HostResources h = MakeHost();
  h.resources.mutable_gpus(0)->set_held_by("reservations/000002");
  v1::Reservation* active = h.resources.add_reservations();
  active->set_name("reservations/000002");
  active->set_owner("sched sweep-3");
  active->set_state(v1::ACTIVE);
  active->add_gpu_uuids("GPU-1");
  active->set_cpu_threads(4);
  active->mutable_expire_time()->set_seconds(1030);
  v1::Reservation* consumed = h.resources.add_reservations();
  consumed->set_name("reservations/000003");
  consumed->set_state(v1::CONSUMED);
  consumed->set_memory_bytes(int64_t{8} << 30);
  consumed->set_job("jobs/000009");
  EXPECT_NE(FormatResourcesTable({h}).find("40 GiB/80 GiB [reservations/000002]"),
            std::string::npos)
      << FormatResourcesTable({h});
  HostResources down;
  down.host = "gpu9:7077";
  down.error = "cannot reach";
  const std::string t = FormatReservationsTable({h, down}, absl::FromUnixSeconds(1000));
  EXPECT_NE(t.find("RESERVATION"), std::string::npos) << t;
  EXPECT_NE(t.find("reservations/000002  sched sweep-3  ACTIVE    GPU-1  4     -        "
                   "expires in 30s"),
            std::string::npos)
      << t;
  EXPECT_NE(t.find("reservations/000003  -              CONSUMED  -      -     8.0 GiB  "
                   "jobs/000009"),
            std::string::npos)
      << t;
  EXPECT_EQ(t.find("gpu9"), std::string::npos) << t;
}

TEST(Formatting, ResourcesTableShowsDaemonVersionAndWarnsOnAnotherProtocol) {
  HostResources same = MakeHost();
  same.resources.mutable_daemon()->set_version("0.1.0");
  same.resources.mutable_daemon()->set_revision("f727334a2e");
  same.resources.mutable_daemon()->set_protocol_version(kProtocolVersion);
  const std::string t = FormatResourcesTable({same});
  EXPECT_NE(t.find("VERSION"), std::string::npos) << t;
  EXPECT_NE(t.find("0.1.0 (f727334a2e)"), std::string::npos) << t;
  EXPECT_EQ(ProtocolMismatchWarning(same), std::nullopt);

  HostResources newer = same;
  newer.resources.mutable_daemon()->set_protocol_version(kProtocolVersion + 1);
  const auto w = ProtocolMismatchWarning(newer);
  ASSERT_TRUE(w.has_value());
  EXPECT_NE(w->find("127.0.0.1:7077"), std::string::npos) << *w;
  EXPECT_NE(w->find(absl::StrCat("protocol ", kProtocolVersion + 1)), std::string::npos) << *w;

  HostResources old = MakeHost();  // a daemon from before BuildInfo: protocol 0
  EXPECT_NE(FormatResourcesTable({old}).find("?"), std::string::npos);
  EXPECT_TRUE(ProtocolMismatchWarning(old).has_value());
  HostResources down;
  down.error = "cannot reach";
  EXPECT_EQ(ProtocolMismatchWarning(down), std::nullopt);
}

TEST(Formatting, ResourcesJson) {
  HostResources down;
  down.host = "gpu9:7077";
  down.error = "cannot reach";
  const auto j = nlohmann::json::parse(ResourcesToJson({MakeHost(), down}));
  ASSERT_EQ(j["hosts"].size(), 2u);
  EXPECT_EQ(j["hosts"][0]["host"], "127.0.0.1:7077");
  EXPECT_EQ(j["hosts"][0]["resources"]["cpu_count"], 16);
  EXPECT_EQ(j["hosts"][0]["resources"]["gpus"][0]["name"], "NVIDIA H100");
  EXPECT_EQ(j["hosts"][0]["resources"]["running_jobs"][0], "jobs/7");
  EXPECT_EQ(j["hosts"][1]["error"], "cannot reach");
  EXPECT_FALSE(j["hosts"][1].contains("resources"));
}

TEST(Formatting, StatusLine) {
  v1::StatusUpdate s;
  s.set_step(2500);
  s.set_n_steps(5000);
  s.set_loss(0.25);
  s.set_steps_per_second(10);
  const std::string line = FormatStatusLine("jobs/7", v1::RUNNING, s);
  EXPECT_EQ(line.rfind("jobs/7 RUNNING [##########..........] 2500/5000 50% loss 0.25", 0), 0u)
      << line;
  EXPECT_NE(line.find("10 steps/s ETA 4m10s"), std::string::npos) << line;
}

TEST(Registration, EverySubcommandHasHelpAndConnectionOptions) {
  CLI::App app{"test"};
  RemoteCommands state;
  AddRemoteCommands(app, &state);
  for (const char* name : {"submit", "predict", "ls", "status", "watch", "logs", "pause", "resume",
                           "cancel", "set", "params", "stats", "export", "hosts"}) {
    CLI::App* sub = app.get_subcommand(name);
    ASSERT_NE(sub, nullptr) << name;
    EXPECT_FALSE(sub->get_description().empty()) << name;
    const std::string help = sub->help();
    for (const char* opt : {"--host", "--token-file", "--tls-ca", "--help"}) {
      EXPECT_NE(help.find(opt), std::string::npos) << name << " lacks " << opt;
    }
  }
  const char* argv[] = {"elektronn", "ls", "--json", "--host", "unix:/tmp/x.sock"};
  app.parse(5, const_cast<char**>(argv));
  EXPECT_TRUE(state.json);
  EXPECT_EQ(state.connection.host, "unix:/tmp/x.sock");
}

TEST(Registration, SetRejectsUnknownKeysBeforeConnecting) {
  CLI::App app{"test"};
  RemoteCommands state;
  AddRemoteCommands(app, &state);
  const char* argv[] = {"elektronn", "set", "7", "learning=1e-4"};
  app.parse(4, const_cast<char**>(argv));
  EXPECT_EQ(RunRemoteCommands(state), std::optional<int>(2));
  CLI::App app2{"test"};
  RemoteCommands bad_value;
  AddRemoteCommands(app2, &bad_value);
  const char* argv2[] = {"elektronn", "set", "7", "lr=fast"};
  app2.parse(4, const_cast<char**>(argv2));
  EXPECT_EQ(RunRemoteCommands(bad_value), std::optional<int>(2));
}

// `set` reads names through the hyper-parameter table: every name, proto field and alias maps to
// its proto field; ranges are checked before any connection; schedules use job-file syntax.
TEST(SetArguments, EveryHyperparameterByEverySpelling) {
  for (const HyperparameterDef& d : Hyperparameters()) {
    std::vector<std::string> spellings = {d.name, d.proto_field};
    spellings.insert(spellings.end(), d.aliases.begin(), d.aliases.end());
    const double v = d.type == HyperparameterType::kInt ? d.min + 5 : d.min + 0.25;
    for (const std::string& key : spellings) {
      SCOPED_TRACE(key);
      v1::UpdateHyperparametersRequest req;
      ASSERT_TRUE(ParseSetArguments({key + "=" + FormatHyperparameterValue(d, v)}, &req).ok());
      ASSERT_EQ(req.update_mask().paths_size(), 1);
      EXPECT_EQ(req.update_mask().paths(0), d.proto_field);
      EXPECT_DOUBLE_EQ(GetProtoValue(d, req.hyperparameters()).value_or(-1), v);
      absl::Status bad = ParseSetArguments({absl::StrCat(key, "=", d.min - 1)}, &req);
      EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
      EXPECT_NE(bad.message().find(d.name + " must be " + RangeText(d)), std::string::npos)
          << bad.message();
    }
    // Schedules by any spelling, stored under the name; none removes.
    v1::UpdateHyperparametersRequest req;
    absl::Status s = ParseSetArguments({"schedule." + d.proto_field + "={dec=0.5}"}, &req);
    EXPECT_EQ(s.ok(), d.schedulable) << d.name << ": " << s;
    if (!d.schedulable) continue;
    EXPECT_EQ(req.update_mask().paths(0), "schedules." + d.name);
    EXPECT_DOUBLE_EQ(req.hyperparameters().schedules().at(d.name).dec(), 0.5);
    v1::UpdateHyperparametersRequest off;
    ASSERT_TRUE(ParseSetArguments({"schedules." + d.name + "=none"}, &off).ok());
    EXPECT_EQ(off.update_mask().paths(0), "schedules." + d.name);
    EXPECT_TRUE(off.hyperparameters().schedules().empty());
  }
  v1::UpdateHyperparametersRequest req;
  ASSERT_TRUE(ParseSetArguments({"lr=1e-4", "mom=0.95", "schedule.lr={dec=0.99}"}, &req).ok());
  EXPECT_EQ(absl::StrJoin(req.update_mask().paths(), ","), "learning_rate,momentum,schedules.lr");
  EXPECT_DOUBLE_EQ(req.hyperparameters().learning_rate(), 1e-4);
  EXPECT_FALSE(ParseSetArguments({"lr=1", "learning_rate=2"}, &req).ok());  // twice
  EXPECT_FALSE(ParseSetArguments({"schedule.lr={dec=-1}"}, &req).ok());
  EXPECT_FALSE(ParseSetArguments({"schedule.batch_size={dec=0.5}"}, &req).ok());
  EXPECT_FALSE(ParseSetArguments({"history_freq=2.5"}, &req).ok());
  EXPECT_FALSE(ParseSetArguments({}, &req).ok());
}

TEST(Formatting, HyperparametersAndSchedules) {
  v1::Hyperparameters h;
  h.set_learning_rate(1e-4);
  h.set_momentum(0.9);
  h.set_history_freq(200);
  h.set_step(5);
  EXPECT_EQ(FormatHyperparameters(h),
            "lr=0.0001 mom=0.9 wd=0 beta2=0 dropout_rates=0 gradnet_rates=0 mixing=0 "
            "history_freq=200");
  EXPECT_EQ(FormatSchedules(h), "none");
  (*h.mutable_schedules())["lr"].set_dec(0.99);
  EXPECT_EQ(FormatSchedules(h), "lr: mode=mult, decay-factor=0.99, every 1000 steps");
  v1::Job job = MakeJob();
  *job.mutable_hyperparameters() = h;
  const std::string d = FormatJobDetails(job, 1'700'000'060);
  EXPECT_NE(d.find("lr=0.0001 mom=0.9"), std::string::npos) << d;
  EXPECT_NE(d.find("decay-factor=0.99"), std::string::npos) << d;
  const auto j = nlohmann::json::parse(JobToJson(job));  // proto field names
  EXPECT_DOUBLE_EQ(j["hyperparameters"]["learning_rate"].get<double>(), 1e-4);
  EXPECT_EQ(j["hyperparameters"]["history_freq"], "200");
  EXPECT_DOUBLE_EQ(j["hyperparameters"]["schedules"]["lr"]["dec"].get<double>(), 0.99);
}

// ---- End to end (subprocesses) ----

fs::path BuildDir() { return fs::read_symlink("/proc/self/exe").parent_path().parent_path(); }

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  const int port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

struct Output {
  int code = -1;
  std::string out;
};

// Runs a shell command; stdout (and stderr when asked) captured.
Output RunShell(const std::string& cmd) {
  Output o;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return o;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) o.out.append(buf.data(), n);
  const int status = ::pclose(p);
  o.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return o;
}

TEST(EndToEnd, ClosedPortExitsUnavailableWithHint) {
  const fs::path elektronn = BuildDir() / "client/elektronn";
  ASSERT_TRUE(fs::exists(elektronn)) << "not built: " << elektronn;
  const std::string host = "127.0.0.1:" + std::to_string(FreePort());
  Output o = RunShell(elektronn.string() + " ls --host " + host + " --token t 2>&1");
  EXPECT_EQ(o.code, 6) << o.out;
  EXPECT_NE(o.out.find("cannot reach elektronnd at " + host), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("elektronnd --state-dir"), std::string::npos) << o.out;
  o = RunShell(elektronn.string() + " ls --host gpu1.invalid:7077 --token t 2>&1");
  EXPECT_EQ(o.code, 2) << o.out;
  EXPECT_NE(o.out.find("--tls-ca"), std::string::npos) << o.out;
  o = RunShell(elektronn.string() + " status nope --token t 2>&1");
  EXPECT_EQ(o.code, 2) << o.out;
  o = RunShell(elektronn.string() + " stats 7 --host " + host + " --token t 2>&1");
  EXPECT_EQ(o.code, 6) << o.out;
}

TEST(EndToEnd, SubmitListWatchAgainstElektronnd) {
  const fs::path elektronn = BuildDir() / "client/elektronn";
  const fs::path daemon = BuildDir() / "server/elektronnd";
  const fs::path worker = ELK_WORKER_BIN;
  ASSERT_TRUE(fs::exists(elektronn) && fs::exists(daemon) && fs::exists(worker))
      << "needs " << elektronn << ", " << daemon << " and " << worker << " built";
  const fs::path dir = TempDir("e2e");
  // The tiny job (tests/support/tiny_job.h); its data does not exist, so the worker fails soon
  // after start.
  testing::TinyJobOptions tiny;
  tiny.save_path = (dir / "runs").string();
  tiny.n_steps = 100;
  tiny.history_freq = 5;
  tiny.aniso_factor = 2;
  tiny.input_zxy = {5, 27, 27};
  WriteFile(dir / "tiny.lua", testing::TinyJobSource(tiny));
  const std::string host = "127.0.0.1:" + std::to_string(FreePort());
  const std::string log = (dir / "daemon.log").string();
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::freopen(log.c_str(), "w", stderr);
    const std::string state = (dir / "state").string();
    ::execl(daemon.c_str(), daemon.c_str(), "--listen", host.c_str(), "--state-dir", state.c_str(),
            "--worker-binary", worker.c_str(), static_cast<char*>(nullptr));
    std::_Exit(127);
  }
  // Stops the daemon however the test ends (a failed ASSERT returns early).
  absl::Cleanup stop_daemon = [pid] {
    ::kill(pid, SIGTERM);
    // It gives its workers 60 s to checkpoint; a daemon that hangs is killed and fails the test.
    EXPECT_TRUE(testing::WaitPidFor(pid, std::chrono::seconds(90)).has_value())
        << "elektronnd did not exit within 90 s of SIGTERM";
  };
  const std::string cli = elektronn.string() + " ";
  const std::string conn = " --host " + host + " --token-file " + (dir / "state/token").string();
  Output o;
  for (int i = 0; i < 100; ++i) {
    o = RunShell(cli + "ls" + conn + " 2>&1");
    if (o.code == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_EQ(o.code, 0) << o.out;

  o = RunShell(cli + "submit " + (dir / "tiny.lua").string() + conn +
               " --request-id e2e-1 --set n_steps=50");
  ASSERT_EQ(o.code, 0) << o.out;
  const std::string name = o.out.substr(0, o.out.find('\n'));
  EXPECT_EQ(name.rfind("jobs/", 0), 0u) << o.out;
  o = RunShell(cli + "submit " + (dir / "tiny.lua").string() + conn + " --request-id e2e-1");
  EXPECT_EQ(o.out.substr(0, o.out.find('\n')), name) << "same request_id, same job";

  o = RunShell(cli + "ls --json" + conn);
  ASSERT_EQ(o.code, 0) << o.out;
  const auto listed = nlohmann::json::parse(o.out);
  ExpectSnakeCaseKeys(listed, "ls --json");
  ASSERT_EQ(listed["jobs"].size(), 1u) << o.out;
  EXPECT_EQ(listed["jobs"][0]["name"], name);
  EXPECT_EQ(listed["jobs"][0]["spec"]["training"]["n_steps"], "50");

  o = RunShell(cli + "status " + std::to_string(std::stoi(name.substr(5))) + conn);
  EXPECT_EQ(o.code, 0) << o.out;
  EXPECT_NE(o.out.find(name), std::string::npos) << o.out;
  o = RunShell(cli + "status " + name + " --json" + conn);
  ASSERT_EQ(o.code, 0) << o.out;
  const auto status = nlohmann::json::parse(o.out);
  ExpectSnakeCaseKeys(status, "status --json");
  EXPECT_TRUE(status["spec"]["training"].contains("optimiser_params")) << o.out;
  o = RunShell(cli + "check " + (dir / "tiny.lua").string() + " --json");
  ASSERT_EQ(o.code, 0) << o.out;
  ExpectSnakeCaseKeys(nlohmann::json::parse(o.out), "check --json");
  EXPECT_EQ(RunShell(cli + "status 999" + conn + " 2>&1").code, 3);
  EXPECT_EQ(RunShell(cli + "ls --host " + host + " --token wrong 2>&1").code, 5);

  o = RunShell(cli + "cancel " + name + conn + " 2>&1");
  EXPECT_TRUE(o.code == 0 || o.code == 4) << o.out;  // 4: it already FAILED (no data)
  const int cancel_code = o.code;
  o = RunShell("timeout 60 " + cli + "watch " + name + conn + " 2>&1");
  EXPECT_EQ(o.code, cancel_code == 0 ? 4 : 1) << o.out;
  o = RunShell("timeout 60 " + cli + "watch " + name + " --json" + conn + " 2>/dev/null");
  int events = 0;
  for (absl::string_view line : absl::StrSplit(o.out, '\n', absl::SkipEmpty())) {
    ExpectSnakeCaseKeys(nlohmann::json::parse(std::string(line)), "watch --json");
    ++events;
  }
  EXPECT_GT(events, 0) << o.out;
  EXPECT_EQ(RunShell("timeout 60 " + cli + "logs " + name + conn + " 2>&1").code, 0);

  // A prediction job from the command line: paths inside the daemon's data directory (here its
  // state directory, elektronnd's default), followed to the end; status, ls and watch show
  // voxels, and every --json output is snake_case.
  const fs::path pdata = dir / "state/pdata";
  fs::create_directories(pdata);
  ASSERT_TRUE(testing::SavePredictModel((pdata / "model.h5").string(), 8).ok());
  ASSERT_TRUE(testing::MakeInputVolume(pdata.string(), {8, 48, 48}).ok());
  const std::string predict =
      cli + "predict pdata/model.h5 pdata/raw_0.h5:/raw pdata/pred.zarr --patch 5,25,25" + conn;
  o = RunShell("timeout 120 " + predict + " --follow 2>&1");
  ASSERT_EQ(o.code, 0) << o.out;
  const std::string pname = o.out.substr(0, o.out.find('\n'));
  EXPECT_EQ(pname.rfind("jobs/", 0), 0u) << o.out;
  EXPECT_NE(o.out.find("SUCCEEDED"), std::string::npos) << o.out;
  o = RunShell(cli + "status " + pname + " --json" + conn);
  ASSERT_EQ(o.code, 0) << o.out;
  const auto pjob = nlohmann::json::parse(o.out);
  ExpectSnakeCaseKeys(pjob, "status --json of a prediction job");
  EXPECT_EQ(pjob["spec"]["prediction"]["output"], "pdata/pred.zarr") << o.out;
  EXPECT_EQ(pjob["prediction_progress"]["chunks_done"], pjob["prediction_progress"]["chunks_total"])
      << o.out;
  EXPECT_EQ(pjob["prediction_progress"]["voxels_total"], std::to_string(8 * 48 * 48)) << o.out;
  o = RunShell(cli + "status " + pname + conn);
  EXPECT_NE(o.out.find("100.0% [####################] 18.4k/18.4k voxels"), std::string::npos)
      << o.out;
  o = RunShell(cli + "ls" + conn);
  EXPECT_NE(o.out.find("predict 100% of 18.4k voxels"), std::string::npos) << o.out;
  o = RunShell("timeout 60 " + cli + "watch " + pname + " --json" + conn + " 2>/dev/null");
  EXPECT_EQ(o.code, 0) << o.out;
  int progress_events = 0;
  for (absl::string_view line : absl::StrSplit(o.out, '\n', absl::SkipEmpty())) {
    const auto ev = nlohmann::json::parse(std::string(line));
    ExpectSnakeCaseKeys(ev, "watch --json of a prediction job");
    progress_events += ev.contains("prediction") ? 1 : 0;
  }
  EXPECT_GT(progress_events, 0) << o.out;
  o = RunShell(cli + "predict pdata/model.h5 pdata/raw_0.h5:/raw ../pred.zarr" + conn + " 2>&1");
  EXPECT_EQ(o.code, 2) << o.out;
  EXPECT_NE(o.out.find("job.prediction.output is '../pred.zarr'"), std::string::npos) << o.out;
  o = RunShell(cli + "predict 99 pdata/raw_0.h5:/raw pdata/p2.zarr" + conn + " 2>&1");
  EXPECT_EQ(o.code, 2) << o.out;
  EXPECT_NE(o.out.find("job.prediction.model is 'jobs/000099': no such job"), std::string::npos)
      << o.out;

  o = RunShell(cli + "hosts --json" + conn);
  EXPECT_EQ(o.code, 0) << o.out;
  const auto hosts = nlohmann::json::parse(o.out);
  ExpectSnakeCaseKeys(hosts, "hosts --json");
  EXPECT_GT(hosts["hosts"][0]["resources"]["cpu_count"].get<int>(), 0) << o.out;

  std::move(stop_daemon).Invoke();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace elektronn
