// Shared libedit pieces of the remote and the local shell.
#include "client/line_editor.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>

namespace elektronn {

unsigned char ApplyCompletions(EditLine* el, const std::string& before,
                               const std::vector<std::string>& candidates) {
  if (candidates.empty()) return CC_ERROR;
  std::string common = candidates[0];
  for (const std::string& cand : candidates) {
    size_t n = 0;
    while (n < common.size() && n < cand.size() && common[n] == cand[n]) ++n;
    common.resize(n);
  }
  if (common.size() > before.size() && common.compare(0, before.size(), before) == 0) {
    el_insertstr(el, common.substr(before.size()).c_str());
    return CC_REFRESH;
  }
  std::fputc('\n', stdout);
  for (const std::string& cand : candidates) std::printf("  %s\n", cand.c_str());
  return CC_REDISPLAY;
}

std::string ShellHistoryFile() {
  const char* state = std::getenv("XDG_STATE_HOME");
  const char* home = std::getenv("HOME");
  const std::filesystem::path dir =
      state && *state ? std::filesystem::path(state) / "elektronn"
                      : std::filesystem::path(home ? home : ".") / ".local/state/elektronn";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  return (dir / "shell_history").string();
}

}  // namespace elektronn
