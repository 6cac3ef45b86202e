// BatchCreatorImage's img-scalar mode: border-treated raw cubes in memory, one label vector per
// cube (or per z-slice for 2-D networks), warped image patches (reference §7.2, §7.3).
#include <algorithm>
#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/core/status.h"
#include "engine/data/batch_creator_image.h"
#include "engine/data/border.h"
#include "engine/data/h5_volume.h"

namespace elektronn {
namespace {

constexpr int kMaxConsecutiveRedraws = 1000;  // as for img-img examples

std::string Zxy(const std::array<int64_t, 3>& v) {
  return absl::StrFormat("(%d,%d,%d)", v[0], v[1], v[2]);
}

absl::Status Invalid(const std::string& what) {
  return absl::InvalidArgumentError("BatchCreatorImage: " + what);
}

}  // namespace

absl::Status BatchCreatorImage::LoadScalarCube(const v1::BatchCreatorImageParams& params, int i,
                                               Cube* c) const {
  if (params.h5stream() || c->raw_key == "knossos" || c->label_key == "knossos") {
    return Invalid(absl::StrFormat(
        "cube %d: img-scalar targets (a target node without spatial axes) need the raw cubes in "
        "memory for border_mode, but h5stream is on or the cube is a KNOSSOS dataset; use HDF5 "
        "files without h5stream",
        i));
  }
  for (const std::string& file : {c->raw_file, c->label_file}) {
    if (!std::filesystem::exists(file)) {
      return absl::NotFoundError(absl::StrFormat(
          "BatchCreatorImage: cube %d: file '%s' does not exist (d_path '%s', l_path '%s', "
          "relative paths resolve against the job file's folder)",
          i, file, params.d_path(), params.l_path()));
    }
  }
  ASSIGN_OR_RETURN(Volume raw,
                   ReadH5Volume(c->raw_file, c->raw_key, params.xyz_order(), H5Values::kRaw));
  const int64_t slices = raw.z;
  const bool two_d = geometry_.input.ndim() == 2;
  ASSIGN_OR_RETURN(Volume treated, ApplyBorderMode(raw, ps_, border_mode_, !two_d));
  c->border_shape = treated.spatial();
  for (int a = 0; a < 3; ++a) {
    if (c->border_shape[a] < ps_[a]) {
      return Invalid(absl::StrFormat(
          "img-scalar: raw cube '%s' '%s' (z,x,y)=%s is smaller than the patch %s along %c "
          "after border_mode '%s'; use border_mode 'mirror' or '0-pad' to pad it up to the "
          "patch",
          c->raw_file, c->raw_key, Zxy(raw.spatial()), Zxy(ps_), "zxy"[a], border_mode_));
    }
  }
  c->raw = PadEdge(treated, 1);
  c->raw_shape = c->raw.spatial();
  c->raw_ch = c->raw.ch;

  ASSIGN_OR_RETURN(H5Array lab, ReadH5Array(c->label_file, c->label_key));
  const std::string lname = absl::StrFormat("'%s' '%s'", c->label_file, c->label_key);
  const std::string shape = absl::StrCat("(", absl::StrJoin(lab.shape, ","), ")");
  const std::vector<int64_t>& s = lab.shape;
  if (s.empty() || (s.size() == 1 && s[0] == t_ch_)) {
    if (s.empty() && t_ch_ != 1) {
      return Invalid(absl::StrFormat(
          "img-scalar label %s is a single number but the target node has f=%d; store a "
          "vector of %d values per cube",
          lname, t_ch_, t_ch_));
    }
    c->label_rows = 1;
  } else if (s.size() == 2 && s[1] == t_ch_ && two_d && s[0] == slices) {
    c->label_rows = slices;
  } else {
    return Invalid(absl::StrFormat(
        "img-scalar label %s has shape %s; with a target of f=%d it must be (%d,) (one label "
        "vector for the whole cube)%s",
        lname, shape, t_ch_, t_ch_,
        two_d ? absl::StrFormat(" or (%d, %d) (one per z-slice of the raw cube; a 2-D network "
                                "cuts single slices)",
                                slices, t_ch_)
              : std::string(" (per-slice labels (z, f) need a 2-D network)")));
  }
  c->scalar_labels.resize(lab.data.size());
  for (size_t k = 0; k < lab.data.size(); ++k) {
    const double v = lab.data[k];
    if (std::isinf(v)) {
      return Invalid(
          absl::StrFormat("img-scalar label %s holds %g at entry %d; labels must be "
                          "finite (NaN = ignore, stored as -666)",
                          lname, v, k));
    }
    c->scalar_labels[k] = std::isnan(v) ? -666.f : static_cast<float>(v);
  }
  c->label_shape = {c->label_rows, 1, 1};
  c->label_ch = t_ch_;
  return absl::OkStatus();
}

absl::Status BatchCreatorImage::CutScalarExample(Split split, std::mt19937_64& rng, float* raw,
                                                 float* label, int* cube) const {
  int ignored = 0, oob = 0;
  for (int attempt = 0; attempt < kMaxConsecutiveRedraws; ++attempt) {
    const int ci = PickCube(split, rng);
    const Cube& c = cubes_[ci];
    WarpOptions opt = warp_;
    const bool warped = warp_fraction_ >= 1.0 ||
                        (warp_fraction_ > 0.0 &&
                         std::uniform_real_distribution<double>(0.0, 1.0)(rng) < warp_fraction_);
    if (!warped) opt.warp_amount = 0.0;  // flips and axis swaps still apply (ELEKTRONN2)
    ASSIGN_OR_RETURN(WarpTransform t, DrawWarpTransform(c.raw_shape, nullptr, ps_, ps_, opt, rng));
    ASSIGN_OR_RETURN(bool ok, WarpSlice(c.raw, nullptr, ps_, ps_, t.forward, raw, nullptr));
    if (!ok) {
      ++oob;
      continue;
    }
    int64_t row = 0;
    if (c.label_rows > 1) {
      // The slice under the patch centre, in the cube without its one-voxel spare.
      ASSIGN_OR_RETURN(auto src,
                       WarpSourceOf(t.forward, {0.0, (ps_[1] - 1) / 2.0, (ps_[2] - 1) / 2.0}));
      row = std::clamp<int64_t>(std::lround(src[0]) - 1, 0, c.label_rows - 1);
    }
    const float* l = c.scalar_labels.data() + row * t_ch_;
    bool absent_flags = false;
    for (float f : c.mask_not_present) absent_flags |= f != 0.f;
    if (args_.has_ignore_thresh() && !absent_flags) {
      int64_t negative = 0;
      for (int64_t k = 0; k < t_ch_; ++k) negative += l[k] < 0.f;
      if (static_cast<double>(negative) / static_cast<double>(t_ch_) > args_.ignore_thresh()) {
        ++ignored;
        continue;
      }
    }
    std::copy(l, l + t_ch_, label);
    *cube = ci;
    return absl::OkStatus();
  }
  if (ignored > oob) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "BatchCreatorImage: %d of %d consecutive img-scalar %s examples were discarded by "
        "ignore_thresh=%g (more than that fraction of the label vector negative = unlabelled)",
        ignored, kMaxConsecutiveRedraws, split == Split::kTrain ? "training" : "validation",
        args_.ignore_thresh()));
  }
  return absl::FailedPreconditionError(absl::StrFormat(
      "BatchCreatorImage: img-scalar patch %s: %d of %d consecutive %s draws left their cube "
      "(warp=%g, warp_amount=%g, border_mode '%s'); a rotated patch needs room around it, but "
      "border_mode crop/mirror/0-pad leave cubes of about the patch size: use 'keep' with cubes "
      "larger than the patch, or less warping",
      Zxy(ps_), oob, kMaxConsecutiveRedraws, split == Split::kTrain ? "training" : "validation",
      warp_fraction_, warp_.warp_amount, border_mode_));
}

}  // namespace elektronn
