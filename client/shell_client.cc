// The shell client: libedit for editing and history, one Shell stream to the daemon.
#include "client/shell_client.h"

#include <histedit.h>
#include <pwd.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "client/line_editor.h"
#include "elektronn/v1/shell.grpc.pb.h"

namespace elektronn {
namespace {

using Stream = grpc::ClientReaderWriter<v1::ShellRequest, v1::ShellResponse>;

// libedit calls C callbacks; the session they serve is this one.
struct Session {
  Stream* stream = nullptr;
  std::string prompt = ">> ";
  bool closed = false;
};
Session* g_session = nullptr;

const char* PromptOf(EditLine*) { return g_session->prompt.c_str(); }

// Prints responses until the next prompt (or completions); false when the stream ended.
bool Drain(Session& s, v1::ShellCompletions* completions) {
  v1::ShellResponse r;
  while (s.stream->Read(&r)) {
    if (r.has_output()) {
      std::fputs(r.output().c_str(), stdout);
      if (!r.output().empty() && r.output().back() != '\n') std::fputc('\n', stdout);
    } else if (r.has_error()) {
      std::fprintf(stdout, "error: %s\n", r.error().c_str());
    } else if (r.has_completions()) {
      if (completions) *completions = r.completions();
      return true;
    } else if (r.has_prompt()) {
      s.prompt = r.prompt().text();
      s.closed = r.prompt().closed();
      return true;
    }
    std::fflush(stdout);
  }
  s.closed = true;
  return false;
}

unsigned char Complete(EditLine* el, int) {
  const LineInfo* li = el_line(el);
  const std::string before(li->buffer, li->cursor - li->buffer);
  v1::ShellRequest req;
  req.set_complete(before);
  if (!g_session->stream->Write(req)) return CC_ERROR;
  v1::ShellCompletions c;
  if (!Drain(*g_session, &c)) return CC_ERROR;
  return ApplyCompletions(el, before, {c.candidates().begin(), c.candidates().end()});
}

}  // namespace

int RunShell(const Connection& connection, const ShellClientOptions& options) {
  auto stub = v1::Shell::NewStub(connection.channel);
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + connection.token);
  auto stream = stub->Attach(&ctx);
  Session session;
  session.stream = stream.get();
  g_session = &session;
  v1::ShellRequest attach;
  attach.mutable_attach()->set_name(options.job);
  attach.mutable_attach()->set_live(options.live);
  const char* user = std::getenv("USER");
  const passwd* pw = getpwuid(getuid());
  attach.mutable_attach()->set_user(user && *user ? user : pw ? pw->pw_name : "unknown");
  if (!stream->Write(attach) || !Drain(session, nullptr)) {
    grpc::Status s = stream->Finish();
    return ReportError(s, connection);
  }
  std::printf(
      "Attached to %s%s. Type help for the shortcuts, q to continue training, kill to "
      "stop it; anything else is Lua.\n",
      options.job.c_str(), options.live ? " (live: training keeps running)" : "");

  const bool tty = isatty(STDIN_FILENO);
  EditLine* el = el_init("elektronn", stdin, stdout, stderr);
  History* hist = history_init();
  HistEvent ev;
  history(hist, &ev, H_SETSIZE, 2000);
  history(hist, &ev, H_SETUNIQUE, 1);
  const std::string hist_file =
      options.history_file.empty() ? ShellHistoryFile() : options.history_file;
  history(hist, &ev, H_LOAD, hist_file.c_str());
  el_set(el, EL_HIST, history, hist);
  el_set(el, EL_PROMPT, PromptOf);
  el_set(el, EL_EDITOR, "emacs");
  el_set(el, EL_SIGNAL, 1);
  el_set(el, EL_ADDFN, "elektronn-complete", "complete from the job", Complete);
  el_set(el, EL_BIND, "^I", "elektronn-complete", nullptr);

  while (!session.closed) {
    int count = 0;
    const char* raw = el_gets(el, &count);
    std::string line;
    if (raw == nullptr) {  // Ctrl-D: leave the shell, training continues
      line = "q";
      if (tty) std::fputc('\n', stdout);
    } else {
      line.assign(raw, count);
      while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
      if (line.empty()) continue;
      history(hist, &ev, H_ENTER, line.c_str());
    }
    v1::ShellRequest req;
    req.set_line(line);
    if (!stream->Write(req) || !Drain(session, nullptr)) break;
  }
  history(hist, &ev, H_SAVE, hist_file.c_str());
  history_end(hist);
  el_end(el);
  stream->WritesDone();
  grpc::Status s = stream->Finish();
  g_session = nullptr;
  if (!s.ok() && s.error_code() != grpc::StatusCode::CANCELLED) return ReportError(s, connection);
  return 0;
}

}  // namespace elektronn
