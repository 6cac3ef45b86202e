// The shell's tools on a live training (reference §6): debug batch, previews now, loading
// parameters, filter pictures. Kept apart from the training loop in trainer.cc.
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/core/status.h"
#include "engine/io/model_file.h"
#include "engine/trainer/debug_images.h"
#include "engine/trainer/preview.h"
#include "engine/trainer/trainer.h"

namespace elektronn {
namespace fs = std::filesystem;

absl::StatusOr<std::string> Trainer::WriteDebugBatch() {
  Node* in = net_->graph().Find(input_name_);
  Node* tg = net_->graph().Find(target_name_);
  if (in == nullptr || tg == nullptr) {
    return absl::FailedPreconditionError("the model has no input or target node to show");
  }
  std::vector<float> x(in->numel()), t(tg->numel());
  std::vector<std::vector<float>> extras;
  std::vector<float*> extra_ptrs;
  for (const std::string& name : extra_names_) {
    extras.emplace_back(net_->graph().Find(name)->numel());
  }
  for (auto& e : extras) extra_ptrs.push_back(e.data());
  // Its own generator: the training and monitoring streams stay as they were.
  std::mt19937_64 rng(seed_ ^ (0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(step_ + 1)));
  RETURN_IF_ERROR(extras.empty() ? source_->GetBatch(Split::kTrain, rng, x.data(), t.data())
                                 : source_->GetBatch(Split::kTrain, rng, x.data(), t.data(),
                                                     extra_ptrs.data()));
  const std::string path = dir_ + "/Batch_test_image.png";
  RETURN_IF_ERROR(WriteBatchImage(path, in->shape(), x, tg->shape(), t));
  return path;
}

absl::Status Trainer::PreviewNow() {
  if (!preview_) {
    return absl::FailedPreconditionError(
        "this job has no previews: set preview_data_path (and preview_kwargs) in its job file");
  }
  const double hours = TrainingSeconds() / 3600;
  return preview_->Run(*net_, dir_, name_, hours, step_, events_.get());
}

absl::Status Trainer::LoadParameters(const std::string& file) {
  if (file.empty())
    return absl::InvalidArgumentError("load needs a model file, e.g. load Backup/train-1k.h5");
  // Inside the training directory only: the shell must not read files elsewhere on the host.
  std::error_code ec;
  const fs::path root = fs::weakly_canonical(dir_, ec);
  const fs::path path = fs::weakly_canonical(fs::path(dir_) / file, ec);
  const std::string rel = path.lexically_relative(root).string();
  if (ec || rel.empty() || absl::StartsWith(rel, "..")) {
    return absl::PermissionDeniedError(absl::StrCat(
        "load: '", file, "' is outside the training directory; give a file in it, e.g. ", name_,
        "-LAST.h5 or Backup/", name_, "-1k.h5"));
  }
  ASSIGN_OR_RETURN(ModelFileContents contents, ReadModelFile(path.string()));
  RETURN_IF_ERROR(LoadInto(contents, *net_, nullptr));
  Log(absl::StrCat("parameters loaded from ", rel, " at step ", step_));
  return absl::OkStatus();
}

absl::StatusOr<std::string> Trainer::SaveFilters(const std::string& node) {
  std::string with_filters;
  for (Parameter* p : net_->params()) {
    if (p->name != "w" || p->shape.size() < 4) continue;
    if (node.empty() || p->node == node) {
      const std::string path =
          absl::StrCat(dir_, node.empty() ? "/filters.png" : "/filters_" + node + ".png");
      RETURN_IF_ERROR(WriteFilterImage(path, p->shape, net_->ParamValue(*p)));
      return path;
    }
    absl::StrAppend(&with_filters, with_filters.empty() ? "" : ", ", p->node);
  }
  if (net_->graph().Find(node) != nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "node '", node, "' has no convolution filters; nodes with filters: ", with_filters));
  }
  return absl::NotFoundError(absl::StrCat("no node '", node, "' (nodes with filters: ",
                                          with_filters.empty() ? "none" : with_filters, ")"));
}

}  // namespace elektronn
