// The `nm` table of job files: ELEKTRONN2's node functions (nm.Conv{...}, ...) recording a
// ModelSpec, with shapes inferred after every call so that errors point at the job file's line.
#pragma once

#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "elektronn/v1/model.pb.h"
#include "engine/graph/graph.h"
#include "engine/lua/internal/lua_state.h"

namespace elektronn::lua {

// SandboxedLua::phase() values of a job file run.
enum JobPhase : int { kTopLevel = 0, kCreateModel = 1, kReadingKeys = 2 };

class ModelRecorder {
 public:
  explicit ModelRecorder(std::string model_name);

  // Makes `nm` a built-in of `lua`. The recorder must outlive the state's use.
  void Install(SandboxedLua& lua);

  const v1::ModelSpec& spec() const { return spec_; }
  v1::ModelSpec* mutable_spec() { return &spec_; }
  bool designated() const { return designated_; }
  // A shape error that depends on the input size is reported only once the whole network is
  // known, so that its "nearest valid input sizes" hold for the complete model; until then the
  // nodes after it are recorded without shapes. This is that error, located at the line of the
  // node that failed (OK when there is none).
  absl::Status deferred_error() const;
  // Whether the value at `idx` is the Model that nm.designate_nodes returned.
  static bool IsModel(lua_State* L, int idx);

 private:
  friend struct NmAccess;
  v1::ModelSpec spec_;
  std::unique_ptr<Graph> graph_;                       // the nodes so far, with inferred shapes
  absl::flat_hash_set<std::string> names_;             // of spec_'s nodes
  absl::flat_hash_map<std::string, int> next_suffix_;  // "conv" -> 3 once conv1..conv3 exist
  // What each node handle (a Lua userdata holding a slot number) points at: a position in
  // spec_.nodes, or -1 with the Scan that took the node into its step graph (nm.Scan removes
  // nodes, so positions move).
  struct HandleSlot {
    int index;
    std::string moved_into, name;  // set once moved
  };
  std::vector<HandleSlot> handles_;
  bool designated_ = false;
  std::string failed_where_;  // "job.lua:12:" of the first node whose shape failed
  std::string failed_fn_;     // "nm.Conv"
  mutable std::string failed_message_;
};

}  // namespace elektronn::lua
