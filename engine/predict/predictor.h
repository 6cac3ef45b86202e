// Dense prediction of a whole volume (ELEKTRONN2's predict_dense, reference §3.6) with bounded
// memory: a reader thread cuts input tiles (with their halos), the backend computes them (one
// max-fragment-pooling pass, or prod(S) shifted passes), a writer thread writes each output chunk
// once, durably; a re-run with the same arguments continues where a killed one stopped and ends
// bit-identical to an uninterrupted run.
//
// Used by `elektronn predict` (through `elektronn-worker predict`) and by prediction jobs on the
// daemon; both report progress through `on_progress`.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/io/volume_store.h"
#include "kernels/backend.h"

namespace elektronn {

struct PredictOptions {
  std::string model;   // model file (.h5 written by the trainer)
  std::string input;   // volume spec: "raw.h5:/raw" or "raw.zarr"
  std::string output;  // volume spec of the result (created, or continued when resuming)

  // Spatial input patch (z,x,y) of one forward pass, snapped down to a valid size; empty: the
  // largest valid patch whose forward fits `memory_limit`. This is the patch of the net as
  // trained (ELEKTRONN2's `ps`), whatever `mfp` says: a tile reads ps + S - 1 (S: the net's
  // strides), which the MFP net takes in one pass and shift-and-stitch in prod(S) passes of ps,
  // so both give the same tiles and outputs. (ELEKTRONN2's imposed_patch_size with
  // override_mfp_to_active names the MFP net's input, ps + S - 1.) A 2-D net takes (x,y) or
  // (1,x,y) and predicts every z slice on its own.
  std::vector<int64_t> patch;
  enum class Mfp { kAuto, kOn, kOff };
  Mfp mfp = Mfp::kAuto;  // kAuto: on when every pooling is inside a Conv (the net allows it)
  // Border handling: kMirror (ELEKTRONN2's pad_raw; the output covers the whole input), kZero
  // (zeros instead of the mirror), kError ("none": output = input - 2*(fov/2) per axis).
  PadMode pad = PadMode::kMirror;
  bool as_uint8 = false;      // probabilities * 255, rounded, as uint8
  std::vector<int> channels;  // output channels to export (empty: all)
  // Predict only this input region (output aligned to it). The roi must lie inside the input;
  // its context (the field of view around it) is read from the input, and padding applies only
  // where that context leaves the input, so a roi's output equals the same region of the whole
  // volume's output. With kMirror/kZero the output covers the roi; with kError the roi's voxels
  // at least fov/2 from the input's border.
  std::optional<Box> roi;
  int threads = 0;                           // compute threads (0: the backend's default)
  int64_t memory_limit = 0;                  // bytes for tiles and activations; 0: 4 GiB
  Compression compression;                   // of the output (Zarr)
  std::array<int64_t, 3> chunk = {0, 0, 0};  // output chunk (z,x,y); 0: aligned to tiles, ~64
  // kBf16: convolutions, matrix products and pooling in bf16 mixed precision (kernels::DataType).
  kernels::DataType precision = kernels::DataType::kF32;
  bool resume = true;  // continue an existing output of the same run; else refuse it

  // Tests only: called by the writer thread once a chunk of this run is durable (after
  // on_progress), with the number of chunks this run has written, so a test can kill the
  // process between chunks.
  std::function<void(int64_t chunks_written)> test_after_chunk = {};
};

struct PredictProgress {
  int64_t voxels_done = 0;  // output voxels written (including those of a resumed run)
  int64_t voxels_total = 0;
  int64_t chunks_done = 0, chunks_total = 0;
  double voxels_per_s = 0;  // of this run, recent
  double eta_s = 0;         // seconds left at the recent rate (0 when unknown)
};

struct PredictSummary {
  VolumeShape output_shape;
  std::array<int64_t, 3> output_offset = {0, 0, 0};  // output voxel 0 at this input voxel
  std::array<int64_t, 3> patch = {0, 0, 0};          // the patch used
  bool mfp = false;
  int64_t chunks_computed = 0, chunks_skipped = 0;  // skipped: done by an earlier run
  double seconds = 0;
  std::vector<std::string> notes;  // what was chosen or changed, for the log
};

// Runs the prediction. `stop`, when set by another thread, ends the run after the chunks in
// flight are durable (status CANCELLED); the output can be resumed. `on_progress` is called
// from the writer thread after every chunk (and once at the start).
absl::StatusOr<PredictSummary> PredictVolume(
    const PredictOptions& options, kernels::Backend* backend,
    const std::function<void(const PredictProgress&)>& on_progress = {},
    const std::atomic<bool>* stop = nullptr);

}  // namespace elektronn
