// The CNN calculator: ELEKTRONN2's cnncalculator on the engine's Conv shape rule, and its
// questions asked of a whole model through Graph's shape inference.
#include "engine/util/cnn_calculator.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/core/status.h"
#include "engine/graph/graph.h"
#include "engine/nodes/shape_rules.h"

namespace elektronn {
namespace {

// Left-aligned columns two spaces apart, no trailing blanks.
std::string Table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(rows.empty() ? 0 : rows[0].size(), 0);
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size() && i < width.size(); ++i) {
      width[i] = std::max(width[i], r[i].size());
    }
  }
  std::string out;
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size() && i < width.size(); ++i) {
      absl::StrAppend(&line, r[i], std::string(width[i] - r[i].size() + 2, ' '));
    }
    line.erase(line.find_last_not_of(' ') + 1);
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

constexpr int kValidMode = 0;  // ConvAxisOut's conv_mode 'valid'
constexpr int64_t kMaxTriedSize = 1'000'000;

// ELEKTRONN2's choice: the desired size if valid, else the largest valid one below it, else the
// smallest valid one; `change` gets its log line.
absl::StatusOr<int64_t> ChoosePatchSize(const std::vector<int64_t>& valid, int64_t desired,
                                        std::string* change) {
  if (valid.empty()) return absl::InvalidArgumentError("no valid patch size");
  if (desired <= 0) return valid.back();
  if (std::binary_search(valid.begin(), valid.end(), desired)) return desired;
  if (desired < valid.front()) {
    *change =
        absl::StrFormat("patch_size (%d) changed to (%d) (size too small)", desired, valid.front());
    return valid.front();
  }
  const int64_t below = *(std::upper_bound(valid.begin(), valid.end(), desired) - 1);
  *change = absl::StrFormat("patch_size (%d) changed to (%d) (size not possible)", desired, below);
  return below;
}

// Runs one axis of the layer chain for input size `in`; false if some layer rejects it.
bool RunChain(int64_t in, const std::vector<int64_t>& f, const std::vector<int64_t>& p,
              const std::vector<bool>& mfp, std::vector<int64_t>* unpooled,
              std::vector<int64_t>* fragments) {
  int64_t s = in;
  for (size_t i = 0; i < f.size(); ++i) {
    const int64_t out = ConvAxisOut(s, f[i], p[i], kValidMode, mfp[i]);
    if (out < 1) return false;
    if (unpooled != nullptr) unpooled->push_back(s - f[i] + 1);
    if (fragments != nullptr) fragments->push_back(out);
    s = out;
  }
  return true;
}

// "10, 14, 18, ..., 4998 (every 4; 1248 sizes)" or, for periodic but not evenly spaced sets,
// "7, 8, 10, 11, ... (sizes ≡ 1, 2 mod 3 from 7 to 4999; 3331 sizes)".
std::string DescribeSizes(const std::vector<int64_t>& v) {
  if (v.empty()) return "none";
  if (v.size() <= 12) return absl::StrJoin(v, ", ");
  const int64_t lo = v.front(), hi = v.back();
  for (int64_t period = 1; period <= 256; ++period) {
    // Periodic from lo: every size s in [lo, hi] is valid exactly when s - period (if >= lo) is.
    std::vector<bool> in(hi - lo + 1, false);
    for (int64_t s : v) in[s - lo] = true;
    bool ok = true;
    for (int64_t s = lo + period; s <= hi && ok; ++s) ok = in[s - lo] == in[s - period - lo];
    if (!ok) continue;
    std::vector<int64_t> residues;
    for (int64_t s = lo; s < lo + period && s <= hi; ++s)
      if (in[s - lo]) residues.push_back(((s % period) + period) % period);
    std::sort(residues.begin(), residues.end());
    const std::string head = absl::StrJoin(std::vector<int64_t>(v.begin(), v.begin() + 6), ", ");
    if (residues.size() == 1) {
      return period == 1
                 ? absl::StrFormat("%d to %d (%d sizes)", lo, hi, v.size())
                 : absl::StrFormat("%s, ..., %d (every %d; %d sizes)", head, hi, period, v.size());
    }
    return absl::StrFormat("%s, ... (sizes ≡ %s mod %d from %d to %d; %d sizes)", head,
                           absl::StrJoin(residues, ", "), period, lo, hi, v.size());
  }
  return absl::StrFormat("%s, ..., %d (%d sizes)",
                         absl::StrJoin(std::vector<int64_t>(v.begin(), v.begin() + 6), ", "), hi,
                         v.size());
}

// One value per axis: "7" for one axis, "(1, 7, 7)" for several.
template <typename T>
std::string Tuple(const std::vector<T>& v) {
  if (v.size() == 1) return absl::StrCat(v[0]);
  return absl::StrCat("(", absl::StrJoin(v, ", "), ")");
}

std::string Offset(double o) { return absl::StrFormat("%.1f", o); }

absl::StatusOr<std::vector<int64_t>> ParseInts(const std::string& text, const char* sep,
                                               const char* option) {
  std::vector<int64_t> out;
  for (absl::string_view part : absl::StrSplit(text, sep)) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(part, &v)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("--%s: '%s' is not an integer (in '%s')", option, part, text));
    }
    out.push_back(v);
  }
  return out;
}

// "3,3,3" or "1x6x6,4x4x4": one row per layer, one value per axis (rows of length 1 when
// every entry is a scalar).
absl::StatusOr<std::vector<std::vector<int64_t>>> ParseLayers(const std::string& text,
                                                              const char* option) {
  if (text.empty()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--%s is empty: give one value per layer, e.g. 3,3,3 or 1x6x6,4x4x4", option));
  }
  std::vector<std::vector<int64_t>> rows;
  for (absl::string_view layer : absl::StrSplit(text, ',')) {
    absl::StatusOr<std::vector<int64_t>> row = ParseInts(std::string(layer), "x", option);
    if (!row.ok()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("--%s: layer %d is '%s', not a size (3) or one per axis (1x3x3)", option,
                          rows.size() + 1, layer));
    }
    rows.push_back(*std::move(row));
  }
  return rows;
}

}  // namespace

absl::StatusOr<CnnCalculatorOptions> ParseCnnCalculatorArgs(const CnnCalculatorArgs& a) {
  CnnCalculatorOptions o;
  ASSIGN_OR_RETURN(o.filters, ParseLayers(a.filters, "filters"));
  ASSIGN_OR_RETURN(o.poolings, ParseLayers(a.poolings, "poolings"));
  if (o.filters.size() != o.poolings.size()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--filters names %d layers but --poolings %d; give one of each per layer",
                        o.filters.size(), o.poolings.size()));
  }
  // The axes: --ndim, else the first layer given per axis, else 1.
  size_t ndim = a.ndim > 0 ? a.ndim : 0;
  for (const auto* rows : {&o.filters, &o.poolings})
    for (const auto& r : *rows)
      if (ndim == 0 && r.size() > 1) ndim = r.size();
  if (ndim == 0) ndim = 1;
  if (ndim > 3) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%d spatial axes: the calculator takes 1 to 3", ndim));
  }
  for (auto* rows : {&o.filters, &o.poolings}) {
    for (auto& r : *rows) {
      if (r.size() == 1) r.assign(ndim, r[0]);
      if (r.size() != ndim) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "--%s: a layer has %d axes (%s), the others %d",
            rows == &o.filters ? "filters" : "poolings", r.size(), absl::StrJoin(r, "x"), ndim));
      }
    }
  }
  const size_t layers = o.filters.size();
  if (a.mfp || !a.mfp_layers.empty()) {
    std::vector<int64_t> flags(layers, 1);
    if (!a.mfp_layers.empty()) {
      ASSIGN_OR_RETURN(flags, ParseInts(a.mfp_layers, ",", "mfp-layers"));
      if (flags.size() != layers) {
        return absl::InvalidArgumentError(
            absl::StrFormat("--mfp-layers has %d entries for %d layers", flags.size(), layers));
      }
    }
    for (int64_t f : flags) {
      if (f != 0 && f != 1) {
        return absl::InvalidArgumentError(absl::StrFormat("--mfp-layers: %d is not 0 or 1", f));
      }
      o.mfp.emplace_back(ndim, f == 1);
    }
  }
  if (!a.desired.empty()) {
    ASSIGN_OR_RETURN(o.desired, ParseInts(a.desired, ",", "desired"));
    for (int64_t d : o.desired) {
      if (d < 1) {
        return absl::InvalidArgumentError(
            absl::StrFormat("--desired: %d is not a patch size (1 or more)", d));
      }
    }
    if (o.desired.size() == 1) o.desired.assign(ndim, o.desired[0]);
    if (o.desired.size() != ndim) {
      return absl::InvalidArgumentError(
          absl::StrFormat("--desired has %d sizes for %d spatial axes", o.desired.size(), ndim));
    }
  }
  o.force_center = a.force_center;
  return o;
}

absl::StatusOr<CnnCalculation> CalculateCnn(const CnnCalculatorOptions& o) {
  const size_t layers = o.filters.size();
  if (layers == 0) return absl::InvalidArgumentError("the calculator needs at least one layer");
  if (o.poolings.size() != layers || (!o.mfp.empty() && o.mfp.size() != layers)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%d filter rows, %d pooling rows and %d mfp rows: need one of each per layer", layers,
        o.poolings.size(), o.mfp.size()));
  }
  const size_t ndim = o.filters[0].size();
  if (ndim < 1 || ndim > 3) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%d spatial axes: the calculator takes 1 to 3", ndim));
  }
  for (size_t l = 0; l < layers; ++l) {
    if (o.filters[l].size() != ndim || o.poolings[l].size() != ndim ||
        (!o.mfp.empty() && o.mfp[l].size() != ndim)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("layer %d does not give one value per spatial axis (%d)", l + 1, ndim));
    }
    for (size_t a = 0; a < ndim; ++a) {
      if (o.filters[l][a] < 1 || o.filters[l][a] > kMaxTriedSize) {
        return absl::InvalidArgumentError(
            absl::StrFormat("layer %d: filter %d is not a size from 1 to %d", l + 1,
                            o.filters[l][a], kMaxTriedSize));
      }
      if (o.poolings[l][a] < 1 || o.poolings[l][a] > kMaxTriedSize) {
        return absl::InvalidArgumentError(
            absl::StrFormat("layer %d: pooling %d is not a factor from 1 to %d", l + 1,
                            o.poolings[l][a], kMaxTriedSize));
      }
    }
  }
  if (!o.desired.empty() && o.desired.size() != ndim) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%d desired sizes for %d spatial axes", o.desired.size(), ndim));
  }
  if (o.min_size < 1 || o.max_size < o.min_size || o.max_size > kMaxTriedSize) {
    return absl::InvalidArgumentError(
        absl::StrFormat("the sizes tried, %d to %d, must lie within 1 to %d", o.min_size,
                        o.max_size, kMaxTriedSize));
  }

  CnnCalculation c;
  std::vector<std::string> unreachable;
  for (size_t a = 0; a < ndim; ++a) {
    std::vector<int64_t> f(layers), p(layers);
    std::vector<bool> mfp(layers, false);
    for (size_t l = 0; l < layers; ++l) {
      f[l] = o.filters[l][a];
      p[l] = o.poolings[l][a];
      if (!o.mfp.empty()) mfp[l] = o.mfp[l][a];
    }
    CnnAxis axis;
    // Receptive field of layer i: rf = 1 above it, then rf = rf * p_j + f_j - 1 down to layer 0.
    int64_t stride = 1;
    for (size_t i = 0; i < layers; ++i) {
      int64_t rf = 1;
      for (size_t j = i + 1; j-- > 0;) rf = rf * p[j] + f[j] - 1;
      stride *= p[i];
      axis.receptive_fields.push_back(rf);
      axis.strides.push_back(stride);
      axis.overlaps.push_back(rf - stride);
    }
    axis.fov = axis.receptive_fields.back();
    axis.offset = axis.fov / 2.0;
    if (axis.fov % 2 == 0) {
      const std::string text = absl::StrFormat(
          "Receptive fields are not centred with the even field of view %d (axis %d)", axis.fov,
          a + 1);
      if (o.force_center) {
        return absl::InvalidArgumentError(
            text + "; --force-center asks for an odd one (change a filter size by 1)");
      }
      c.warnings.push_back(text);
    }
    for (int64_t in = o.min_size; in <= o.max_size; ++in)
      if (RunChain(in, f, p, mfp, nullptr, nullptr)) axis.valid_patch_sizes.push_back(in);
    if (axis.valid_patch_sizes.empty()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "no input size from %d to %d is valid on axis %d for filters %s and poolings %s%s",
          o.min_size, o.max_size, a + 1, absl::StrJoin(f, ","), absl::StrJoin(p, ","),
          o.mfp.empty() ? "" : " with these MFP layers"));
    }
    ASSIGN_OR_RETURN(axis.patch_size,
                     ChoosePatchSize(axis.valid_patch_sizes, o.desired.empty() ? 0 : o.desired[a],
                                     &axis.change));
    RunChain(axis.patch_size, f, p, mfp, &axis.unpooled_sizes, &axis.fragment_sizes);
    c.axes.push_back(std::move(axis));
  }
  return c;
}

std::string CnnCalculationText(const CnnCalculation& c) {
  std::string s;
  for (const CnnAxis& a : c.axes)
    if (!a.change.empty()) absl::StrAppend(&s, a.change, "\n");
  auto column = [&](auto member, size_t layer) {
    std::vector<int64_t> v;
    for (const CnnAxis& a : c.axes) v.push_back((a.*member)[layer]);
    return Tuple(v);
  };
  std::vector<int64_t> patch;
  std::vector<double> offset;
  for (const CnnAxis& a : c.axes) {
    patch.push_back(a.patch_size);
    offset.push_back(a.offset);
  }
  absl::StrAppend(&s, "patch_size: ", Tuple(patch), "\n");
  std::vector<std::vector<std::string>> rows = {
      {"layer", "fragment sizes", "unpooled sizes", "receptive fields", "strides", "overlap"}};
  for (size_t l = 0; l < c.axes[0].strides.size(); ++l) {
    rows.push_back({absl::StrCat(l + 1), column(&CnnAxis::fragment_sizes, l),
                    column(&CnnAxis::unpooled_sizes, l), column(&CnnAxis::receptive_fields, l),
                    column(&CnnAxis::strides, l), column(&CnnAxis::overlaps, l)});
  }
  absl::StrAppend(&s, Table(rows));
  std::vector<std::string> off;
  for (double o : offset) off.push_back(Offset(o));
  absl::StrAppend(
      &s, "offset: ", off.size() == 1 ? off[0] : absl::StrCat("(", absl::StrJoin(off, ", "), ")"),
      "  (fov/2; a non-integer offset means output neurons lie centred on input voxels: odd "
      "fov)\n");
  for (size_t i = 0; i < c.axes.size(); ++i) {
    absl::StrAppend(&s, "valid patch sizes",
                    c.axes.size() > 1 ? absl::StrCat(" (axis ", i + 1, ")") : "", ": ",
                    DescribeSizes(c.axes[i].valid_patch_sizes), "\n");
  }
  for (const std::string& w : c.warnings) absl::StrAppend(&s, "warning: ", w, "\n");
  return s;
}

std::string CnnCalculationJson(const CnnCalculation& c) {
  nlohmann::ordered_json axes = nlohmann::ordered_json::array();
  for (const CnnAxis& a : c.axes) {
    axes.push_back(
        {{"patch_size", a.patch_size},
         {"change", a.change.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(a.change)},
         {"fragment_sizes", a.fragment_sizes},
         {"unpooled_sizes", a.unpooled_sizes},
         {"receptive_fields", a.receptive_fields},
         {"strides", a.strides},
         {"overlaps", a.overlaps},
         {"fov", a.fov},
         {"offset", a.offset},
         {"valid_patch_sizes", a.valid_patch_sizes}});
  }
  nlohmann::ordered_json out = {{"axes", axes}, {"warnings", c.warnings}};
  return out.dump();
}

absl::StatusOr<ModelCalculation> CalculateModel(const v1::ModelSpec& spec,
                                                std::vector<int64_t> desired, int64_t min_size,
                                                int64_t max_size) {
  if (min_size < 1 || max_size < min_size || max_size > kMaxTriedSize) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "the sizes tried, %d to %d, must lie within 1 to %d", min_size, max_size, kMaxTriedSize));
  }
  const std::string& designated = spec.designations().input_node();
  int index = -1;
  for (int i = 0; i < spec.nodes_size() && index < 0; ++i) {
    if (spec.nodes(i).has_input() && (designated.empty() || spec.nodes(i).name() == designated)) {
      index = i;
    }
  }
  if (index < 0) return absl::InvalidArgumentError("the model has no input node");
  const v1::InputOp& input = spec.nodes(index).input();
  ASSIGN_OR_RETURN(
      TaggedShape shape,
      TaggedShape::Create(std::vector<int64_t>(input.shape().begin(), input.shape().end()),
                          input.tags()));
  const int ndim = shape.ndim();
  if (ndim == 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("input node '%s' (%s) has no spatial axis to size",
                        spec.nodes(index).name(), shape.tags_string()));
  }
  if (desired.size() == 1) desired.assign(ndim, desired[0]);
  if (!desired.empty() && static_cast<int>(desired.size()) != ndim) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--desired has %d sizes; input node '%s' has %d spatial axes (%s)",
                        desired.size(), spec.nodes(index).name(), ndim, shape.tags_string()));
  }
  ModelCalculation c;
  c.input_node = spec.nodes(index).name();
  v1::ModelSpec trial = spec;
  for (int a = 0; a < ndim; ++a) {
    const int axis = shape.spatial_axes()[a];
    ModelCalculation::Axis ax;
    ax.tag = shape.tags()[axis];
    ax.model_size = input.shape(axis);
    auto* sizes = trial.mutable_nodes(index)->mutable_input()->mutable_shape();
    for (int64_t in = min_size; in <= max_size; ++in) {
      sizes->Set(axis, in);
      Graph g;
      if (Graph::BuildWithoutHints(trial, &g).ok()) ax.valid_patch_sizes.push_back(in);
    }
    sizes->Set(axis, ax.model_size);
    if (ax.valid_patch_sizes.empty()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "no size from %d to %d of input '%s' along %c lets the model infer its shapes", min_size,
          max_size, c.input_node, ax.tag));
    }
    ASSIGN_OR_RETURN(ax.patch_size,
                     ChoosePatchSize(ax.valid_patch_sizes,
                                     desired.empty() ? ax.model_size : desired[a], &ax.change));
    c.axes.push_back(std::move(ax));
  }
  for (int a = 0; a < ndim; ++a) {
    trial.mutable_nodes(index)->mutable_input()->set_shape(shape.spatial_axes()[a],
                                                           c.axes[a].patch_size);
  }
  // Each axis was searched with the others at the model's sizes; together they must hold too.
  ASSIGN_OR_RETURN(std::unique_ptr<Graph> g, Graph::Create(trial));
  for (const auto& n : g->nodes()) {
    const TaggedShape& s = n->shape();
    c.nodes.push_back({n->name(), n->op(), s.spatial_shape(), s.fov(), s.strides(), s.offsets()});
  }
  if (!g->fov_warning().empty()) c.warnings.push_back(g->fov_warning());
  return c;
}

std::string ModelCalculationText(const ModelCalculation& c) {
  std::string s;
  for (const auto& a : c.axes)
    if (!a.change.empty()) absl::StrAppend(&s, std::string(1, a.tag), ": ", a.change, "\n");
  std::vector<int64_t> patch;
  std::string tags;
  for (const auto& a : c.axes) {
    patch.push_back(a.patch_size);
    tags += a.tag;
  }
  absl::StrAppend(&s, "input '", c.input_node, "' ", tags, ": patch_size ", Tuple(patch), "\n");
  std::vector<std::vector<std::string>> rows = {
      {"node", "op", "spatial shape", "fov", "strides", "offsets"}};
  for (const auto& n : c.nodes) {
    rows.push_back(
        {n.name, n.op, Tuple(n.spatial_shape), Tuple(n.fov), Tuple(n.strides), Tuple(n.offsets)});
  }
  absl::StrAppend(&s, Table(rows));
  for (const auto& a : c.axes) {
    absl::StrAppend(&s, "valid sizes along ", std::string(1, a.tag), ": ",
                    DescribeSizes(a.valid_patch_sizes), "\n");
  }
  for (const std::string& w : c.warnings) absl::StrAppend(&s, "warning: ", w, "\n");
  return s;
}

std::string ModelCalculationJson(const ModelCalculation& c) {
  nlohmann::ordered_json axes = nlohmann::ordered_json::array();
  for (const auto& a : c.axes) {
    axes.push_back(
        {{"axis", std::string(1, a.tag)},
         {"model_size", a.model_size},
         {"patch_size", a.patch_size},
         {"change", a.change.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(a.change)},
         {"valid_patch_sizes", a.valid_patch_sizes}});
  }
  nlohmann::ordered_json nodes = nlohmann::ordered_json::array();
  for (const auto& n : c.nodes) {
    nodes.push_back({{"name", n.name},
                     {"op", n.op},
                     {"spatial_shape", n.spatial_shape},
                     {"fov", n.fov},
                     {"strides", n.strides},
                     {"offsets", n.offsets}});
  }
  nlohmann::ordered_json out = {
      {"input", c.input_node}, {"axes", axes}, {"nodes", nodes}, {"warnings", c.warnings}};
  return out.dump();
}

}  // namespace elektronn
