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

// A volume spec (engine/io/volume_store.h) with its file confined: "f.h5:/raw" confines "f.h5"
// (the part before the last ':' when it ends in .h5/.hdf5/.hdf/.he5 or is an existing regular
// file, as ParseVolumeSpec decides) and keeps the dataset; "knossos:a,b" confines each dataset
// directory; any other spec is a Zarr array's directory and is confined whole. Returns the spec
// with the resolved path.
absl::StatusOr<std::string> ConfineVolumeSpec(absl::string_view field, const std::string& spec,
                                              const std::string& data_dir);

// The file or directory a volume spec names, split as ParseVolumeSpec does (a relative file is
// looked up in `base_dir` to decide whether it exists): "f.h5:/raw" -> "f.h5", "a.zarr" ->
// "a.zarr". `*rest` (optional) receives the rest, ":/raw" or "".
std::string VolumeSpecPath(const std::string& spec, const std::string& base_dir,
                           std::string* rest = nullptr);

// True for "jobs/{digits}": a prediction's model named by a training job of the daemon, which
// the daemon resolves to a file of its own (never a path a client chose).
bool IsJobModelReference(absl::string_view model);

// Rewrites every path field of `spec` that names data to read or write (d_path, l_path, each
// d_files/l_files entry joined with its folder, mnist.path, preview_data_path; a prediction's
// model unless IsJobModelReference, its input and output volume specs; a d_files/l_files entry
// with key "knossos" lists dataset directories separated by ',', each confined) into the absolute,
// symlink-resolved path inside `data_dir` that ConfineDataPath accepts, so the worker opens
// exactly what was checked. Fails on the first field that leaves `data_dir`, naming it (e.g.
// "job.training.batch_creator_image.d_files[1].file", "job.prediction.output"). An empty
// mnist.path (Debian's dataset-fashion-mnist, chosen by no job) stays empty.
absl::Status ConfineJobDataPaths(v1::JobSpec* spec, const std::string& data_dir);

}  // namespace elektronn
