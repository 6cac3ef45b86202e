// Where elektronn-worker lives: the one place the client and the daemon look it up.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

namespace elektronn {

// $ELEKTRONN_WORKER if set; else elektronn-worker next to the running binary (installed
// layout: both in bin/), or in ../worker/ beside its folder (the build tree); else the bare
// name, which execvp looks up in $PATH.
inline std::string LocateWorkerBinary() {
  if (const char* env = std::getenv("ELEKTRONN_WORKER"); env != nullptr && *env != '\0') {
    return env;
  }
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (const fs::path& candidate :
         {self.parent_path() / "elektronn-worker",
          self.parent_path().parent_path() / "worker" / "elektronn-worker"}) {
      if (access(candidate.c_str(), X_OK) == 0) return candidate.string();
    }
  }
  return "elektronn-worker";
}

}  // namespace elektronn
