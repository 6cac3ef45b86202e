// The --version text; ReleaseVersion() and SourceRevision() are generated (cmake/ElkVersion.cmake).
#include "rpc/version.h"

#include <string>

namespace elektronn {

std::string VersionText(std::string_view program) {
  return std::string(program) + " " + std::string(ReleaseVersion()) + " (revision " +
         std::string(SourceRevision()) + ", protocol " + std::to_string(kProtocolVersion) + ")";
}

}  // namespace elektronn
