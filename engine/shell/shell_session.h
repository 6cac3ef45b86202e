// ShellSession: one user's interactive shell on a live training job (reference §6): shortcuts
// (setlr, save, paramstats, ...) and sandboxed Lua bound to the model, trainer and history.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace elektronn {

class Trainer;
namespace lua {
class SandboxedLua;
}

// What one input line produced.
struct ShellOutput {
  std::string text;    // to show the user (may be empty)
  bool error = false;  // the line failed; the session goes on
  bool leave = false;  // `q` (or `kill`): leave the shell, training continues
  bool kill = false;   // `kill`: training was asked to stop (it saves its last state)
};

// One per attached user, bound to a trainer. Execute() and Complete() touch the live network
// and trainer without locking: call them inside Trainer::AtStepBoundary (or when no training
// loop runs). Lua globals survive from one line to the next; Lua errors, sandbox refusals and
// bad shortcut arguments come back as ShellOutput::error and never end the session.
//
// Lua bindings: `model` (model.conv / model['conv'] -> node with name, op, shape, fov,
// strides, offsets, params and its parameters: model.conv.w is a tensor with shape, size,
// mean(), std(), t[i] / t[i] = v (1-based, canonical layout), t:set{...}, t:values());
// `model.params` maps "node/param" to tensors; `trainer` (the hyper-parameters of hyperparams.h
// by name or alias, readable and assignable through SetHyperparameter; step, name, dir
// read-only);
// `history` (the recent HistoryRecords as tables).
class ShellSession {
 public:
  static absl::StatusOr<std::unique_ptr<ShellSession>> Create(Trainer* trainer,
                                                              std::string user = "shell");
  ~ShellSession();
  ShellSession(const ShellSession&) = delete;
  ShellSession& operator=(const ShellSession&) = delete;

  ShellOutput Execute(const std::string& line);
  // Whole-line completions of `line_prefix`: shortcut names, `model.` node names,
  // `model.<node>.` parameters and fields, `trainer.` fields and global names. Nothing after a
  // shortcut with arguments (`save `, `setlr `).
  std::vector<std::string> Complete(const std::string& line_prefix);

  // The banner with the shortcut list (also the output of `help`).
  std::string Banner() const;
  Trainer& trainer() { return *trainer_; }

 private:
  ShellSession() = default;
  absl::Status ResetLua();
  ShellOutput RunLua(const std::string& line);
  void PushHistory();

  Trainer* trainer_ = nullptr;
  std::string user_;
  std::unique_ptr<lua::SandboxedLua> lua_;
  std::string printed_;  // output of print() during the current line
};

}  // namespace elektronn
