// Dense prediction of a whole volume, streamed tile by tile (see predictor.h): the net's plan
// (patch, MFP or shift-and-stitch, memory), the output's region and chunks, and three threads.
#include "engine/predict/predictor.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <limits>
#include <mutex>
#include <set>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/core/status.h"
#include "engine/graph/graph.h"
#include "engine/io/model_file.h"
#include "engine/io/model_loader.h"
#include "engine/predict/tiling.h"

namespace elektronn {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kAxis[3] = {"z", "x", "y"};
constexpr int64_t kDefaultMemoryLimit = int64_t{4} << 30;
constexpr Extent3 kChunkTarget = {64, 64, 64};
// Tile inputs read ahead of the compute thread, and finished chunks waiting for the writer.
constexpr size_t kInputQueueTiles = 2;
constexpr size_t kOutputQueueChunks = 2;
// Decoded input chunks the reader caches (tiles re-read their neighbours' halos).
constexpr int64_t kMinReaderCache = int64_t{32} << 20, kMaxReaderCache = int64_t{256} << 20;

std::string Triple(const Extent3& a) { return absl::StrCat("(", absl::StrJoin(a, ","), ")"); }
int64_t Prod(const Extent3& a) { return a[0] * a[1] * a[2]; }
std::string MiB(double bytes) { return absl::StrFormat("%.0f MiB", bytes / (1 << 20)); }

// A FIFO between two threads. Close() ends the stream: Push fails from then on, Pop drains
// what is queued and then returns nullopt.
template <typename T>
class BoundedQueue {
 public:
  explicit BoundedQueue(size_t capacity) : capacity_(capacity) {}
  bool Push(T v) {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return closed_ || q_.size() < capacity_; });
    if (closed_) return false;
    q_.push_back(std::move(v));
    cv_.notify_all();
    return true;
  }
  std::optional<T> Pop() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return closed_ || !q_.empty(); });
    if (q_.empty()) return std::nullopt;
    T v = std::move(q_.front());
    q_.pop_front();
    cv_.notify_all();
    return v;
  }
  void Close() {
    std::lock_guard<std::mutex> l(mu_);
    closed_ = true;
    cv_.notify_all();
  }

 private:
  const size_t capacity_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<T> q_;
  bool closed_ = false;
};

// ---------------------------------------------------------------------------------------------
// The model: only what the prediction needs, and its identity.

// The prediction node and its ancestors, with their parameters: targets, losses and monitors
// would cost memory and time on every tile.
absl::StatusOr<ModelFileContents> PredictionOnly(ModelFileContents f) {
  const v1::Designations& d = f.spec.designations();
  if (d.prediction_node().empty()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "model file '%s' designates no prediction_node; dense prediction needs one", f.path));
  }
  std::set<std::string> keep = {d.prediction_node()};
  for (int i = f.spec.nodes_size() - 1; i >= 0; --i) {
    const v1::NodeSpec& n = f.spec.nodes(i);
    if (keep.contains(n.name())) keep.insert(n.inputs().begin(), n.inputs().end());
  }
  v1::ModelSpec spec;
  spec.set_name(f.spec.name());
  spec.set_seed(f.spec.seed());
  for (const v1::NodeSpec& n : f.spec.nodes()) {
    if (keep.contains(n.name())) *spec.add_nodes() = n;
  }
  spec.mutable_designations()->set_input_node(d.input_node());
  spec.mutable_designations()->set_prediction_node(d.prediction_node());
  f.spec = std::move(spec);
  auto node_of = [](const std::string& key) { return key.substr(0, key.rfind('/')); };
  std::erase_if(f.params, [&](const auto& kv) { return !keep.contains(node_of(kv.first)); });
  std::erase_if(f.param_shapes, [&](const auto& kv) { return !keep.contains(node_of(kv.first)); });
  std::erase_if(f.constant_params, [&](const auto& k) { return !keep.contains(node_of(k)); });
  f.has_optimiser = false;
  f.slots.clear();
  f.slot_shapes.clear();
  return f;
}

// FNV-1a over the spec and every parameter value: the model's identity for resuming (a copy of
// the file is the same model, a retrained one is not).
std::string ModelDigest(const ModelFileContents& f) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  };
  const std::string spec = f.spec.SerializeAsString();
  mix(spec.data(), spec.size());
  for (const auto& [key, values] : f.params) {
    mix(key.data(), key.size() + 1);
    mix(values.data(), values.size() * sizeof(float));
  }
  return absl::StrFormat("%016x", h);
}

// ---------------------------------------------------------------------------------------------
// The net's plan: patch, strides, field of view, MFP, estimated memory.

struct NetPlan {
  v1::ModelSpec spec;  // compiled for the run: plain, or with MFP and FragmentsToDense
  bool mfp = false;
  bool two_d = false;  // a 2-D net (x,y): z is 1 for it
  Extent3 patch = {1, 1, 1}, fov = {1, 1, 1}, strides = {1, 1, 1}, out = {1, 1, 1};
  Extent3 net_input = {1, 1, 1};  // what one forward takes: patch, or patch + S - 1 with MFP
  int64_t in_channels = 0, classes = 0;
  double net_bytes = 0;                 // estimated memory of the compiled net
  std::vector<std::string> snap_notes;  // the loader's: the desired patch snapped down
  std::vector<std::string> notes;       // the loader's: MFP activated, batch imposed, ...
};

std::vector<int64_t> NetAxes(const Extent3& zxy, bool two_d) {
  if (two_d) return {zxy[1], zxy[2]};
  return {zxy[0], zxy[1], zxy[2]};
}
Extent3 FromNetAxes(const std::vector<int64_t>& v, int64_t z_for_2d = 1) {
  if (v.size() == 2) return {z_for_2d, v[0], v[1]};
  return {v[0], v[1], v[2]};
}

// Memory the compiled (inference-only) net will hold, from the built graph's shapes: every
// node's output, and a pooling Conv's convolution output before pooling (and MFP's sliding
// max), plus a margin for oneDNN's scratchpads and reorders. A pooling Conv's backward buffers
// of those two are allocated too, but a forward never touches them, so they take address
// space, not memory.
// In bf16 (`bf16`), each convolution, transposed convolution and matrix product also holds bf16
// copies of its input and its weights (half a float per value; the copy of diff_dst is never
// written by a forward, so it takes address space only).
double EstimateNetBytes(const Graph& g, bool bf16) {
  double floats = 0;
  for (const auto& n : g.nodes()) {
    const double numel = static_cast<double>(n->shape().stripnone_prod());
    floats += numel;
    const v1::NodeSpec& spec = n->spec();
    if (bf16 && (spec.has_conv() || spec.has_upconv() || spec.has_perceptron()) &&
        !n->parents().empty()) {
      floats += 0.5 * static_cast<double>(n->parents()[0]->shape().stripnone_prod());
      for (const Parameter& w : n->params()) {
        double values = 1;
        for (int64_t d : w.shape) values *= static_cast<double>(d);
        floats += 0.5 * values;
      }
    }
    if (!n->spec().has_conv() || n->parents().empty()) continue;
    const v1::ConvOp& c = n->spec().conv();
    int64_t pool = 1;
    for (int64_t p : c.pool_shape()) pool *= p;
    if (pool == 1) continue;
    const TaggedShape& in = n->parents()[0]->shape();
    double conv = std::max<int64_t>(1, in.SizeOf('b')) * static_cast<double>(c.n_f());
    const std::vector<int64_t> s = in.spatial_shape();
    for (size_t j = 0; j < s.size() && static_cast<int>(j) < c.filter_shape_size(); ++j) {
      const int64_t f = c.filter_shape(static_cast<int>(j));
      conv *= c.conv_mode() == v1::VALID  ? s[j] - f + 1
              : c.conv_mode() == v1::SAME ? s[j]
                                          : s[j] + f - 1;
    }
    floats += (c.mfp() ? 2 : 1) * conv;
  }
  return floats * 4 * 1.15 + (16 << 20);
}

// The net's input and prediction shapes, checked for dense prediction.
absl::Status ReadNetShapes(const Graph& g, const std::string& path, NetPlan* p) {
  const v1::Designations& d = g.spec().designations();
  ASSIGN_OR_RETURN(const Node* in, g.Get(d.input_node()));
  ASSIGN_OR_RETURN(const Node* pred, g.Get(d.prediction_node()));
  const TaggedShape& is = in->shape();
  const TaggedShape& ps = pred->shape();
  for (const TaggedShape* s : {&is, &ps}) {
    if (s->tags() != "bfzxy" && s->tags() != "bfxy") {
      return absl::UnimplementedError(absl::StrFormat(
          "model file '%s': dense prediction takes nets whose input and prediction are "
          "(b,f,z,x,y) or (b,f,x,y); input '%s' is (%s), prediction '%s' is (%s)",
          path, in->name(), is.tags_string(), pred->name(), ps.tags_string()));
    }
  }
  if (is.tags() != ps.tags()) {
    return absl::UnimplementedError(absl::StrFormat(
        "model file '%s': input '%s' (%s) and prediction '%s' (%s) differ in their axes", path,
        in->name(), is.tags_string(), pred->name(), ps.tags_string()));
  }
  p->two_d = is.ndim() == 2;
  for (int64_t f : ps.fov()) {
    if (f <= 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "model file '%s': prediction '%s' has no valid field of view (%s); dense prediction "
          "needs one",
          path, pred->name(), absl::StrJoin(ps.fov(), ",")));
    }
  }
  p->in_channels = is.SizeOf('f');
  p->classes = ps.SizeOf('f');
  p->patch = FromNetAxes(is.spatial_shape());
  p->out = FromNetAxes(ps.spatial_shape());
  p->fov = FromNetAxes(ps.fov());
  p->strides = FromNetAxes(ps.strides());
  // A U-Net's prediction fov is designate_nodes' repaired value in - out_extent (even, QUIRK
  // 12; engine/graph/graph.cc); the tiling needs the extent whose outputs are
  // (patch - fov) / stride + 1, which is one more (same offset fov / 2). UpConv family.
  for (int a = 0; a < 3; ++a) {
    if (p->fov[a] % 2 == 0 && p->strides[a] * (p->out[a] - 1) + 1 + p->fov[a] == p->patch[a]) {
      p->fov[a] += 1;
    }
  }
  return absl::OkStatus();
}

// The plan for a desired patch (snapped down; nullopt: the stored one), with MFP if `mfp` and
// the net pools. An MFP net the loader refuses is an error here; the caller may fall back.
absl::StatusOr<NetPlan> PlanNet(const ModelFileContents& f, const std::optional<Extent3>& desired,
                                bool mfp, bool two_d, bool bf16) {
  NetPlan p;
  LoadOptions plain;
  if (desired) plain.imposed_patch_size = NetAxes(*desired, two_d);
  plain.imposed_batch_size = 1;
  ASSIGN_OR_RETURN(p.spec, RewriteSpec(f.spec, plain, f.path, &p.snap_notes));
  ASSIGN_OR_RETURN(std::unique_ptr<Graph> g, Graph::Create(p.spec));
  RETURN_IF_ERROR(ReadNetShapes(*g, f.path, &p));
  p.net_input = p.patch;
  const bool strided = Prod(p.strides) > 1;
  if (mfp && strided) {
    LoadOptions m;
    for (int a = 0; a < 3; ++a) p.net_input[a] = p.patch[a] + p.strides[a] - 1;
    m.imposed_patch_size = NetAxes(p.net_input, p.two_d);
    m.override_mfp_to_active = true;
    ASSIGN_OR_RETURN(p.spec, RewriteSpec(f.spec, m, f.path, &p.notes));
    ASSIGN_OR_RETURN(g, Graph::Create(p.spec));
    NetPlan dense;
    RETURN_IF_ERROR(ReadNetShapes(*g, f.path, &dense));
    Extent3 tile_out;
    for (int a = 0; a < 3; ++a) tile_out[a] = p.out[a] * p.strides[a];
    if (dense.patch != p.net_input || dense.out != tile_out || dense.strides != Extent3{1, 1, 1}) {
      return absl::InternalError(absl::StrFormat(
          "model file '%s': the MFP net takes %s and predicts %s (strides %s); expected %s, %s "
          "and stride 1 for the patch %s",
          f.path, Triple(dense.patch), Triple(dense.out), Triple(dense.strides),
          Triple(p.net_input), Triple(tile_out), Triple(p.patch)));
    }
    p.mfp = true;
  }
  p.net_bytes = EstimateNetBytes(*g, bf16);
  return p;
}

// ---------------------------------------------------------------------------------------------
// The output: region, tiles, chunks, memory of the pipeline.

// The input region the output covers (see PredictOptions::roi).
absl::StatusOr<Box> OutputRegion(const VolumeShape& in, const std::optional<Box>& roi, PadMode pad,
                                 const Extent3& fov) {
  const Extent3 size = {in.z, in.x, in.y};
  Box r = roi.value_or(Box{0, 0, 0, in.z, in.x, in.y});
  int64_t* origin[3] = {&r.z0, &r.x0, &r.y0};
  int64_t* extent[3] = {&r.dz, &r.dx, &r.dy};
  for (int a = 0; a < 3; ++a) {
    if (*extent[a] <= 0 || *origin[a] < 0 || *origin[a] + *extent[a] > size[a]) {
      return absl::InvalidArgumentError(
          absl::StrFormat("roi %s is not a non-empty region inside the input %s (axis %s)",
                          r.ToString(), in.ToString(), kAxis[a]));
    }
    if (pad != PadMode::kError) continue;
    const int64_t off = fov[a] / 2;
    const int64_t lo = std::max(*origin[a], off),
                  hi = std::min(*origin[a] + *extent[a], size[a] - off);
    if (hi <= lo) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "without padding the output along %s covers the input voxels [%d, %d), which the %s "
          "[%d, %d) does not reach: the field of view is %d; mirror-pad the input (pad mirror) "
          "or give an input of at least %d",
          kAxis[a], off, size[a] - off, roi ? "roi's" : "input's", *origin[a],
          *origin[a] + *extent[a], fov[a], 2 * off + 1));
    }
    *origin[a] = lo;
    *extent[a] = hi - lo;
  }
  return r;
}

absl::StatusOr<Extent3> OutputChunk(const TileGeometry& g, const Extent3& asked) {
  const Extent3 aligned = AlignedOutputChunk(g, kChunkTarget);
  Extent3 chunk;
  for (int a = 0; a < 3; ++a) chunk[a] = asked[a] > 0 ? asked[a] : aligned[a];
  RETURN_IF_ERROR(CheckOutputChunk(g, chunk));
  return chunk;
}

// Memory of the pipeline around the net: tile inputs queued, being read and being computed,
// the shifted patch and the net's output copies, output chunks assembled, queued and being
// written, and the reader's cache.
double PipelineBytes(const TileGeometry& g, const NetPlan& p, const Extent3& chunk,
                     int64_t out_channels, int64_t reader_cache) {
  double b = 4.0 * Prod(g.tile_in) * p.in_channels * (kInputQueueTiles + 2);
  b += 4.0 * Prod(p.net_input) * p.in_channels * 2;  // patch cut, SetInput's physical copy
  Extent3 net_out = p.out;
  if (p.mfp) net_out = g.tile_out;
  b += 4.0 * Prod(net_out) * p.classes * 2;  // Output's physical and logical copies
  b += 5.0 * Prod(chunk) * out_channels * (kOutputQueueChunks + 2);  // float (+ uint8)
  return b + static_cast<double>(reader_cache);
}

int64_t ReaderCache(const Extent3& tile_in, int64_t in_channels) {
  return std::clamp<int64_t>(2 * Prod(tile_in) * in_channels * 4, kMinReaderCache, kMaxReaderCache);
}

// Everything decided before the run.
struct RunPlan {
  NetPlan net;
  Box region;  // input region the output covers
  TileGeometry geometry;
  Extent3 chunk;
  int64_t reader_cache = 0;
  double bytes = 0;  // estimated: net + pipeline
  std::string MemoryText() const {
    return absl::StrFormat("%s (net %s, tiles, chunks and reader cache %s)", MiB(bytes),
                           MiB(net.net_bytes), MiB(bytes - net.net_bytes));
  }
};

absl::StatusOr<RunPlan> PlanFor(const ModelFileContents& f, const Extent3& desired, bool mfp,
                                bool two_d, const Box& region, const PredictOptions& o,
                                int64_t out_channels) {
  RunPlan r;
  ASSIGN_OR_RETURN(r.net, PlanNet(f, desired, mfp, two_d, o.precision == kernels::DataType::kBf16));
  r.region = region;
  TilingInput t;
  t.raw = {region.dz, region.dx, region.dy};
  t.patch = r.net.patch;
  t.fov = r.net.fov;
  t.strides = r.net.strides;
  t.out = r.net.out;
  t.pad_raw = true;  // the region's context is read around it (see OutputRegion)
  ASSIGN_OR_RETURN(r.geometry, ComputeTileGeometry(t));
  ASSIGN_OR_RETURN(r.chunk, OutputChunk(r.geometry, o.chunk));
  r.reader_cache = ReaderCache(r.geometry.tile_in, r.net.in_channels);
  r.bytes =
      r.net.net_bytes + PipelineBytes(r.geometry, r.net, r.chunk, out_channels, r.reader_cache);
  return r;
}

// The smallest patch with as many tiles as `r` per axis, so that the border tiles compute less
// output that is cut away: with tile_out = out * S and ps = fov + tile_out - S, per axis
// tile_out = ceil(pred / tiles) rounded up to S. Kept only if the loader takes it as is.
void Balance(const ModelFileContents& f, bool mfp, bool two_d, const Box& region,
             const PredictOptions& o, int64_t out_channels, RunPlan* r) {
  const Extent3 pred = {region.dz, region.dx, region.dy};
  Extent3 desired = r->net.patch;
  for (int a = 0; a < 3; ++a) {
    const int64_t s = r->net.strides[a], n = r->geometry.tiles[a];
    const int64_t tile_out = ((pred[a] + n - 1) / n + s - 1) / s * s;
    desired[a] = std::min(desired[a], r->net.fov[a] + tile_out - s);
  }
  if (desired == r->net.patch) return;
  auto b = PlanFor(f, desired, mfp, two_d, region, o, out_channels);
  if (b.ok() && b->net.patch == desired && b->geometry.tiles == r->geometry.tiles) {
    *r = *std::move(b);
  }
}

// The patch: as given (snapped), or the largest whose run fits the memory limit. The search
// starts from the smallest patch whose one tile covers the whole region and shrinks the axis
// that is largest relative to the field of view (keeping anisotropic nets' proportions) by
// about 1/8 at a time.
absl::StatusOr<RunPlan> ChoosePlan(const ModelFileContents& f, const PredictOptions& o,
                                   const NetPlan& stored, bool mfp, const Box& region,
                                   int64_t out_channels, std::vector<std::string>* notes) {
  const int64_t limit = o.memory_limit > 0 ? o.memory_limit : kDefaultMemoryLimit;
  if (!o.patch.empty()) {
    const size_t want = stored.two_d ? 2 : 3;
    Extent3 desired;
    if (o.patch.size() == want) {
      desired = FromNetAxes(o.patch);
    } else if (stored.two_d && o.patch.size() == 3 && o.patch[0] == 1) {
      desired = {1, o.patch[1], o.patch[2]};
    } else {
      return absl::InvalidArgumentError(
          absl::StrFormat("patch (%s) has %d entries; the net is %s, so give %s",
                          absl::StrJoin(o.patch, ","), o.patch.size(), stored.two_d ? "2-D" : "3-D",
                          stored.two_d ? "(x,y) or (1,x,y)" : "(z,x,y)"));
    }
    ASSIGN_OR_RETURN(RunPlan r, PlanFor(f, desired, mfp, stored.two_d, region, o, out_channels));
    notes->insert(notes->end(), r.net.snap_notes.begin(), r.net.snap_notes.end());
    notes->push_back(absl::StrFormat("patch %s as given: estimated memory %s; memory_limit %s",
                                     Triple(r.net.patch), r.MemoryText(), MiB(limit)));
    return r;
  }
  const Extent3 pred = {region.dz, region.dx, region.dy};
  Extent3 desired;
  for (int a = 0; a < 3; ++a) {
    const int64_t s = stored.strides[a];
    desired[a] = stored.fov[a] + ((pred[a] + s - 1) / s - 1) * s;
  }
  if (stored.two_d) desired[0] = 1;
  std::optional<RunPlan> best;
  for (int round = 0; round < 1000; ++round) {
    auto r = PlanFor(f, desired, mfp, stored.two_d, region, o, out_channels);
    if (!r.ok()) {
      if (best) break;  // smaller than the net takes: keep the last valid one
      return r.status();
    }
    const bool fits = r->bytes <= static_cast<double>(limit);
    best = *std::move(r);
    if (fits) {
      const Extent3 largest = best->net.patch;
      Balance(f, mfp, stored.two_d, region, o, out_channels, &*best);
      notes->push_back(absl::StrFormat(
          "patch %s chosen: %s fits memory_limit %s (estimated %s)%s", Triple(best->net.patch),
          largest == best->net.patch ? "the largest that" : "as many tiles as the largest that",
          MiB(limit), best->MemoryText(),
          largest == best->net.patch
              ? ""
              : absl::StrFormat(", with less output cut away at the border than %s",
                                Triple(largest))));
      return *std::move(best);
    }
    // Shrink the axis largest relative to its field of view that can shrink.
    int axis = -1;
    double ratio = 0;
    for (int a = stored.two_d ? 1 : 0; a < 3; ++a) {
      const double q =
          static_cast<double>(best->net.patch[a]) / static_cast<double>(best->net.fov[a]);
      if (best->net.patch[a] > best->net.fov[a] && q > ratio) {
        ratio = q;
        axis = a;
      }
    }
    if (axis < 0) break;
    desired = best->net.patch;
    desired[axis] -= std::max(best->net.strides[axis], desired[axis] / 8);
    desired[axis] = std::max(desired[axis], best->net.fov[axis]);
  }
  notes->push_back(absl::StrFormat(
      "patch %s: the smallest this net takes needs about %s, more than memory_limit %s",
      Triple(best->net.patch), MiB(best->bytes), MiB(limit)));
  return *std::move(best);
}

std::string PadName(PadMode p) {
  switch (p) {
    case PadMode::kMirror:
      return "mirror";
    case PadMode::kZero:
      return "zero";
    case PadMode::kError:
      return "none";
  }
  return "?";
}

// Every argument that shapes the output, readable, so that a refused resume says what changed.
std::string Fingerprint(const std::string& model_digest, const VolumeLocation& input,
                        const VolumeShape& in_shape, VolumeDtype in_dtype, const RunPlan& r,
                        const PredictOptions& o, const std::vector<int>& channels) {
  return absl::StrFormat(
      "model %s; input %s %s %s; patch %s; mfp %s; pad %s; channels %s; as_uint8 %s; roi %s; "
      "chunk %s",
      model_digest, input.ToString(), in_shape.ToString(), DtypeName(in_dtype), Triple(r.net.patch),
      r.net.mfp ? "on" : "off", PadName(o.pad), absl::StrJoin(channels, ","),
      o.as_uint8 ? "yes" : "no", o.roi ? o.roi->ToString() : "none", Triple(r.chunk));
}

std::string Absolute(const std::string& path) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::absolute(path, ec);
  return ec ? path : p.lexically_normal().string();
}

// ---------------------------------------------------------------------------------------------
// The run: reader thread -> compute (the calling thread) -> writer thread.

struct TileInput {
  Tile tile;
  std::vector<float> data;  // (c, tile_in) of the input
};
struct ChunkOutput {
  ChunkIndex index;
  std::vector<float> data;  // (selected channels, ChunkBox(index))
};

// Sliding-window rate of the writer's progress.
class RateMeter {
 public:
  RateMeter(Clock::time_point start, int64_t done) { samples_.push_back({start, done}); }
  double Add(Clock::time_point t, int64_t done) {
    samples_.push_back({t, done});
    while (samples_.size() > 9) samples_.pop_front();
    const double dt = std::chrono::duration<double>(t - samples_.front().first).count();
    return dt > 0 ? static_cast<double>(done - samples_.front().second) / dt : 0;
  }

 private:
  std::deque<std::pair<Clock::time_point, int64_t>> samples_;
};

class Run {
 public:
  Run(const PredictOptions& o, const RunPlan& plan, Network& net, const VolumeReader& reader,
      VolumeWriter& writer, std::vector<int> channels, std::vector<ChunkIndex> todo,
      const std::function<void(const PredictProgress&)>& on_progress, const std::atomic<bool>* stop)
      : o_(o),
        plan_(plan),
        net_(net),
        reader_(reader),
        writer_(writer),
        channels_(std::move(channels)),
        todo_(std::move(todo)),
        on_progress_(on_progress),
        stop_(stop) {}

  // Runs until every chunk is written, an error, or a stop (CANCELLED).
  absl::Status Execute(int64_t voxels_skipped, int64_t chunks_skipped) {
    progress_.voxels_total = writer_.options().shape.voxels();
    progress_.chunks_total = writer_.num_chunks();
    progress_.voxels_done = voxels_skipped;
    progress_.chunks_done = chunks_skipped;
    const Clock::time_point start = Clock::now();
    meter_.emplace(start, voxels_skipped);
    if (on_progress_) on_progress_(progress_);
    std::thread reader([this] { ReadTiles(); });
    std::thread writer([this] { WriteChunks(); });
    Compute();
    inputs_.Close();  // unblocks the reader when computing ended early
    outputs_.Close();
    reader.join();
    writer.join();
    std::lock_guard<std::mutex> l(mu_);
    if (!error_.ok()) return error_;
    if (cancelled_) {
      return absl::CancelledError(absl::StrFormat(
          "prediction stopped: %d of %d chunks of '%s' are done; run again with the same "
          "arguments to continue",
          progress_.chunks_done, progress_.chunks_total, writer_.location().ToString()));
    }
    return absl::OkStatus();
  }
  int64_t chunks_written() const { return written_; }

 private:
  bool Stopping() const { return failed_.load() || (stop_ != nullptr && stop_->load()); }
  void Fail(absl::Status s) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (error_.ok()) error_ = std::move(s);
    }
    failed_ = true;
    inputs_.Close();
    outputs_.Close();
  }

  void ReadTiles() {
    const PadMode pad = o_.pad == PadMode::kMirror ? PadMode::kMirror : PadMode::kZero;
    const Box& r = plan_.region;
    const int64_t values = Prod(plan_.geometry.tile_in) * plan_.net.in_channels;
    for (const ChunkIndex& c : todo_) {
      for (const Extent3& k : TilesOfChunk(plan_.geometry, writer_.options().chunk, c)) {
        if (Stopping()) break;
        TileInput t{TileAt(plan_.geometry, k), std::vector<float>(values)};
        Box abs = t.tile.input;
        abs.z0 += r.z0;
        abs.x0 += r.x0;
        abs.y0 += r.y0;
        if (absl::Status s = reader_.Read(abs, pad, t.data.data()); !s.ok()) {
          Fail(std::move(s));
          break;
        }
        if (!inputs_.Push(std::move(t))) return;
      }
    }
    inputs_.Close();
  }

  void Compute() {
    size_t computed = 0;
    for (const ChunkIndex& c : todo_) {
      if (Stopping()) break;
      const Box box = writer_.ChunkBox(c);
      ChunkOutput out{c, std::vector<float>(channels_.size() * box.voxels(),
                                            std::numeric_limits<float>::quiet_NaN())};
      const size_t n_tiles = TilesOfChunk(plan_.geometry, writer_.options().chunk, c).size();
      size_t done = 0;
      for (; done < n_tiles && !Stopping(); ++done) {
        std::optional<TileInput> t = inputs_.Pop();
        if (!t) break;
        if (absl::Status s = ComputeTile(*t, box, out.data.data()); !s.ok()) {
          Fail(std::move(s));
          break;
        }
      }
      if (done < n_tiles || !outputs_.Push(std::move(out))) break;
      ++computed;
    }
    if (computed < todo_.size() && !failed_.load()) {
      std::lock_guard<std::mutex> l(mu_);
      cancelled_ = true;  // only a stop ends computing early without an error
    }
  }

  // One tile: one pass (MFP or stride 1), or prod(S) passes on shifted patches whose outputs
  // interleave (shift-and-stitch, reference §3.6).
  absl::Status ComputeTile(const TileInput& t, const Box& chunk_box, float* chunk) {
    const NetPlan& p = plan_.net;
    const std::string& input = p.spec.designations().input_node();
    const std::string& pred = p.spec.designations().prediction_node();
    const Extent3& S = p.strides;
    if (p.mfp || Prod(S) == 1) {
      RETURN_IF_ERROR(net_.SetInput(input, t.data));
      RETURN_IF_ERROR(net_.Forward());
      ASSIGN_OR_RETURN(const std::vector<float> v, net_.Output(pred));
      Scatter(v, plan_.geometry.tile_out, {1, 1, 1}, {0, 0, 0}, t.tile, chunk_box, chunk);
      return absl::OkStatus();
    }
    const Extent3& in = plan_.geometry.tile_in;
    const Extent3& ps = p.patch;
    patch_.resize(p.in_channels * Prod(ps));
    for (int64_t dz = 0; dz < S[0]; ++dz)
      for (int64_t dx = 0; dx < S[1]; ++dx)
        for (int64_t dy = 0; dy < S[2]; ++dy) {
          float* dst = patch_.data();
          for (int64_t c = 0; c < p.in_channels; ++c)
            for (int64_t z = 0; z < ps[0]; ++z)
              for (int64_t x = 0; x < ps[1]; ++x, dst += ps[2]) {
                const float* src =
                    t.data.data() + ((c * in[0] + dz + z) * in[1] + dx + x) * in[2] + dy;
                std::copy(src, src + ps[2], dst);
              }
          RETURN_IF_ERROR(net_.SetInput(input, patch_));
          RETURN_IF_ERROR(net_.Forward());
          ASSIGN_OR_RETURN(const std::vector<float> v, net_.Output(pred));
          Scatter(v, p.out, S, {dz, dx, dy}, t.tile, chunk_box, chunk);
        }
    return absl::OkStatus();
  }

  // Writes the net's output v (classes, n) into the chunk: value i along an axis lands at
  // tile-local shift + i * step, kept where that is inside the tile's (cut) output.
  void Scatter(const std::vector<float>& v, const Extent3& n, const Extent3& step,
               const Extent3& shift, const Tile& tile, const Box& cb, float* chunk) const {
    const Box& to = tile.output;
    const Extent3 keep = {to.dz, to.dx, to.dy};
    const Extent3 at = {to.z0 - cb.z0, to.x0 - cb.x0, to.y0 - cb.y0};
    for (size_t j = 0; j < channels_.size(); ++j) {
      const int64_t ch = channels_[j];
      for (int64_t z = 0; z < n[0]; ++z) {
        const int64_t lz = shift[0] + z * step[0];
        if (lz >= keep[0]) break;
        for (int64_t x = 0; x < n[1]; ++x) {
          const int64_t lx = shift[1] + x * step[1];
          if (lx >= keep[1]) break;
          const float* src = v.data() + ((ch * n[0] + z) * n[1] + x) * n[2];
          float* dst =
              chunk +
              ((static_cast<int64_t>(j) * cb.dz + at[0] + lz) * cb.dx + at[1] + lx) * cb.dy +
              at[2] + shift[2];
          for (int64_t y = 0; y < n[2] && shift[2] + y * step[2] < keep[2]; ++y) {
            dst[y * step[2]] = src[y];
          }
        }
      }
    }
  }

  void WriteChunks() {
    std::vector<uint8_t> bytes;
    while (std::optional<ChunkOutput> c = outputs_.Pop()) {
      if (failed_.load()) return;
      absl::Status s;
      if (o_.as_uint8) {
        bytes.resize(c->data.size());
        for (size_t i = 0; i < bytes.size(); ++i) {
          const float v = std::round(c->data[i] * 255.f);
          bytes[i] = static_cast<uint8_t>(v >= 255.f ? 255.f : v >= 0.f ? v : 0.f);
        }
        s = writer_.WriteChunk(c->index, bytes);
      } else {
        s = writer_.WriteChunk(c->index, c->data);
      }
      if (!s.ok()) {
        Fail(std::move(s));
        return;
      }
      {
        std::lock_guard<std::mutex> l(mu_);
        ++written_;
        progress_.chunks_done += 1;
        progress_.voxels_done += writer_.ChunkBox(c->index).voxels();
        progress_.voxels_per_s = meter_->Add(Clock::now(), progress_.voxels_done);
        progress_.eta_s =
            progress_.voxels_per_s > 0
                ? static_cast<double>(progress_.voxels_total - progress_.voxels_done) /
                      progress_.voxels_per_s
                : 0;
      }
      if (on_progress_) on_progress_(progress_);
      if (o_.test_after_chunk) o_.test_after_chunk(written_);
    }
  }

  const PredictOptions& o_;
  const RunPlan& plan_;
  Network& net_;
  const VolumeReader& reader_;
  VolumeWriter& writer_;
  const std::vector<int> channels_;
  const std::vector<ChunkIndex> todo_;
  const std::function<void(const PredictProgress&)>& on_progress_;
  const std::atomic<bool>* stop_;

  BoundedQueue<TileInput> inputs_{kInputQueueTiles};
  BoundedQueue<ChunkOutput> outputs_{kOutputQueueChunks};
  std::vector<float> patch_;
  std::atomic<bool> failed_{false};
  std::mutex mu_;
  absl::Status error_;
  bool cancelled_ = false;
  int64_t written_ = 0;
  PredictProgress progress_;
  std::optional<RateMeter> meter_;
};

// OpenMP's thread count of the calling (compute) thread, restored at the end.
class ComputeThreads {
 public:
  explicit ComputeThreads(int threads) : before_(omp_get_max_threads()), set_(threads > 0) {
    if (set_) omp_set_num_threads(threads);
  }
  ~ComputeThreads() {
    if (set_) omp_set_num_threads(before_);
  }

 private:
  int before_;
  bool set_;
};

}  // namespace

absl::StatusOr<PredictSummary> PredictVolume(
    const PredictOptions& o, kernels::Backend* backend,
    const std::function<void(const PredictProgress&)>& on_progress, const std::atomic<bool>* stop) {
  const Clock::time_point start = Clock::now();
  if (backend == nullptr) return absl::InvalidArgumentError("PredictVolume needs a backend");
  PredictSummary summary;
  std::vector<std::string>& notes = summary.notes;

  // The model, the input and the net as stored (its fov and strides do not depend on the patch).
  ASSIGN_OR_RETURN(ModelFileContents file, ReadModelFile(o.model));
  ASSIGN_OR_RETURN(ModelFileContents model, PredictionOnly(std::move(file)));
  const std::string digest = ModelDigest(model);
  ASSIGN_OR_RETURN(std::unique_ptr<VolumeReader> probe, VolumeReader::Open(o.input));
  const VolumeShape in_shape = probe->shape();
  const VolumeDtype in_dtype = probe->dtype();
  const VolumeLocation in_location = probe->location();
  probe.reset();
  NetPlan stored;
  {
    LoadOptions plain;
    plain.imposed_batch_size = 1;
    ASSIGN_OR_RETURN(v1::ModelSpec spec, RewriteSpec(model.spec, plain, model.path, &stored.notes));
    ASSIGN_OR_RETURN(std::unique_ptr<Graph> g, Graph::Create(spec));
    RETURN_IF_ERROR(ReadNetShapes(*g, model.path, &stored));
  }
  if (in_shape.c != stored.in_channels) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "input '%s' %s has %d channel(s), the net's input takes %d", in_location.ToString(),
        in_shape.ToString(), in_shape.c, stored.in_channels));
  }
  std::vector<int> channels = o.channels;
  if (channels.empty()) {
    for (int c = 0; c < stored.classes; ++c) channels.push_back(c);
  }
  for (int c : channels) {
    if (c < 0 || c >= stored.classes) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "channel %d is not an output channel of the net (0..%d)", c, stored.classes - 1));
    }
  }
  ASSIGN_OR_RETURN(const Box region, OutputRegion(in_shape, o.roi, o.pad, stored.fov));

  // MFP: on where the net allows it (kAuto), else shift-and-stitch.
  const int64_t out_channels = static_cast<int64_t>(channels.size());
  absl::StatusOr<RunPlan> plan = absl::UnknownError("unplanned");
  if (Prod(stored.strides) == 1) {
    plan = ChoosePlan(model, o, stored, false, region, out_channels, &notes);
    if (o.mfp == PredictOptions::Mfp::kOn) {
      notes.push_back("mfp: the net has stride 1, so one pass per tile predicts densely");
    }
  } else if (o.mfp == PredictOptions::Mfp::kOff) {
    plan = ChoosePlan(model, o, stored, false, region, out_channels, &notes);
  } else {
    std::vector<std::string> mfp_notes;
    plan = ChoosePlan(model, o, stored, true, region, out_channels, &mfp_notes);
    if (plan.ok() || o.mfp == PredictOptions::Mfp::kOn) {
      notes.insert(notes.end(), mfp_notes.begin(), mfp_notes.end());
    } else {
      notes.push_back(absl::StrFormat(
          "max-fragment-pooling is not possible (%s); predicting by shift-and-stitch, %d passes "
          "per tile",
          plan.status().message(), Prod(stored.strides)));
      plan = ChoosePlan(model, o, stored, false, region, out_channels, &notes);
    }
  }
  if (!plan.ok()) return plan.status();
  const RunPlan& r = *plan;
  notes.insert(notes.end(), r.net.notes.begin(), r.net.notes.end());
  const TileGeometry& g = r.geometry;
  notes.push_back(absl::StrFormat(
      "%s: tiles %s read %s and fill %s of the output; %d tiles, %d pass(es) each; output "
      "chunks %s",
      r.net.mfp ? "max-fragment-pooling" : (Prod(r.net.strides) > 1 ? "shift-and-stitch" : "plain"),
      Triple(g.tiles), Triple(g.tile_in), Triple(g.tile_out), Prod(g.tiles),
      r.net.mfp ? 1 : g.passes_per_tile, Triple(r.chunk)));

  // The output (created, or continued).
  VolumeWriterOptions w;
  w.shape = {out_channels, g.pred[0], g.pred[1], g.pred[2]};
  w.chunk = r.chunk;
  w.dtype = o.as_uint8 ? VolumeDtype::kUint8 : VolumeDtype::kFloat32;
  w.compression = o.compression;
  w.offset = {r.region.z0, r.region.x0, r.region.y0};
  w.model = Absolute(o.model);
  w.fingerprint = Fingerprint(digest, in_location, in_shape, in_dtype, r, o, channels);
  w.resume = o.resume;
  ASSIGN_OR_RETURN(std::unique_ptr<VolumeWriter> writer, VolumeWriter::Open(o.output, w));
  std::vector<ChunkIndex> todo;
  int64_t voxels_skipped = 0;
  const auto grid = writer->grid();
  for (int64_t z = 0; z < grid[0]; ++z)
    for (int64_t x = 0; x < grid[1]; ++x)
      for (int64_t y = 0; y < grid[2]; ++y) {
        const ChunkIndex c{z, x, y};
        if (writer->IsDone(c)) {
          voxels_skipped += writer->ChunkBox(c).voxels();
        } else {
          todo.push_back(c);
        }
      }
  summary.chunks_skipped = writer->num_chunks() - static_cast<int64_t>(todo.size());
  if (summary.chunks_skipped > 0) {
    notes.push_back(absl::StrFormat("resuming '%s': %d of %d chunks done by an earlier run",
                                    writer->location().ToString(), summary.chunks_skipped,
                                    writer->num_chunks()));
  }
  summary.output_shape = w.shape;
  summary.output_offset = w.offset;
  summary.patch = r.net.patch;
  summary.mfp = r.net.mfp;

  // The net, compiled for the tile (or the shifted patch) with constant weights.
  VolumeReaderOptions ro;
  ro.cache_bytes = r.reader_cache;
  ASSIGN_OR_RETURN(std::unique_ptr<VolumeReader> reader, VolumeReader::Open(o.input, ro));
  ComputeThreads threads(o.threads);
  LoadOptions lo;
  lo.imposed_patch_size = NetAxes(r.net.net_input, r.net.two_d);
  lo.imposed_batch_size = r.net.mfp ? 0 : 1;
  lo.override_mfp_to_active = r.net.mfp;
  lo.make_weights_constant = true;
  lo.replace_bn = ReplaceBn::kConst;  // batch_norm: running statistics, never a tile's own
  lo.network.inference_only = true;
  lo.network.precision = o.precision;
  ASSIGN_OR_RETURN(LoadedModel loaded, LoadModel(model, lo, backend));
  loaded.net->set_training(false);

  Run run(o, r, *loaded.net, *reader, *writer, channels, std::move(todo), on_progress, stop);
  const absl::Status s = run.Execute(voxels_skipped, summary.chunks_skipped);
  summary.chunks_computed = run.chunks_written();
  summary.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (!s.ok()) return s;
  return summary;
}

}  // namespace elektronn
