// nm.Scan (reference §2.10): the step nodes a job file has already recorded are moved out of the
// model into a Scan node, which repeats them over the 'r' axis of the iterated inputs.
//
// ELEKTRONN2's usage (examples gru.py, lstm.py):
//   inp0  = nm.Input{{40, 58}, 'b,f'}                    -- in_iterate_0: one step's slice
//   mem_0 = nm.InitialState_like{inp0, override_f=750}   -- in_memory: the initial state
//   gru   = nm.GRU{inp0, mem_0, 750}                     -- the step graph
//   scan  = nm.Scan{gru, in_memory=mem_0, in_iterate=inp, in_iterate_0=inp0, last_only=true}
// The step graph is every node on a path from a placeholder (in_iterate_0, in_memory) to the
// step result or an out_memory. Inside it the placeholders are sources; outside, the Scan reads
// the sequence and the initial memories, and any other node the step graph reads (a constant).
// An outer node that still reads in_iterate_0 (InitialState_like takes its shape from it) reads
// the sequence's first slice instead, as ELEKTRONN2's unrolled graph does.
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "engine/lua/internal/nm_args.h"

namespace elektronn::lua {
namespace {

using A = NmAccess;
using NameSet = absl::flat_hash_set<std::string>;

std::string Quoted(const std::vector<std::string>& names) {
  return "'" + absl::StrJoin(names, "', '") + "'";
}

// Reorders `nodes` so that every node follows its inputs, keeping the given order otherwise.
std::vector<v1::NodeSpec> ParentsFirst(std::vector<v1::NodeSpec> nodes) {
  std::vector<v1::NodeSpec> out;
  NameSet placed;
  std::vector<bool> done(nodes.size(), false);
  for (bool progress = true; progress;) {
    progress = false;
    for (size_t i = 0; i < nodes.size(); ++i) {
      if (done[i]) continue;
      bool ready = true;
      for (const std::string& in : nodes[i].inputs()) ready = ready && placed.contains(in);
      if (!ready) continue;
      placed.insert(nodes[i].name());
      out.push_back(nodes[i]);
      done[i] = true;
      progress = true;
      break;  // restart, so the earliest ready node always comes next
    }
  }
  for (size_t i = 0; i < nodes.size(); ++i)
    if (!done[i]) out.push_back(nodes[i]);  // unresolvable: the graph build reports it
  return out;
}

int Scan(lua_State* L) {
  Args a(L, "nm.Scan",
         {"step_result", "in_memory", "out_memory", "in_iterate", "in_iterate_0", "n_steps",
          "unroll_scan", "last_only", "name", "print_repr"});
  v1::NodeSpec n = NewNode(a, "scan");
  if (A::Failed(Self(L))) A::RaiseDeferred(L);
  const std::vector<std::string> result = A::NodeNames(a, "step_result");
  if (result.size() != 1) {
    a.Fail("step_result", absl::StrFormat("must be one node; this engine's Scan has one step "
                                          "result, got %d",
                                          result.size()));
  }
  const std::vector<std::string> memory = A::NodeNames(a, "in_memory");
  std::vector<std::string> out_memory;
  if (a.Present("out_memory")) {
    out_memory = A::NodeNames(a, "out_memory");
    if (out_memory.size() != memory.size()) {
      a.Fail("out_memory", absl::StrFormat("has %d nodes but in_memory has %d; each memory needs "
                                           "the node giving its next value",
                                           out_memory.size(), memory.size()));
    }
  } else if (memory.size() == 1) {
    out_memory = result;  // ELEKTRONN2: the step result is the next memory
  } else {
    a.Fail("out_memory", absl::StrFormat("is needed with %d in_memory nodes (%s)", memory.size(),
                                         Quoted(memory)));
  }
  std::vector<std::string> iterate, iterate_0;
  if (a.Present("in_iterate") != a.Present("in_iterate_0")) {
    a.Fail(
        "give both in_iterate (the sequences) and in_iterate_0 (their one-step placeholders), "
        "or neither");
  }
  if (a.Present("in_iterate")) {
    iterate = A::NodeNames(a, "in_iterate");
    iterate_0 = A::NodeNames(a, "in_iterate_0");
    if (iterate.size() != iterate_0.size()) {
      a.Fail("in_iterate_0", absl::StrFormat("has %d nodes but in_iterate has %d", iterate_0.size(),
                                             iterate.size()));
    }
  }
  const int64_t n_steps = a.Int("n_steps", 0, 1);
  if (iterate.empty() && n_steps == 0) a.Fail("n_steps", "is needed when nothing is iterated");
  n.mutable_scan()->set_n_steps(n_steps);
  n.mutable_scan()->set_unroll_scan(a.Bool("unroll_scan", true));
  n.mutable_scan()->set_last_only(a.Bool("last_only", false));
  for (const auto& v : {memory, iterate_0})
    for (size_t i = 0; i < v.size(); ++i)
      for (size_t j = 0; j < i; ++j)
        if (v[i] == v[j]) a.Fail(absl::StrFormat("node '%s' is given twice", v[i]));
  for (const std::string& m : memory)
    if (std::find(iterate_0.begin(), iterate_0.end(), m) != iterate_0.end())
      a.Fail(absl::StrFormat("node '%s' is both in_memory and in_iterate_0", m));
  v1::ScanOp* op = n.mutable_scan();
  for (const std::string& s : iterate_0) op->add_in_iterate_0(s);
  for (const std::string& s : memory) op->add_in_memory(s);
  for (const std::string& s : out_memory) op->add_out_memory(s);
  op->set_step_result(result[0]);
  for (const std::string& s : iterate) n.add_inputs(s);
  for (const std::string& s : memory) n.add_inputs(s);
  A::MoveIntoScan(L, a, std::move(n));
  return 1;
}

}  // namespace

void NmAccess::MoveIntoScan(lua_State* L, const Args& a, v1::NodeSpec scan) {
  ModelRecorder* r = Self(L);
  v1::ScanOp* op = scan.mutable_scan();
  const auto& nodes = r->spec_.nodes();
  NameSet placeholders(op->in_iterate_0().begin(), op->in_iterate_0().end());
  placeholders.insert(op->in_memory().begin(), op->in_memory().end());
  std::vector<std::string> all_placeholders(op->in_memory().begin(), op->in_memory().end());
  all_placeholders.insert(all_placeholders.end(), op->in_iterate_0().begin(),
                          op->in_iterate_0().end());
  std::vector<std::string> targets = {op->step_result()};
  targets.insert(targets.end(), op->out_memory().begin(), op->out_memory().end());
  // Downstream of the placeholders (not through them: inside the step they are sources) ...
  NameSet down;
  for (const v1::NodeSpec& s : nodes) {
    if (placeholders.contains(s.name())) continue;
    for (const std::string& in : s.inputs())
      if (placeholders.contains(in) || down.contains(in)) down.insert(s.name());
  }
  // ... and upstream of the step result and the out-memories.
  NameSet up(targets.begin(), targets.end());
  for (int i = nodes.size() - 1; i >= 0; --i) {
    if (!up.contains(nodes[i].name()) || placeholders.contains(nodes[i].name())) continue;
    up.insert(nodes[i].inputs().begin(), nodes[i].inputs().end());
  }
  for (const std::string& t : targets) {
    if (!down.contains(t)) {
      a.Fail(
          absl::StrFormat("'%s' (step_result or out_memory) does not depend on any in_memory "
                          "or in_iterate_0 node (%s), so it is no step of a recurrence",
                          t, Quoted(all_placeholders)));
    }
  }
  for (const auto* list : {&op->in_memory(), &op->in_iterate_0()}) {
    for (const std::string& p : *list) {
      if (!up.contains(p)) {
        a.Fail(
            absl::StrFormat("placeholder '%s' is not an ancestor of step_result '%s' or of "
                            "an out_memory; the step graph never reads it",
                            p, op->step_result()));
      }
    }
  }
  for (const std::string& it : scan.inputs()) {
    if (down.contains(it) && !placeholders.contains(it)) {
      a.Fail("in_iterate", absl::StrFormat("'%s' depends on the step placeholders; the sequence "
                                           "must come from outside the step graph",
                                           it));
    }
  }
  // The step graph, its constants, and what stays outside: a node downstream of the
  // placeholders that leads nowhere in the step may stay outside only if it reads no step node
  // (InitialState_like reads in_iterate_0 for its shape alone).
  NameSet step;
  std::vector<std::string> constants;
  for (const v1::NodeSpec& s : nodes) {
    if (!down.contains(s.name())) continue;
    if (up.contains(s.name())) {
      step.insert(s.name());
      *op->add_step_nodes() = s;
      continue;
    }
    for (const std::string& in : s.inputs()) {
      if (step.contains(in)) {
        a.Fail(
            absl::StrFormat("node '%s' reads step node '%s' but leads to neither step_result "
                            "'%s' nor an out_memory; Scan cannot keep it outside its step "
                            "graph. Create it from the Scan's output instead",
                            s.name(), in, op->step_result()));
      }
    }
  }
  for (const v1::NodeSpec& s : op->step_nodes()) {
    for (const std::string& in : s.inputs()) {
      if (step.contains(in) || placeholders.contains(in)) continue;
      if (std::find(constants.begin(), constants.end(), in) == constants.end()) {
        constants.push_back(in);
      }
    }
  }
  for (const std::string& c : constants) {
    op->add_constants(c);
    scan.add_inputs(c);
  }
  // Outside: the step nodes leave; an in_iterate_0 node stays only where an outer node reads
  // it, as the sequence's first slice.
  std::vector<v1::NodeSpec> outer;
  NameSet outer_reads;
  for (const v1::NodeSpec& s : nodes)
    if (!step.contains(s.name())) outer_reads.insert(s.inputs().begin(), s.inputs().end());
  for (const v1::NodeSpec& s : nodes) {
    if (step.contains(s.name())) continue;
    const auto it0 = std::find(op->in_iterate_0().begin(), op->in_iterate_0().end(), s.name());
    if (it0 != op->in_iterate_0().end()) {
      if (!outer_reads.contains(s.name())) continue;
      v1::NodeSpec first;
      first.set_name(s.name());
      first.add_inputs(scan.inputs(static_cast<int>(it0 - op->in_iterate_0().begin())));
      v1::SliceOp* slice = first.mutable_slice();
      slice->set_axis("r");
      slice->set_start(0);
      slice->set_size(1);
      slice->set_strip(true);
      outer.push_back(std::move(first));
      continue;
    }
    outer.push_back(s);
  }
  outer = ParentsFirst(std::move(outer));
  // The in_iterate_0 placeholders must be one step of their sequence.
  {
    v1::ModelSpec trial = r->spec_;
    trial.clear_nodes();
    for (const v1::NodeSpec& s : outer) *trial.add_nodes() = s;
    if (r->graph_ != nullptr) {
      for (int i = 0; i < op->in_iterate_0_size(); ++i) {
        const Node* p = r->graph_->Find(op->in_iterate_0(i));
        const Node* seq = r->graph_->Find(scan.inputs(i));
        if (p == nullptr || seq == nullptr) continue;
        const TaggedShape& ps = p->shape();
        const TaggedShape& ss = seq->shape();
        if (ss.rank() < 2 || ss.tags()[0] != 'r') {
          a.Fail("in_iterate", absl::StrFormat("'%s' has tags \"%s\"; a sequence needs a leading "
                                               "recurrence axis 'r', e.g. \"r,b,f\"",
                                               seq->name(), ss.tags_string()));
        }
        const bool slice_like =
            ss.rank() == ps.rank() + 1 && ss.tags().substr(1) == ps.tags() &&
            std::equal(ps.sizes().begin(), ps.sizes().end(), ss.sizes().begin() + 1);
        if (!slice_like) {
          a.Fail("in_iterate_0",
                 absl::StrFormat("'%s' has shape %s, but in_iterate '%s' has %s: in_iterate_0 "
                                 "must be one step of it (its shape without the leading 'r' "
                                 "axis)",
                                 p->name(), ps.ToString(), seq->name(), ss.ToString()));
        }
      }
    }
    std::string scan_name = scan.name();
    if (r->names_.contains(scan_name)) {
      int next = r->next_suffix_[scan.name()];
      do scan_name = absl::StrCat(scan.name(), ++next);
      while (r->names_.contains(scan_name));
    }
    v1::NodeSpec named = scan;
    named.set_name(scan_name);
    *trial.add_nodes() = named;
    trial.clear_designations();
    auto g = Graph::Create(trial);
    if (!g.ok()) a.Fail(std::string(g.status().message()));
  }
  // Commit: the outer model, its graph, the handles; then record the Scan.
  absl::flat_hash_map<std::string, int> position;
  for (size_t i = 0; i < outer.size(); ++i) position[outer[i].name()] = static_cast<int>(i);
  std::vector<std::string> old_names;
  for (const v1::NodeSpec& s : nodes) old_names.push_back(s.name());
  r->spec_.clear_nodes();
  for (v1::NodeSpec& s : outer) *r->spec_.add_nodes() = std::move(s);
  r->graph_ = std::make_unique<Graph>();
  for (const v1::NodeSpec& s : r->spec_.nodes()) {
    absl::Status st = r->graph_->Append(s);
    if (!st.ok()) a.Fail(std::string(st.message()));
  }
  std::vector<size_t> moved;
  for (size_t h = 0; h < r->handles_.size(); ++h) {
    ModelRecorder::HandleSlot& slot = r->handles_[h];
    if (slot.index < 0) continue;
    const std::string& name = old_names[slot.index];
    if (auto it = position.find(name); it != position.end()) {
      slot.index = it->second;
    } else {
      slot = {-1, "", name};
      moved.push_back(h);
    }
  }
  Record(L, a, std::move(scan));
  const std::string& scan_name = r->spec_.nodes(r->spec_.nodes_size() - 1).name();
  for (size_t h : moved) r->handles_[h].moved_into = scan_name;
}

NmFunctionList ScanNodeFunctions() { return {{"Scan", Scan}}; }

}  // namespace elektronn::lua
