// Restoring a model file with modifications: spec rewrites, compilation, parameter restore and
// trainability (reference §3.4).
#include "engine/io/model_loader.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/core/status.h"
#include "engine/graph/graph.h"
#include "engine/nodes/shape_rules.h"

namespace elektronn {
namespace {

absl::Status FileError(absl::StatusCode code, const std::string& path, const std::string& what) {
  return absl::Status(code, absl::StrFormat("model file '%s': %s", path, what));
}
absl::Status Invalid(const std::string& path, const std::string& what) {
  return FileError(absl::StatusCode::kInvalidArgument, path, what);
}
// An error from building or loading, with the file it came from.
absl::Status InFile(const absl::Status& s, const std::string& path) {
  if (s.ok() || absl::StrContains(s.message(), path)) return s;
  return FileError(s.code(), path, std::string(s.message()));
}

std::string Sizes(const std::vector<int64_t>& v) {
  std::vector<std::string> parts;
  for (int64_t s : v) parts.push_back(s < 0 ? "None" : absl::StrCat(s));
  return absl::StrCat("(", absl::StrJoin(parts, ","), ")");
}

// The designated input node, which must be an Input (its shape is stored, so it can change).
absl::StatusOr<int> InputIndex(const v1::ModelSpec& s, const std::string& path) {
  const std::string& want = s.designations().input_node();
  for (int i = 0; i < s.nodes_size(); ++i) {
    const v1::NodeSpec& n = s.nodes(i);
    if (!want.empty() && n.name() != want) continue;
    if (n.has_input()) return i;
    if (!want.empty()) {
      return Invalid(path, absl::StrFormat("designated input node '%s' is not an Input node, so "
                                           "its patch and batch size cannot be changed",
                                           want));
    }
  }
  return Invalid(path, want.empty()
                           ? "the model has no Input node"
                           : absl::StrFormat("designated input node '%s' does not exist", want));
}

absl::StatusOr<TaggedShape> InputShape(const v1::NodeSpec& n, const std::string& path) {
  const v1::InputOp& in = n.input();
  auto s =
      TaggedShape::Create(std::vector<int64_t>(in.shape().begin(), in.shape().end()), in.tags());
  if (!s.ok()) {
    return Invalid(path, absl::StrFormat("Input '%s': %s", n.name(), s.status().message()));
  }
  return s;
}

// ELEKTRONN2 sets mfp on every node whose class is exactly Conv. Max-fragment-pooling exists
// only inside Conv, so a separate pooling Pool node would leave the fragments unstitchable.
absl::Status ActivateMfp(v1::ModelSpec& s, const std::string& path,
                         std::vector<std::string>* notes) {
  int n_conv = 0;
  for (v1::NodeSpec& n : *s.mutable_nodes()) {
    if (n.has_conv()) {
      n.mutable_conv()->set_mfp(true);
      ++n_conv;
    } else if (n.has_pool()) {
      for (int64_t p : n.pool().pool_shape()) {
        if (p > 1) {
          return Invalid(
              path, absl::StrFormat("override_mfp_to_active: Pool '%s' pools by (%s) outside a "
                                    "Conv; max-fragment-pooling runs only inside Conv nodes, so "
                                    "this model cannot predict densely in one pass",
                                    n.name(), absl::StrJoin(n.pool().pool_shape(), ",")));
        }
      }
    }
  }
  notes->push_back(absl::StrFormat("max-fragment-pooling activated in %d Conv nodes", n_conv));
  return absl::OkStatus();
}

absl::Status ImposeBatch(v1::ModelSpec& s, int input, int64_t batch, bool mfp,
                         const std::string& path, std::vector<std::string>* notes) {
  v1::NodeSpec& n = *s.mutable_nodes(input);
  ASSIGN_OR_RETURN(TaggedShape shape, InputShape(n, path));
  const int b = shape.TagIndex('b');
  if (batch < 0 || (batch == 0 && !mfp)) {
    return Invalid(path, absl::StrFormat("imposed_batch_size=%d must be at least 1", batch));
  }
  if (mfp && batch > 1) {
    return Invalid(path, absl::StrFormat("imposed_batch_size=%d: max-fragment-pooling "
                                         "(override_mfp_to_active) needs batch size 1",
                                         batch));
  }
  if (batch == 0) {  // MFP with the stored batch: force 1 if it differs.
    batch = 1;
    if (shape.size(b) != 1) {
      notes->push_back(absl::StrFormat(
          "batch size of input '%s' changed from %s to 1: max-fragment-pooling predicts one "
          "patch at a time",
          n.name(), shape.size(b) < 0 ? "None" : absl::StrCat(shape.size(b))));
    }
  }
  n.mutable_input()->set_shape(b, batch);
  return absl::OkStatus();
}

// The size below `in` closest to it that the node rejecting it would take, or -1 if there is
// none (or no closed form for this node).
int64_t LargestValidBelow(const v1::NodeSpec& n, int spatial, int64_t in) {
  if (n.has_conv()) {
    const v1::ConvOp& c = n.conv();
    const int64_t pool = c.pool_shape().empty() ? 1 : c.pool_shape(spatial);
    return NearestValidConvInput(in, c.filter_shape(spatial), pool, c.conv_mode(), c.mfp()).first;
  }
  if (n.has_pool()) {
    // Pool p with stride st takes s >= p with (s - p) % st == 0: a valid conv of kernel
    // p - st + 1 pooled by st, when p >= st.
    const int64_t p = n.pool().pool_shape(spatial);
    const int64_t st = n.pool().stride().empty() ? p : n.pool().stride(spatial);
    if (p >= st) return NearestValidConvInput(in, p - st + 1, st, v1::VALID, false).first;
  }
  return -1;
}

// Snaps the input's spatial sizes down until the whole graph infers, and returns them. Each round
// builds the graph; when a Conv or Pool rejects an axis, NearestValidConvInput gives the largest
// size below its current input that it takes, and the network input shrinks by the difference
// times that layer's stride relative to the input. That keeps every earlier layer valid (each
// sees its input shrink by a multiple of its pool), so a chain of layers snaps in one round per
// layer, exactly to the largest valid size not above the desired one. A rejection by any other
// node (Crop, Concat, Add) shrinks the axis by one and tries again.
absl::StatusOr<std::vector<int64_t>> SnapPatch(v1::ModelSpec& s, int input,
                                               const std::string& path) {
  const std::string& name = s.nodes(input).name();
  ASSIGN_OR_RETURN(TaggedShape shape, InputShape(s.nodes(input), path));
  auto spatial_sizes = [&] {
    std::vector<int64_t> v;
    for (int a : shape.spatial_axes()) v.push_back(s.nodes(input).input().shape(a));
    return v;
  };
  const std::vector<int64_t> desired = spatial_sizes();
  constexpr int kMaxRounds = 4096;
  for (int round = 0; round < kMaxRounds; ++round) {
    Graph g;
    const absl::Status built = Graph::BuildWithoutHints(s, &g);
    if (built.ok()) return spatial_sizes();
    auto payload = built.GetPayload(kShapeAxisPayload);
    const char tag = payload.has_value() ? std::string(*payload)[0] : '\0';
    const int axis = tag == '\0' ? -1 : shape.TagIndex(tag);
    const size_t failed = g.nodes().size();
    if (axis < 0 || failed <= static_cast<size_t>(input) ||
        failed >= static_cast<size_t>(s.nodes_size())) {
      return InFile(built, path);
    }
    // The rejecting node's input along `tag`, and its stride in units of the network input.
    const v1::NodeSpec& bad = s.nodes(static_cast<int>(failed));
    const Node* parent = bad.inputs_size() > 0 ? g.Find(bad.inputs(0)) : nullptr;
    int64_t shrink = 1;
    if (parent != nullptr && parent->shape().TagIndex(tag) >= 0) {
      const TaggedShape& ps = parent->shape();
      int j = 0;
      while (ps.spatial_axes()[j] != ps.TagIndex(tag)) ++j;
      const int64_t in = ps.spatial_shape()[j];
      const int64_t lo = LargestValidBelow(bad, j, in);
      int k = 0;
      while (shape.spatial_axes()[k] != axis) ++k;
      const int64_t in_stride = std::max<int64_t>(1, g.Find(name)->shape().strides()[k]);
      const int64_t rel_stride = std::max<int64_t>(1, ps.strides()[j] / in_stride);
      if (lo > 0) shrink = (in - lo) * rel_stride;
    }
    const int64_t now = s.nodes(input).input().shape(axis);
    if (now - shrink < 1) {
      return Invalid(path, absl::StrFormat("patch size %s of input '%s' is too small for this "
                                           "network along %c: %s",
                                           Sizes(desired), name, tag, built.message()));
    }
    s.mutable_nodes(input)->mutable_input()->set_shape(axis, now - shrink);
  }
  return Invalid(path, absl::StrFormat("found no valid patch size of input '%s' below %s", name,
                                       Sizes(desired)));
}

absl::Status ImposePatch(v1::ModelSpec& s, int input, const std::vector<int64_t>& desired,
                         bool imposed, const std::string& path, std::vector<std::string>* notes) {
  v1::NodeSpec& n = *s.mutable_nodes(input);
  ASSIGN_OR_RETURN(TaggedShape shape, InputShape(n, path));
  if (desired.size() != shape.spatial_axes().size()) {
    return Invalid(path, absl::StrFormat("imposed_patch_size %s has %d entries, but input '%s' "
                                         "(tags \"%s\") has %d spatial axes",
                                         Sizes(desired), desired.size(), n.name(),
                                         shape.tags_string(), shape.spatial_axes().size()));
  }
  for (size_t j = 0; j < desired.size(); ++j) {
    if (desired[j] < 1) {
      return Invalid(
          path, absl::StrFormat("imposed_patch_size %s: sizes must be at least 1", Sizes(desired)));
    }
    n.mutable_input()->set_shape(shape.spatial_axes()[j], desired[j]);
  }
  ASSIGN_OR_RETURN(std::vector<int64_t> snapped, SnapPatch(s, input, path));
  if (snapped != desired) {
    notes->push_back(absl::StrFormat(
        "%s patch size %s of input '%s' changed to %s, the nearest valid size not above it",
        imposed ? "imposed" : "stored", Sizes(desired), n.name(), Sizes(snapped)));
  }
  return absl::OkStatus();
}

// FragmentsToDense between the prediction node and its first parent, placed right before the
// prediction node so that parents still come first.
absl::Status InsertToDense(v1::ModelSpec& s, const std::string& path,
                           std::vector<std::string>* notes) {
  const std::string& pred = s.designations().prediction_node();
  int at = -1;
  std::set<std::string> names;
  for (int i = 0; i < s.nodes_size(); ++i) {
    names.insert(s.nodes(i).name());
    if (s.nodes(i).name() == pred) at = i;
  }
  if (pred.empty() || at < 0) {
    return Invalid(path, "override_mfp_to_active needs a designated prediction node");
  }
  if (s.nodes(at).inputs_size() == 0) {
    return Invalid(path, absl::StrFormat("override_mfp_to_active: prediction node '%s' has no "
                                         "input to stitch",
                                         pred));
  }
  std::string name = kToDenseNodeName;
  for (int k = 1; names.contains(name); ++k) name = absl::StrCat(kToDenseNodeName, k);
  const std::string parent = s.nodes(at).inputs(0);
  v1::NodeSpec to_dense;
  to_dense.set_name(name);
  to_dense.add_inputs(parent);
  to_dense.mutable_fragments_to_dense();
  s.mutable_nodes(at)->set_inputs(0, name);
  s.mutable_nodes()->Add(std::move(to_dense));
  // Move the new last node to position `at`.
  for (int i = s.nodes_size() - 1; i > at; --i) s.mutable_nodes()->SwapElements(i, i - 1);
  notes->push_back(absl::StrFormat("FragmentsToDense node '%s' inserted between '%s' and '%s'",
                                   name, parent, pred));
  return absl::OkStatus();
}

// Constant parameters: stored ones (unless unlocked), all, or those of the locked nodes.
absl::Status ApplyTrainability(Network& net, const ModelFileContents& f, const LoadOptions& o,
                               std::vector<std::string>* notes) {
  std::vector<const Node*> with_params;
  for (const auto& n : net.graph().nodes()) {
    if (!n->params().empty()) with_params.push_back(n.get());
  }
  std::vector<std::string> candidates;
  for (const Node* p : with_params) candidates.push_back(p->name());
  std::set<std::string> locked;
  if (o.lock_first_n < 0 || o.lock_first_n > static_cast<int>(with_params.size())) {
    return Invalid(f.path, absl::StrFormat("lock_trainable_params=%d, but the model has %d nodes "
                                           "with parameters",
                                           o.lock_first_n, with_params.size()));
  }
  for (int i = 0; i < o.lock_first_n; ++i) locked.insert(with_params[i]->name());
  for (const std::string& name : o.lock_nodes) {
    const Node* n = net.graph().Find(name);
    if (n == nullptr || n->params().empty()) {
      return FileError(
          n == nullptr ? absl::StatusCode::kNotFound : absl::StatusCode::kInvalidArgument, f.path,
          absl::StrFormat("lock_trainable_params names node '%s', which %s; nodes with "
                          "parameters: %s",
                          name, n == nullptr ? "the model does not have" : "has no parameters",
                          absl::StrJoin(candidates, ", ")));
    }
    locked.insert(name);
  }
  for (Parameter* p : net.params()) {
    if (o.unlock_all_params) p->trainable = true;
    if (o.make_weights_constant || locked.contains(p->node)) p->trainable = false;
    // BN statistics (and gamma in 'predict') are never trained, whatever the file or options say.
    if (p->fixed) p->trainable = false;
    if (o.replace_bn == ReplaceBn::kConst &&
        (p->name == "gamma" || p->name == "mean" || p->name == "std")) {
      p->trainable = false;
    }
  }
  if (o.make_weights_constant) notes->push_back("all parameters made constant");
  if (!locked.empty()) {
    std::vector<std::string> in_order;  // as the model lists them, not alphabetically
    for (const std::string& c : candidates) {
      if (locked.contains(c)) in_order.push_back(c);
    }
    notes->push_back(
        absl::StrFormat("parameters of %s locked (constant)", absl::StrJoin(in_order, ", ")));
  }
  return absl::OkStatus();
}

// The layers that can batch-normalise (reference §2.2): Conv, Perceptron, UpConv.
v1::BatchNormMode BatchNormModeOf(const v1::NodeSpec& n) {
  if (n.has_conv()) return n.conv().batch_normalisation();
  if (n.has_perceptron()) return n.perceptron().batch_normalisation();
  if (n.has_upconv()) return n.upconv().batch_normalisation();
  return v1::BN_OFF;
}
void SetBatchNormMode(v1::NodeSpec& n, v1::BatchNormMode m) {
  if (n.has_conv()) n.mutable_conv()->set_batch_normalisation(m);
  if (n.has_perceptron()) n.mutable_perceptron()->set_batch_normalisation(m);
  if (n.has_upconv()) n.mutable_upconv()->set_batch_normalisation(m);
}

// The file's contents without the BN parameters of layers whose BN the rewritten spec removed.
ModelFileContents WithoutRemovedBn(const ModelFileContents& f, const v1::ModelSpec& spec) {
  ModelFileContents out = f;
  std::map<std::string, const v1::NodeSpec*> stored;
  for (const v1::NodeSpec& n : f.spec.nodes()) stored[n.name()] = &n;
  for (const v1::NodeSpec& n : spec.nodes()) {
    auto it = stored.find(n.name());
    if (it == stored.end() || BatchNormModeOf(*it->second) == v1::BN_OFF ||
        BatchNormModeOf(n) != v1::BN_OFF) {
      continue;
    }
    for (const char* p : {"gamma", "mean", "std"}) {
      const std::string key = absl::StrCat(n.name(), "/", p);
      out.params.erase(key);
      out.param_shapes.erase(key);
      out.constant_params.erase(key);
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<ReplaceBn> ParseReplaceBn(const std::string& field, const std::string& value) {
  if (value.empty()) return ReplaceBn::kKeep;
  if (value == "remove") return ReplaceBn::kRemove;
  if (value == "predict") return ReplaceBn::kPredict;
  if (value == "const") return ReplaceBn::kConst;
  return absl::InvalidArgumentError(
      absl::StrFormat("%s must be 'remove', 'predict' or 'const', got '%s'", field, value));
}

int ReplaceBatchNorm(v1::ModelSpec& spec, ReplaceBn r) {
  if (r == ReplaceBn::kKeep) return 0;
  const v1::BatchNormMode to = r == ReplaceBn::kRemove ? v1::BN_OFF : v1::BN_PREDICT;
  int changed = 0;
  for (v1::NodeSpec& n : *spec.mutable_nodes()) {
    const v1::BatchNormMode m = BatchNormModeOf(n);
    if (m == v1::BN_OFF || m == to) continue;
    SetBatchNormMode(n, to);
    ++changed;
  }
  return changed;
}

absl::StatusOr<std::unique_ptr<Network>> ConvertBatchNormToConstants(Network& net) {
  v1::ModelSpec spec = net.graph().spec();
  int n_train = 0;
  // 'fadeout' too (ELEKTRONN2's batch_normalisation_active); its faded running statistics are
  // used with the unfaded gamma, as ELEKTRONN2's 'predict' mode would.
  for (const v1::NodeSpec& n : spec.nodes()) {
    const v1::BatchNormMode m = BatchNormModeOf(n);
    n_train += m == v1::BN_TRAIN || m == v1::BN_FADEOUT;
  }
  if (n_train == 0) return std::unique_ptr<Network>();
  ReplaceBatchNorm(spec, ReplaceBn::kConst);
  NetworkOptions o = net.options();
  if (o.seed == 0) o.seed = net.seed();
  ASSIGN_OR_RETURN(std::unique_ptr<Network> out, Network::Create(spec, net.backend(), o));
  for (Parameter* p : out->params()) {
    ASSIGN_OR_RETURN(Parameter * old, net.FindParam(p->node, p->name));
    RETURN_IF_ERROR(out->SetParamValue(*p, net.ParamValue(*old)));
    if (!old->trainable) p->trainable = false;
  }
  out->set_step(net.step());
  return out;
}

absl::StatusOr<v1::ModelSpec> RewriteSpec(const v1::ModelSpec& stored, const LoadOptions& o,
                                          const std::string& path,
                                          std::vector<std::string>* notes) {
  v1::ModelSpec s = stored;
  const bool mfp = o.override_mfp_to_active;
  const bool imposed_patch = !o.imposed_patch_size.empty();
  if (const int n = ReplaceBatchNorm(s, o.replace_bn); n > 0) {
    notes->push_back(absl::StrFormat("batch normalisation %s in %d layers",
                                     o.replace_bn == ReplaceBn::kRemove
                                         ? "removed"
                                         : "switched to 'predict' (running statistics)",
                                     n));
  }
  if (!mfp && !imposed_patch && o.imposed_batch_size == 0) return s;
  ASSIGN_OR_RETURN(const int input, InputIndex(s, path));
  // Order matters: MFP changes which patch sizes are valid, so the patch is snapped after it,
  // and on a spec without FragmentsToDense yet (whose shape rules the snapping need not know).
  if (mfp) RETURN_IF_ERROR(ActivateMfp(s, path, notes));
  if (mfp || o.imposed_batch_size != 0) {
    RETURN_IF_ERROR(ImposeBatch(s, input, o.imposed_batch_size, mfp, path, notes));
  }
  if (imposed_patch || mfp) {
    std::vector<int64_t> desired = o.imposed_patch_size;
    if (!imposed_patch) {  // MFP keeps the stored patch size if it is valid with MFP.
      ASSIGN_OR_RETURN(TaggedShape shape, InputShape(s.nodes(input), path));
      desired = shape.spatial_shape();
    }
    // ELEKTRONN2 meant to snap here too, but never did (QUIRK 1: a lazy filter() object is
    // always truthy), so an invalid size failed later with "Cannot pool spatial axis". We snap
    // down to the nearest valid size, as its docs promise, and say so in a note.
    RETURN_IF_ERROR(ImposePatch(s, input, desired, imposed_patch, path, notes));
  }
  if (mfp) RETURN_IF_ERROR(InsertToDense(s, path, notes));
  return s;
}

absl::StatusOr<LoadedModel> LoadModel(const ModelFileContents& f, const LoadOptions& o,
                                      kernels::Backend* backend) {
  LoadedModel m;
  ASSIGN_OR_RETURN(m.spec, RewriteSpec(f.spec, o, f.path, &m.notes));
  NetworkOptions net_options = o.network;
  if (o.imposed_batch_size > 0) net_options.batch_size = o.imposed_batch_size;
  auto net = Network::Create(m.spec, backend, net_options);
  if (!net.ok()) return InFile(net.status(), f.path);
  m.net = *std::move(net);
  if (o.replace_bn == ReplaceBn::kRemove) {
    RETURN_IF_ERROR(LoadInto(WithoutRemovedBn(f, m.spec), *m.net, nullptr));
  } else {
    RETURN_IF_ERROR(LoadInto(f, *m.net, nullptr));
  }
  RETURN_IF_ERROR(ApplyTrainability(*m.net, f, o, &m.notes));
  return m;
}

absl::StatusOr<LoadedModel> LoadModel(const std::string& path, const LoadOptions& o,
                                      kernels::Backend* backend) {
  ASSIGN_OR_RETURN(ModelFileContents f, ReadModelFile(path));
  return LoadModel(f, o, backend);
}

}  // namespace elektronn
