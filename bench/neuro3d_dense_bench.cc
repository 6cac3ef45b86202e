// Dense (stride-1) prediction of one volume with neuro3d (reference §3.6, §9.1), timed as users
// run it: PredictVolume (HDF5 in, Zarr out, max-fragment-pooling), with shift-and-stitch for
// comparison; the bare MFP network over the same tiles in memory (the I/O and pipeline overhead
// is the difference); per-node times of one tile; peak memory (RSS) of PredictVolume in a child
// process for the volume and for one twice as large per axis. Prints one JSON line per case;
// bench/compare-pytorch puts them beside PyTorch's dilated net (bench/neuro3d_pytorch.py).
//
// `--case setup` writes the work directory the other cases and the PyTorch side read:
//   model.h5          neuro3d with its initial weights (SaveModel)
//   raw.h5:/raw       the input volume, uint8 noise (read as value / 255, like EM data)
//   raw2.h5:/raw      the same for the volume twice as large per axis (for --case memory)
// Outputs: pred.zarr (predict), stitch.zarr (stitch), forward.zarr (forward), (c,z,x,y) float32
// of the valid region, input - fov + 1 per axis (no padding): the region PyTorch's one-pass
// dilated net computes.
#include <fcntl.h>
#include <hdf5.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/core/status.h"
#include "engine/graph/model_builder.h"
#include "engine/graph/network.h"
#include "engine/io/model_file.h"
#include "engine/io/model_loader.h"
#include "engine/io/volume_store.h"
#include "engine/predict/predictor.h"
#include "engine/predict/tiling.h"

extern char** environ;

namespace elektronn {
namespace {

using Clock = std::chrono::steady_clock;
using Zxy = std::array<int64_t, 3>;

double Seconds(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

std::string Json(const Zxy& v) { return absl::StrCat("[", absl::StrJoin(v, ", "), "]"); }

struct Args {
  std::string which;
  std::string work;
  std::string input = "raw.h5";  // in --work
  Zxy volume = {34, 188, 188};   // input voxels (z,x,y), for setup
  Zxy patch = {0, 0, 0};         // the net's patch ps (PredictOptions::patch); 0: its choice
  int repeats = 1, warmup = 0, threads = 2;
  int64_t memory_limit_mib = 0;    // PredictOptions::memory_limit; 0: its default
  std::string precision = "fp32";  // predict: bf16 writes pred_bf16.zarr, compared with pred.zarr
};

// The patch given, or for the in-memory cases the one whose single tile covers the volume.
Zxy PatchOrWhole(const Args& a, const VolumeShape& raw) {
  if (a.patch[0] > 0) return a.patch;
  return {raw.z - 1, raw.x - 3, raw.y - 3};  // neuro3d: tile_in = ps + S - 1, S = (2,4,4)
}

// ---- setup ----------------------------------------------------------------------------------

absl::Status WriteUint8Volume(const std::string& file, Zxy size, uint64_t seed) {
  const hid_t f = H5Fcreate(file.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0) return absl::InternalError(absl::StrCat("cannot create ", file));
  const hsize_t dims[3] = {static_cast<hsize_t>(size[0]), static_cast<hsize_t>(size[1]),
                           static_cast<hsize_t>(size[2])};
  const hid_t space = H5Screate_simple(3, dims, nullptr);
  const hid_t d = H5Dcreate2(f, "raw", H5T_STD_U8LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  bool ok = d >= 0;
  // One z slice at a time: the setup of the large volume stays small in memory.
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> slice(size[1] * size[2]);
  const hsize_t one[3] = {1, dims[1], dims[2]};
  const hid_t mem = H5Screate_simple(3, one, nullptr);
  for (int64_t z = 0; ok && z < size[0]; ++z) {
    for (uint8_t& v : slice) v = static_cast<uint8_t>(rng() >> 56);
    const hsize_t start[3] = {static_cast<hsize_t>(z), 0, 0};
    H5Sselect_hyperslab(space, H5S_SELECT_SET, start, nullptr, one, nullptr);
    ok = H5Dwrite(d, H5T_NATIVE_UINT8, mem, space, H5P_DEFAULT, slice.data()) >= 0;
  }
  H5Sclose(mem);
  if (d >= 0) H5Dclose(d);
  H5Sclose(space);
  H5Fclose(f);
  return ok ? absl::OkStatus() : absl::InternalError(absl::StrCat("cannot write ", file));
}

absl::Status Setup(const Args& a, kernels::Backend* b) {
  std::filesystem::create_directories(a.work);
  ASSIGN_OR_RETURN(auto net, Network::Create(Neuro3dSpec(), b, {1}));
  RETURN_IF_ERROR(SaveModel(a.work + "/model.h5", *net, nullptr));
  RETURN_IF_ERROR(WriteUint8Volume(a.work + "/raw.h5", a.volume, 1));
  const Zxy twice = {2 * a.volume[0], 2 * a.volume[1], 2 * a.volume[2]};
  RETURN_IF_ERROR(WriteUint8Volume(a.work + "/raw2.h5", twice, 2));
  absl::PrintF("{\"case\": \"setup\", \"work\": \"%s\", \"volume\": %s}\n", a.work.c_str(),
               Json(a.volume).c_str());
  return absl::OkStatus();
}

// ---- the network, one tile ------------------------------------------------------------------

// The model file's spec without what comes after the prediction node (target, loss, errors):
// prediction needs none of it, and Network::Profile would time a backward pass for a loss.
ModelFileContents ForPrediction(ModelFileContents f) {
  v1::ModelSpec& s = f.spec;
  const std::string pred = s.designations().prediction_node();
  int keep = 0;
  while (keep < s.nodes_size() && s.nodes(keep).name() != pred) ++keep;
  while (s.nodes_size() > keep + 1) s.mutable_nodes()->RemoveLast();
  v1::Designations d;
  d.set_input_node(s.designations().input_node());
  d.set_prediction_node(pred);
  *s.mutable_designations() = d;
  return f;
}

// What the tiling needs of a net, and its work: from the built graph, no compiling.
struct NetShape {
  std::string input, pred;
  Zxy patch, out, fov, strides;
  double gflop = 0;  // convolution FLOPs of one forward pass (2 per multiply-add)
};

// The net of model file `f` for input `patch`, with MFP (the patch is then the MFP net's input,
// ps + S - 1) or without.
absl::StatusOr<v1::ModelSpec> SpecFor(const ModelFileContents& f, bool mfp, const Zxy& patch) {
  LoadOptions o;
  o.override_mfp_to_active = mfp;
  o.imposed_batch_size = mfp ? 0 : 1;
  o.imposed_patch_size = {patch.begin(), patch.end()};
  std::vector<std::string> notes;
  return RewriteSpec(f.spec, o, f.path, &notes);
}

absl::StatusOr<NetShape> ShapeOf(const Graph& g, const Zxy& patch) {
  NetShape n;
  n.input = g.spec().designations().input_node();
  n.pred = g.spec().designations().prediction_node();
  const TaggedShape& in = g.Find(n.input)->shape();
  const TaggedShape& out = g.Find(n.pred)->shape();
  for (int j = 0; j < 3; ++j) {
    n.patch[j] = in.spatial_shape()[j];
    n.out[j] = out.spatial_shape()[j];
    n.fov[j] = out.fov()[j];
    n.strides[j] = out.strides()[j];
  }
  if (n.patch != patch) {  // the loader snapped it
    return absl::InvalidArgumentError(
        absl::StrFormat("input %s is not valid for neuro3d; the nearest it takes is %s",
                        Json(patch), Json(n.patch)));
  }
  for (const auto& node : g.nodes())
    if (node->op() == "Conv") n.gflop += 2 * node->cost() / 1e9;
  return n;
}

absl::StatusOr<NetShape> ShapeFor(const ModelFileContents& f, bool mfp, const Zxy& patch) {
  ASSIGN_OR_RETURN(v1::ModelSpec spec, SpecFor(f, mfp, patch));
  ASSIGN_OR_RETURN(auto g, Graph::Create(spec));
  return ShapeOf(*g, patch);
}

// The MFP net for input `patch`, compiled, with the model file's weights.
struct LoadedNet {
  std::unique_ptr<Network> net;
  NetShape shape;
};
absl::StatusOr<LoadedNet> LoadMfp(const ModelFileContents& f, const Zxy& patch,
                                  kernels::Backend* b) {
  LoadOptions o;
  o.override_mfp_to_active = true;
  o.imposed_patch_size = {patch.begin(), patch.end()};
  o.make_weights_constant = true;
  o.network.inference_only = true;  // as PredictVolume compiles it
  ASSIGN_OR_RETURN(LoadedModel m, LoadModel(f, o, b));
  m.net->set_training(false);
  ASSIGN_OR_RETURN(NetShape shape, ShapeOf(m.net->graph(), patch));
  return LoadedNet{std::move(m.net), shape};
}

// ---- in memory: the bare MFP network over the tiles ----------------------------------------

absl::StatusOr<std::vector<float>> ReadAll(const std::string& spec, VolumeShape* shape) {
  ASSIGN_OR_RETURN(auto r, VolumeReader::Open(spec));
  *shape = r->shape();
  std::vector<float> v(shape->values());
  RETURN_IF_ERROR(r->Read({0, 0, 0, shape->z, shape->x, shape->y}, PadMode::kError, v.data()));
  return v;
}

// raw[box] with zeros outside (border tiles reach past the volume's end; their surplus output
// is cut away).
void Crop(const std::vector<float>& raw, const VolumeShape& s, const Box& box, float* out) {
  for (int64_t z = 0; z < box.dz; ++z)
    for (int64_t x = 0; x < box.dx; ++x)
      for (int64_t y = 0; y < box.dy; ++y) {
        const int64_t rz = box.z0 + z, rx = box.x0 + x, ry = box.y0 + y;
        const bool inside = rz >= 0 && rz < s.z && rx >= 0 && rx < s.x && ry >= 0 && ry < s.y;
        *out++ = inside ? raw[(rz * s.x + rx) * s.y + ry] : 0.f;
      }
}

struct TiledRun {
  VolumeShape shape;  // (c, z, x, y)
  std::vector<float> dense;
  double seconds = 0, gflop = 0;
  int64_t tiles = 0;
};

// Every tile of the volume through the MFP net, one pass each, cut into the dense output.
absl::StatusOr<TiledRun> RunTiles(LoadedNet& n, const std::vector<float>& raw,
                                  const VolumeShape& rs) {
  const NetShape& ns = n.shape;
  TilingInput ti;
  ti.raw = {rs.z, rs.x, rs.y};
  ti.patch = ns.patch;
  ti.fov = ns.fov;
  ti.strides = ns.strides;
  ti.out = ns.out;
  ASSIGN_OR_RETURN(TileGeometry g, ComputeTileGeometry(ti));
  const int64_t C = n.net->graph().Find(ns.pred)->shape().SizeOf('f');
  TiledRun r;
  r.shape = {C, g.pred[0], g.pred[1], g.pred[2]};
  r.dense.assign(r.shape.values(), 0.f);
  std::vector<float> in(ns.patch[0] * ns.patch[1] * ns.patch[2]);
  const Zxy& o = ns.out;
  const auto t0 = Clock::now();
  for (int64_t tz = 0; tz < g.tiles[0]; ++tz)
    for (int64_t tx = 0; tx < g.tiles[1]; ++tx)
      for (int64_t ty = 0; ty < g.tiles[2]; ++ty) {
        const Tile t = TileAt(g, {tz, tx, ty});
        Crop(raw, rs, t.input, in.data());
        RETURN_IF_ERROR(n.net->SetInput(ns.input, in));
        RETURN_IF_ERROR(n.net->Forward());
        ASSIGN_OR_RETURN(std::vector<float> p, n.net->Output(ns.pred));
        const Box& k = t.output;  // p[c][z][x][y], kept up to the (cut) tile's extent
        for (int64_t c = 0; c < C; ++c)
          for (int64_t z = 0; z < k.dz; ++z)
            for (int64_t x = 0; x < k.dx; ++x) {
              const float* src = &p[((c * o[0] + z) * o[1] + x) * o[2]];
              std::copy(
                  src, src + k.dy,
                  &r.dense[((c * g.pred[0] + k.z0 + z) * g.pred[1] + k.x0 + x) * g.pred[2] + k.y0]);
            }
        ++r.tiles;
      }
  r.seconds = Seconds(t0);
  r.gflop = ns.gflop * r.tiles;
  return r;
}

double MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(double{a[i]} - b[i]));
  return d;
}

double MaxAbsDiffWith(const std::string& zarr, const std::vector<float>& v) {
  VolumeShape shape;
  auto other = ReadAll(zarr, &shape);
  return other.ok() ? MaxAbsDiff(*other, v) : NAN;
}

// The bare MFP network over the tiles of PredictVolume's plan, in memory.
absl::Status Forward(const Args& a, kernels::Backend* b) {
  ASSIGN_OR_RETURN(ModelFileContents f, ReadModelFile(a.work + "/model.h5"));
  VolumeShape rs;
  ASSIGN_OR_RETURN(std::vector<float> raw, ReadAll(a.work + "/" + a.input + ":/raw", &rs));
  const Zxy ps = PatchOrWhole(a, rs);
  ASSIGN_OR_RETURN(LoadedNet n,
                   LoadMfp(ForPrediction(std::move(f)), {ps[0] + 1, ps[1] + 3, ps[2] + 3}, b));
  std::vector<double> secs;
  TiledRun last;
  for (int i = 0; i < a.warmup + a.repeats; ++i) {
    ASSIGN_OR_RETURN(last, RunTiles(n, raw, rs));
    if (i >= a.warmup) secs.push_back(last.seconds);
  }
  const double s = Median(secs);
  const int64_t voxels = last.shape.voxels();
  {  // the result, for comparisons
    VolumeWriterOptions wo;
    wo.shape = last.shape;
    wo.chunk = {wo.shape.z, wo.shape.x, wo.shape.y};
    wo.resume = false;
    const std::string out = a.work + "/forward.zarr";
    std::filesystem::remove_all(out);
    ASSIGN_OR_RETURN(auto w, VolumeWriter::Open(out, wo));
    RETURN_IF_ERROR(w->WriteChunk({0, 0, 0}, last.dense));
  }
  absl::PrintF(
      "{\"case\": \"neuro3d_dense_forward\", \"seconds\": %.3f, \"voxels\": %d, "
      "\"vox_s\": %.1f, \"gflop\": %.1f, \"gflops\": %.1f, \"patch\": %s, \"tiles\": %d, "
      "\"max_abs_diff_vs_predict\": %.3g}\n",
      s, voxels, voxels / s, last.gflop, last.gflop / s, Json(ps), last.tiles,
      MaxAbsDiffWith(a.work + "/pred.zarr", last.dense));
  std::fflush(stdout);
  return absl::OkStatus();
}

// PredictVolume, the product path: MFP ("pred.zarr") or shift-and-stitch ("stitch.zarr").
absl::Status Predict(const Args& a, kernels::Backend* b, bool mfp) {
  PredictOptions o;
  ASSIGN_OR_RETURN(o.precision, kernels::ParseDataType("--precision", a.precision));
  const bool bf16 = o.precision == kernels::DataType::kBf16;
  o.model = a.work + "/model.h5";
  o.input = a.work + "/" + a.input + ":/raw";
  o.output = a.work + (!mfp ? "/stitch.zarr" : bf16 ? "/pred_bf16.zarr" : "/pred.zarr");
  if (a.patch[0] > 0) o.patch = {a.patch[0], a.patch[1], a.patch[2]};
  o.mfp = mfp ? PredictOptions::Mfp::kOn : PredictOptions::Mfp::kOff;
  o.pad = PadMode::kError;  // the valid region, as PyTorch's one pass computes it
  o.threads = a.threads;
  o.memory_limit = a.memory_limit_mib << 20;
  std::vector<double> secs, setup;
  PredictSummary sum;
  for (int i = 0; i < a.warmup + a.repeats; ++i) {
    std::filesystem::remove_all(o.output);  // else it resumes: every chunk done
    const auto t0 = Clock::now();
    double started = -1;  // the first progress report comes when the tiles start flowing
    ASSIGN_OR_RETURN(sum, PredictVolume(o, b, [&](const PredictProgress&) {
                       if (started < 0) started = Seconds(t0);
                     }));
    if (i >= a.warmup) secs.push_back(Seconds(t0));
    if (i >= a.warmup) setup.push_back(started);
  }
  const double s = Median(secs);
  const int64_t voxels = sum.output_shape.voxels();
  // Work done: passes of the compiled net times tiles, as PredictVolume's plan lays them out.
  ASSIGN_OR_RETURN(ModelFileContents f, ReadModelFile(o.model));
  f = ForPrediction(std::move(f));
  ASSIGN_OR_RETURN(NetShape plain, ShapeFor(f, false, sum.patch));
  const Zxy mfp_in = {sum.patch[0] + plain.strides[0] - 1, sum.patch[1] + plain.strides[1] - 1,
                      sum.patch[2] + plain.strides[2] - 1};
  ASSIGN_OR_RETURN(NetShape pass, mfp ? ShapeFor(f, true, mfp_in) : plain);
  TilingInput ti;
  ti.raw = {sum.output_shape.z, sum.output_shape.x, sum.output_shape.y};
  ti.patch = plain.patch;
  ti.fov = plain.fov;
  ti.strides = plain.strides;
  ti.out = plain.out;
  ti.pad_raw = true;  // as PredictVolume: the region's context is read around it
  ASSIGN_OR_RETURN(TileGeometry g, ComputeTileGeometry(ti));
  const int64_t tiles = g.tiles[0] * g.tiles[1] * g.tiles[2];
  const double gflop = pass.gflop * tiles * (mfp ? 1 : g.passes_per_tile);
  std::string diff;
  if (!mfp || bf16) {
    VolumeShape shape;
    ASSIGN_OR_RETURN(std::vector<float> v, ReadAll(o.output, &shape));
    diff = absl::StrFormat(", \"max_abs_diff_vs_%s\": %.3g", bf16 ? "fp32" : "mfp",
                           MaxAbsDiffWith(a.work + "/pred.zarr", v));
  }
  absl::PrintF(
      "{\"case\": \"neuro3d_dense_%s\", \"seconds\": %.3f, \"setup_seconds\": %.3f, "
      "\"voxels\": %d, \"vox_s\": %.1f, "
      "\"gflop\": %.1f, \"gflops\": %.1f, \"patch\": %s, \"tiles\": %d, \"output\": [%d, %d, "
      "%d, %d]%s, \"notes\": \"%s\"}\n",
      std::string(mfp ? "predict" : "stitch") + (bf16 ? "_bf16" : ""), s, Median(setup), voxels,
      voxels / s, gflop, gflop / s, Json(sum.patch), tiles, sum.output_shape.c, sum.output_shape.z,
      sum.output_shape.x, sum.output_shape.y, diff, absl::StrJoin(sum.notes, "; "));
  std::fflush(stdout);
  return absl::OkStatus();
}

// `--case predict` on `input` in a fresh child process: its peak RSS and its JSON line.
struct ChildRun {
  double rss_mib = 0;
  std::string patch;  // the patch PredictVolume used, as the child printed it
};
absl::StatusOr<ChildRun> RunChild(const Args& a, const std::string& input) {
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  std::vector<std::string> args = {self,     "--case",    "predict",
                                   "--work", a.work,      "--input",
                                   input,    "--threads", std::to_string(a.threads)};
  if (a.patch[0] > 0) {
    args.push_back("--patch");
    args.push_back(absl::StrJoin(a.patch, ","));
  }
  if (a.memory_limit_mib > 0) {
    args.push_back("--memory-limit");
    args.push_back(std::to_string(a.memory_limit_mib));
  }
  std::vector<char*> argv;
  for (std::string& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  int out[2];
  if (pipe(out) != 0) return absl::InternalError(absl::StrCat("pipe: ", strerror(errno)));
  posix_spawn_file_actions_t io;
  posix_spawn_file_actions_init(&io);
  posix_spawn_file_actions_adddup2(&io, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&io, out[0]);
  pid_t pid = 0;
  const int e = posix_spawn(&pid, self.c_str(), &io, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&io);
  close(out[1]);
  std::string line;
  char buf[4096];
  for (ssize_t n; e == 0 && (n = read(out[0], buf, sizeof buf)) > 0;) line.append(buf, n);
  close(out[0]);
  if (e != 0) return absl::InternalError(absl::StrCat("cannot start ", self, ": ", strerror(e)));
  int status = 0;
  struct rusage ru {};
  if (wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return absl::InternalError(absl::StrCat("the child predicting ", input, " failed"));
  ChildRun r;
  r.rss_mib = ru.ru_maxrss / 1024.0;  // Linux: KiB
  const size_t at = line.find("\"patch\": [");
  if (at != std::string::npos) r.patch = line.substr(at + 9, line.find(']', at) - at - 8);
  return r;
}

absl::Status Memory(const Args& a) {
  ASSIGN_OR_RETURN(const ChildRun one, RunChild(a, "raw.h5"));
  ASSIGN_OR_RETURN(const ChildRun two, RunChild(a, "raw2.h5"));
  absl::PrintF(
      "{\"case\": \"neuro3d_dense_memory\", \"rss_mib\": %.0f, \"rss_2x_mib\": %.0f, "
      "\"ratio\": %.3f, \"patch\": %s, \"patch_2x\": %s, \"memory_limit\": \"%s\"}\n",
      one.rss_mib, two.rss_mib, two.rss_mib / one.rss_mib, one.patch, two.patch,
      a.memory_limit_mib > 0 ? absl::StrCat(a.memory_limit_mib, " MiB") : "default");
  std::fflush(stdout);
  return absl::OkStatus();
}

// Per-node forward times of one MFP tile.
absl::Status Profile(const Args& a, kernels::Backend* b) {
  ASSIGN_OR_RETURN(ModelFileContents f, ReadModelFile(a.work + "/model.h5"));
  ASSIGN_OR_RETURN(auto reader, VolumeReader::Open(a.work + "/" + a.input + ":/raw"));
  const Zxy ps = PatchOrWhole(a, reader->shape());
  auto t0 = Clock::now();
  ASSIGN_OR_RETURN(LoadedNet n,
                   LoadMfp(ForPrediction(std::move(f)), {ps[0] + 1, ps[1] + 3, ps[2] + 3}, b));
  const double load_s = Seconds(t0);
  t0 = Clock::now();
  RETURN_IF_ERROR(n.net->Forward());  // the first: buffers touched for the first time
  const double first_s = Seconds(t0);
  ASSIGN_OR_RETURN(auto t, n.net->Profile(std::max(1, a.repeats)));
  double total = 0;
  for (const auto& x : t) total += x.forward_ms;
  for (const auto& x : t) {
    const Node* node = n.net->graph().Find(x.name);
    const double gflop = node->op() == "Conv" ? 2 * node->cost() / 1e9 : 0;
    absl::PrintF(
        "%-10s %-16s %10.1f ms %5.1f%%  %s\n", x.name.c_str(), x.op.c_str(), x.forward_ms,
        100 * x.forward_ms / total,
        gflop > 0 ? absl::StrFormat("%.1f GFLOP/s", gflop / x.forward_ms * 1e3).c_str() : "");
  }
  absl::PrintF("total %.1f ms for MFP input %s (%.1f GFLOP)\n", total, Json(n.shape.patch),
               n.shape.gflop);
  absl::PrintF("before: LoadModel (read, compile, weights) %.1f ms, first forward %.1f ms\n",
               load_s * 1e3, first_s * 1e3);
  return absl::OkStatus();
}

absl::Status Run(const Args& a) {
  auto backend = kernels::CreateCpuBackend();
  if (a.which == "setup") return Setup(a, backend.get());
  if (a.which == "predict") return Predict(a, backend.get(), true);
  if (a.which == "stitch") return Predict(a, backend.get(), false);
  if (a.which == "forward") return Forward(a, backend.get());
  if (a.which == "profile") return Profile(a, backend.get());
  if (a.which == "memory") return Memory(a);
  return absl::InvalidArgumentError(absl::StrCat("unknown --case ", a.which));
}

absl::StatusOr<Zxy> ParseZxy(const char* v) {
  std::vector<std::string> parts = absl::StrSplit(v, ',');
  Zxy r;
  if (parts.size() != 3) return absl::InvalidArgumentError(absl::StrCat("not z,x,y: ", v));
  for (int j = 0; j < 3; ++j)
    if (!absl::SimpleAtoi(parts[j], &r[j])) return absl::InvalidArgumentError(v);
  return r;
}

}  // namespace
}  // namespace elektronn

int main(int argc, char** argv) {
  elektronn::Args a;
  auto fail = [](const absl::Status& s) {
    std::fprintf(stderr, "neuro3d_dense_bench: %s\n", std::string(s.message()).c_str());
    return 1;
  };
  for (int i = 1; i < argc; ++i) {
    std::string f = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    auto zxy = [&](elektronn::Zxy* out) {
      auto r = v ? elektronn::ParseZxy(v) : absl::InvalidArgumentError(f + " needs z,x,y");
      if (r.ok()) *out = *r;
      ++i;
      return r.status();
    };
    absl::Status s;
    if (f == "--case" && v) {
      a.which = v, ++i;
    } else if (f == "--work" && v) {
      a.work = v, ++i;
    } else if (f == "--input" && v) {
      a.input = v, ++i;
    } else if (f == "--volume") {
      s = zxy(&a.volume);
    } else if (f == "--patch") {
      s = zxy(&a.patch);
    } else if (f == "--repeats" && v) {
      a.repeats = std::atoi(v), ++i;
    } else if (f == "--memory-limit" && v) {
      a.memory_limit_mib = std::atoll(v), ++i;
    } else if (f == "--warmup" && v) {
      a.warmup = std::atoi(v), ++i;
    } else if (f == "--threads" && v) {
      a.threads = std::atoi(v), ++i;
    } else if (f == "--precision" && v) {
      a.precision = v, ++i;
    } else {
      std::fprintf(stderr,
                   "usage: neuro3d_dense_bench --case "
                   "setup|predict|stitch|forward|profile|memory --work DIR [--volume z,x,y] "
                   "[--input raw.h5|raw2.h5] [--patch z,x,y] [--memory-limit MiB] [--repeats N] "
                   "[--warmup N] [--threads N] [--precision fp32|bf16]\n");
      return f == "--help" || f == "-h" ? 0 : 2;
    }
    if (!s.ok()) return fail(s);
  }
  if (a.work.empty() || a.which.empty())
    return fail(absl::InvalidArgumentError("--case and --work are required (see --help)"));
  if (absl::Status s = elektronn::Run(a); !s.ok()) return fail(s);
  return 0;
}
