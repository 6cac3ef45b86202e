// MnistData: MNIST-format IDX digit/fashion images as 26x26 crops (ELEKTRONN2's MNISTData, §7.8).
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "elektronn/v1/training.pb.h"
#include "engine/data/batch_source.h"

namespace elektronn {

// Reads train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
// t10k-labels-idx1-ubyte (each plain or .gz) from MnistParams.path, by default Debian's
// dataset-fashion-mnist directory. Images are scaled /255 and centred by the scalar mean of the
// training images. Training examples are random images at a random one of the crop offsets
// (0,0), (1,0), (0,1), (1,1) (ELEKTRONN2's 4x augmentation, drawn per example); the test set
// (Split::kValid, and GetTestBatch) is centre-cropped. Input node: (b, 1, 26, 26) with tags
// b,f,y,x (or b,f,x,y: rows go to y, columns to x either way); target: (b, 1) float class ids.
class MnistData : public BatchSource {
 public:
  static constexpr int64_t kSide = 28;  // IDX image rows and columns
  static constexpr int64_t kCrop = 26;
  static constexpr const char* kDebianPath = "/usr/share/datasets/fashion-mnist";

  static absl::StatusOr<std::unique_ptr<MnistData>> Create(const v1::MnistParams& params,
                                                           const BatchGeometry& geometry);

  absl::Status GetBatch(Split split, std::mt19937_64& rng, float* input,
                        float* target) const override;
  bool has_validation() const override { return true; }
  const BatchGeometry& geometry() const override { return geometry_; }
  std::string Describe() const override;

  // Test examples [start, start + count) in order, centre-cropped, in the input node's
  // per-example layout (`input` holds count * 26 * 26 floats, `target` count). Fills
  // min(count, test_size() - start) examples and reports how many in `n_filled`.
  absl::Status GetTestBatch(int64_t start, int64_t count, float* input, float* target,
                            int64_t* n_filled) const;
  int64_t test_size() const { return static_cast<int64_t>(test_labels_.size()); }
  int64_t train_size() const { return static_cast<int64_t>(train_labels_.size()); }
  float mean() const { return mean_; }
  const std::string& directory() const { return dir_; }

 private:
  MnistData() = default;
  // One crop at (row, col) offset of `image` into example slot `b` of the caller's buffers.
  void WriteExample(const uint8_t* image, uint8_t label, int64_t row0, int64_t col0, int64_t b,
                    float* input, float* target) const;

  BatchGeometry geometry_;
  std::string dir_;
  std::vector<uint8_t> train_images_, train_labels_, test_images_, test_labels_;
  float mean_ = 0.f;
  int64_t batch_ = 0;
  // Element strides of the caller's buffers.
  int64_t in_b_ = 0, in_row_ = 0, in_col_ = 0, t_b_ = 0;
};

}  // namespace elektronn
