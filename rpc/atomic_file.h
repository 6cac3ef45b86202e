// Files that a crash leaves whole: the daemon's job records and reservations, the scheduler's
// experiment state.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace elektronn {

// Replaces `path` by `bytes` so that a crash leaves the old or the new content (tmp + fsync +
// rename).
absl::Status WriteAtomically(const std::string& path, const std::string& bytes);

}  // namespace elektronn
