// BatchCreatorImage: warped training patches cut from HDF5 raw/label cube pairs (reference §7.2,
// §7.3).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "elektronn/v1/training.pb.h"
#include "engine/data/augment.h"
#include "engine/data/batch_source.h"
#include "engine/data/volume.h"
#include "engine/data/warp.h"
#include "engine/io/volume_store.h"

namespace elektronn {

// Image-to-image batches for 3-D (b,f,z,x,y) and 2-D (b,f,x,y: single z-slices) networks.
//
// Geometry follows the network: the input patch is the input node's spatial shape; the dense
// target patch is that minus twice the target node's offsets; unless `force_dense`, the target
// is the dense target subsampled with the target's strides, starting at index 0 (which sits on
// input voxel `offset`, the first output neuron's centre). Every cube is loaded and checked at
// Create, so configuration errors surface before training starts; with h5stream (and always for
// KNOSSOS entries, key "knossos") cubes are only opened at Create and each example reads just
// the box its warped patch covers (engine/io/volume_store.h), so cubes need not fit in RAM.
//
// img-scalar mode (target node without spatial axes, tags "b,f" or "b"): each example is one
// image patch with one label vector of the target's f entries. The label dataset holds, per
// cube, either one vector (shape (f,) or a scalar for f = 1: every patch of the cube gets it,
// ELEKTRONN2's "scalar targets must be 1d") or, for 2-D networks only, one vector per z-slice
// (shape (z, f): the patch cut from slice k gets row k, so a stack of labelled images is one
// cube). Raw cubes are loaded into memory and treated once by border_mode (crop: centre-crop to
// the patch, keep, mirror: symmetric padding up to the patch, 0-pad: zero padding up to it;
// along x, y and, for 3-D networks, z), then padded by one repeated edge voxel on every side,
// the warp's interpolation spare, so that a patch may cover the whole treated cube (with it, the
// one-voxel shift of ELEKTRONN2's flips reads a repeated edge voxel). Warping, flips, grey and
// non-geometric augmentation, cube priorities and validation cubes work as in img-img.
//
// Thread-safe: GetBatch only reads shared state; each caller brings its own rng.
class BatchCreatorImage : public BatchSource {
 public:
  // Relative d_path/l_path resolve against `base_dir`; a leading "~" expands to $HOME.
  static absl::StatusOr<std::unique_ptr<BatchCreatorImage>> Create(
      const v1::BatchCreatorImageParams& params, const v1::DataBatchArgs& batch_args,
      const BatchGeometry& geometry, const std::string& base_dir);

  absl::Status GetBatch(Split split, std::mt19937_64& rng, float* input,
                        float* target) const override;
  // With ret_ll_mask: extras[0] = mask_class_labeled, extras[1] = mask_class_not_present, each
  // (batch, n_class): the flags of the cube each example was cut from.
  absl::Status GetBatch(Split split, std::mt19937_64& rng, float* input, float* target,
                        float* const* extras) const override;
  bool has_validation() const override { return !valid_cubes_.empty(); }
  bool img_scalar() const { return scalar_; }
  const BatchGeometry& geometry() const override { return geometry_; }
  // "1-target Data Set with 1 input channel(s): #train cubes: 2 and #valid cubes: 1, 4194304
  // labelled pixels."
  std::string Describe() const override;

  // A cube pair, raw data /255 and labels as float class ids: in memory (raw, label), or, when
  // streamed, readers of the files (raw_src, label_src) with empty volumes.
  struct Cube {
    std::string raw_file, raw_key, label_file, label_key;
    Volume raw;
    Volume label;
    std::shared_ptr<const VolumeReader> raw_src, label_src;
    std::array<int64_t, 3> raw_shape{}, label_shape{};  // (z, x, y), either way
    int64_t raw_ch = 0, label_ch = 0;
    bool streamed() const { return raw_src != nullptr; }
    // img-scalar: the labels, (label_rows, target f) row-major; label_rows = 1 (one vector per
    // cube) or the cube's z-slices (2-D networks). border_shape = the raw cube's (z, x, y) after
    // border_mode, before the one-voxel spare (raw_shape includes the spare).
    std::vector<float> scalar_labels;
    int64_t label_rows = 0;
    std::array<int64_t, 3> border_shape{};
    // Lazy-label flags per class (dataset "ll_mask" of the label file, (2, n_class): row 0
    // labelled, row 1 not present); empty without ret_ll_mask.
    std::vector<float> mask_labeled, mask_not_present;
  };
  int num_cubes() const { return static_cast<int>(cubes_.size()); }
  const Cube& cube(int i) const { return cubes_[i]; }
  const std::vector<int>& train_cubes() const { return train_cubes_; }
  const std::vector<int>& valid_cubes() const { return valid_cubes_; }
  // (z, x, y); z = 1 for 2-D networks.
  const std::array<int64_t, 3>& patch_size() const { return ps_; }
  const std::array<int64_t, 3>& dense_target_size() const { return tps_; }
  const std::array<int64_t, 3>& target_strides() const { return strides_; }
  const std::array<int64_t, 3>& target_offsets() const { return offsets_; }
  // Spatial size of the target actually delivered (dense or strided).
  const std::array<int64_t, 3>& target_size() const { return target_size_; }
  // Label context cut around the dense target for affinity / nhood targets (per axis, voxels).
  const std::array<int64_t, 3>& label_margin() const { return margin_; }

  // Input node names of the lazy-label masks (ret_ll_mask).
  static constexpr const char* kMaskClassLabeled = "mask_class_labeled";
  static constexpr const char* kMaskClassNotPresent = "mask_class_not_present";
  // Affinity targets whose edge leaves the label cut: the loss's ignore value.
  static constexpr float kUndefinedAffinity = -666.f;

 private:
  BatchCreatorImage() = default;

  // Picks a cube index for `split` (train: weighted, valid: uniform).
  int PickCube(Split split, std::mt19937_64& rng) const;
  // Cuts one example into raw (ch, ps) and dense target (label ch, tps) scratch buffers.
  // Cuts one example into raw (ch, ps) and dense label (label ch, tps + 2 margin) buffers;
  // *cube = the cube index.
  absl::Status CutExample(Split split, std::mt19937_64& rng, float* raw, float* dense,
                          int* cube) const;
  // GetWarpedSlice for a streamed cube: the same draws, then only the source box is read.
  absl::StatusOr<bool> CutStreamed(const Cube& c, const WarpOptions& opt, std::mt19937_64& rng,
                                   float* raw, float* dense) const;
  // Opens cube i's files (streamed) or reads them whole; fills raw_shape, label_shape, ...
  absl::Status LoadCube(const v1::BatchCreatorImageParams& params, int i, Cube* c) const;
  // img-scalar (batch_creator_scalar.cc): loads and border-treats cube i; cuts one example
  // into raw (ch, ps) and its label vector (t_ch).
  absl::Status LoadScalarCube(const v1::BatchCreatorImageParams& params, int i, Cube* c) const;
  absl::Status CutScalarExample(Split split, std::mt19937_64& rng, float* raw, float* label,
                                int* cube) const;
  // The target sampling for the warp; nullptr = ELEKTRONN2's default (all discrete).
  const TargetSampling* sampling() const {
    return sampling_.discrete.empty() && sampling_.vectors.empty() ? nullptr : &sampling_;
  }
  // Non-geometric augmentations of §7.5 on one example's raw (ch, ps) block (train only).
  void Augment(float* raw, std::mt19937_64& rng) const;

  BatchGeometry geometry_;
  v1::DataBatchArgs args_;
  WarpOptions warp_;          // warp_amount = the amount for warped examples
  double warp_fraction_ = 0;  // probability that an example is warped
  std::vector<int64_t> grey_channels_;

  bool scalar_ = false;      // img-scalar mode: the target has no spatial axes
  std::string border_mode_;  // img-scalar: crop, keep, mirror, 0-pad
  TargetSampling sampling_;  // target_discrete_ix / target_vec_ix (img-img, plain labels)

  std::vector<Cube> cubes_;
  std::vector<int> train_cubes_, valid_cubes_;
  std::vector<double> train_cdf_;  // cumulative sampling weights of train_cubes_, last = 1
  int64_t train_label_voxels_ = 0;

  int64_t batch_ = 0, in_ch_ = 0, t_ch_ = 0;
  std::array<int64_t, 3> ps_{}, tps_{}, strides_{}, offsets_{}, target_size_{};
  // Element strides of the caller's buffers per logical axis (0 for an absent axis).
  struct Layout {
    int64_t b = 0, f = 0, z = 0, x = 0, y = 0;
  };
  Layout in_layout_, t_layout_;
  bool input_canonical_ = false;  // input buffer is (b, f, z, x, y) / (b, f, x, y) contiguous

  // Targets derived from an ID label (affinities / nhood_targets): the offsets, the channel
  // count and the label cut margin; label_ch_ = channels of the label cube.
  enum class LabelMode { kPlain, kAffinity, kNhood };
  LabelMode label_mode_ = LabelMode::kPlain;
  std::vector<std::array<int64_t, 3>> nhood_;
  std::array<int64_t, 3> margin_{}, cut_{};  // cut_ = tps_ + 2 margin_
  int64_t label_ch_ = 1;
  int64_t n_class_mask_ = 0;  // ret_ll_mask: classes per mask (0: no masks)
  struct BlobAug {
    double p = 0;
    BlobOptions opt;
  };
  double nga_p_ = 0;
  BlobAug blurry_, uniform_erase_, noisy_erase_;
};

}  // namespace elektronn
