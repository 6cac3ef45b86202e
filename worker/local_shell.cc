// Local shell: libedit on the terminal, a ShellSession on the live trainer.
#include "worker/local_shell.h"

#include <histedit.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "client/line_editor.h"
#include "engine/shell/shell_session.h"

namespace elektronn {
namespace {

std::string g_prompt;
ShellSession* g_local = nullptr;

const char* LocalPrompt(EditLine*) { return g_prompt.c_str(); }

unsigned char LocalComplete(EditLine* el, int) {
  const LineInfo* li = el_line(el);
  const std::string before(li->buffer, li->cursor - li->buffer);
  return ApplyCompletions(el, before, g_local->Complete(before));
}

}  // namespace

bool RunLocalShell(Trainer& trainer, const std::string& reason) {
  auto session = ShellSession::Create(&trainer, "local shell");
  if (!session.ok()) {
    std::fprintf(stderr, "cannot open the shell: %s\n",
                 std::string(session.status().message()).c_str());
    return false;
  }
  g_local = session->get();
  std::printf("\n%s\n%s\n", reason.c_str(), (*session)->Banner().c_str());
  const std::string hist_file = ShellHistoryFile();
  EditLine* el = el_init("elektronn", stdin, stdout, stderr);
  History* hist = history_init();
  HistEvent ev;
  history(hist, &ev, H_SETSIZE, 2000);
  history(hist, &ev, H_LOAD, hist_file.c_str());
  el_set(el, EL_HIST, history, hist);
  el_set(el, EL_PROMPT, LocalPrompt);
  el_set(el, EL_EDITOR, "emacs");
  el_set(el, EL_ADDFN, "elektronn-complete", "complete", LocalComplete);
  el_set(el, EL_BIND, "^I", "elektronn-complete", nullptr);
  bool kill = false;
  while (true) {
    g_prompt = trainer.name() + " step " + std::to_string(trainer.step()) + " (paused)>> ";
    int count = 0;
    const char* raw = el_gets(el, &count);
    std::string line = raw == nullptr ? "q" : std::string(raw, count);
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    if (line.empty()) continue;
    if (raw != nullptr) history(hist, &ev, H_ENTER, line.c_str());
    ShellOutput o = (*session)->Execute(line);
    if (!o.text.empty()) {
      std::printf("%s%s%s", o.error ? "error: " : "", o.text.c_str(),
                  o.text.back() == '\n' ? "" : "\n");
    }
    if (o.leave || o.kill) {
      kill = o.kill;
      break;
    }
  }
  history(hist, &ev, H_SAVE, hist_file.c_str());
  history_end(hist);
  el_end(el);
  g_local = nullptr;
  return kill;
}

}  // namespace elektronn
