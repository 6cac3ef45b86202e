// Shared libedit pieces of the remote and the local shell.
#pragma once

#include <histedit.h>

#include <string>
#include <vector>

namespace elektronn {

// Completes the line typed so far (`before`) from whole-line `candidates`: inserts their common
// extension, or lists them when it is ambiguous. Returns the libedit redraw code.
unsigned char ApplyCompletions(EditLine* el, const std::string& before,
                               const std::vector<std::string>& candidates);

// ~/.local/state/elektronn/shell_history (or under $XDG_STATE_HOME), creating the folder.
std::string ShellHistoryFile();

}  // namespace elektronn
