// `elektronn-worker profile`: the model of a job file, compiled on the CPU backend, timed node by
// node with Network::Profile (a separate executor, so training's Forward/Backward carry no
// timing code).
#include "worker/profile_command.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/core/status.h"
#include "engine/graph/network.h"
#include "engine/io/model_loader.h"
#include "engine/lua/job_file.h"
#include "kernels/backend.h"

namespace elektronn {
namespace {

struct ProfileReport {
  std::vector<Network::NodeTiming> nodes;
  int64_t batch_size = 0;
  std::string input_node, input_shape;
  double forward_ms = 0, backward_ms = 0;
  double total_ms() const { return forward_ms + backward_ms; }
};

// Random data in every source: the designated input uniform in [0, 1), other sources (targets,
// masks) 0 or 1, which are valid class labels and regression targets alike.
absl::Status FillSources(Network& net, uint64_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  const std::string& input = net.graph().spec().designations().input_node();
  for (const auto& n : net.graph().nodes()) {
    if (!n->is_source()) continue;
    std::vector<float> v(n->numel());
    const bool is_input = n->name() == input || (input.empty() && n->name() == "input");
    for (float& x : v) x = is_input ? u(rng) : (u(rng) < 0.5f ? 0.f : 1.f);
    RETURN_IF_ERROR(net.SetInput(n->name(), v));
  }
  return absl::OkStatus();
}

absl::StatusOr<ProfileReport> Profile(const ProfileCommand& c) {
  if (c.steps < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--steps must be at least 1, got %d", c.steps));
  }
  ASSIGN_OR_RETURN(v1::JobSpec job, LoadJobFile(c.job_path));
  ProfileReport r;
  r.batch_size = c.batch_size > 0                  ? c.batch_size
                 : job.training().batch_size() > 0 ? job.training().batch_size()
                                                   : 1;
  ASSIGN_OR_RETURN(
      auto backend,
      kernels::CreateBackend(
          {.device = "cpu", .threads = c.threads > 0 ? c.threads : job.resources().cpu_threads()}));
  NetworkOptions options;
  options.batch_size = r.batch_size;
  std::unique_ptr<Network> net;
  if (const v1::TrainingSpec& t = job.training(); !t.model_load_path().empty()) {
    // A fine-tuning job profiles the saved model with the patch and batch sizes it would train.
    std::filesystem::path p = t.model_load_path();
    if (p.is_relative()) p = std::filesystem::absolute(c.job_path).parent_path() / p;
    LoadOptions o;
    o.imposed_batch_size =
        c.batch_size > 0 ? c.batch_size : t.model_load_args().imposed_batch_size();
    o.imposed_patch_size.assign(t.model_load_args().imposed_patch_size().begin(),
                                t.model_load_args().imposed_patch_size().end());
    ASSIGN_OR_RETURN(o.replace_bn, ParseReplaceBn("model_load_args.replace_bn",
                                                  t.model_load_args().replace_bn()));
    o.network = options;
    absl::StatusOr<LoadedModel> m = LoadModel(p.string(), o, backend.get());
    if (!m.ok()) {
      return absl::Status(m.status().code(),
                          absl::StrCat("model_load_path: ", m.status().message()));
    }
    *job.mutable_model() = m->spec;
    net = std::move(m->net);
  } else {
    ASSIGN_OR_RETURN(net, Network::Create(job.model(), backend.get(), options));
  }
  net->set_training(true);
  RETURN_IF_ERROR(FillSources(*net, 1));
  const v1::Designations& d = job.model().designations();
  r.input_node = d.input_node().empty() ? "input" : d.input_node();
  if (const Node* in = net->graph().Find(r.input_node); in != nullptr) {
    r.input_shape = in->shape().ToString();
  }
  // One untimed step: first-call work (primitive creation, caches) is not the model's cost.
  RETURN_IF_ERROR(net->Forward());
  if (!d.loss_node().empty()) RETURN_IF_ERROR(net->Backward());
  ASSIGN_OR_RETURN(r.nodes, net->Profile(c.steps));
  for (const auto& n : r.nodes) {
    r.forward_ms += n.forward_ms;
    r.backward_ms += n.backward_ms;
  }
  return r;
}

double Share(const ProfileReport& r, const Network::NodeTiming& n) {
  return r.total_ms() > 0 ? 100.0 * (n.forward_ms + n.backward_ms) / r.total_ms() : 0.0;
}

std::string Text(const ProfileReport& r, int steps) {
  std::vector<std::vector<std::string>> rows = {
      {"node", "op", "forward ms", "backward ms", "total ms", "share"}};
  for (const auto& n : r.nodes) {
    rows.push_back({n.name, n.op, absl::StrFormat("%.3f", n.forward_ms),
                    absl::StrFormat("%.3f", n.backward_ms),
                    absl::StrFormat("%.3f", n.forward_ms + n.backward_ms),
                    absl::StrFormat("%.1f%%", Share(r, n))});
  }
  rows.push_back({"total", "", absl::StrFormat("%.3f", r.forward_ms),
                  absl::StrFormat("%.3f", r.backward_ms), absl::StrFormat("%.3f", r.total_ms()),
                  "100.0%"});
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& row : rows)
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  std::string s =
      absl::StrFormat("input '%s' %s, batch %d, CPU backend; mean of %d forward+backward passes\n",
                      r.input_node, r.input_shape, r.batch_size, steps);
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      const std::string pad(width[i] - row[i].size(), ' ');
      // Names left-aligned, numbers right-aligned.
      absl::StrAppend(&line, i < 2 ? row[i] + pad : pad + row[i], "  ");
    }
    line.erase(line.find_last_not_of(' ') + 1);
    absl::StrAppend(&s, line, "\n");
  }
  return s;
}

std::string Json(const ProfileReport& r, int steps) {
  nlohmann::ordered_json nodes = nlohmann::ordered_json::array();
  for (const auto& n : r.nodes) {
    nodes.push_back({{"name", n.name},
                     {"op", n.op},
                     {"forward_ms", n.forward_ms},
                     {"backward_ms", n.backward_ms},
                     {"share", Share(r, n) / 100.0}});
  }
  nlohmann::ordered_json out = {{"input", r.input_node},
                                {"input_shape", r.input_shape},
                                {"batch_size", r.batch_size},
                                {"backend", "cpu"},
                                {"steps", steps},
                                {"nodes", nodes},
                                {"forward_ms", r.forward_ms},
                                {"backward_ms", r.backward_ms},
                                {"total_ms", r.total_ms()}};
  return out.dump();
}

}  // namespace

CLI::App* AddProfileCommand(CLI::App& app, ProfileCommand* c) {
  c->app = app.add_subcommand(
      "profile",
      "time every node's forward and backward pass of a job file's model on random input "
      "(CPU backend)");
  c->app->add_option("job", c->job_path, "the Lua job file")->required()->check(CLI::ExistingFile);
  c->app->add_option("--steps", c->steps, "timed forward+backward passes")->capture_default_str();
  c->app->add_option("--batch-size", c->batch_size, "batch size (default: the job's)");
  c->app->add_option("--threads", c->threads, "CPU threads (default: the job's, else all)");
  c->app->add_flag("--json", c->json, "print one JSON object instead of a table");
  return c->app;
}

int RunProfileCommand(const ProfileCommand& c) {
  absl::StatusOr<ProfileReport> r = Profile(c);
  if (!r.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(r.status().message()).c_str());
    return r.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  const std::string out = c.json ? Json(*r, c.steps) + "\n" : Text(*r, c.steps);
  std::fputs(out.c_str(), stdout);
  return 0;
}

}  // namespace elektronn
