// The shell of `elektronn train` itself: Ctrl-C (on a terminal) or a NaN loss opens it in the
// training process, with the same shortcuts and Lua as `elektronn shell`; q continues.
#pragma once

#include "engine/trainer/trainer.h"

namespace elektronn {

// Runs an interactive session on stdin/stdout against `trainer` (call it at a step boundary
// or while no loop runs). Returns true if the user asked to stop training (kill).
bool RunLocalShell(Trainer& trainer, const std::string& reason);

}  // namespace elektronn
