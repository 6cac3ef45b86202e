// The training loop and everything it writes into the training directory.
#include "engine/trainer/trainer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/config/hyperparams.h"
#include "engine/core/status.h"
#include "engine/data/batch_creator_image.h"
#include "engine/data/batch_queue.h"
#include "engine/data/mnist.h"
#include "engine/data/piano_roll.h"
#include "engine/io/model_file.h"
#include "engine/io/model_loader.h"  // batch_norm: the conversion after training
#include "engine/io/tensorboard.h"
#include "engine/nodes/neural.h"
#include "engine/report/model_graph.h"
#include "engine/report/plots.h"
#include "engine/trainer/preview.h"
#include "spdlog/sinks/basic_file_sink.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace elektronn {
namespace fs = std::filesystem;

namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
double WallTime() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string ExpandHome(const std::string& p) {
  if (p.rfind("~", 0) == 0) {
    const char* home = std::getenv("HOME");
    return std::string(home ? home : "") + p.substr(1);
  }
  return p;
}

std::string FormatTime(double s) {
  if (s < 300) return absl::StrFormat("%.0fs", s);
  if (s < 4000) return absl::StrFormat("%.0fm", s / 60);
  return absl::StrFormat("%.1fh", s / 3600);
}

// Writes `text` to `path` atomically (temporary file, fsync, rename).
absl::Status WriteFileAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = absl::StrCat(path, ".tmp-", getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("cannot write '", tmp, "'"));
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n <= 0) {
      ::close(fd);
      ::unlink(tmp.c_str());
      return absl::UnavailableError(absl::StrCat("writing '", tmp, "' failed"));
    }
    done += n;
  }
  ::fsync(fd);
  ::close(fd);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return absl::UnavailableError(absl::StrCat("cannot rename '", tmp, "' to '", path, "'"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const BatchSource>> MakeSource(const v1::TrainingSpec& spec,
                                                              const BatchGeometry& g,
                                                              const std::string& job_dir) {
  if (spec.data_class() == "BatchCreatorImage") {
    ASSIGN_OR_RETURN(auto s, BatchCreatorImage::Create(spec.batch_creator_image(),
                                                       spec.data_batch_args(), g, job_dir));
    return std::shared_ptr<const BatchSource>(std::move(s));
  }
  if (spec.data_class() == "MNISTData") {
    ASSIGN_OR_RETURN(auto s, MnistData::Create(spec.mnist(), g));
    return std::shared_ptr<const BatchSource>(std::move(s));
  }
  if (spec.data_class() == "PianoRollData") {
    ASSIGN_OR_RETURN(auto s, PianoRollData::Create(spec.piano_roll(), g));
    return std::shared_ptr<const BatchSource>(std::move(s));
  }
  return absl::InvalidArgumentError(
      absl::StrFormat("data_class '%s' is unknown; choose BatchCreatorImage, MNISTData or "
                      "PianoRollData",
                      spec.data_class()));
}

}  // namespace

const char* StopReasonName(StopReason r) {
  switch (r) {
    case StopReason::kSteps:
      return "n_steps reached";
    case StopReason::kRuntime:
      return "max_runtime reached";
    case StopReason::kRequested:
      return "stopped on request";
    case StopReason::kNanLoss:
      return "loss became NaN";
  }
  return "?";
}

Trainer::~Trainer() {
  if (net_ != nullptr) {
    for (float* p : good_) net_->backend()->Free(p);
  }
}

std::string Trainer::CheckpointPath(const std::string& suffix) const {
  return absl::StrCat(dir_, "/", name_, "-", suffix, ".h5");
}

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const v1::JobSpec& job,
                                                         kernels::Backend* backend,
                                                         TrainerOptions options) {
  auto t = std::unique_ptr<Trainer>(new Trainer());
  t->options_ = std::move(options);
  RETURN_IF_ERROR(t->Setup(job, backend));
  return t;
}

// batch_norm family: fine-tuning (reference §3.4): the job's model is the saved one at
// model_load_path, rebuilt with the modelload options of model_load_args.
static absl::StatusOr<LoadedModel> LoadForFineTuning(const v1::TrainingSpec& t,
                                                     const std::string& job_dir,
                                                     kernels::DataType precision,
                                                     kernels::Backend* backend) {
  fs::path p = ExpandHome(t.model_load_path());
  if (p.is_relative()) p = fs::path(job_dir) / p;
  const v1::ModelLoadArgs& a = t.model_load_args();
  LoadOptions o;
  o.lock_first_n = static_cast<int>(a.lock_first_n());
  o.lock_nodes.assign(a.lock_nodes().begin(), a.lock_nodes().end());
  ASSIGN_OR_RETURN(o.replace_bn, ParseReplaceBn("model_load_args.replace_bn", a.replace_bn()));
  o.unlock_all_params = a.unlock_all_params();
  o.imposed_batch_size = a.imposed_batch_size();
  o.imposed_patch_size.assign(a.imposed_patch_size().begin(), a.imposed_patch_size().end());
  o.network = {t.batch_size() > 0 ? t.batch_size() : 1, t.seed(), false};
  o.network.precision = precision;
  absl::StatusOr<LoadedModel> m = LoadModel(p.string(), o, backend);
  if (!m.ok()) {
    return absl::Status(m.status().code(), absl::StrCat("model_load_path: ", m.status().message()));
  }
  return m;
}

absl::Status Trainer::Setup(const v1::JobSpec& job_in, kernels::Backend* backend) {
  job_ = job_in;
  ASSIGN_OR_RETURN(const kernels::DataType precision,
                   kernels::ParseDataType("job.resources.precision", job_.resources().precision()));
  std::unique_ptr<Network> loaded;  // batch_norm family: fine-tuning
  std::vector<std::string> load_notes;
  if (!job_.training().model_load_path().empty()) {
    ASSIGN_OR_RETURN(LoadedModel m,
                     LoadForFineTuning(job_.training(), options_.job_dir, precision, backend));
    *job_.mutable_model() = m.spec;
    loaded = std::move(m.net);
    load_notes = std::move(m.notes);
  }
  const v1::JobSpec& job = job_;
  spec_ = job.training();
  const v1::Designations& d = job.model().designations();
  input_name_ = d.input_node();
  target_name_ = d.target_node();
  loss_name_ = d.loss_node();
  error_name_ = d.error_node();
  if (input_name_.empty() || target_name_.empty() || loss_name_.empty()) {
    return absl::InvalidArgumentError(
        "the model must designate input_node, target_node and loss_node for training");
  }
  if (spec_.n_steps() <= 0) return absl::InvalidArgumentError("n_steps must be positive");
  if (spec_.history_freq() <= 0) return absl::InvalidArgumentError("history_freq must be positive");
  if (spec_.batch_size() <= 0) return absl::InvalidArgumentError("batch_size must be positive");

  // Training directory.
  name_ = spec_.save_name();
  if (name_.empty()) name_ = fs::path(job.job_file_name()).stem().string();
  if (name_.empty()) name_ = "training";
  const std::string parent =
      ExpandHome(spec_.save_path().empty() ? "~/elektronn_training" : spec_.save_path());
  dir_ = (fs::path(parent) / name_).string();
  std::error_code ec;
  if (fs::exists(dir_) && !options_.resume) {
    if (!options_.overwrite) {
      return absl::AlreadyExistsError(absl::StrFormat(
          "training directory '%s' exists; pass --resume to continue it, --overwrite to replace "
          "it, or choose another save_name",
          dir_));
    }
    fs::remove_all(dir_, ec);
  }
  if (options_.resume && !fs::exists(CheckpointPath("LAST"))) {
    return absl::NotFoundError(
        absl::StrFormat("cannot resume: '%s' does not exist", CheckpointPath("LAST")));
  }
  fs::create_directories(fs::path(dir_) / "Backup", ec);
  if (ec)
    return absl::UnavailableError(absl::StrFormat("cannot create '%s': %s", dir_, ec.message()));
  if (!job.job_file_source().empty()) {
    const std::string copy =
        (fs::path(dir_) / ("0-" + fs::path(job.job_file_name()).filename().string())).string();
    RETURN_IF_ERROR(WriteFileAtomically(copy, job.job_file_source()));
  }

  // Log: DEBUG to the file, INFO to the console.
  auto file_sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(
      (fs::path(dir_) / ("0-" + name_ + ".log")).string(), /*truncate=*/false);
  file_sink->set_level(spdlog::level::debug);
  file_sink->set_pattern("[%Y-%m-%d %H:%M:%S] [%l] %v");
  std::vector<spdlog::sink_ptr> sinks = {file_sink};
  if (options_.console) {
    auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    console->set_level(spdlog::level::info);
    console->set_pattern(options_.console_pattern);
    sinks.push_back(console);
  }
  log_ = std::make_shared<spdlog::logger>("trainer-" + name_, sinks.begin(), sinks.end());
  log_->set_level(spdlog::level::debug);
  log_->flush_on(spdlog::level::info);
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  log_->info("Running on {} with backend {} ({}); training directory {}", host, backend->name(),
             kernels::DataTypeName(precision), dir_);

  // Network, optimiser, schedules.
  const uint64_t seed = spec_.seed() != 0 ? spec_.seed() : job.model().seed();
  seed_ = seed;
  if (loaded) {
    net_ = std::move(loaded);
    log_->info("Fine-tuning the model of {}", spec_.model_load_path());
    for (const std::string& n : load_notes) log_->info("model_load_args: {}", n);
  } else {
    NetworkOptions no{spec_.batch_size(), seed == 0 ? 1 : seed, false};
    no.precision = precision;
    ASSIGN_OR_RETURN(net_, Network::Create(job.model(), backend, no));
  }
  log_->info("\n{}", net_->graph().Summary().ToString());
  if (!net_->graph().fov_warning().empty()) log_->warn("{}", net_->graph().fov_warning());
  {  // batch_norm family: frozen (locked) layers, which the summary counts as 0 trainable
    std::vector<std::string> frozen;
    for (const auto& n : net_->graph().nodes()) {
      bool any = false, all = true;
      for (const Parameter& p : n->params()) {
        if (p.fixed) continue;
        any = true;
        all = all && !p.trainable;
      }
      if (any && all) frozen.push_back(n->name());
    }
    if (!frozen.empty()) log_->info("Frozen (not trained): {}", absl::StrJoin(frozen, ", "));
  }
  {  // batch_norm: 'fadeout' is experimental, as ELEKTRONN2 warned when it built such a layer
    std::vector<std::string> fadeout;
    for (const auto& n : net_->graph().nodes()) {
      const auto* nn = dynamic_cast<const NeuralNode*>(n.get());
      if (nn != nullptr && nn->has_gradnet()) {
        fadeout.push_back(absl::StrFormat("%s (gradnet_rate=%g)", nn->name(), nn->gradnet_rate()));
      }
    }
    if (!fadeout.empty()) {
      log_->warn(
          "batch_normalisation='fadeout' is experimental (ELEKTRONN2: \"does not work for less "
          "than 50%\"): {}; gradnet_rates=r fades the batch statistics and gamma in, r=1 is "
          "'train'",
          absl::StrJoin(fadeout, ", "));
    }
  }
  // The picture of the model (reference §5.3: 1-model-graph.*); a picture that cannot be drawn
  // (Graphviz or a plugin missing, a full disk) must not stop training.
  for (const char* ext : {"svg", "png"}) {
    const std::string path = absl::StrCat(dir_, "/1-model-graph.", ext);
    if (absl::Status s = WriteModelGraph(net_->graph(), path); !s.ok())
      log_->warn("no model graph picture: {}", std::string(s.message()));
  }
  ASSIGN_OR_RETURN(OptimiserKind kind, ParseOptimiser(spec_.optimiser()));
  opt_ = std::make_unique<Optimiser>(kind, backend, net_->params());
  // Starting values of the job-file keys in optimiser_params (the table's defaults otherwise).
  for (const HyperparameterDef& d : Hyperparameters()) {
    if (d.job_file != JobFileKey::kOptimiserParams) continue;
    absl::StatusOr<double> v = GetProtoValue(d, spec_.optimiser_params());
    if (!v.ok()) {
      if (d.name == "lr")
        log_->warn("optimiser_params has no lr; ELEKTRONN2's default lr=1.0 is used");
      v = d.default_value;
    }
    RETURN_IF_ERROR(CheckHyperparameterValue(d, *v));
    RETURN_IF_ERROR(d.set(*this, *v));
  }
  for (const auto& [name, s] : spec_.schedules()) RETURN_IF_ERROR(SetSchedule(name, &s, ""));

  // Data.
  BatchGeometry g{.input = net_->graph().Find(input_name_)->shape(),
                  .target = net_->graph().Find(target_name_)->shape(),
                  .extras = {}};
  // Lazy-label masks (data_batch_args.ret_ll_mask): two more model inputs the data fills.
  if (spec_.data_batch_args().ret_ll_mask()) {
    if (spec_.data_class() != "BatchCreatorImage") {
      return absl::InvalidArgumentError(absl::StrFormat(
          "data_batch_args.ret_ll_mask: lazy-label masks come from BatchCreatorImage label "
          "files; data_class '%s' has none",
          spec_.data_class()));
    }
    for (const char* name :
         {BatchCreatorImage::kMaskClassLabeled, BatchCreatorImage::kMaskClassNotPresent}) {
      Node* m = net_->graph().Find(name);
      if (m == nullptr) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "data_batch_args.ret_ll_mask: the model has no input node named '%s'; add "
            "nm.Input{name='%s', shape={batch_size, n_class}, tags='b,f'} and pass it to the loss",
            name, name));
      }
      g.extras.push_back({name, m->shape()});
      extra_names_.push_back(name);
    }
  }
  ASSIGN_OR_RETURN(source_, MakeSource(spec_, g, options_.job_dir));
  log_->info("{}", source_->Describe());

  ASSIGN_OR_RETURN(events_, EventWriter::Create(dir_, host, WallTime(), getpid()));
  if (!spec_.preview_data_path().empty()) {
    fs::path p = ExpandHome(spec_.preview_data_path());
    if (p.is_relative()) p = fs::path(options_.job_dir) / p;
    auto pv = PreviewPredictor::Create(job.model(), backend, p.string(), spec_.preview_data_key(),
                                       spec_.preview_kwargs());
    if (!pv.ok()) {
      return absl::Status(pv.status().code(),
                          absl::StrCat("preview_data_path: ", pv.status().message()));
    }
    preview_ = *std::move(pv);
    next_preview_h_ = spec_.has_initial_prev_h() ? spec_.initial_prev_h() : 1.0;
  }
  if (options_.resume) {
    RETURN_IF_ERROR(Resume());
    // Previews continue on the schedule they would have had.
    const double prev = spec_.has_prev_save_h() ? spec_.prev_save_h() : 3.0;
    while (preview_ && next_preview_h_ < time_offset_s_ / 3600) next_preview_h_ += prev;
  }
  // Step k trains on batch k of the seed's stream, so a resumed run sees the batches the
  // uninterrupted run would have seen from its step on.
  const int threads =
      spec_.background_processes() > 0 ? static_cast<int>(spec_.background_processes()) : 2;
  ASSIGN_OR_RETURN(queue_, BatchQueue::Create(source_, threads, 2 * threads, seed + 99, step_));
  return absl::OkStatus();
}

absl::Status Trainer::Resume() {
  ASSIGN_OR_RETURN(ModelFileContents f, ReadModelFile(CheckpointPath("LAST")));
  RETURN_IF_ERROR(LoadInto(f, *net_, opt_.get()));
  step_ = static_cast<int64_t>(f.step);
  // History and the time trained so far come back from the history file.
  std::ifstream in(absl::StrCat(dir_, "/", name_, ".history.csv"));
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::vector<std::string> c = absl::StrSplit(line, ',');
    if (c.size() < 9) continue;
    HistoryRecord r;
    r.step = std::stoll(c[0]);
    if (r.step > step_) break;  // written after the checkpoint we resume from
    r.time_s = std::stod(c[1]);
    r.train_loss = std::stod(c[2]);
    r.valid_loss = std::stod(c[3]);
    r.loss_gain = std::stod(c[4]);
    r.train_err = std::stod(c[5]);
    r.valid_err = std::stod(c[6]);
    r.lr = std::stod(c[7]);
    r.mom = std::stod(c[8]);
    history_.push_back(r);
  }
  if (!history_.empty()) time_offset_s_ = history_.back().time_s;
  log_->info("Resumed from {} at step {} (optimiser step {}, lr {:.3e})", CheckpointPath("LAST"),
             step_, opt_->t(), opt_->hyper().lr);
  return absl::OkStatus();
}

double Trainer::TrainingSeconds() const { return time_offset_s_ + (Now() - run_start_s_); }

absl::StatusOr<double> Trainer::GetHyperparameter(const std::string& name) const {
  ASSIGN_OR_RETURN(const HyperparameterDef* d, LookupHyperparameter(name));
  return d->get(*this);
}

std::map<std::string, v1::Schedule> Trainer::ScheduleSpecs() const {
  std::map<std::string, v1::Schedule> out;
  for (const Schedule& s : schedules_) out[s.name()] = s.spec();
  return out;
}

absl::Status Trainer::SetSchedule(const std::string& name, const v1::Schedule* spec,
                                  const std::string& who) {
  ASSIGN_OR_RETURN(const HyperparameterDef* d, LookupHyperparameter(name));
  const std::string by = who.empty() ? "" : absl::StrCat(" (", who, ")");
  auto it = std::find_if(schedules_.begin(), schedules_.end(),
                         [&](const Schedule& s) { return s.name() == d->name; });
  if (spec == nullptr) {
    if (it == schedules_.end()) return absl::OkStatus();
    schedules_.erase(it);
    log_->info("Schedule for {} removed at step {}{}", d->name, step_, by);
    Emit({.kind = TrainerEvent::Kind::kHyperparameters, .step = step_});
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(Schedule sch, Schedule::Create(d->name, *spec));
  RETURN_IF_ERROR(d->get(*this).status());  // something to drive (dropout needs dropout layers)
  if (who.empty()) {
    log_->info("Schedule for {}", sch.Describe());
  } else {
    log_->info("Schedule for {} from step {}{}", sch.Describe(), step_, by);
  }
  if (it != schedules_.end()) {
    *it = std::move(sch);
  } else {
    schedules_.push_back(std::move(sch));
  }
  if (!who.empty()) Emit({.kind = TrainerEvent::Kind::kHyperparameters, .step = step_});
  return absl::OkStatus();
}

void Trainer::Log(const std::string& line) { log_->info("{}", line); }

absl::Status Trainer::SetHyperparameter(const std::string& name, double value,
                                        const std::string& who) {
  ASSIGN_OR_RETURN(const HyperparameterDef* d, LookupHyperparameter(name));
  RETURN_IF_ERROR(CheckHyperparameterValue(*d, value));
  ASSIGN_OR_RETURN(double old, d->get(*this));
  RETURN_IF_ERROR(d->set(*this, value));
  log_->info("{} changed from {:.6g} to {:.6g} at step {} ({})", d->name, old, value, step_, who);
  Emit({.kind = TrainerEvent::Kind::kHyperparameters, .step = step_});
  return absl::OkStatus();
}

absl::Status Trainer::AtStepBoundary(std::function<absl::Status(Trainer&)> fn) {
  PendingCommand cmd{std::move(fn), absl::OkStatus(), false};
  absl::MutexLock lock(&commands_mu_);
  if (!loop_running_) return cmd.fn(*this);
  commands_.push_back(&cmd);
  while (!cmd.done) commands_cv_.Wait(&commands_mu_);
  return cmd.result;
}

bool Trainer::WaitForStart() {
  const double start = options_.start_at_unix_s;
  if (start <= 0 || step_ > 0 || WallTime() >= start) return true;
  const std::time_t whole = static_cast<std::time_t>(start);
  std::tm utc{};
  gmtime_r(&whole, &utc);
  char when[32];
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &utc);
  log_->info("Waiting for the group's start at {}.{:03d} UTC (in {:.1f} s)", when,
             static_cast<int>((start - whole) * 1000), start - WallTime());
  // Short sleeps: commands (the shell, hyper-parameters) and stops are served while waiting,
  // and the last sleep ends within a millisecond of the start.
  for (double left = start - WallTime(); left > 0; left = start - WallTime()) {
    RunPendingCommands();
    if (stop_requested_.load()) return false;
    std::this_thread::sleep_for(std::chrono::duration<double>(std::min(left, 0.02)));
  }
  run_start_s_ = Now();  // the wait is not training time (max_runtime)
  return true;
}

void Trainer::RunPendingCommands() {
  absl::MutexLock lock(&commands_mu_);
  DrainCommandsLocked();
}

void Trainer::DrainCommandsLocked() {
  while (!commands_.empty()) {
    PendingCommand* c = commands_.front();
    commands_.pop_front();
    c->result = c->fn(*this);
    c->done = true;
  }
  commands_cv_.SignalAll();
}

absl::Status Trainer::ApplySchedules() {
  for (const Schedule& s : schedules_) {
    const HyperparameterDef* d = FindHyperparameter(s.name());  // Schedule::Create checked it
    ASSIGN_OR_RETURN(double cur, d->get(*this));
    if (auto v = s.Apply(step_, cur)) {
      const double value = ClampHyperparameterValue(*d, *v);
      RETURN_IF_ERROR(d->set(*this, value));
      log_->debug("Schedule: {} = {:.4g} at step {}", s.name(), value, step_);
      Emit({.kind = TrainerEvent::Kind::kHyperparameters, .step = step_});
    }
  }
  return absl::OkStatus();
}

// The last good state lives in the backend's own memory (device-to-device copies on a GPU):
// nothing crosses to the host on a training step.
void Trainer::SnapshotGoodState() {
  kernels::Backend* be = net_->backend();
  auto& params = net_->params();
  const size_t n_slots = opt_->SlotNames().size();
  if (good_.empty()) {
    good_.resize(params.size() * (1 + n_slots));
    for (size_t i = 0; i < params.size(); ++i) {
      for (size_t k = 0; k <= n_slots; ++k)
        good_[i * (1 + n_slots) + k] = be->Allocate(params[i]->size);
    }
  }
  for (size_t i = 0; i < params.size(); ++i) {
    float** g = &good_[i * (1 + n_slots)];
    be->Copy(params[i]->value, g[0], params[i]->size);
    for (size_t s = 0; s < n_slots; ++s) be->Copy(opt_->Slot(i, s), g[1 + s], params[i]->size);
  }
  good_step_ = step_;
  good_t_ = opt_->t();
}

void Trainer::RestoreGoodState() {
  if (good_.empty()) return;
  kernels::Backend* be = net_->backend();
  auto& params = net_->params();
  const size_t n_slots = opt_->SlotNames().size();
  for (size_t i = 0; i < params.size(); ++i) {
    float* const* g = &good_[i * (1 + n_slots)];
    be->Copy(g[0], params[i]->value, params[i]->size);
    for (size_t s = 0; s < n_slots; ++s) be->Copy(g[1 + s], opt_->Slot(i, s), params[i]->size);
  }
  step_ = good_step_;
  opt_->set_t(good_t_);
  net_->set_step(static_cast<uint64_t>(step_));
}

absl::Status Trainer::TrainStep(double* loss) {
  ASSIGN_OR_RETURN(Batch * b, queue_->Next());
  absl::Status s = net_->SetInput(input_name_, b->input);
  if (s.ok()) s = net_->SetInput(target_name_, b->target);
  for (size_t i = 0; s.ok() && i < extra_names_.size(); ++i) {
    s = net_->SetInput(extra_names_[i], b->extras[i]);
  }
  // Prevalence of the batch ("batch_char"): mean of the target's first channel.
  double sum = 0;
  for (float v : b->target) sum += v;
  last_batch_char_ = b->target.empty() ? 0 : sum / b->target.size();
  queue_->Release(b);
  RETURN_IF_ERROR(s);
  net_->set_training(true);
  RETURN_IF_ERROR(net_->Forward());
  ASSIGN_OR_RETURN(float l, net_->Scalar(loss_name_));
  *loss = l;
  if (!std::isfinite(l)) return absl::OkStatus();  // the caller restores the good state
  SnapshotGoodState();
  RETURN_IF_ERROR(net_->Backward());
  opt_->Step();
  RETURN_IF_ERROR(net_->backend()->Synchronize());  // the update's launch errors, if any
  ++step_;
  net_->set_step(static_cast<uint64_t>(step_));
  if (!error_name_.empty()) {
    ASSIGN_OR_RETURN(float e, net_->Scalar(error_name_));
    last_err_ = e;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::pair<double, double>> Trainer::Evaluate(Split split) {
  // ELEKTRONN2 rounds monitor_batch_size down to ceil(mbs/bs) batches (QUIRK 7): we use
  // ceil(mbs/bs) batches of batch_size, i.e. at least monitor_batch_size examples.
  const int64_t bs = spec_.batch_size();
  const int64_t mbs = std::max<int64_t>(spec_.monitor_batch_size(), bs);
  const int64_t n = (mbs + bs - 1) / bs;
  Node* in = net_->graph().Find(input_name_);
  Node* tg = net_->graph().Find(target_name_);
  std::vector<float> x(in->numel()), t(tg->numel());
  std::vector<std::vector<float>> extras;
  std::vector<float*> extra_ptrs;
  for (const std::string& name : extra_names_) {
    extras.emplace_back(net_->graph().Find(name)->numel());
  }
  for (auto& e : extras) extra_ptrs.push_back(e.data());
  double loss = 0, err = 0;
  net_->set_training(false);
  for (int64_t i = 0; i < n; ++i) {
    RETURN_IF_ERROR(extras.empty()
                        ? source_->GetBatch(split, rng_, x.data(), t.data())
                        : source_->GetBatch(split, rng_, x.data(), t.data(), extra_ptrs.data()));
    RETURN_IF_ERROR(net_->SetInput(input_name_, x));
    RETURN_IF_ERROR(net_->SetInput(target_name_, t));
    for (size_t k = 0; k < extras.size(); ++k) {
      RETURN_IF_ERROR(net_->SetInput(extra_names_[k], extras[k]));
    }
    RETURN_IF_ERROR(net_->Forward());
    ASSIGN_OR_RETURN(float l, net_->Scalar(loss_name_));
    loss += l / n;
    if (!error_name_.empty()) {
      ASSIGN_OR_RETURN(float e, net_->Scalar(error_name_));
      err += e / n;
    }
  }
  net_->set_training(true);
  return std::make_pair(loss, 100 * err);
}

absl::Status Trainer::Monitor(double loss_before) {
  // Monitoring batches depend on the seed and the step only, as training batches do: a resumed
  // run monitors on what the uninterrupted run would have.
  const uint64_t step = static_cast<uint64_t>(step_);
  std::seed_seq seq{static_cast<uint32_t>(seed_ + 17), static_cast<uint32_t>((seed_ + 17) >> 32),
                    static_cast<uint32_t>(step), static_cast<uint32_t>(step >> 32)};
  rng_.seed(seq);
  HistoryRecord r;
  r.step = step_;
  r.time_s = TrainingSeconds();
  // Loss after the update on the same batch (still in the input buffers).
  net_->set_training(false);
  RETURN_IF_ERROR(net_->Forward());
  ASSIGN_OR_RETURN(float after, net_->Scalar(loss_name_));
  r.loss_gain = after - loss_before;
  ASSIGN_OR_RETURN(auto tr, Evaluate(Split::kTrain));
  r.train_loss = tr.first;
  r.train_err = tr.second;
  if (source_->has_validation()) {
    ASSIGN_OR_RETURN(auto vl, Evaluate(Split::kValid));
    r.valid_loss = vl.first;
    r.valid_err = vl.second;
  } else {
    r.valid_loss = r.valid_err = std::nan("");
  }
  r.lr = opt_->hyper().lr;
  r.mom = opt_->hyper().mom;
  history_.push_back(r);
  // History first: a run killed in between resumes from the previous checkpoint and drops the
  // newer row, where the other order would lose this row for good.
  RETURN_IF_ERROR(WriteHistoryAndPlots());
  RETURN_IF_ERROR(SaveCheckpoint(CheckpointPath("LAST")));
  const double wall = WallTime();
  for (auto [tag, v] :
       std::initializer_list<std::pair<const char*, double>>{{"monitor/train_loss", r.train_loss},
                                                             {"monitor/valid_loss", r.valid_loss},
                                                             {"monitor/train_err", r.train_err},
                                                             {"monitor/valid_err", r.valid_err},
                                                             {"monitor/loss_gain", r.loss_gain},
                                                             {"hyper/lr", r.lr},
                                                             {"hyper/mom", r.mom}}) {
    if (std::isfinite(v))
      RETURN_IF_ERROR(events_->AddScalar(tag, step_, static_cast<float>(v), wall));
  }
  RETURN_IF_ERROR(events_->Flush());
  double smooth = 0;
  for (double l : recent_losses_) smooth += l;
  smooth /= std::max<size_t>(1, recent_losses_.size());
  const double voxels = static_cast<double>(net_->graph().Find(input_name_)->numel());
  log_->info(
      "{:05d} L_m={:.3f}, L={:.2f}, tr={:05.2f}%, vl={:05.2f}%, prev={:04.1f}, "
      "L_diff={:+.1e}, LR={:.2e}, {:.2f} it/s, {:.2f} MVx/s, t={}",
      step_, smooth, loss_before, r.train_err, r.valid_err, 100 * last_batch_char_, r.loss_gain,
      r.lr, 1 / std::max(1e-9, t_per_step_), voxels / std::max(1e-9, t_per_step_) / 1e6,
      FormatTime(r.time_s));
  Emit({.kind = TrainerEvent::Kind::kStatus,
        .step = step_,
        .loss = loss_before,
        .smoothed_loss = smooth,
        .errors = r.train_err,
        .learning_rate = r.lr,
        .steps_per_second = 1 / std::max(1e-9, t_per_step_)});
  return absl::OkStatus();
}

absl::Status Trainer::SaveCheckpoint(const std::string& path) {
  absl::Status s = SaveModel(path, *net_, opt_.get());
  if (!s.ok()) return absl::Status(s.code(), absl::StrCat("saving checkpoint: ", s.message()));
  log_->debug("saved {}", path);
  Emit({.kind = TrainerEvent::Kind::kCheckpoint,
        .step = step_,
        .loss = recent_losses_.empty() ? 0.0 : recent_losses_.back(),
        .path = path});
  return absl::OkStatus();
}

absl::Status Trainer::WriteHistoryAndPlots() {
  std::string csv = "step,time_s,train_loss,valid_loss,loss_gain,train_err,valid_err,lr,mom\n";
  std::vector<HistoryRow> rows;
  for (const HistoryRecord& r : history_) {
    absl::StrAppendFormat(&csv, "%d,%.3f,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g\n", r.step, r.time_s,
                          r.train_loss, r.valid_loss, r.loss_gain, r.train_err, r.valid_err, r.lr,
                          r.mom);
    rows.push_back({r.step, r.time_s, r.train_loss, r.valid_loss, r.loss_gain, r.train_err,
                    r.valid_err, r.lr, r.mom});
  }
  RETURN_IF_ERROR(WriteFileAtomically(absl::StrCat(dir_, "/", name_, ".history.csv"), csv));
  std::string tl = "time_s,loss,batch_char\n";
  std::vector<TimelinePoint> points;
  for (const auto& p : timeline_) {
    absl::StrAppendFormat(&tl, "%.3f,%.6g,%.4g\n", p.time_s, p.loss, p.batch_char);
    points.push_back({p.time_s, p.loss, p.batch_char});
  }
  RETURN_IF_ERROR(WriteFileAtomically(absl::StrCat(dir_, "/", name_, ".timeline.csv"), tl));
  if (rows.size() >= 2) {
    absl::Status s =
        PlotHistory(absl::StrCat(dir_, "/0-", name_, ".history.png"), rows, !error_name_.empty());
    if (!s.ok()) log_->warn("history plot: {}", std::string(s.message()));
  }
  if (points.size() >= 2) {
    absl::Status s = PlotTimeline(absl::StrCat(dir_, "/0-", name_, ".timeline.png"), points, 200);
    if (!s.ok()) log_->warn("timeline plot: {}", std::string(s.message()));
  }
  return absl::OkStatus();
}

absl::Status Trainer::EvaluateTestSet() {
  const auto* mnist = dynamic_cast<const MnistData*>(source_.get());
  if (mnist == nullptr || error_name_.empty()) return absl::OkStatus();
  Node* in = net_->graph().Find(input_name_);
  Node* tg = net_->graph().Find(target_name_);
  const int64_t bs = spec_.batch_size();
  std::vector<float> x(in->numel()), t(tg->numel());
  int64_t wrong = 0, total = 0;
  net_->set_training(false);
  for (int64_t start = 0; start < mnist->test_size(); start += bs) {
    int64_t n = 0;
    RETURN_IF_ERROR(mnist->GetTestBatch(start, bs, x.data(), t.data(), &n));
    for (int64_t i = n; i < bs; ++i) t[i] = -1.f;  // padding rows are unlabelled
    RETURN_IF_ERROR(net_->SetInput(input_name_, x));
    RETURN_IF_ERROR(net_->SetInput(target_name_, t));
    RETURN_IF_ERROR(net_->Forward());
    ASSIGN_OR_RETURN(float e, net_->Scalar(error_name_));
    wrong += std::llround(e * n);
    total += n;
  }
  net_->set_training(true);
  log_->info("Test set: accuracy {:.2f}% on {} images ({} wrong)",
             100.0 * (total - wrong) / std::max<int64_t>(1, total), total, wrong);
  return absl::OkStatus();
}

void Trainer::StatusLine(double loss) {
  const double now = Now();
  if (options_.status_interval_s > 0 && now - last_status_s_ < options_.status_interval_s) return;
  last_status_s_ = now;
  double smooth = 0;
  for (double l : recent_losses_) smooth += l;
  smooth /= std::max<size_t>(1, recent_losses_.size());
  const double voxels = static_cast<double>(net_->graph().Find(input_name_)->numel());
  log_->info(
      "step {:6d}  loss {:.4f}  smooth {:.4f}  err {:5.1f}%  lr {:.2e}  {:.2f} it/s  "
      "{:.2f} MVx/s  t={}",
      step_, loss, smooth, 100 * last_err_, opt_->hyper().lr, 1 / std::max(1e-9, t_per_step_),
      voxels / std::max(1e-9, t_per_step_) / 1e6, FormatTime(TrainingSeconds()));
  Emit({.kind = TrainerEvent::Kind::kStatus,
        .step = step_,
        .loss = loss,
        .smoothed_loss = smooth,
        .errors = 100 * last_err_,
        .learning_rate = opt_->hyper().lr,
        .steps_per_second = 1 / std::max(1e-9, t_per_step_)});
}

absl::StatusOr<StopReason> Trainer::Run() {
  run_start_s_ = Now();
  t_per_step_ = 0;
  StopReason reason = StopReason::kSteps;
  const int64_t param_save_it = spec_.param_save_it() > 0 ? spec_.param_save_it() : 10000;
  {
    absl::MutexLock lock(&commands_mu_);
    loop_running_ = true;
  }
  // Commands still queued when the loop ends run on this thread before Run returns.
  absl::Cleanup stop_commands = [this] {
    // Run may be called again (the shell after a NaN): keep the training time trained so far.
    time_offset_s_ = TrainingSeconds();
    run_start_s_ = Now();
    absl::MutexLock lock(&commands_mu_);
    loop_running_ = false;
    DrainCommandsLocked();
  };
  if (!WaitForStart()) return StopReason::kRequested;
  if (step_ == 0) {
    // Batch_test_image.png (reference §5.3): what the network will see, before it trains.
    auto written = WriteDebugBatch();
    if (!written.ok()) {
      log_->warn("no Batch_test_image.png: {}", std::string(written.status().message()));
    }
  }
  log_->info("Training {} from step {} to {} (max_runtime {})", name_, step_, spec_.n_steps(),
             FormatTime(spec_.max_runtime() > 0 ? spec_.max_runtime() : 1e30));
  while (true) {
    if (step_ >= spec_.n_steps()) {
      reason = StopReason::kSteps;
      break;
    }
    if (spec_.max_runtime() > 0 && TrainingSeconds() > spec_.max_runtime()) {
      reason = StopReason::kRuntime;
      break;
    }
    RunPendingCommands();
    if (stop_requested_.load()) {
      reason = StopReason::kRequested;
      break;
    }
    const double t0 = Now();
    double loss = 0;
    RETURN_IF_ERROR(TrainStep(&loss));
    if (!std::isfinite(loss)) {
      // The parameters that produced this loss came out of the previous update: go back to the
      // state before it and save that.
      if (good_step_ >= 0) RestoreGoodState();
      const std::string path = CheckpointPath("LAST");
      RETURN_IF_ERROR(SaveCheckpoint(path));
      log_->error(
          "The loss became {} at step {}. The last good state (step {}) is saved in {}; "
          "lower the learning rate or check the data, then resume with --resume.",
          loss, step_ + 1, step_, path);
      return absl::DataLossError(absl::StrFormat(
          "loss became %f at step %d; last good state saved in %s", loss, step_ + 1, path));
    }
    const double dt = Now() - t0;
    t_per_step_ = t_per_step_ == 0 ? dt : 0.8 * t_per_step_ + 0.2 * dt;
    recent_losses_.push_back(loss);
    if (recent_losses_.size() > 200) recent_losses_.pop_front();
    timeline_.push_back({TrainingSeconds(), loss, last_batch_char_});
    if (step_ % 10 == 0) {
      absl::Status s =
          events_->AddScalar("train/loss", step_, static_cast<float>(loss), WallTime());
      if (!s.ok()) log_->warn("event file: {}", std::string(s.message()));
    }
    RETURN_IF_ERROR(ApplySchedules());
    if (step_ % param_save_it == 0) {
      RETURN_IF_ERROR(
          SaveCheckpoint(absl::StrCat(dir_, "/Backup/", name_, "-", step_ / 1000, "k.h5")));
    }
    if (preview_ && TrainingSeconds() / 3600 >= next_preview_h_) {
      const double t_preview = Now();
      RETURN_IF_ERROR(preview_->Run(*net_, dir_, name_, next_preview_h_, step_, events_.get()));
      log_->info("Preview for {:.1f} hrs written ({:.1f} s, not counted as training time)",
                 next_preview_h_, Now() - t_preview);
      time_offset_s_ -= Now() - t_preview;
      next_preview_h_ += spec_.has_prev_save_h() ? spec_.prev_save_h() : 3.0;
    }
    if (step_ % spec_.history_freq() == 0 || step_ == 1) {
      RETURN_IF_ERROR(Monitor(loss));
    } else {
      StatusLine(loss);
    }
  }
  RETURN_IF_ERROR(SaveCheckpoint(CheckpointPath("LAST")));
  // batch_norm (reference §2.4): after training, layers with BN in 'train' mode switch to
  // constants (replace_bn='const'), so every later prediction from this model, in memory or
  // from FINAL, uses the running statistics. QUIRK 11 (ELEKTRONN2 wrote FINAL before this, still
  // in 'train' mode) is fixed: FINAL is written after the conversion, and LAST, written just
  // before it at the same step with the optimiser state, keeps 'train' mode for resuming and
  // fine-tuning.
  ASSIGN_OR_RETURN(std::unique_ptr<Network> converted, ConvertBatchNormToConstants(*net_));
  if (converted) {
    auto opt = std::make_unique<Optimiser>(opt_->kind(), converted->backend(), converted->params());
    opt->hyper() = opt_->hyper();
    opt->set_t(opt_->t());
    opt_ = std::move(opt);
    net_ = std::move(converted);
    log_->info("Batch normalisation switched to constants (the running statistics)");
  }
  if (reason != StopReason::kRequested) RETURN_IF_ERROR(SaveCheckpoint(CheckpointPath("FINAL")));
  RETURN_IF_ERROR(WriteHistoryAndPlots());
  RETURN_IF_ERROR(events_->Flush());
  queue_.reset();
  RETURN_IF_ERROR(EvaluateTestSet());
  if (reason != StopReason::kRequested) {
    // The evaluation marker (reference §5.3): training finished, its model awaits evaluation.
    // Not for a stop on request (pause, kill), after which the job may go on.
    std::ofstream(dir_ + "/0-EVAL-needed").flush();
  }
  log_->info("End of training at step {} ({}); checkpoints in {}", step_, StopReasonName(reason),
             dir_);
  Emit({.kind = TrainerEvent::Kind::kEnded, .step = step_, .reason = StopReasonName(reason)});
  return reason;
}

}  // namespace elektronn
