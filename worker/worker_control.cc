// Trainer and Model services of one training process (see worker_control.h).
#include "worker/worker_control.h"

#include <grpc/grpc.h>
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "elektronn/v1/control.grpc.pb.h"
#include "elektronn/v1/shell.grpc.pb.h"
#include "engine/config/hyperparams.h"
#include "engine/config/schedule.h"
#include "engine/core/status.h"
#include "engine/graph/statistics.h"
#include "engine/io/model_file.h"
#include "engine/nodes/neural.h"
#include "engine/shell/shell_session.h"
#include "rpc/status.h"

namespace elektronn {

void FillHyperparameters(const Trainer& t, v1::Hyperparameters* h) {
  h->Clear();
  WriteLiveValues(t, h);  // every entry of the table, by its proto field
  for (const auto& [name, spec] : t.ScheduleSpecs()) (*h->mutable_schedules())[name] = spec;
  h->set_step(t.step());
}

namespace {

constexpr size_t kChunkBytes = 1 << 20;
// A shell whose client sends nothing for this long releases the pause (a vanished client).
constexpr absl::Duration kIdleRelease = absl::Minutes(10);
// Shell requests waiting for the training thread: a client waits for the prompt after each line,
// so more than this is a flood, and the session ends with RESOURCE_EXHAUSTED.
constexpr size_t kMaxQueuedShellRequests = 256;
constexpr size_t kMaxQueuedShellBytes = size_t{8} << 20;
// Largest request message accepted (gRPC's default, stated so it cannot silently grow):
// parameter chunks are 1 MiB.
constexpr int kMaxReceiveMessageBytes = 4 << 20;

class TrainerService final : public v1::Trainer::Service {
 public:
  explicit TrainerService(Trainer* t) : t_(t) {}
  grpc::Status GetHyperparameters(grpc::ServerContext*, const v1::GetHyperparametersRequest*,
                                  v1::Hyperparameters* out) override {
    return ToGrpcStatus(t_->AtStepBoundary([&](Trainer& t) {
      FillHyperparameters(t, out);
      return absl::OkStatus();
    }));
  }
  grpc::Status UpdateHyperparameters(grpc::ServerContext* ctx,
                                     const v1::UpdateHyperparametersRequest* req,
                                     v1::Hyperparameters* out) override {
    absl::StatusOr<Changes> changes = ReadChanges(*req);
    if (!changes.ok()) return ToGrpcStatus(changes.status());
    const std::string who = absl::StrFormat("UpdateHyperparameters from %s", ctx->peer());
    return ToGrpcStatus(t_->AtStepBoundary([&](Trainer& t) -> absl::Status {
      // Everything named must exist in this job before anything changes.
      for (const auto& [d, v] : changes->values) RETURN_IF_ERROR(d->get(t).status());
      for (const auto& [d, spec] : changes->schedules) RETURN_IF_ERROR(d->get(t).status());
      if (changes->replace_schedules) {
        for (const auto& [name, spec] : t.ScheduleSpecs()) {
          RETURN_IF_ERROR(t.SetSchedule(name, nullptr, who));
        }
      }
      for (const auto& [d, v] : changes->values) {
        RETURN_IF_ERROR(t.SetHyperparameter(d->name, v, who));
      }
      for (const auto& [d, spec] : changes->schedules) {
        RETURN_IF_ERROR(t.SetSchedule(d->name, spec ? &*spec : nullptr, who));
      }
      FillHyperparameters(t, out);
      return absl::OkStatus();
    }));
  }

 private:
  // An UpdateHyperparametersRequest read and checked against the table: new values, and
  // schedules to set (or remove, without a spec).
  struct Changes {
    std::vector<std::pair<const HyperparameterDef*, double>> values;
    std::vector<std::pair<const HyperparameterDef*, std::optional<v1::Schedule>>> schedules;
    bool replace_schedules = false;  // path "schedules": the map replaces every schedule
  };

  static absl::StatusOr<Changes> ReadChanges(const v1::UpdateHyperparametersRequest& req) {
    const v1::Hyperparameters& h = req.hyperparameters();
    Changes c;
    std::set<const HyperparameterDef*> seen_values, seen_schedules;
    // The schedule in the request's map for `d`, under any of its names.
    auto find_schedule = [&](const HyperparameterDef* d) -> std::optional<v1::Schedule> {
      for (const auto& [key, spec] : h.schedules())
        if (FindHyperparameter(key) == d) return spec;
      return std::nullopt;
    };
    auto add_schedule = [&](const std::string& key) -> absl::Status {
      const HyperparameterDef* d = FindHyperparameter(key);
      if (d == nullptr || !d->schedulable) {
        return absl::InvalidArgumentError(
            absl::StrFormat("schedules.%s: '%s' is not a schedulable hyper-parameter; "
                            "schedulable are %s",
                            key, key, HyperparameterNameList(/*schedulable_only=*/true)));
      }
      if (!seen_schedules.insert(d).second) return absl::OkStatus();
      std::optional<v1::Schedule> spec = find_schedule(d);
      if (spec) RETURN_IF_ERROR(Schedule::Create(d->name, *spec).status());
      c.schedules.emplace_back(d, std::move(spec));
      return absl::OkStatus();
    };
    for (const std::string& path : req.update_mask().paths()) {
      if (path == "schedules") {
        c.replace_schedules = true;
        for (const auto& [key, spec] : h.schedules()) RETURN_IF_ERROR(add_schedule(key));
        continue;
      }
      if (absl::string_view key = path; absl::ConsumePrefix(&key, "schedules.")) {
        RETURN_IF_ERROR(add_schedule(std::string(key)));
        continue;
      }
      const HyperparameterDef* d = FindHyperparameterByProtoField(path);
      if (d == nullptr) {
        std::vector<std::string> paths;
        for (const HyperparameterDef& e : Hyperparameters()) paths.push_back(e.proto_field);
        return absl::InvalidArgumentError(absl::StrFormat(
            "update_mask path '%s' is not settable; use %s, schedules.<name> or schedules", path,
            absl::StrJoin(paths, ", ")));
      }
      if (!seen_values.insert(d).second) continue;
      ASSIGN_OR_RETURN(double v, GetProtoValue(*d, h));
      RETURN_IF_ERROR(CheckHyperparameterValue(*d, v));
      c.values.emplace_back(d, v);
    }
    if (c.values.empty() && c.schedules.empty() && !c.replace_schedules) {
      return absl::InvalidArgumentError("update_mask is empty");
    }
    return c;
  }

  Trainer* t_;
};

class ModelService final : public v1::Model::Service {
 public:
  explicit ModelService(Trainer* t) : t_(t) {}

  grpc::Status GetModel(grpc::ServerContext*, const v1::GetModelRequest*,
                        v1::ModelInfo* out) override {
    return ToGrpcStatus(t_->AtStepBoundary([&](Trainer& t) {
      ModelSummary m = t.network().graph().Summary();
      for (const NodeSummary& n : m.nodes) {
        v1::NodeInfo* i = out->add_nodes();
        i->set_name(n.name);
        i->set_op(n.op);
        for (int64_t s : n.shape.sizes()) i->add_shape(s);
        i->set_tags(n.shape.tags_string());
        for (int64_t v : n.shape.fov()) i->add_fov(v);
        for (int64_t v : n.shape.strides()) i->add_strides(v);
        for (int64_t v : n.shape.offsets()) i->add_offsets(v);
        i->set_params(n.params);
        i->set_gops(n.gops);
        i->set_details(n.details);
      }
      out->set_total_params(m.total_params);
      out->set_prediction_node(m.prediction_node);
      out->set_step(t.step());
      return absl::OkStatus();
    }));
  }

  grpc::Status ListParameters(grpc::ServerContext*, const v1::ListParametersRequest*,
                              v1::ListParametersResponse* out) override {
    return ToGrpcStatus(t_->AtStepBoundary([&](Trainer& t) {
      for (const Parameter* p : t.network().params()) {
        v1::ParameterInfo* i = out->add_parameters();
        i->set_node(p->node);
        i->set_param(p->name);
        for (int64_t s : p->shape) i->add_shape(s);
        i->set_trainable(p->trainable);
      }
      return absl::OkStatus();
    }));
  }

  grpc::Status GetParameter(grpc::ServerContext*, const v1::GetParameterRequest* req,
                            grpc::ServerWriter<v1::TensorChunk>* writer) override {
    std::vector<float> values;
    std::vector<int64_t> shape;
    absl::Status s = t_->AtStepBoundary([&](Trainer& t) -> absl::Status {
      ASSIGN_OR_RETURN(Parameter * p, t.network().FindParam(req->node(), req->param()));
      values = t.network().ParamValue(*p);
      shape = p->shape;
      return absl::OkStatus();
    });
    if (!s.ok()) return ToGrpcStatus(s);
    const char* bytes = reinterpret_cast<const char*>(values.data());
    const size_t total = values.size() * sizeof(float);
    size_t sent = 0;
    do {
      v1::TensorChunk c;
      if (sent == 0) {
        for (int64_t d : shape) c.mutable_tensor()->add_shape(d);
        c.mutable_tensor()->set_dtype(v1::FLOAT32);
      }
      const size_t n = std::min(kChunkBytes, total - sent);
      c.set_data(bytes + sent, n);
      sent += n;
      if (!writer->Write(c)) return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
    } while (sent < total);
    return grpc::Status::OK;
  }

  // The parameter is looked up at the first chunk, so a wrong shape is refused before any data
  // is taken in, and the stream may carry exactly the parameter's bytes: at most one
  // parameter's size is ever buffered, and every chunk after the first must bring data.
  grpc::Status SetParameter(grpc::ServerContext* ctx,
                            grpc::ServerReader<v1::SetParameterChunk>* reader,
                            v1::ParameterInfo* out) override {
    v1::SetParameterChunk c;
    if (!reader->Read(&c)) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no chunks received");
    }
    const std::string node = c.node(), param = c.param();
    const std::vector<int64_t> shape(c.chunk().tensor().shape().begin(),
                                     c.chunk().tensor().shape().end());
    if (c.chunk().tensor().dtype() != v1::FLOAT32) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "parameters are FLOAT32");
    }
    std::string key;
    size_t expected = 0;
    absl::Status found = t_->AtStepBoundary([&](Trainer& t) -> absl::Status {
      ASSIGN_OR_RETURN(Parameter * p, t.network().FindParam(node, param));
      key = p->key();
      if (shape != p->shape) {
        return absl::InvalidArgumentError(
            absl::StrFormat("parameter %s has shape (%s), the tensor sent has (%s)", p->key(),
                            absl::StrJoin(p->shape, ","), absl::StrJoin(shape, ",")));
      }
      expected = static_cast<size_t>(p->canonical_size()) * sizeof(float);
      return absl::OkStatus();
    });
    if (!found.ok()) return ToGrpcStatus(found);
    std::string data;
    data.reserve(expected);
    int64_t chunks = 1;
    auto take = [&](const std::string& bytes) -> grpc::Status {
      if (bytes.size() > expected - data.size()) {
        return grpc::Status(
            grpc::StatusCode::INVALID_ARGUMENT,
            absl::StrFormat("parameter %s of shape (%s) holds %d bytes; the stream sent more "
                            "(%d bytes by chunk %d)",
                            key, absl::StrJoin(shape, ","), expected, data.size() + bytes.size(),
                            chunks));
      }
      data += bytes;
      return grpc::Status::OK;
    };
    if (grpc::Status s = take(c.chunk().data()); !s.ok()) return s;
    while (reader->Read(&c)) {
      ++chunks;
      if (c.chunk().data().empty()) {
        return grpc::Status(
            grpc::StatusCode::INVALID_ARGUMENT,
            absl::StrFormat("chunk %d of parameter %s carries no data", chunks, key));
      }
      if (grpc::Status s = take(c.chunk().data()); !s.ok()) return s;
    }
    if (data.size() != expected) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrFormat("parameter %s of shape (%s) needs %d bytes; the stream "
                                          "sent %d",
                                          key, absl::StrJoin(shape, ","), expected, data.size()));
    }
    std::vector<float> values(data.size() / sizeof(float));
    std::memcpy(values.data(), data.data(), data.size());
    data = std::string();
    const std::string who = absl::StrFormat("SetParameter from %s", ctx->peer());
    return ToGrpcStatus(t_->AtStepBoundary([&](Trainer& t) -> absl::Status {
      ASSIGN_OR_RETURN(Parameter * p, t.network().FindParam(node, param));
      RETURN_IF_ERROR(t.network().SetParamValue(*p, values));
      t.Log(absl::StrFormat("parameter %s set at step %d (%s)", p->key(), t.step(), who));
      out->set_node(p->node);
      out->set_param(p->name);
      for (int64_t s : p->shape) out->add_shape(s);
      out->set_trainable(p->trainable);
      return absl::OkStatus();
    }));
  }

  grpc::Status GetStatistics(grpc::ServerContext*, const v1::GetStatisticsRequest* req,
                             v1::Statistics* out) override {
    StatisticsOf what = StatisticsOf::kParameters;
    if (req->kind() == v1::GRADIENTS) what = StatisticsOf::kGradients;
    if (req->kind() == v1::ACTIVATIONS) what = StatisticsOf::kActivations;
    return ToGrpcStatus(t_->AtStepBoundary([&](Trainer& t) {
      for (const TensorStatistics& s : ComputeStatistics(t.network(), what)) {
        v1::TensorStatisticsInfo* i = out->add_tensors();
        i->set_name(s.name);
        for (int64_t d : s.shape) i->add_shape(d);
        i->set_mean(s.mean);
        i->set_std(s.std);
        i->set_median_abs(s.median_abs);
        i->set_non_finite(s.non_finite);
      }
      out->set_step(t.step());
      return absl::OkStatus();
    }));
  }

  grpc::Status ExportModel(grpc::ServerContext*, const v1::ExportModelRequest*,
                           grpc::ServerWriter<v1::FileChunk>* writer) override {
    std::string path;
    absl::Status s = t_->AtStepBoundary([&](Trainer& t) {
      path = t.CheckpointPath(absl::StrFormat("export-%d", getpid()));
      return SaveModel(path, t.network(), &t.optimiser());
    });
    if (!s.ok()) return ToGrpcStatus(s);
    std::ifstream in(path, std::ios::binary);
    const auto total = std::filesystem::file_size(path);
    std::string buf(kChunkBytes, '\0');
    bool first = true;
    while (in) {
      in.read(buf.data(), buf.size());
      const std::streamsize n = in.gcount();
      if (n <= 0) break;
      v1::FileChunk c;
      c.set_data(buf.data(), n);
      if (first) c.set_total_size(static_cast<int64_t>(total));
      first = false;
      if (!writer->Write(c)) break;
    }
    std::filesystem::remove(path);
    return grpc::Status::OK;
  }

 private:
  Trainer* t_;
};

// The interactive shell. A pausing session runs entirely inside one step-boundary command, so
// training holds still until the user types q (or the client goes away); a --live session runs
// each line as its own step-boundary command and training continues between lines.
class ShellService final : public v1::Shell::Service {
 public:
  explicit ShellService(Trainer* t) : t_(t) {}

  grpc::Status Attach(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<v1::ShellResponse, v1::ShellRequest>* stream) override {
    v1::ShellRequest req;
    if (!stream->Read(&req) || !req.has_attach()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "a shell session starts with an attach message");
    }
    const bool live = req.attach().live();
    // Through the daemon, `user` already names the client's address ("alice at ipv4:...").
    const std::string who = absl::StrCat("shell of ", req.attach().user().empty()
                                                          ? absl::StrCat("unknown at ", ctx->peer())
                                                          : req.attach().user());
    std::unique_ptr<ShellSession> session;
    absl::Status made = t_->AtStepBoundary([&](Trainer& t) -> absl::Status {
      auto s = ShellSession::Create(&t, who);
      if (!s.ok()) return s.status();
      session = *std::move(s);
      t.Log(absl::StrFormat("%s attached at step %d%s", who, t.step(), live ? " (live)" : ""));
      return absl::OkStatus();
    });
    if (!made.ok()) return ToGrpcStatus(made);
    auto prompt = [&](Trainer& t, bool paused, bool closed) {
      v1::ShellResponse r;
      v1::ShellPrompt* p = r.mutable_prompt();
      p->set_step(t.step());
      p->set_paused(paused);
      p->set_closed(closed);
      p->set_text(
          absl::StrFormat("%s step %d%s>> ", t.name(), t.step(), paused ? " (paused)" : ""));
      stream->Write(r);
    };
    // Returns false when the session is over.
    auto handle = [&](Trainer& t, const v1::ShellRequest& r, bool paused) -> bool {
      if (r.has_complete()) {
        v1::ShellResponse out;
        for (auto& c : session->Complete(r.complete()))
          out.mutable_completions()->add_candidates(c);
        stream->Write(out);
        return true;
      }
      if (!r.has_line()) return true;
      ShellOutput o = session->Execute(r.line());
      if (!o.text.empty()) {
        v1::ShellResponse out;
        if (o.error) {
          out.set_error(o.text);
        } else {
          out.set_output(o.text);
        }
        stream->Write(out);
      }
      if (o.leave || o.kill) {
        prompt(t, paused, true);
        return false;
      }
      prompt(t, paused, false);
      return true;
    };
    // The gRPC thread reads; the step-boundary side takes requests from this queue with a
    // timeout, so a client that vanishes without closing releases the pause.
    // The queue is bounded: a client that floods it ends its session with RESOURCE_EXHAUSTED.
    absl::Mutex mu;
    std::deque<v1::ShellRequest> queue;
    size_t queued_bytes = 0;
    bool ended = false, flooded = false;
    std::thread reader([&] {
      v1::ShellRequest r;
      while (stream->Read(&r)) {
        absl::MutexLock l(&mu);
        const size_t bytes = r.ByteSizeLong();
        if (queue.size() >= kMaxQueuedShellRequests ||
            queued_bytes + bytes > kMaxQueuedShellBytes) {
          flooded = true;
          const std::string message = absl::StrFormat(
              "shell input overflow: %d requests (%d bytes) are already waiting for the "
              "training thread (limits %d, %d bytes); send each line after the previous prompt",
              queue.size(), queued_bytes, kMaxQueuedShellRequests, kMaxQueuedShellBytes);
          // Ends the call with this status towards the client; reads and writes on the stream
          // fail from now on, so a training thread blocked writing to this client is released.
          grpc_call_cancel_with_status(ctx->c_call(), GRPC_STATUS_RESOURCE_EXHAUSTED,
                                       message.c_str(), nullptr);
          break;
        }
        queued_bytes += bytes;
        queue.push_back(std::move(r));
      }
      absl::MutexLock l(&mu);
      ended = true;
    });
    // Next request, or nullopt when the client is gone, flooded us or is silent for too long.
    auto next = [&]() -> std::optional<v1::ShellRequest> {
      absl::MutexLock l(&mu);
      auto ready = [&] { return !queue.empty() || ended; };
      if (!mu.AwaitWithTimeout(absl::Condition(&ready), kIdleRelease) || queue.empty() || flooded) {
        return std::nullopt;
      }
      v1::ShellRequest r = std::move(queue.front());
      queue.pop_front();
      queued_bytes -= r.ByteSizeLong();
      return r;
    };
    if (live) {
      (void)t_->AtStepBoundary([&](Trainer& t) {
        prompt(t, false, false);
        return absl::OkStatus();
      });
      while (auto r = next()) {
        bool more = true;
        (void)t_->AtStepBoundary([&](Trainer& t) {
          more = handle(t, *r, false);
          return absl::OkStatus();
        });
        if (!more) break;
      }
    } else {
      (void)t_->AtStepBoundary([&](Trainer& t) {
        t.Log(absl::StrFormat("training paused by %s", who));
        prompt(t, true, false);
        while (auto r = next()) {
          if (!handle(t, *r, true)) break;
        }
        t.Log(absl::StrFormat("training continues after %s", who));
        return absl::OkStatus();
      });
    }
    {
      // A client closes its side after the closing prompt; one that does not is cut off.
      absl::MutexLock l(&mu);
      if (!mu.AwaitWithTimeout(absl::Condition(&ended), absl::Seconds(2))) ctx->TryCancel();
    }
    reader.join();
    (void)t_->AtStepBoundary([&](Trainer&) {
      session.reset();  // the Lua state lives and dies on the training thread
      return absl::OkStatus();
    });
    if (flooded) {  // the client already has this status (see the reader)
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "shell input overflow");
    }
    return grpc::Status::OK;
  }

 private:
  Trainer* t_;
};

}  // namespace

struct WorkerControl::Services {
  explicit Services(Trainer* t) : trainer(t), model(t), shell(t) {}
  TrainerService trainer;
  ModelService model;
  ShellService shell;
};

absl::StatusOr<std::unique_ptr<WorkerControl>> WorkerControl::Start(
    Trainer* trainer, const std::string& socket_path) {
  auto w = std::unique_ptr<WorkerControl>(new WorkerControl());
  w->services_ = std::make_unique<Services>(trainer);
  w->socket_path_ = socket_path;
  std::error_code ec;
  std::filesystem::remove(socket_path, ec);
  grpc::ServerBuilder b;
  b.AddListeningPort("unix:" + socket_path, grpc::InsecureServerCredentials());
  b.SetMaxReceiveMessageSize(kMaxReceiveMessageBytes);
  b.RegisterService(&w->services_->trainer);
  b.RegisterService(&w->services_->model);
  b.RegisterService(&w->services_->shell);
  const mode_t old = umask(0077);  // the socket is the worker's: 0600
  w->server_ = b.BuildAndStart();
  umask(old);
  if (!w->server_) {
    return absl::UnavailableError(
        absl::StrFormat("cannot listen on control socket '%s'", socket_path));
  }
  return w;
}

void WorkerControl::Shutdown() {
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_.reset();
    std::error_code ec;
    std::filesystem::remove(socket_path_, ec);
  }
}

WorkerControl::~WorkerControl() { Shutdown(); }

}  // namespace elektronn
