// The data-directory boundary: every path a job names is resolved inside the daemon's
// data directory or refused, in the daemon (CreateJob) and again in the worker before opening.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "elektronn/v1/training.pb.h"

namespace elektronn {

// Resolves `path` (relative to `data_dir`, or absolute) to an absolute path with symlinks of
// its existing prefix resolved, and accepts it only if the result lies inside `data_dir`
// (itself resolved the same way). A leading '~' is refused, never expanded. An empty `path`
// means `data_dir` itself. Errors are INVALID_ARGUMENT and name `field`.
absl::StatusOr<std::string> ConfineDataPath(absl::string_view field, const std::string& path,
                                            const std::string& data_dir);

// Rewrites every path field of `spec` that names data to read (d_path, l_path, each
// d_files/l_files entry joined with its folder, mnist.path, preview_data_path) into the
// absolute, symlink-resolved path inside `data_dir` that ConfineDataPath accepts, so the
// worker opens exactly what was checked. Fails on the first field that leaves `data_dir`,
// naming it (e.g. "job.training.batch_creator_image.d_files[1].file"). An empty mnist.path
// (Debian's dataset-fashion-mnist, chosen by no job) stays empty.
absl::Status ConfineJobDataPaths(v1::JobSpec* spec, const std::string& data_dir);

}  // namespace elektronn
