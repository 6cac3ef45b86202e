// BatchCreatorImage: loads and checks cube pairs at creation, then cuts warped, augmented and
// strided examples into the caller's buffers (reference §7.2, §7.3).
#include "engine/data/batch_creator_image.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/core/status.h"
#include "engine/data/h5_volume.h"
#include "engine/data/labels.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;

// Consecutive rejected draws (out of bounds or over ignore_thresh) before GetBatch gives up.
constexpr int kMaxConsecutiveRedraws = 1000;

std::string Zxy(const std::array<int64_t, 3>& v) {
  return absl::StrFormat("(%d,%d,%d)", v[0], v[1], v[2]);
}

// "~" → $HOME; relative paths against `base`.
std::string ResolvePath(const std::string& path, const std::string& base) {
  std::string p = path;
  if (!p.empty() && p[0] == '~' && (p.size() == 1 || p[1] == '/')) {
    const char* home = std::getenv("HOME");
    p = absl::StrCat(home != nullptr ? home : "", p.substr(1));
  }
  fs::path fp(p);
  if (fp.is_relative() && !base.empty()) fp = fs::path(base) / fp;
  return fp.lexically_normal().string();
}

std::string JoinPath(const std::string& dir, const std::string& file) {
  std::string f = file;
  if (!f.empty() && f[0] == '~') return ResolvePath(f, "");
  if (fs::path(f).is_absolute() || dir.empty()) return fs::path(f).lexically_normal().string();
  return (fs::path(dir) / f).lexically_normal().string();
}

// The d_files/l_files key that marks a KNOSSOS dataset entry.
constexpr const char* kKnossosKey = "knossos";

// A d_files/l_files entry's file below its folder; KNOSSOS entries list dataset directories
// separated by ',' (one channel each), every one below the folder.
std::string JoinFiles(const std::string& dir, const std::string& files, bool knossos) {
  if (!knossos) return JoinPath(dir, files);
  std::vector<std::string> dirs;
  for (absl::string_view f : absl::StrSplit(files, ','))
    dirs.push_back(JoinPath(dir, std::string(f)));
  return absl::StrJoin(dirs, ",");
}

absl::Status Invalid(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("BatchCreatorImage: ", what));
}

}  // namespace

absl::StatusOr<std::unique_ptr<BatchCreatorImage>> BatchCreatorImage::Create(
    const v1::BatchCreatorImageParams& params, const v1::DataBatchArgs& batch_args,
    const BatchGeometry& geometry, const std::string& base_dir) {
  std::unique_ptr<BatchCreatorImage> d(new BatchCreatorImage());
  d->geometry_ = geometry;
  d->args_ = batch_args;
  const TaggedShape& in = geometry.input;
  const TaggedShape& tg = geometry.target;

  // ---- Geometry from the network's input and target nodes.
  if (!in.HasTag('b') || !in.HasTag('f')) {
    return Invalid(
        absl::StrFormat("input node tags \"%s\" need a batch axis 'b' and a feature "
                        "axis 'f' (e.g. b,f,z,x,y or b,f,x,y)",
                        in.tags_string()));
  }
  const int nd = in.ndim();
  if (nd == 3) {
    if (!in.HasTag('z') || !in.HasTag('x') || !in.HasTag('y')) {
      return Invalid(absl::StrFormat("input node tags \"%s\": a 3-D input needs axes z, x, y",
                                     in.tags_string()));
    }
  } else if (nd == 2) {
    if (!in.HasTag('x') || !in.HasTag('y')) {
      return Invalid(
          absl::StrFormat("input node tags \"%s\": a 2-D input needs axes x and y "
                          "(single z-slices are cut, e.g. b,f,x,y)",
                          in.tags_string()));
    }
  } else {
    return Invalid(
        absl::StrFormat("input node tags \"%s\" have %d spatial axes; image patches "
                        "need 2 (b,f,x,y) or 3 (b,f,z,x,y)",
                        in.tags_string(), nd));
  }
  d->scalar_ = tg.ndim() == 0;  // img-scalar: one label vector per image patch
  if (d->scalar_ && tg.tags() != "bf" && tg.tags() != "b") {
    return Invalid(absl::StrFormat(
        "target node tags \"%s\": an img-scalar target (no spatial axes) must be \"b,f\" or "
        "\"b\"",
        tg.tags_string()));
  }
  if (tg.ndim() != nd && !d->scalar_) {
    return Invalid(
        absl::StrFormat("target node tags \"%s\" have %d spatial axes but the input "
                        "\"%s\" has %d; they must have the same spatial axes",
                        tg.tags_string(), tg.ndim(), in.tags_string(), nd));
  }
  for (char t : std::string(d->scalar_ ? "" : "zxy")) {
    if (in.HasTag(t) != tg.HasTag(t)) {
      return Invalid(
          absl::StrFormat("input tags \"%s\" and target tags \"%s\" differ in axis "
                          "'%c'; they must have the same spatial axes",
                          in.tags_string(), tg.tags_string(), t));
    }
  }
  d->batch_ = in.SizeOf('b');
  if (d->batch_ <= 0 || tg.SizeOf('b') != d->batch_) {
    return Invalid(
        absl::StrFormat("the batch size must be known and equal in input (%d) and "
                        "target (%d)",
                        d->batch_, tg.SizeOf('b')));
  }
  d->in_ch_ = in.SizeOf('f');
  d->t_ch_ = tg.HasTag('f') ? tg.SizeOf('f') : 1;
  if (d->in_ch_ <= 0 || d->t_ch_ <= 0) {
    return Invalid(
        absl::StrFormat("input f=%d and target f=%d must be positive", d->in_ch_, d->t_ch_));
  }

  // ---- Targets derived from segmentation IDs (reference §7.3). ELEKTRONN2 computes
  // nhood_targets on the dense target and affinities after striding; both are computed here on
  // the dense target (edges join real neighbouring voxels whatever the strides), then strided.
  if (!batch_args.affinities().empty()) {
    if (batch_args.affinities() == "malis") {
      return absl::UnimplementedError(
          "BatchCreatorImage: data_batch_args.affinities='malis' (affinities plus a relabelled "
          "segmentation for MalisNLL) is not implemented; use affinities='affinity'");
    }
    if (batch_args.affinities() != "affinity") {
      return Invalid(absl::StrFormat(
          "data_batch_args.affinities='%s' is unknown; valid: 'affinity' (or false)",
          batch_args.affinities()));
    }
    d->label_mode_ = LabelMode::kAffinity;
  }
  if (batch_args.nhood_targets()) {
    if (d->label_mode_ != LabelMode::kPlain) {
      return Invalid("data_batch_args.affinities and nhood_targets exclude each other");
    }
    d->label_mode_ = LabelMode::kNhood;
  }
  if (d->scalar_ && (d->label_mode_ != LabelMode::kPlain || params.has_ids2barriers())) {
    return Invalid(absl::StrFormat(
        "the target node \"%s\" has no spatial axes (img-scalar: one label vector per patch); "
        "affinities, nhood_targets and ids2barriers make image targets and need a target with "
        "the input's spatial axes",
        tg.tags_string()));
  }
  if (d->label_mode_ != LabelMode::kPlain) {
    const bool aff = d->label_mode_ == LabelMode::kAffinity;
    const auto& list = aff ? batch_args.affinity_nhood() : batch_args.nhood_targets_nhood();
    for (const v1::NhoodOffset& o : list) d->nhood_.push_back({o.z(), o.x(), o.y()});
    if (d->nhood_.empty()) d->nhood_ = aff ? DefaultAffinityNhood() : DefaultNhoodTargets();
    if (d->t_ch_ != static_cast<int64_t>(d->nhood_.size())) {
      return Invalid(absl::StrFormat(
          "the target node has f=%d but %s with %d offset(s) give %d target channel(s); set the "
          "target's f to %d",
          d->t_ch_, aff ? "affinities" : "nhood_targets", d->nhood_.size(), d->nhood_.size(),
          d->nhood_.size()));
    }
  }
  if (params.has_ids2barriers() && d->label_mode_ != LabelMode::kPlain) {
    return Invalid(
        "data_init_kwargs.ids2barriers turns the ID labels into boundaries; affinities and "
        "nhood_targets need the IDs: use one or the other");
  }
  d->label_ch_ = d->label_mode_ == LabelMode::kPlain ? d->t_ch_ : 1;
  // target_discrete_ix / target_vec_ix: how plain image targets are sampled (§7.4).
  const bool sampling_set = params.has_target_discrete_ix() || params.target_vec_ix_size() > 0;
  if (sampling_set && (d->scalar_ || d->label_mode_ != LabelMode::kPlain)) {
    return Invalid(absl::StrFormat(
        "target_discrete_ix / target_vec_ix choose how image label channels are warped; %s",
        d->scalar_ ? "an img-scalar target (no spatial axes) has no image label"
                   : "affinities and nhood_targets derive their channels from one ID cube"));
  }
  if (params.has_target_discrete_ix()) {
    d->sampling_.discrete.assign(d->t_ch_, false);
    for (int64_t c : params.target_discrete_ix().ix()) {
      if (c < 0 || c >= d->t_ch_) {
        return Invalid(absl::StrFormat(
            "target_discrete_ix lists channel %d but the target node has f=%d; valid: 0..%d", c,
            d->t_ch_, d->t_ch_ - 1));
      }
      d->sampling_.discrete[c] = true;
    }
  }
  for (const v1::ChannelList& t : params.target_vec_ix()) {
    if (t.ix_size() != 3) {
      return Invalid(absl::StrFormat(
          "target_vec_ix entry (%s) must name 3 channels, the (z, x, y) components of a vector",
          absl::StrJoin(t.ix(), ",")));
    }
    d->sampling_.vectors.push_back({t.ix(0), t.ix(1), t.ix(2)});
  }
  if (absl::Status s = CheckTargetSampling(d->sampling_, d->t_ch_); !s.ok()) {
    return Invalid(absl::StrCat(s.message(), " (the target node's f)"));
  }
  if (!d->sampling_.vectors.empty() && batch_args.warp_args().perspective()) {
    return Invalid(
        "target_vec_ix turns vectors by the linear part of the warp, which a perspective warp "
        "does not have; set warp_args.perspective = false");
  }

  auto axis_of = [](char t) { return t == 'z' ? 0 : t == 'x' ? 1 : 2; };
  d->ps_ = {nd == 3 ? in.SizeOf('z') : 1, in.SizeOf('x'), in.SizeOf('y')};
  d->strides_ = {1, 1, 1};
  d->offsets_ = {0, 0, 0};
  std::array<int64_t, 3> node_size = {1, 1, 1};
  for (int si = 0; si < tg.ndim(); ++si) {
    const char t = tg.tags()[tg.spatial_axes()[si]];
    const int a = axis_of(t);
    d->strides_[a] = tg.strides()[si];
    d->offsets_[a] = tg.offsets()[si];
    node_size[a] = tg.size(tg.spatial_axes()[si]);
  }
  if (d->scalar_) {
    // One label vector per patch: no dense target, no label context.
    d->tps_ = d->target_size_ = d->cut_ = {1, 1, 1};
  } else {
    for (int a = 0; a < 3; ++a) {
      const char t = "zxy"[a];
      if (d->offsets_[a] < 0) {
        return Invalid(absl::StrFormat(
            "target node has an unknown field of view along %c (fov -1, e.g. after UpConv): "
            "offsets %s cannot place labels; designate the target node so its fov is set",
            t, tg.ExtRepr()));
      }
      if (d->strides_[a] < 1) {
        return Invalid(absl::StrFormat("target stride along %c is %d; strides must be >= 1", t,
                                       d->strides_[a]));
      }
      d->tps_[a] = d->ps_[a] - 2 * d->offsets_[a];
      if (d->tps_[a] < 1) {
        return Invalid(absl::StrFormat(
            "input patch %s minus twice the target offsets %s leaves no dense target along %c",
            Zxy(d->ps_), Zxy(d->offsets_), t));
      }
      d->target_size_[a] = batch_args.force_dense()
                               ? d->tps_[a]
                               : (d->tps_[a] + d->strides_[a] - 1) / d->strides_[a];
    }
    // Label context around the dense target, so that edges at its border join real labels: up to
    // the largest offset per axis, as far as the input patch allows (the label cut must stay
    // within the input patch's sampling grid). Edges still leaving the cut are undefined.
    for (int a = 0; a < 3; ++a) {
      int64_t reach = 0;
      for (const auto& o : d->nhood_) reach = std::max(reach, std::abs(o[a]));
      d->margin_[a] = std::min(reach, d->offsets_[a]);
      d->cut_[a] = d->tps_[a] + 2 * d->margin_[a];
    }
    if (d->target_size_ != node_size) {
      return Invalid(absl::StrFormat(
          "the target node's spatial shape (z,x,y)=%s does not match the labels cut for it: input "
          "patch %s - 2*offsets %s = dense target %s%s = %s",
          Zxy(node_size), Zxy(d->ps_), Zxy(d->offsets_), Zxy(d->tps_),
          batch_args.force_dense() ? " (force_dense)"
                                   : absl::StrCat(" subsampled with strides ", Zxy(d->strides_)),
          Zxy(d->target_size_)));
    }
  }

  // Element strides of the caller's buffers per logical axis.
  auto layout = [](const TaggedShape& s, const char* what) -> absl::StatusOr<Layout> {
    Layout l;
    int64_t stride = 1;
    for (int i = s.rank() - 1; i >= 0; --i) {
      const char t = s.tags()[i];
      int64_t* slot = t == 'b'   ? &l.b
                      : t == 'f' ? &l.f
                      : t == 'z' ? &l.z
                      : t == 'x' ? &l.x
                      : t == 'y' ? &l.y
                                 : nullptr;
      if (slot == nullptr && s.size(i) != 1) {
        return Invalid(
            absl::StrFormat("%s tags \"%s\": axis '%c' of size %d is not supported; "
                            "only b, f, z, x, y (others of size 1)",
                            what, s.tags_string(), t, s.size(i)));
      }
      if (slot != nullptr) *slot = stride;
      stride *= s.size(i);
    }
    return l;
  };
  ASSIGN_OR_RETURN(d->in_layout_, layout(in, "input node"));
  ASSIGN_OR_RETURN(d->t_layout_, layout(tg, "target node"));
  d->input_canonical_ = in.tags() == (nd == 3 ? "bfzxy" : "bfxy");
  // Lazy-label masks: two extra (b, n_class) inputs, named by the model.
  if (batch_args.ret_ll_mask()) {
    const char* names[2] = {kMaskClassLabeled, kMaskClassNotPresent};
    if (geometry.extras.size() != 2 || geometry.extras[0].name != names[0] ||
        geometry.extras[1].name != names[1]) {
      return Invalid(absl::StrFormat(
          "data_batch_args.ret_ll_mask delivers two extra inputs, '%s' and '%s' (tags b,f: one "
          "flag per class); the model must have input nodes of these names",
          names[0], names[1]));
    }
    for (int i = 0; i < 2; ++i) {
      const TaggedShape& m = geometry.extras[i].shape;
      if (m.tags() != "bf" || m.SizeOf('b') != d->batch_ || m.SizeOf('f') < 1) {
        return Invalid(absl::StrFormat(
            "lazy-label mask input '%s' has shape %s; it must be (b=%d, f=n_class) with tags "
            "\"b,f\"",
            names[i], m.ToString(), d->batch_));
      }
    }
    d->n_class_mask_ = geometry.extras[0].shape.SizeOf('f');
    if (geometry.extras[1].shape.SizeOf('f') != d->n_class_mask_) {
      return Invalid(absl::StrFormat(
          "lazy-label mask inputs '%s' (f=%d) and '%s' (f=%d) must "
          "have the same number of classes",
          names[0], d->n_class_mask_, names[1], geometry.extras[1].shape.SizeOf('f')));
    }
  } else if (!geometry.extras.empty()) {
    return Invalid(
        absl::StrFormat("%d extra input(s) ('%s', ...) requested but no data key "
                        "produces them (ret_ll_mask is off)",
                        geometry.extras.size(), geometry.extras[0].name));
  }

  // ---- Augmentation settings.
  if (!(batch_args.warp() >= 0.0)) {
    return Invalid(
        absl::StrFormat("data_batch_args.warp=%g; valid: 0 (never), 1 (always) or "
                        "a fraction in (0,1)",
                        batch_args.warp()));
  }
  d->warp_fraction_ = std::min(batch_args.warp(), 1.0);
  const v1::WarpArgs& wa = batch_args.warp_args();
  d->warp_.aniso_factor = params.has_aniso_factor() ? params.aniso_factor() : 2.0;
  if (!(d->warp_.aniso_factor > 0.0)) {
    return Invalid(
        absl::StrFormat("aniso_factor=%g must be positive (z voxel size / xy voxel "
                        "size, 2 for neuro_data)",
                        d->warp_.aniso_factor));
  }
  d->warp_.sample_aniso = wa.has_sample_aniso() ? wa.sample_aniso() : true;
  d->warp_.lock_z = wa.has_lock_z() ? wa.lock_z() : true;
  d->warp_.no_x_flip = wa.no_x_flip();
  d->warp_.perspective = wa.perspective();
  d->warp_.warp_amount = wa.has_warp_amount() ? wa.warp_amount() : 1.0;
  for (int64_t c : batch_args.grey_augment_channels()) {
    if (c < 0 || c >= d->in_ch_) {
      return Invalid(
          absl::StrFormat("grey_augment_channels lists channel %d but the input has "
                          "%d channel(s); valid: 0..%d",
                          c, d->in_ch_, d->in_ch_ - 1));
    }
    d->grey_channels_.push_back(c);
  }
  auto probability = [](const char* key, double p) -> absl::Status {
    if (!(p >= 0.0 && p <= 1.0)) {
      return Invalid(
          absl::StrFormat("data_batch_args.%s=%g must be a probability in [0,1]", key, p));
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(
      probability("nga_blur_noise_probability", batch_args.nga_blur_noise_probability()));
  d->nga_p_ = batch_args.nga_blur_noise_probability();
  struct BlobKey {
    const char* name;
    double p;
    const v1::BlobArgs& args;
    BlobAug* out;
  };
  for (const BlobKey& k :
       {BlobKey{"blurry_blobs", batch_args.blurry_blobs_probability(),
                batch_args.blurry_blobs_args(), &d->blurry_},
        BlobKey{"uniform_random_erasing", batch_args.uniform_random_erasing_probability(),
                batch_args.uniform_random_erasing_args(), &d->uniform_erase_},
        BlobKey{"noisy_random_erasing", batch_args.noisy_random_erasing_probability(),
                batch_args.noisy_random_erasing_args(), &d->noisy_erase_}}) {
    RETURN_IF_ERROR(probability(absl::StrCat(k.name, "_probability").c_str(), k.p));
    k.out->p = k.p;
    BlobOptions& o = k.out->opt;
    const v1::BlobArgs& a = k.args;
    auto range = [&](const char* what, const auto& r, auto* lo, auto* hi,
                     double min) -> absl::Status {
      if (r.empty()) return absl::OkStatus();
      if (r.size() != 2 || !(r[0] >= min) || !(r[1] > r[0])) {
        return Invalid(absl::StrFormat(
            "data_batch_args.%s_args.%s=(%s) must be two numbers (lo, hi) with %g <= lo < hi",
            k.name, what, absl::StrJoin(r, ","), min));
      }
      *lo = r[0];
      *hi = r[1];
      return absl::OkStatus();
    };
    RETURN_IF_ERROR(range("num_blob_range", a.num_blob_range(), &o.num_lo, &o.num_hi, 0));
    RETURN_IF_ERROR(range("blob_size_range", a.blob_size_range(), &o.size_lo, &o.size_hi, 1));
    RETURN_IF_ERROR(range("noise_range", a.noise_range(), &o.noise_lo, &o.noise_hi, -1e30));
    if (a.has_diffuseness() && !(a.diffuseness() >= 0.0)) {
      return Invalid(absl::StrFormat("data_batch_args.%s_args.diffuseness=%g must be >= 0", k.name,
                                     a.diffuseness()));
    }
    o.diffuseness = a.diffuseness();
    o.value = static_cast<float>(a.value());
  }
  if (batch_args.has_ignore_thresh() &&
      !(batch_args.ignore_thresh() >= 0.0 && batch_args.ignore_thresh() <= 1.0)) {
    return Invalid(absl::StrFormat("ignore_thresh=%g must be a fraction in [0,1]",
                                   batch_args.ignore_thresh()));
  }
  const std::string& bm = params.border_mode();
  if (!bm.empty() && bm != "crop" && bm != "keep" && bm != "mirror" && bm != "0-pad") {
    return Invalid(
        absl::StrFormat("border_mode '%s' is unknown; valid: crop, keep, mirror, "
                        "0-pad (only used by img-scalar targets)",
                        bm));
  }
  d->border_mode_ = bm.empty() ? "crop" : bm;

  // ---- Cubes: all loaded and checked now.
  if (params.d_files_size() == 0) {
    return Invalid("d_files is empty; list at least one (file, key) raw cube");
  }
  if (params.d_files_size() != params.l_files_size()) {
    return Invalid(
        absl::StrFormat("%d d_files but %d l_files; every raw cube needs exactly one "
                        "label cube",
                        params.d_files_size(), params.l_files_size()));
  }
  const std::string d_dir = ResolvePath(params.d_path(), base_dir);
  const std::string l_dir = ResolvePath(params.l_path(), base_dir);
  const int n = params.d_files_size();
  d->cubes_.resize(n);
  for (int i = 0; i < n; ++i) {
    Cube& c = d->cubes_[i];
    c.raw_key = params.d_files(i).key();
    c.raw_file = JoinFiles(d_dir, params.d_files(i).file(), c.raw_key == kKnossosKey);
    c.label_key = params.l_files(i).key();
    c.label_file = JoinFiles(l_dir, params.l_files(i).file(), c.label_key == kKnossosKey);
    RETURN_IF_ERROR(d->scalar_ ? d->LoadScalarCube(params, i, &c) : d->LoadCube(params, i, &c));
    const std::string rname = absl::StrFormat("'%s' '%s'", c.raw_file, c.raw_key);
    const std::string lname = absl::StrFormat("'%s' '%s'", c.label_file, c.label_key);
    if (c.raw_ch != d->in_ch_) {
      return Invalid(absl::StrFormat("raw cube %s has %d channel(s) but the input node has f=%d",
                                     rname, c.raw_ch, d->in_ch_));
    }
    if (!d->scalar_ && d->label_mode_ != LabelMode::kPlain && c.label_ch != 1) {
      return Invalid(absl::StrFormat(
          "label cube %s has %d channels; %s need a single-channel segmentation (ID) cube", lname,
          c.label_ch, d->label_mode_ == LabelMode::kAffinity ? "affinities" : "nhood_targets"));
    }
    if (params.has_ids2barriers() && c.streamed()) {
      return Invalid(absl::StrFormat(
          "label cube %s is streamed (h5stream or KNOSSOS) but ids2barriers turns whole ID cubes "
          "into boundaries at load; prepare boundary label files, or load the cubes into memory",
          lname));
    }
    if (params.has_ids2barriers()) {
      if (c.label.ch != 1) {
        return Invalid(absl::StrFormat(
            "label cube %s has %d channels; ids2barriers needs a single-channel ID cube", lname,
            c.label.ch));
      }
      const v1::Ids2BarriersArgs& ia = params.ids2barriers();
      Ids2BarriersOptions io;
      for (int a = 0; a < 3 && a < ia.dilute_size(); ++a) io.dilute[a] = ia.dilute(a);
      for (int a = 0; a < 3 && a < ia.connectivity_size(); ++a) {
        io.connectivity[a] = ia.connectivity(a);
      }
      if (ia.ecs_as_barr().empty() || ia.ecs_as_barr() == "true") {
        io.ecs = EcsMode::kBarrier;
      } else if (ia.ecs_as_barr() == "false") {
        io.ecs = EcsMode::kNone;
      } else if (ia.ecs_as_barr() == "new_class") {
        io.ecs = EcsMode::kNewClass;
      } else {
        return Invalid(absl::StrFormat(
            "ids2barriers.ecs_as_barr='%s'; valid: true, false, 'new_class'", ia.ecs_as_barr()));
      }
      io.smoothen = ia.smoothen();
      c.label = Ids2Barriers(c.label, io);
      c.label_ch = c.label.ch;
    }
    if (!d->scalar_ && c.label_ch != d->label_ch_) {
      return Invalid(
          absl::StrFormat("label cube %s has %d channel(s) but the target node has "
                          "f=%d (sparse class-id targets: 1 channel)",
                          lname, c.label_ch, d->t_ch_));
    }
    if (d->n_class_mask_ > 0) {
      const int64_t nc = d->n_class_mask_;
      c.mask_labeled.assign(nc, 1.f);  // default: every class labelled, none absent
      c.mask_not_present.assign(nc, 0.f);
      absl::StatusOr<H5Array> m = c.label_key == kKnossosKey
                                      ? absl::NotFoundError("KNOSSOS labels carry no ll_mask")
                                      : ReadH5Array(c.label_file, "ll_mask");
      if (m.ok()) {
        if (m->shape != std::vector<int64_t>{2, nc}) {
          return Invalid(absl::StrFormat(
              "label file '%s': dataset 'll_mask' has shape (%s); it must be (2, %d): row 0 "
              "mask_class_labeled, row 1 mask_class_not_present, one flag per class",
              c.label_file, absl::StrJoin(m->shape, ","), nc));
        }
        for (int64_t k = 0; k < nc; ++k) {
          c.mask_labeled[k] = static_cast<float>(m->data[k]);
          c.mask_not_present[k] = static_cast<float>(m->data[nc + k]);
        }
      } else if (m.status().code() != absl::StatusCode::kNotFound) {
        return m.status();
      }
    }
    if (d->scalar_) continue;  // labels and fit checked by LoadScalarCube
    const std::array<int64_t, 3> rs = c.raw_shape, ls = c.label_shape;
    for (int a = 0; a < 3; ++a) {
      const int64_t diff = rs[a] - ls[a];
      if (diff < 0 || diff % 2 != 0) {
        return Invalid(absl::StrFormat(
            "label cube %s (z,x,y)=%s is not centred in raw cube %s %s: along %c the size "
            "difference is %d; it must be even and >= 0 (crop the label cube)",
            lname, Zxy(ls), rname, Zxy(rs), "zxy"[a], diff));
      }
    }
    // The patch must have at least one position (the same rule as the warp's centre draw).
    for (int a = 0; a < 3; ++a) {
      const double off = (rs[a] - ls[a]) / 2;
      const double lo = std::max(d->ps_[a] / 2.0, d->cut_[a] / 2.0 + off);
      const double hi = std::min(rs[a] - d->ps_[a] / 2.0, ls[a] - d->cut_[a] / 2.0 + off);
      if (std::floor(hi) <= std::floor(lo)) {
        return Invalid(absl::StrFormat(
            "patch %s does not fit cube %s %s: along %c the input patch (%d) needs a raw cube of "
            "at least %d and the dense target patch (%d) a label cube %s of at least %d",
            Zxy(d->ps_), rname, Zxy(rs), "zxy"[a], d -> ps_[a], d -> ps_[a] + 1, d -> cut_[a],
            Zxy(ls), d -> cut_[a] + 1));
      }
    }
    // Streamed labels are never whole in memory: their values are not checked here.
    // Trilinear (non-discrete) channels may hold any finite value.
    for (size_t k = 0; k < c.label.data.size(); ++k) {
      const float v = c.label.data[k];
      const int64_t vox = c.label.voxels();
      const auto ch = static_cast<size_t>(static_cast<int64_t>(k) / vox);
      const bool discrete = d->sampling_.discrete.empty() || d->sampling_.discrete[ch];
      if (!(std::isfinite(v) && (!discrete || v == std::nearbyint(v)))) {
        const int64_t r = static_cast<int64_t>(k) % vox;
        return Invalid(absl::StrFormat(
            "label cube %s holds %g at (ch,z,x,y)=(%d,%d,%d,%d); labels must be finite, and "
            "integral class ids (negative = ignore) in discrete channels (target_discrete_ix; "
            "default all)",
            lname, v, static_cast<int64_t>(k) / vox, r / (c.label.x * c.label.y),
            (r / c.label.y) % c.label.x, r % c.label.y));
      }
    }
  }

  std::set<int> valid;
  for (int64_t v : params.valid_cubes()) {
    if (v < 0 || v >= n) {
      return Invalid(
          absl::StrFormat("valid_cubes lists %d but there are %d cube(s); valid: "
                          "0..%d",
                          v, n, n - 1));
    }
    if (!valid.insert(static_cast<int>(v)).second) {
      return Invalid(absl::StrFormat("valid_cubes lists cube %d twice", v));
    }
  }
  for (int i = 0; i < n; ++i) {
    (valid.count(i) ? d->valid_cubes_ : d->train_cubes_).push_back(i);
  }
  if (d->train_cubes_.empty()) {
    return Invalid(
        absl::StrFormat("all %d cube(s) are valid_cubes; at least one must remain for "
                        "training",
                        n));
  }
  std::vector<double> weights;
  const int np = params.cube_prios_size();
  if (np != 0 && np != n && np != static_cast<int>(d->train_cubes_.size())) {
    return Invalid(
        absl::StrFormat("cube_prios has %d value(s); give one per cube (%d) or one "
                        "per training cube (%d)",
                        np, n, d->train_cubes_.size()));
  }
  for (size_t k = 0; k < d->train_cubes_.size(); ++k) {
    const int i = d->train_cubes_[k];
    const std::array<int64_t, 3>& ls = d->cubes_[i].label_shape;
    const int64_t label_voxels = ls[0] * ls[1] * ls[2];
    d->train_label_voxels_ += label_voxels;
    double w = static_cast<double>(label_voxels);
    if (np != 0) w = params.cube_prios(np == n ? i : static_cast<int>(k));
    if (!(w >= 0.0) || !std::isfinite(w)) {
      return Invalid(absl::StrFormat("cube_prios value %g for cube %d must be >= 0", w, i));
    }
    weights.push_back(w);
  }
  double total = 0;
  for (double w : weights) total += w;
  if (!(total > 0.0)) return Invalid("cube_prios of the training cubes sum to 0");
  double acc = 0;
  for (double w : weights) d->train_cdf_.push_back((acc += w) / total);
  d->train_cdf_.back() = 1.0;
  return d;
}

absl::Status BatchCreatorImage::LoadCube(const v1::BatchCreatorImageParams& params, int i,
                                         Cube* c) const {
  const bool raw_knossos = c->raw_key == kKnossosKey, label_knossos = c->label_key == kKnossosKey;
  for (const auto& [file, knossos] :
       {std::pair(c->raw_file, raw_knossos), std::pair(c->label_file, label_knossos)}) {
    if (!knossos && !fs::exists(file)) {
      return absl::NotFoundError(absl::StrFormat(
          "BatchCreatorImage: cube %d: file '%s' does not exist (d_path '%s', l_path '%s', "
          "relative paths resolve against the job file's folder)",
          i, file, params.d_path(), params.l_path()));
    }
  }
  const bool streamed = params.h5stream() || raw_knossos || label_knossos;
  if (!streamed) {
    ASSIGN_OR_RETURN(c->raw,
                     ReadH5Volume(c->raw_file, c->raw_key, params.xyz_order(), H5Values::kRaw));
    ASSIGN_OR_RETURN(
        c->label, ReadH5Volume(c->label_file, c->label_key, params.xyz_order(), H5Values::kLabels));
    c->raw_shape = c->raw.spatial();
    c->label_shape = c->label.spatial();
    c->raw_ch = c->raw.ch;
    c->label_ch = c->label.ch;
    return absl::OkStatus();
  }
  if (params.xyz_order()) {
    return Invalid(absl::StrFormat(
        "cube %d is streamed (h5stream or KNOSSOS) and zxy=false: streamed cubes must be stored "
        "(z,x,y) or (ch,z,x,y); transpose the files or load them into memory",
        i));
  }
  VolumeReaderOptions o;
  o.knossos_max_ram_mb = params.has_max_ram() ? params.max_ram() : 1000;
  o.knossos_n_preload = params.has_n_preload() ? params.n_preload() : 2;
  const std::string raw_spec = raw_knossos ? absl::StrCat("knossos:", c->raw_file)
                                           : absl::StrCat(c->raw_file, ":", c->raw_key);
  const std::string label_spec = label_knossos ? absl::StrCat("knossos:", c->label_file)
                                               : absl::StrCat(c->label_file, ":", c->label_key);
  o.integers = IntegerValues::kDivideBy255;
  ASSIGN_OR_RETURN(std::unique_ptr<VolumeReader> raw, VolumeReader::Open(raw_spec, o));
  o.integers = IntegerValues::kAsIs;
  ASSIGN_OR_RETURN(std::unique_ptr<VolumeReader> label, VolumeReader::Open(label_spec, o));
  c->raw_shape = {raw->shape().z, raw->shape().x, raw->shape().y};
  c->label_shape = {label->shape().z, label->shape().x, label->shape().y};
  c->raw_ch = raw->shape().c;
  c->label_ch = label->shape().c;
  c->raw_src = std::move(raw);
  c->label_src = std::move(label);
  return absl::OkStatus();
}

absl::StatusOr<bool> BatchCreatorImage::CutStreamed(const Cube& c, const WarpOptions& opt,
                                                    std::mt19937_64& rng, float* raw,
                                                    float* dense) const {
  // Exactly GetWarpedSlice's draws, so a streamed cube gives the batches of a loaded one.
  ASSIGN_OR_RETURN(WarpTransform t,
                   DrawWarpTransform(c.raw_shape, &c.label_shape, ps_, cut_, opt, rng));
  std::array<int64_t, 3> origin{}, size{};
  ASSIGN_OR_RETURN(bool inside, WarpSourceBox(c.raw_shape, &c.label_shape, ps_, cut_, t.forward,
                                              &origin, &size));
  if (!inside) return false;
  // The label box is the raw box in label coordinates (the label cube is centred); where it
  // reaches past the label cube it is zero, and never sampled (the target stays inside).
  thread_local Volume sub_raw, sub_label;
  auto shape = [&](Volume* v, int64_t ch) {
    v->ch = ch;
    v->z = size[0];
    v->x = size[1];
    v->y = size[2];
    v->data.resize(static_cast<size_t>(ch * size[0] * size[1] * size[2]));
  };
  shape(&sub_raw, c.raw_ch);
  shape(&sub_label, c.label_ch);
  const Box raw_box{origin[0], origin[1], origin[2], size[0], size[1], size[2]};
  Box label_box = raw_box;
  label_box.z0 -= (c.raw_shape[0] - c.label_shape[0]) / 2;
  label_box.x0 -= (c.raw_shape[1] - c.label_shape[1]) / 2;
  label_box.y0 -= (c.raw_shape[2] - c.label_shape[2]) / 2;
  RETURN_IF_ERROR(c.raw_src->Read(raw_box, PadMode::kError, sub_raw.data.data()));
  RETURN_IF_ERROR(c.label_src->Read(label_box, PadMode::kZero, sub_label.data.data()));
  return WarpSlice(sub_raw, &sub_label, ps_, cut_, ShiftSource(t.forward, origin), raw, dense,
                   sampling());
}

int BatchCreatorImage::PickCube(Split split, std::mt19937_64& rng) const {
  if (split == Split::kValid) {
    return valid_cubes_[std::uniform_int_distribution<size_t>(0, valid_cubes_.size() - 1)(rng)];
  }
  const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  const size_t k = std::upper_bound(train_cdf_.begin(), train_cdf_.end(), u) - train_cdf_.begin();
  return train_cubes_[std::min(k, train_cubes_.size() - 1)];
}

absl::Status BatchCreatorImage::CutExample(Split split, std::mt19937_64& rng, float* raw,
                                           float* dense, int* cube) const {
  const int64_t cut_vox = cut_[0] * cut_[1] * cut_[2];
  std::vector<int> oob;  // per cube, allocated on the first out-of-bounds draw only
  int ignored = 0;
  for (int attempt = 0; attempt < kMaxConsecutiveRedraws; ++attempt) {
    const int ci = PickCube(split, rng);
    const Cube& c = cubes_[ci];
    WarpOptions opt = warp_;
    const bool warped = warp_fraction_ >= 1.0 ||
                        (warp_fraction_ > 0.0 &&
                         std::uniform_real_distribution<double>(0.0, 1.0)(rng) < warp_fraction_);
    if (!warped) opt.warp_amount = 0.0;  // flips and axis swaps still apply (ELEKTRONN2)
    bool ok = false;
    if (c.streamed()) {
      ASSIGN_OR_RETURN(ok, CutStreamed(c, opt, rng, raw, dense));
    } else {
      ASSIGN_OR_RETURN(
          ok, GetWarpedSlice(c.raw, &c.label, ps_, cut_, opt, rng, raw, dense, sampling()));
    }
    if (!ok) {
      if (oob.empty()) oob.assign(cubes_.size(), 0);
      ++oob[ci];
      continue;
    }
    // ELEKTRONN2 skips the check for cubes with lazy-label "not present" flags.
    bool absent_flags = false;
    for (float f : c.mask_not_present) absent_flags |= f != 0.f;
    if (args_.has_ignore_thresh() && !absent_flags) {
      // Over the dense target itself (without the label margin).
      int64_t negative = 0;
      for (int64_t ch = 0; ch < label_ch_; ++ch) {
        for (int64_t k = 0; k < tps_[0]; ++k) {
          for (int64_t i = 0; i < tps_[1]; ++i) {
            const float* row = dense + ch * cut_vox +
                               ((k + margin_[0]) * cut_[1] + i + margin_[1]) * cut_[2] + margin_[2];
            for (int64_t j = 0; j < tps_[2]; ++j) negative += row[j] < 0.f;
          }
        }
      }
      const int64_t dense_n = label_ch_ * tps_[0] * tps_[1] * tps_[2];
      if (static_cast<double>(negative) / static_cast<double>(dense_n) > args_.ignore_thresh()) {
        ++ignored;
        continue;
      }
    }
    *cube = ci;
    return absl::OkStatus();
  }
  if (ignored > kMaxConsecutiveRedraws / 2 || oob.empty()) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "BatchCreatorImage: %d of %d consecutive %s patches were discarded by ignore_thresh=%g "
        "(more than that fraction of target voxels negative = unlabelled); raise or unset "
        "ignore_thresh, or label more of the cubes",
        ignored, kMaxConsecutiveRedraws, split == Split::kTrain ? "training" : "validation",
        args_.ignore_thresh()));
  }
  const int worst = static_cast<int>(std::max_element(oob.begin(), oob.end()) - oob.begin());
  const Cube& c = cubes_[worst];
  return absl::FailedPreconditionError(absl::StrFormat(
      "BatchCreatorImage: patch %s (dense target %s) does not fit cube '%s' (z,x,y)=%s, label "
      "'%s' %s: %d consecutive %s draws left the cubes (%d of them in this cube; warp=%g, "
      "warp_amount=%g, aniso_factor=%g, lock_z=%d, perspective=%d); use larger cubes, a smaller "
      "patch or less warping",
      Zxy(ps_), Zxy(tps_), c.raw_file, Zxy(c.raw_shape), c.label_file, Zxy(c.label_shape),
      kMaxConsecutiveRedraws, split == Split::kTrain ? "training" : "validation", oob[worst],
      warp_fraction_, warp_.warp_amount, warp_.aniso_factor, warp_.lock_z, warp_.perspective));
}

void BatchCreatorImage::Augment(float* raw, std::mt19937_64& rng) const {
  // Each augmentation draws its coin only when enabled, so streams without them are unchanged.
  auto coin = [&](double p) {
    return p > 0 && std::uniform_real_distribution<double>(0.0, 1.0)(rng) < p;
  };
  if (coin(nga_p_)) NgaBlurNoise(raw, in_ch_, ps_, rng);
  if (coin(blurry_.p)) BlurryBlobs(raw, in_ch_, ps_, blurry_.opt, rng);
  if (coin(uniform_erase_.p)) UniformRandomErasing(raw, in_ch_, ps_, uniform_erase_.opt, rng);
  if (coin(noisy_erase_.p)) NoisyRandomErasing(raw, in_ch_, ps_, noisy_erase_.opt, rng);
}

absl::Status BatchCreatorImage::GetBatch(Split split, std::mt19937_64& rng, float* input,
                                         float* target) const {
  if (n_class_mask_ > 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "BatchCreatorImage::GetBatch: ret_ll_mask is on; call the overload with the buffers of "
        "'%s' and '%s'",
        kMaskClassLabeled, kMaskClassNotPresent));
  }
  return GetBatch(split, rng, input, target, nullptr);
}

absl::Status BatchCreatorImage::GetBatch(Split split, std::mt19937_64& rng, float* input,
                                         float* target, float* const* extras) const {
  if (n_class_mask_ > 0 && (extras == nullptr || extras[0] == nullptr || extras[1] == nullptr)) {
    return absl::InvalidArgumentError(
        "BatchCreatorImage::GetBatch: ret_ll_mask is on but no mask buffers were given");
  }
  if (split == Split::kValid && valid_cubes_.empty()) {
    return absl::FailedPreconditionError(
        "BatchCreatorImage: a validation batch was requested but valid_cubes is empty; list the "
        "validation cube indices in valid_cubes");
  }
  if (input == nullptr || target == nullptr) {
    return absl::InvalidArgumentError("BatchCreatorImage::GetBatch: null input or target buffer");
  }
  const int64_t ps_n = ps_[0] * ps_[1] * ps_[2];
  const int64_t raw_n = in_ch_ * ps_n;
  const int64_t cut_n = label_ch_ * cut_[0] * cut_[1] * cut_[2];
  const int64_t derived_n =
      label_mode_ == LabelMode::kPlain ? 0 : t_ch_ * tps_[0] * tps_[1] * tps_[2];
  // Per-thread scratch: GetBatch runs on several threads at once and must not allocate per call.
  thread_local std::vector<float> raw_scratch, cut_scratch, derived_scratch;
  if (!input_canonical_ && static_cast<int64_t>(raw_scratch.size()) < raw_n) {
    raw_scratch.resize(raw_n);
  }
  if (static_cast<int64_t>(cut_scratch.size()) < cut_n) cut_scratch.resize(cut_n);
  if (static_cast<int64_t>(derived_scratch.size()) < derived_n) derived_scratch.resize(derived_n);

  for (int64_t b = 0; b < batch_; ++b) {
    float* raw = input_canonical_ ? input + b * raw_n : raw_scratch.data();
    int ci = 0;
    if (scalar_) {
      RETURN_IF_ERROR(CutScalarExample(split, rng, raw, cut_scratch.data(), &ci));
    } else {
      RETURN_IF_ERROR(CutExample(split, rng, raw, cut_scratch.data(), &ci));
    }
    if (split == Split::kTrain && !grey_channels_.empty()) {
      GreyAugment(raw, in_ch_, ps_n, grey_channels_, rng);
    }
    if (split == Split::kTrain) Augment(raw, rng);
    // The dense target (t_ch, tps): the label itself, or derived from the ID cut. Undefined
    // affinities get the ignore value -666 (ELEKTRONN2: 0, "disconnected", at every patch
    // border), undefined nhood targets -1 as in ELEKTRONN2 (negative = unlabelled).
    const float* dense = cut_scratch.data();
    if (label_mode_ == LabelMode::kAffinity) {
      AffinitiesInCut(cut_scratch.data(), cut_, margin_, tps_, nhood_, kUndefinedAffinity,
                      derived_scratch.data());
      dense = derived_scratch.data();
    } else if (label_mode_ == LabelMode::kNhood) {
      NhoodTargetsInCut(cut_scratch.data(), cut_, margin_, tps_, nhood_, -1.f,
                        derived_scratch.data());
      dense = derived_scratch.data();
    }
    if (n_class_mask_ > 0) {
      const Cube& c = cubes_[ci];
      std::copy(c.mask_labeled.begin(), c.mask_labeled.end(), extras[0] + b * n_class_mask_);
      std::copy(c.mask_not_present.begin(), c.mask_not_present.end(),
                extras[1] + b * n_class_mask_);
    }
    if (!input_canonical_) {
      const Layout& l = in_layout_;
      const float* src = raw;
      for (int64_t c = 0; c < in_ch_; ++c) {
        for (int64_t k = 0; k < ps_[0]; ++k) {
          for (int64_t i = 0; i < ps_[1]; ++i) {
            float* dst = input + b * l.b + c * l.f + k * l.z + i * l.x;
            for (int64_t j = 0; j < ps_[2]; ++j) dst[j * l.y] = *src++;
          }
        }
      }
    }
    if (scalar_) {
      for (int64_t c = 0; c < t_ch_; ++c) target[b * t_layout_.b + c * t_layout_.f] = dense[c];
      continue;
    }
    // Strided target: index k of the delivered target = dense index k*S (offset + k*S in the
    // input patch); with force_dense or strides 1 it is the dense target itself.
    const Layout& l = t_layout_;
    const std::array<int64_t, 3> s =
        args_.force_dense() ? std::array<int64_t, 3>{1, 1, 1} : strides_;
    for (int64_t c = 0; c < t_ch_; ++c) {
      for (int64_t k = 0; k < target_size_[0]; ++k) {
        for (int64_t i = 0; i < target_size_[1]; ++i) {
          const float* src = dense + ((c * tps_[0] + k * s[0]) * tps_[1] + i * s[1]) * tps_[2];
          float* dst = target + b * l.b + c * l.f + k * l.z + i * l.x;
          for (int64_t j = 0; j < target_size_[2]; ++j) dst[j * l.y] = src[j * s[2]];
        }
      }
    }
  }
  return absl::OkStatus();
}

std::string BatchCreatorImage::Describe() const {
  return absl::StrFormat(
      "%d-target Data Set with %d input channel(s): #train cubes: %d and #valid cubes: %d, %d "
      "labelled pixels.",
      t_ch_, in_ch_, train_cubes_.size(), valid_cubes_.size(), train_label_voxels_);
}

}  // namespace elektronn
