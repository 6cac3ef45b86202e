// Forwarding of the per-job Trainer and Model services to the job's worker.
#include "server/control_proxy.h"

#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "engine/core/status.h"
#include "rpc/status.h"

namespace elektronn {
namespace {

constexpr auto kForwardTimeout = std::chrono::seconds(120);

// A client context for the worker call that ends when the caller's does.
std::unique_ptr<grpc::ClientContext> Forwarded(grpc::ServerContext* ctx) {
  auto c = grpc::ClientContext::FromServerContext(*ctx);
  if (ctx->deadline() == std::chrono::system_clock::time_point::max()) {
    c->set_deadline(std::chrono::system_clock::now() + kForwardTimeout);
  }
  return c;
}

template <typename Stub>
absl::StatusOr<std::unique_ptr<typename Stub::Stub>> StubFor(const WorkerChannels& channels,
                                                             const TokenChecker& auth,
                                                             grpc::ServerContext* ctx,
                                                             const std::string& name) {
  RETURN_IF_ERROR(auth.Check(*ctx));
  ASSIGN_OR_RETURN(auto channel, channels.For(name));
  return Stub::NewStub(channel);
}

#define ELK_STUB(Service, var, name)                                   \
  auto var##_or = StubFor<v1::Service>(*channels_, *auth_, ctx, name); \
  if (!var##_or.ok()) return ToGrpcStatus(var##_or.status());          \
  auto var = std::move(*var##_or)

}  // namespace

std::string WorkerChannels::SocketPath(const JobStore& store, const std::string& id) {
  return store.ControlSocketPath(id);
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> WorkerChannels::For(
    const std::string& job_name) const {
  ASSIGN_OR_RETURN(v1::Job job, manager_->Get(job_name));
  if (job.spec().has_prediction()) {
    return WithReason(absl::FailedPreconditionError(absl::StrCat(
                          job.name(),
                          " is a prediction job: it has no trainer, model or shell to reach "
                          "(status, watch, pause, resume and cancel work)")),
                      "NOT_A_TRAINING_JOB");
  }
  if (job.state() != v1::RUNNING) {
    return WithReason(absl::FailedPreconditionError(
                          absl::StrCat(job.name(), " is ", v1::JobState_Name(job.state()),
                                       "; the Trainer and Model services need a running job")),
                      "BAD_STATE");
  }
  const std::string id(absl::StripPrefix(job.name(), "jobs/"));
  auto channel =
      grpc::CreateChannel("unix:" + SocketPath(*store_, id), grpc::InsecureChannelCredentials());
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
    return WithReason(absl::UnavailableError(absl::StrCat(
                          job.name(), ": its worker does not answer on its control socket yet")),
                      "WORKER_UNAVAILABLE");
  }
  return channel;
}

grpc::Status TrainerProxy::GetHyperparameters(grpc::ServerContext* ctx,
                                              const v1::GetHyperparametersRequest* r,
                                              v1::Hyperparameters* out) {
  ELK_STUB(Trainer, stub, r->name());
  return stub->GetHyperparameters(Forwarded(ctx).get(), *r, out);
}

grpc::Status TrainerProxy::UpdateHyperparameters(grpc::ServerContext* ctx,
                                                 const v1::UpdateHyperparametersRequest* r,
                                                 v1::Hyperparameters* out) {
  ELK_STUB(Trainer, stub, r->name());
  return stub->UpdateHyperparameters(Forwarded(ctx).get(), *r, out);
}

grpc::Status ModelProxy::GetModel(grpc::ServerContext* ctx, const v1::GetModelRequest* r,
                                  v1::ModelInfo* out) {
  ELK_STUB(Model, stub, r->name());
  return stub->GetModel(Forwarded(ctx).get(), *r, out);
}

grpc::Status ModelProxy::ListParameters(grpc::ServerContext* ctx,
                                        const v1::ListParametersRequest* r,
                                        v1::ListParametersResponse* out) {
  ELK_STUB(Model, stub, r->name());
  return stub->ListParameters(Forwarded(ctx).get(), *r, out);
}

grpc::Status ModelProxy::GetStatistics(grpc::ServerContext* ctx, const v1::GetStatisticsRequest* r,
                                       v1::Statistics* out) {
  ELK_STUB(Model, stub, r->name());
  return stub->GetStatistics(Forwarded(ctx).get(), *r, out);
}

grpc::Status ModelProxy::GetParameter(grpc::ServerContext* ctx, const v1::GetParameterRequest* r,
                                      grpc::ServerWriter<v1::TensorChunk>* w) {
  ELK_STUB(Model, stub, r->name());
  auto fwd = Forwarded(ctx);
  auto reader = stub->GetParameter(fwd.get(), *r);
  v1::TensorChunk chunk;
  while (reader->Read(&chunk)) {
    if (!w->Write(chunk)) {
      fwd->TryCancel();
      break;
    }
  }
  return reader->Finish();
}

grpc::Status ModelProxy::ExportModel(grpc::ServerContext* ctx, const v1::ExportModelRequest* r,
                                     grpc::ServerWriter<v1::FileChunk>* w) {
  ELK_STUB(Model, stub, r->name());
  auto fwd = Forwarded(ctx);
  auto reader = stub->ExportModel(fwd.get(), *r);
  v1::FileChunk chunk;
  while (reader->Read(&chunk)) {
    if (!w->Write(chunk)) {
      fwd->TryCancel();
      break;
    }
  }
  return reader->Finish();
}

grpc::Status ModelProxy::SetParameter(grpc::ServerContext* ctx,
                                      grpc::ServerReader<v1::SetParameterChunk>* r,
                                      v1::ParameterInfo* out) {
  // The token first: nothing of an unauthenticated stream is read. The first chunk then names
  // the job, so it is read before choosing the worker.
  if (auto s = auth_->Check(*ctx); !s.ok()) return ToGrpcStatus(s);
  v1::SetParameterChunk first;
  if (!r->Read(&first)) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "SetParameter received no chunks");
  }
  ELK_STUB(Model, stub, first.name());
  auto fwd = Forwarded(ctx);
  auto writer = stub->SetParameter(fwd.get(), out);
  bool ok = writer->Write(first);
  v1::SetParameterChunk chunk;
  while (ok && r->Read(&chunk)) ok = writer->Write(chunk);
  writer->WritesDone();
  return writer->Finish();
}

grpc::Status ShellProxy::Attach(
    grpc::ServerContext* ctx,
    grpc::ServerReaderWriter<v1::ShellResponse, v1::ShellRequest>* stream) {
  // The token first: nothing of an unauthenticated stream is read.
  if (auto s = auth_->Check(*ctx); !s.ok()) return ToGrpcStatus(s);
  v1::ShellRequest first;
  if (!stream->Read(&first) || !first.has_attach()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "a shell session starts with an attach message naming the job");
  }
  ELK_STUB(Shell, stub, first.attach().name());
  // The worker sees the daemon as its peer; tell it who is really attached.
  first.mutable_attach()->set_user(absl::StrCat(
      first.attach().user().empty() ? "unknown" : first.attach().user(), " at ", ctx->peer()));
  auto fwd = grpc::ClientContext::FromServerContext(*ctx);
  auto worker = stub->Attach(fwd.get());
  if (!worker->Write(first)) return worker->Finish();
  // Client -> worker on its own thread; worker -> client here.
  std::atomic<bool> up_done{false};
  std::thread up([&] {
    v1::ShellRequest r;
    while (stream->Read(&r)) {
      if (!worker->Write(r)) break;
    }
    worker->WritesDone();
    up_done = true;
  });
  v1::ShellResponse r;
  while (worker->Read(&r)) {
    if (!stream->Write(r)) {
      fwd->TryCancel();
      break;
    }
  }
  grpc::Status s = worker->Finish();
  // The worker ended the session; a client that does not close its side soon is cut off.
  for (int i = 0; i < 40 && !up_done; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (!up_done) ctx->TryCancel();
  up.join();
  return s;
}

}  // namespace elektronn
