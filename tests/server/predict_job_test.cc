// Prediction jobs on a real elektronnd: typed progress events, pause/resume and a worker crash
// that continue the same output, a training job's model by name, cancel, and the specs the
// daemon refuses. Every finished output is compared with a local PredictVolume run.
#include <gtest/gtest.h>

#include <cstring>

#include "elektronn/v1/control.grpc.pb.h"
#include "engine/io/knossos.h"
#include "engine/predict/predictor.h"
#include "rpc/status.h"
#include "tests/e2e/predict_fixture.h"
#include "tests/server/daemon_fixture.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;

class PredictJobTest : public DaemonTest {
 protected:
  // model.h5 (PredictNet(48)) and vol/raw_0.h5 (24,160,160): 200 output chunks of a few ms each
  // on one thread, so a pause lands mid-run.
  void MakePredictData() {
    ASSERT_TRUE(testing::SavePredictModel((dir_ / "model.h5").string(), 48).ok());
    ASSERT_TRUE(testing::MakeInputVolume((dir_ / "vol").string(), {24, 160, 160}).ok());
  }
  static constexpr int64_t kChunks = 8 * 5 * 5;  // output (24,160,160) in chunks of (3,36,36)

  static v1::JobSpec PredictSpec(const std::string& model, const std::string& output) {
    v1::JobSpec spec;
    v1::PredictionSpec* p = spec.mutable_prediction();
    p->set_model(model);
    p->set_input("vol/raw_0.h5:/raw");
    p->set_output(output);
    p->add_patch(5);
    p->add_patch(25);
    p->add_patch(25);
    p->add_chunk(3);
    p->add_chunk(36);
    p->add_chunk(36);
    p->set_mfp(v1::PredictionSpec::MFP_OFF);  // shift-and-stitch: 4 passes per tile
    spec.mutable_resources()->set_cpu_threads(1);
    return spec;
  }

  // The same prediction run here, in this process.
  std::string LocalPrediction(const std::string& model, const std::string& input,
                              const v1::PredictionSpec& p, const std::string& output) {
    PredictOptions o;
    o.model = model;
    o.input = input;
    o.output = (dir_ / output).string();
    o.patch.assign(p.patch().begin(), p.patch().end());
    for (int i = 0; i < p.chunk_size(); ++i) o.chunk[i] = p.chunk(i);
    o.mfp = p.mfp() == v1::PredictionSpec::MFP_OFF ? PredictOptions::Mfp::kOff
                                                   : PredictOptions::Mfp::kAuto;
    o.threads = 1;
    static std::unique_ptr<kernels::Backend> cpu = kernels::CreateCpuBackend();
    auto s = PredictVolume(o, cpu.get());
    EXPECT_TRUE(s.ok()) << s.status();
    return o.output;
  }

  static void ExpectBitIdentical(const std::string& a, const std::string& b) {
    auto va = testing::ReadWholeVolume(a);
    auto vb = testing::ReadWholeVolume(b);
    ASSERT_TRUE(va.ok()) << va.status();
    ASSERT_TRUE(vb.ok()) << vb.status();
    ASSERT_EQ(va->shape, vb->shape);
    EXPECT_EQ(std::memcmp(va->values.data(), vb->values.data(), va->values.size() * sizeof(float)),
              0)
        << a << " and " << b << " differ";
  }

  std::vector<v1::JobEvent> Events(const std::string& name) {
    v1::WatchJobRequest req;
    req.set_name(name);
    req.set_follow(false);
    auto ctx = Ctx();
    auto reader = jobs_->WatchJob(ctx.get(), req);
    std::vector<v1::JobEvent> out;
    v1::JobEvent ev;
    while (reader->Read(&ev)) out.push_back(ev);
    EXPECT_TRUE(reader->Finish().ok());
    return out;
  }

  v1::Job Call(const std::string& verb, const std::string& name) {
    v1::Job job;
    grpc::Status s;
    if (verb == "pause") {
      v1::PauseJobRequest req;
      req.set_name(name);
      s = jobs_->PauseJob(Ctx().get(), req, &job);
    } else if (verb == "resume") {
      v1::ResumeJobRequest req;
      req.set_name(name);
      s = jobs_->ResumeJob(Ctx().get(), req, &job);
    } else {
      v1::CancelJobRequest req;
      req.set_name(name);
      s = jobs_->CancelJob(Ctx().get(), req, &job);
    }
    EXPECT_TRUE(s.ok()) << verb << ": " << s.error_message();
    return job;
  }

  grpc::Status TryCreate(const v1::JobSpec& spec, v1::Job* job = nullptr) {
    v1::CreateJobRequest req;
    *req.mutable_job() = spec;
    v1::Job ignored;
    return jobs_->CreateJob(Ctx().get(), req, job != nullptr ? job : &ignored);
  }
};

int64_t ChunksDone(const v1::Job& j) { return j.prediction_progress().chunks_done(); }

TEST_F(PredictJobTest, PauseResumeAndACrashContinueTheSameOutput) {
  MakePredictData();
  StartDaemon({"--max-restarts", "1"});
  const v1::JobSpec spec = PredictSpec("model.h5", "out/pred.zarr");
  v1::Job job = Create(spec);
  ASSERT_FALSE(job.name().empty());
  EXPECT_TRUE(job.training_dir().empty());
  EXPECT_FALSE(job.spec().has_training());

  // Progress arrives typed; pause mid-run: the worker stops once its chunks in flight are
  // durable, and the job's progress counts exactly the chunks on disk.
  job = WaitFor(job.name(), [](const v1::Job& j) { return ChunksDone(j) >= 3; });
  EXPECT_EQ(job.prediction_progress().chunks_total(), kChunks);
  EXPECT_EQ(job.prediction_progress().voxels_total(), int64_t{24} * 160 * 160);
  Call("pause", job.name());
  job = WaitState(job.name(), v1::PAUSED);
  const int64_t paused_at = ChunksDone(job);
  EXPECT_GT(paused_at, 0);
  EXPECT_LT(paused_at, kChunks) << "the pause landed after the last chunk; make the run longer";
  EXPECT_EQ(testing::CountZarrChunks(dir_ / "out/pred.zarr"), paused_at);

  // Another job writing the same output is refused while this one may continue.
  grpc::Status s = TryCreate(PredictSpec("model.h5", "out/pred.zarr"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_NE(s.error_message().find("is the output of " + job.name()), std::string::npos)
      << s.error_message();
  // Nothing to steer in a prediction job.
  auto trainer = v1::Trainer::NewStub(channel_);
  v1::GetHyperparametersRequest hreq;
  hreq.set_name(job.name());
  v1::Hyperparameters h;
  s = trainer->GetHyperparameters(Ctx().get(), hreq, &h);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  ASSERT_TRUE(ErrorInfoOf(s).has_value());
  EXPECT_EQ(ErrorInfoOf(s)->reason(), "NOT_A_TRAINING_JOB");

  // Resume continues from the done chunks; then the worker dies and is restarted (once).
  Call("resume", job.name());
  job = WaitFor(job.name(), [&](const v1::Job& j) {
    return j.state() == v1::RUNNING && ChunksDone(j) >= paused_at + 3;
  });
  const int pid = WorkerPid(job);
  ASSERT_GT(pid, 0);
  kill(pid, SIGKILL);
  job = WaitState(job.name(), v1::SUCCEEDED, 60);
  EXPECT_EQ(job.restarts(), 1);
  EXPECT_EQ(ChunksDone(job), kChunks);
  EXPECT_EQ(job.prediction_progress().voxels_done(), job.prediction_progress().voxels_total());
  EXPECT_EQ(testing::CountZarrChunks(dir_ / "out/pred.zarr"), kChunks);

  // The events: typed progress, never decreasing within a run; each run starts from the chunks
  // done before it.
  std::vector<v1::JobState> states;
  std::vector<int64_t> run_starts;
  int64_t last = -1, progress_events = 0;
  for (const v1::JobEvent& ev : Events(job.name())) {
    if (ev.has_state()) {
      states.push_back(ev.state());
      if (ev.state() == v1::RUNNING) run_starts.push_back(-1);
      last = -1;
    } else if (ev.has_prediction()) {
      ++progress_events;
      EXPECT_GE(ev.prediction().chunks_done(), last);
      if (!run_starts.empty() && run_starts.back() < 0) {
        run_starts.back() = ev.prediction().chunks_done();
      }
      last = ev.prediction().chunks_done();
      EXPECT_EQ(ev.prediction().chunks_total(), kChunks);
    }
    EXPECT_FALSE(ev.has_status()) << "a prediction job reports no training status";
  }
  EXPECT_GT(progress_events, 5);
  ASSERT_EQ(run_starts.size(), 3u);
  EXPECT_EQ(run_starts[0], 0);
  EXPECT_EQ(run_starts[1], paused_at);
  EXPECT_GE(run_starts[2], paused_at + 3);
  EXPECT_EQ(states.back(), v1::SUCCEEDED);
  EXPECT_NE(std::find(states.begin(), states.end(), v1::PAUSED), states.end());

  // Persisted: job.pb holds the final progress.
  {
    std::ifstream in(fs::path(StateDir()) / job.name() / "job.pb", std::ios::binary);
    v1::Job stored;
    ASSERT_TRUE(stored.ParseFromIstream(&in));
    EXPECT_EQ(ChunksDone(stored), kChunks);
  }

  // Equal, bit for bit, to one uninterrupted local run.
  const std::string local =
      LocalPrediction((dir_ / "model.h5").string(), (dir_ / "vol/raw_0.h5:/raw").string(),
                      spec.prediction(), "local.zarr");
  ExpectBitIdentical(local, (dir_ / "out/pred.zarr").string());
}

TEST_F(PredictJobTest, TrainingJobsModelByNameDaemonRestartAndCancel) {
  MakePredictData();
  StartDaemon();
  // A training job's final model, by the job's name.
  v1::Job trained = WaitState(Create(TinySpec(10)).name(), v1::SUCCEEDED, 60);
  v1::JobSpec spec;
  v1::PredictionSpec* p = spec.mutable_prediction();
  p->set_model(trained.name());
  p->set_input("data/raw_0.h5:/raw");
  p->set_output("by_name.h5:/prob");
  spec.mutable_resources()->set_cpu_threads(1);
  v1::Job job = WaitState(Create(spec).name(), v1::SUCCEEDED, 60);
  const fs::path copy = fs::path(StateDir()) / job.name() / "model.h5";
  const std::string final_model = trained.training_dir() + "/train-FINAL.h5";
  ASSERT_TRUE(fs::exists(copy));
  EXPECT_EQ(fs::file_size(copy), fs::file_size(final_model));
  EXPECT_EQ(job.spec().prediction().model(), trained.name()) << "the spec stays as submitted";
  const std::string local = LocalPrediction(final_model, (dir_ / "data/raw_0.h5:/raw").string(), *p,
                                            "local_by_name.zarr");
  ExpectBitIdentical(local, (dir_ / "by_name.h5:/prob").string());

  // Names that are not a training job with a model.
  for (const auto& [model, why] : std::vector<std::pair<std::string, std::string>>{
           {"jobs/999999", "no such job"}, {job.name(), job.name() + " is a prediction job"}}) {
    v1::JobSpec bad = spec;
    bad.mutable_prediction()->set_model(model);
    bad.mutable_prediction()->set_output("other.zarr");
    grpc::Status s = TryCreate(bad);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    EXPECT_NE(s.error_message().find("job.prediction.model is '" + model + "': " + why),
              std::string::npos)
        << s.error_message();
  }

  // The daemon stops mid-run: its worker stops at a durable chunk, and the restarted daemon
  // continues the job's output.
  v1::Job cont = Create(PredictSpec("model.h5", "continued.zarr"));
  cont = WaitFor(cont.name(), [](const v1::Job& j) { return ChunksDone(j) >= 2; });
  kill(pid_, SIGTERM);
  EXPECT_EQ(WaitDaemon(), 0);
  const int64_t stopped_at = testing::CountZarrChunks(dir_ / "continued.zarr");
  EXPECT_LT(stopped_at, kChunks);
  StartDaemon();
  cont = WaitState(cont.name(), v1::SUCCEEDED, 60);
  EXPECT_EQ(cont.restarts(), 1);
  EXPECT_EQ(ChunksDone(cont), kChunks);
  bool resumed = false;
  for (const v1::JobEvent& ev : Events(cont.name())) {
    resumed = resumed || (ev.has_prediction() && ev.prediction().chunks_done() == stopped_at &&
                          stopped_at > 0);
  }
  EXPECT_TRUE(resumed) << "the restarted worker starts from the " << stopped_at
                       << " chunks done before";

  // Cancel mid-run.
  v1::Job slow = Create(PredictSpec("model.h5", "cancelled.zarr"));
  WaitFor(slow.name(), [](const v1::Job& j) { return ChunksDone(j) >= 2; });
  Call("cancel", slow.name());
  slow = WaitState(slow.name(), v1::CANCELLED);
  EXPECT_LT(ChunksDone(slow), kChunks);
}

TEST_F(PredictJobTest, BadSpecsAreRefusedWithTheField) {
  MakePredictData();
  StartDaemon();
  auto expect_invalid = [&](const v1::JobSpec& spec, const std::string& message) {
    grpc::Status s = TryCreate(spec);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << message;
    EXPECT_NE(s.error_message().find(message), std::string::npos)
        << "want: " << message << "\ngot: " << s.error_message();
    auto info = ErrorInfoOf(s);
    ASSERT_TRUE(info.has_value()) << message;
    EXPECT_EQ(info->reason(), "INVALID_JOB_SPEC");
  };
  const v1::JobSpec good = PredictSpec("model.h5", "pred.zarr");
  v1::JobSpec both = TinySpec(10);
  *both.mutable_prediction() = good.prediction();
  expect_invalid(both, "a job either trains (job.model and job.training) or predicts");
  expect_invalid(v1::JobSpec(), "the job is empty");
  auto with = [&](const std::function<void(v1::PredictionSpec*)>& change) {
    v1::JobSpec s = good;
    change(s.mutable_prediction());
    return s;
  };
  expect_invalid(with([](auto* p) { p->set_model("/etc/passwd"); }), "job.prediction.model");
  expect_invalid(with([](auto* p) { p->set_model("missing.h5"); }),
                 "job.prediction.model is 'missing.h5'");
  expect_invalid(with([](auto* p) { p->set_input("/etc/hosts:/raw"); }), "job.prediction.input");
  expect_invalid(with([](auto* p) { p->set_input("../../../../etc/hosts"); }),
                 "job.prediction.input");
  expect_invalid(with([](auto* p) { p->set_input("vol/none.h5:/raw"); }),
                 "job.prediction.input is 'vol/none.h5:/raw'");
  // KNOSSOS inputs: every dataset directory confined and present.
  expect_invalid(with([](auto* p) { p->set_input("knossos:/etc"); }), "job.prediction.input");
  expect_invalid(with([](auto* p) { p->set_input("knossos:vol,../../x"); }),
                 "job.prediction.input");
  expect_invalid(with([](auto* p) { p->set_input("knossos:vol/none"); }),
                 "job.prediction.input is 'knossos:vol/none'");
  expect_invalid(with([](auto* p) { p->set_output("../pred.zarr"); }), "job.prediction.output");
  expect_invalid(with([](auto* p) { p->set_output("/tmp/pred.h5:/prob"); }),
                 "job.prediction.output");
  expect_invalid(with([](auto* p) { p->set_output("state/pred.zarr"); }),
                 "which holds elektronnd's own state");
  expect_invalid(with([](auto* p) { p->set_output("vol/raw_0.h5:/prob"); }),
                 "writes into the input's file");
  expect_invalid(with([](auto* p) { p->add_roi(1); }), "job.prediction.roi has 1 values");
  expect_invalid(with([](auto* p) { p->set_patch(1, 0); }), "job.prediction.patch[1] is 0");
  expect_invalid(with([](auto* p) { p->set_compression("lzma"); }),
                 "job.prediction.compression is 'lzma'");
  expect_invalid(with([](auto* p) { p->set_output(""); }), "job.prediction.output is empty");

  // A KNOSSOS dataset inside the data directory is predicted like any volume.
  ASSERT_TRUE(WriteKnossosDataset(
                  (dir_ / "vol/em").string(), "em", {40, 40, 6},
                  [](int64_t x, int64_t y, int64_t z) { return static_cast<uint8_t>(x + y + z); })
                  .ok());
  v1::Job kn = Create(with([](auto* p) {
    p->set_input("knossos:vol/em");
    p->set_output("from_knossos.zarr");
  }));
  kn = WaitState(kn.name(), v1::SUCCEEDED, 60);
  EXPECT_TRUE(fs::exists(dir_ / "from_knossos.zarr/.zarray"));

  // A dataset the daemon cannot see (it opens no HDF5): the worker fails, naming it.
  v1::Job job = Create(with([](auto* p) { p->set_input("vol/raw_0.h5:/nope"); }));
  job = WaitState(job.name(), v1::FAILED);
  EXPECT_NE(job.error().find("no dataset '/nope'"), std::string::npos) << job.error();
}

}  // namespace
}  // namespace elektronn
