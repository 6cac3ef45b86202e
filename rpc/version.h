// Who a binary is: its release version, the source revision it was built from, and the wire
// protocol it speaks (`--version` of every binary, the daemon's Host service, `elektronn hosts`).
#pragma once

#include <string>
#include <string_view>

namespace elektronn {

// The version of proto/elektronn/v1 as the client and the daemon use it. Bump it with a change
// that an older peer would misread (a renamed or re-typed field, a changed meaning); adding
// optional fields does not need it. `elektronn hosts` warns when a daemon's differs.
inline constexpr int kProtocolVersion = 1;

// project(VERSION) of the top-level CMakeLists.txt, e.g. "0.1.0".
std::string_view ReleaseVersion();
// `git describe --always --dirty` at build time, e.g. "f727334a2e-dirty"; "unknown" outside git.
std::string_view SourceRevision();
// The --version text: "elektronnd 0.1.0 (revision f727334a2e, protocol 1)".
std::string VersionText(std::string_view program);

}  // namespace elektronn
