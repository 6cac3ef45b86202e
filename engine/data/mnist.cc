// MnistData: IDX files (plain or gzip, read through zlib) into memory; crops drawn per example.
#include "engine/data/mnist.h"

#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/core/status.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;

// Resolves `name` or `name`.gz inside `dir`.
absl::StatusOr<std::string> FindIdx(const std::string& dir, const std::string& name) {
  for (const std::string& candidate : {name, name + ".gz"}) {
    const fs::path p = fs::path(dir) / candidate;
    if (fs::is_regular_file(p)) return p.string();
  }
  return absl::NotFoundError(absl::StrFormat(
      "MNIST: neither '%s' nor '%s.gz' exists in '%s'; install Debian's dataset-fashion-mnist "
      "(files in %s) or set mnist.path to a directory with the four IDX files",
      name, name, dir, MnistData::kDebianPath));
}

// Reads an IDX file of unsigned bytes: magic 0x000008NN (NN = number of dimensions), the
// dimensions as big-endian uint32, then the data. gzread reads plain files transparently.
absl::Status ReadIdx(const std::string& path, int expected_dims, std::vector<uint32_t>* dims,
                     std::vector<uint8_t>* data) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) {
    return absl::NotFoundError(absl::StrFormat("MNIST: cannot open '%s'", path));
  }
  gzbuffer(f, 1 << 20);
  auto read = [&](void* buf, size_t n) {
    size_t done = 0;
    while (done < n) {
      const int r = gzread(f, static_cast<char*>(buf) + done,
                           static_cast<unsigned>(std::min<size_t>(n - done, 1u << 30)));
      if (r <= 0) return false;
      done += static_cast<size_t>(r);
    }
    return true;
  };
  auto fail = [&](const std::string& what) {
    gzclose(f);
    return absl::InvalidArgumentError(absl::StrFormat("MNIST: '%s': %s", path, what));
  };
  unsigned char magic[4];
  if (!read(magic, 4)) return fail("truncated: no IDX header");
  if (magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08 || magic[3] != expected_dims) {
    return fail(
        absl::StrFormat("IDX magic %02x%02x%02x%02x; expected 000008%02x (unsigned "
                        "bytes, %d dimension(s))",
                        magic[0], magic[1], magic[2], magic[3], expected_dims, expected_dims));
  }
  dims->clear();
  size_t total = 1;
  for (int i = 0; i < expected_dims; ++i) {
    unsigned char b[4];
    if (!read(b, 4)) return fail("truncated IDX header");
    const uint32_t d =
        (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | uint32_t{b[3]};
    dims->push_back(d);
    total *= d;
  }
  data->resize(total);
  if (total > 0 && !read(data->data(), total)) {
    return fail(absl::StrFormat("truncated: expected %d data bytes", total));
  }
  gzclose(f);
  return absl::OkStatus();
}

absl::Status LoadSet(const std::string& dir, const std::string& prefix,
                     std::vector<uint8_t>* images, std::vector<uint8_t>* labels) {
  ASSIGN_OR_RETURN(std::string img_path, FindIdx(dir, prefix + "-images-idx3-ubyte"));
  ASSIGN_OR_RETURN(std::string lab_path, FindIdx(dir, prefix + "-labels-idx1-ubyte"));
  std::vector<uint32_t> idims, ldims;
  RETURN_IF_ERROR(ReadIdx(img_path, 3, &idims, images));
  RETURN_IF_ERROR(ReadIdx(lab_path, 1, &ldims, labels));
  if (idims[1] != MnistData::kSide || idims[2] != MnistData::kSide) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "MNIST: '%s' holds %dx%d images; expected 28x28", img_path, idims[1], idims[2]));
  }
  if (idims[0] != ldims[0] || idims[0] == 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "MNIST: '%s' has %d images but '%s' %d labels; they must match and be non-zero", img_path,
        idims[0], lab_path, ldims[0]));
  }
  for (size_t i = 0; i < labels->size(); ++i) {
    if ((*labels)[i] > 9) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "MNIST: '%s' label %d of example %d is not a class 0..9", lab_path, (*labels)[i], i));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<MnistData>> MnistData::Create(const v1::MnistParams& params,
                                                             const BatchGeometry& geometry) {
  const TaggedShape& in = geometry.input;
  const TaggedShape& tg = geometry.target;
  if (in.rank() != 4 || in.tags()[0] != 'b' || !in.HasTag('f') || !in.HasTag('x') ||
      !in.HasTag('y') || in.SizeOf('f') != 1 || in.SizeOf('x') != kCrop ||
      in.SizeOf('y') != kCrop) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "MNIST: the input node must be (b,1,26,26) with tags b,f,y,x (or b,f,x,y); got %s",
        in.ToString()));
  }
  const int64_t batch = in.SizeOf('b');
  if (batch <= 0 || tg.rank() < 1 || tg.tags()[0] != 'b' || tg.SizeOf('b') != batch ||
      tg.stripbatch_prod() != 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "MNIST: the target node must be (b,1) (one class id per image, batch first, batch %d as "
        "the input's); got %s",
        batch, tg.ToString()));
  }
  std::unique_ptr<MnistData> d(new MnistData());
  d->geometry_ = geometry;
  d->batch_ = batch;
  d->dir_ = params.path().empty() ? std::string(kDebianPath) : params.path();
  if (!fs::is_directory(d->dir_)) {
    return absl::NotFoundError(absl::StrFormat(
        "MNIST: directory '%s' does not exist; install Debian's dataset-fashion-mnist (files "
        "in %s) or set mnist.path to a directory with the four IDX files",
        d->dir_, kDebianPath));
  }
  RETURN_IF_ERROR(LoadSet(d->dir_, "train", &d->train_images_, &d->train_labels_));
  RETURN_IF_ERROR(LoadSet(d->dir_, "t10k", &d->test_images_, &d->test_labels_));

  double sum = 0;
  for (uint8_t v : d->train_images_) sum += v;
  d->mean_ = static_cast<float>(sum / 255.0 / static_cast<double>(d->train_images_.size()));

  // Strides of the caller's buffers: image rows go to axis y, columns to axis x.
  int64_t stride = 1;
  for (int i = in.rank() - 1; i >= 1; --i) {
    if (in.tags()[i] == 'y') d->in_row_ = stride;
    if (in.tags()[i] == 'x') d->in_col_ = stride;
    stride *= in.size(i);
  }
  d->in_b_ = stride;
  d->t_b_ = 1;
  return d;
}

void MnistData::WriteExample(const uint8_t* image, uint8_t label, int64_t row0, int64_t col0,
                             int64_t b, float* input, float* target) const {
  float* dst = input + b * in_b_;
  for (int64_t r = 0; r < kCrop; ++r) {
    const uint8_t* src = image + (row0 + r) * kSide + col0;
    for (int64_t c = 0; c < kCrop; ++c) {
      dst[r * in_row_ + c * in_col_] = static_cast<float>(src[c]) / 255.0f - mean_;
    }
  }
  target[b * t_b_] = static_cast<float>(label);
}

absl::Status MnistData::GetBatch(Split split, std::mt19937_64& rng, float* input,
                                 float* target) const {
  if (input == nullptr || target == nullptr) {
    return absl::InvalidArgumentError("MnistData::GetBatch: null input or target buffer");
  }
  const bool train = split == Split::kTrain;
  const std::vector<uint8_t>& images = train ? train_images_ : test_images_;
  const std::vector<uint8_t>& labels = train ? train_labels_ : test_labels_;
  std::uniform_int_distribution<size_t> pick(0, labels.size() - 1);
  std::uniform_int_distribution<int> corner(0, 3);
  for (int64_t b = 0; b < batch_; ++b) {
    const size_t i = pick(rng);
    int64_t row0 = 1, col0 = 1;  // centre crop
    if (train) {
      const int k = corner(rng);
      row0 = k & 1;
      col0 = k >> 1;
    }
    WriteExample(&images[i * kSide * kSide], labels[i], row0, col0, b, input, target);
  }
  return absl::OkStatus();
}

absl::Status MnistData::GetTestBatch(int64_t start, int64_t count, float* input, float* target,
                                     int64_t* n_filled) const {
  if (start < 0 || start >= test_size() || count < 0) {
    return absl::OutOfRangeError(
        absl::StrFormat("MNIST: test examples from %d (count %d) requested; valid starts: 0..%d",
                        start, count, test_size() - 1));
  }
  const int64_t n = std::min(count, test_size() - start);
  for (int64_t b = 0; b < n; ++b) {
    const size_t i = static_cast<size_t>(start + b);
    WriteExample(&test_images_[i * kSide * kSide], test_labels_[i], 1, 1, b, input, target);
  }
  if (n_filled != nullptr) *n_filled = n;
  return absl::OkStatus();
}

std::string MnistData::Describe() const {
  return absl::StrFormat(
      "MNIST-format data set '%s': %d training images (random 26x26 crop of 4 per example), %d "
      "test images (centre crop), mean-centred by the training mean %.4f.",
      dir_, train_size(), test_size(), mean_);
}

}  // namespace elektronn
