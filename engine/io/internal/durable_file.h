// Crash-safe file writes for the volume stores: a file either exists with all its bytes on disk
// or does not exist at all, whatever moment the process or the machine dies.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace elektronn::internal {

// Writes `bytes` to `path` durably: to a temporary file in the same directory (named
// TempPathFor(path)), fsync, rename over `path`, fsync the directory. Only the rename makes
// `path` appear, and it is only done once the data is on disk, so a crash at any point leaves
// either the old file (or none) or the complete new one; at worst a temporary file remains.
// `before_rename` (tests) runs when the temporary file is durable but not yet renamed.
absl::Status WriteFileDurably(const std::string& path, std::string_view bytes,
                              const std::function<void()>& before_rename = nullptr);

// The temporary name WriteFileDurably uses for `path`: ".<name>.partial" beside it. The leading
// dot keeps it out of Zarr chunk keys (zarr-python matches keys by prefix).
std::string TempPathFor(const std::string& path);

// fsync of a directory, so that a rename or a new entry in it survives a power cut.
absl::Status SyncDirectory(const std::string& dir);

// The whole file, or NotFound.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path);

// mkdir -p; each directory created is fsynced into its parent.
absl::Status MakeDirectories(const std::string& dir);

// The directory part of `path` ("." when there is none) and the last component.
std::string DirName(const std::string& path);
std::string BaseName(const std::string& path);

}  // namespace elektronn::internal
