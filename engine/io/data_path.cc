// The data-directory boundary: resolve, normalise, resolve symlinks, and check containment.
#include "engine/io/data_path.h"

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace elektronn {
namespace fs = std::filesystem;

namespace {

constexpr absl::string_view kKnossosPrefix = "knossos:";  // volume specs
constexpr absl::string_view kKnossosKey = "knossos";      // d_files/l_files keys

absl::Status Refuse(absl::string_view field, const std::string& path, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat(field, " is '", path, "': ", why,
                   "; job data paths must lie inside the daemon's data directory (--data-dir)"));
}

// True when `inner` equals `outer` or lies below it, compared component by component (so
// /data2 is not inside /data).
bool IsInside(const fs::path& inner, const fs::path& outer) {
  auto i = inner.begin();
  for (auto o = outer.begin(); o != outer.end(); ++o, ++i) {
    if (o->empty()) continue;  // a trailing separator of `outer`
    if (i == inner.end() || *i != *o) return false;
  }
  return true;
}

bool HasHdf5Extension(absl::string_view path) {
  for (absl::string_view ext : {".h5", ".hdf5", ".hdf", ".he5"}) {
    if (path.size() >= ext.size() &&
        absl::EqualsIgnoreCase(path.substr(path.size() - ext.size()), ext)) {
      return true;
    }
  }
  return false;
}

}  // namespace

absl::StatusOr<std::string> ConfineDataPath(absl::string_view field, const std::string& path,
                                            const std::string& data_dir) {
  if (data_dir.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot check ", field, ": no data directory is set"));
  }
  if (path.find('\0') != std::string::npos) return Refuse(field, path, "it contains a NUL byte");
  if (!path.empty() && path[0] == '~') {
    return Refuse(field, path, "'~' is not expanded for jobs of the daemon");
  }
  std::error_code ec;
  const fs::path root = fs::weakly_canonical(fs::absolute(data_dir, ec), ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("the data directory '", data_dir, "' cannot be resolved: ", ec.message()));
  }
  const fs::path candidate = fs::path(path).is_absolute() ? fs::path(path) : root / path;
  // weakly_canonical resolves every symlink of the existing prefix, then normalises the rest
  // lexically ('..' included).
  fs::path resolved = fs::weakly_canonical(candidate, ec);
  if (ec) return Refuse(field, path, absl::StrCat("it cannot be resolved (", ec.message(), ")"));
  resolved = resolved.lexically_normal();
  if (!IsInside(resolved, root)) {
    return Refuse(
        field, path,
        absl::StrCat("it resolves to '", resolved.string(), "', outside '", root.string(), "'"));
  }
  std::string out = resolved.string();
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

absl::StatusOr<std::string> ConfineVolumeSpec(absl::string_view field, const std::string& spec,
                                              const std::string& data_dir) {
  if (spec.empty()) return Refuse(field, spec, "it is empty");
  if (absl::StartsWith(spec, kKnossosPrefix)) {  // each dataset directory on its own
    std::vector<std::string> dirs;
    for (absl::string_view dir :
         absl::StrSplit(absl::string_view(spec).substr(kKnossosPrefix.size()), ',')) {
      if (dir.empty()) return Refuse(field, spec, "it names an empty KNOSSOS directory");
      auto p = ConfineDataPath(field, std::string(dir), data_dir);
      if (!p.ok()) return p.status();
      dirs.push_back(*p);
    }
    return absl::StrCat(kKnossosPrefix, absl::StrJoin(dirs, ","));
  }
  std::string rest;
  const std::string file = VolumeSpecPath(spec, data_dir, &rest);
  auto p = ConfineDataPath(field, file, data_dir);
  if (!p.ok()) return p.status();
  return absl::StrCat(*p, rest);
}

std::string VolumeSpecPath(const std::string& spec, const std::string& base_dir,
                           std::string* rest) {
  if (rest != nullptr) rest->clear();
  if (absl::StartsWith(spec, kKnossosPrefix)) return spec;
  const size_t colon = spec.rfind(':');
  if (colon == std::string::npos) return spec;
  const std::string file = spec.substr(0, colon);
  if (file.empty()) return spec;
  std::error_code ec;
  const fs::path looked_up =
      fs::path(file).is_absolute() || file[0] == '~' ? fs::path(file) : fs::path(base_dir) / file;
  if (!HasHdf5Extension(file) && !fs::is_regular_file(looked_up, ec)) return spec;
  if (rest != nullptr) *rest = spec.substr(colon);
  return file;
}

bool IsJobModelReference(absl::string_view model) {
  if (!absl::ConsumePrefix(&model, "jobs/") || model.empty()) return false;
  return std::all_of(model.begin(), model.end(), [](char c) { return c >= '0' && c <= '9'; });
}

absl::Status ConfineJobDataPaths(v1::JobSpec* spec, const std::string& data_dir) {
  if (spec->has_prediction()) {
    v1::PredictionSpec* p = spec->mutable_prediction();
    if (!IsJobModelReference(p->model())) {
      if (p->model().empty()) return Refuse("job.prediction.model", p->model(), "it is empty");
      auto m = ConfineDataPath("job.prediction.model", p->model(), data_dir);
      if (!m.ok()) return m.status();
      p->set_model(*m);
    }
    auto in = ConfineVolumeSpec("job.prediction.input", p->input(), data_dir);
    if (!in.ok()) return in.status();
    auto out = ConfineVolumeSpec("job.prediction.output", p->output(), data_dir);
    if (!out.ok()) return out.status();
    p->set_input(*in);
    p->set_output(*out);
  }
  if (!spec->has_training()) return absl::OkStatus();  // never adds an empty training part
  v1::TrainingSpec* t = spec->mutable_training();
  if (t->has_batch_creator_image()) {
    v1::BatchCreatorImageParams* b = t->mutable_batch_creator_image();
    constexpr absl::string_view kB = "job.training.batch_creator_image";
    auto d_dir = ConfineDataPath(absl::StrCat(kB, ".d_path"), b->d_path(), data_dir);
    if (!d_dir.ok()) return d_dir.status();
    auto l_dir = ConfineDataPath(absl::StrCat(kB, ".l_path"), b->l_path(), data_dir);
    if (!l_dir.ok()) return l_dir.status();
    auto confine_files = [&](auto* files, const std::string& dir, absl::string_view name) {
      for (int i = 0; i < files->size(); ++i) {
        v1::H5Dataset* f = files->Mutable(i);
        const std::string field = absl::StrCat(kB, ".", name, "[", i, "].file");
        if (f->file().empty()) return Refuse(field, f->file(), "it is empty");
        // KNOSSOS entries may list several dataset directories (one channel each).
        const bool knossos = f->key() == kKnossosKey;
        const std::vector<std::string> names =
            knossos ? absl::StrSplit(f->file(), ',') : std::vector<std::string>{f->file()};
        std::vector<std::string> parts;
        for (const std::string& part : names) {
          if (part.empty()) return Refuse(field, f->file(), "it names an empty directory");
          // Relative to its folder; an absolute file name is checked as it stands.
          const std::string joined = fs::path(part).is_absolute() || part[0] == '~'
                                         ? part
                                         : (fs::path(dir) / part).string();
          auto p = ConfineDataPath(field, joined, data_dir);
          if (!p.ok()) return p.status();
          parts.push_back(*p);
        }
        f->set_file(absl::StrJoin(parts, ","));
      }
      return absl::OkStatus();
    };
    if (auto s = confine_files(b->mutable_d_files(), *d_dir, "d_files"); !s.ok()) return s;
    if (auto s = confine_files(b->mutable_l_files(), *l_dir, "l_files"); !s.ok()) return s;
    b->set_d_path(*d_dir);
    b->set_l_path(*l_dir);
  }
  if (t->has_mnist() && !t->mnist().path().empty()) {
    auto p = ConfineDataPath("job.training.mnist.path", t->mnist().path(), data_dir);
    if (!p.ok()) return p.status();
    t->mutable_mnist()->set_path(*p);
  }
  if (!t->preview_data_path().empty()) {
    auto p = ConfineDataPath("job.training.preview_data_path", t->preview_data_path(), data_dir);
    if (!p.ok()) return p.status();
    t->set_preview_data_path(*p);
  }
  if (!t->model_load_path().empty()) {  // batch_norm family: fine-tuning from a saved model
    auto p = ConfineDataPath("job.training.model_load_path", t->model_load_path(), data_dir);
    if (!p.ok()) return p.status();
    t->set_model_load_path(*p);
  }
  return absl::OkStatus();
}

}  // namespace elektronn
