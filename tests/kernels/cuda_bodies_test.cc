// The CUDA backend's element-wise half verified without a GPU: the very ops templates and
// dispatch code that kernels/cuda/*.cu compile for the device (kernels/cuda/ops_*.h,
// dispatch_*.inc) run here on a host executor through every case of the parity harness
// (tests/kernels/parity_*_test.cc) against the naive references, twice: in index order (backend
// `HostBodies`) and replaying CudaExec's launches with the geometry and per-thread reduction
// steps of kernels/cuda/launch_plan.h (backend `HostReplay`). Only real concurrency (barriers,
// shared memory, the stream) is left for the `gpu` run, cuda_ops_parity_test.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "kernels/backend.h"
#include "kernels/cuda/launch_plan.h"
#include "kernels/cuda/ops_batch_norm.h"
#include "kernels/cuda/ops_elementwise.h"
#include "kernels/cuda/ops_losses.h"
#include "kernels/cuda/ops_optim.h"
#include "kernels/cuda/ops_sobel.h"
#include "kernels/cuda/ops_structural.h"
#include "tests/kernels/parity_harness.h"

namespace elektronn::kernels::cuda {
namespace {

// The executor of bodies.h on the host, in one of two modes: plain loops in index order, or a
// replay of CudaExec's launches (kernels/cuda/cuda_exec.cuh) block by block and thread by thread,
// with the same grid sizes, partitions and reduction trees (launch_plan.h); partials and
// temporaries start as NaN, so a slot the replay skips shows up in the results.
class HostExec {
 public:
  HostExec(bool replay, std::vector<double>* temp, std::string* error)
      : replay_(replay), temp_(temp), error_(error) {}
  bool ok() const { return error_->empty(); }
  void Fail(const std::string& message) {
    if (error_->empty()) *error_ = message;
  }

  template <class F>
  void ForEach(int64_t n, F f) {
    if (n <= 0) return;
    if (!replay_) {
      for (int64_t i = 0; i < n; ++i) f(i);
      return;
    }
    const int64_t blocks = BlocksFor(n);
    for (int64_t b = 0; b < blocks; ++b)
      for (int t = 0; t < kThreads; ++t) GridStride(n, b, t, blocks, f);
  }

  template <int W, class F>
  Sums<W> Reduce(int64_t n, F f) {
    Sums<W> s = Sums<W>::Zero();
    if (n <= 0) return s;
    if (!replay_) {
      for (int64_t i = 0; i < n; ++i) s += f(i);
      return s;
    }
    const int64_t blocks = ReduceBlocksFor(n);
    std::vector<Sums<W>> partial(blocks, Stale<W>());
    for (int64_t b = 0; b < blocks; ++b) {
      partial[b] = BlockReduce<W>([&](int t, Sums<W>& acc) {
        GridStride(n, b, t, blocks, [&](int64_t i) { acc += f(i); });
      });
    }
    return BlockReduce<W>([&](int t, Sums<W>& acc) {
      GridStride(blocks, 0, t, 1, [&](int64_t i) { acc += partial[i]; });
    });
  }

  template <int W, class F, class G>
  void ColumnReduce(int64_t rows, int64_t cols, F f, G fin) {
    if (cols <= 0) return;
    if (!replay_) {
      for (int64_t c = 0; c < cols; ++c) {
        Sums<W> s = Sums<W>::Zero();
        for (int64_t r = 0; r < rows; ++r) s += f(r, c);
        fin(c, s);
      }
      return;
    }
    const ColumnPlan p = MakeColumnPlan(rows, cols);
    std::vector<Sums<W>> partial(p.chunks * cols, Stale<W>());
    for (int64_t tile = 0; tile < p.tiles; ++tile)
      for (int64_t chunk = 0; chunk < p.chunks; ++chunk) {
        double sh[W][kThreads];
        for (int y = 0; y < kRowLanes; ++y)
          for (int x = 0; x < kColumnTile; ++x)
            ToShared<W>(sh, ColumnSlot(x, y),
                        ColumnLaneSum<W>(p, rows, cols, tile, chunk, x, y, f));
        for (int x = 0; x < kColumnTile; ++x)
          ColumnStorePartial<W>(sh, cols, tile, chunk, x, partial.data());
      }
    const int64_t blocks = BlocksFor(cols);
    for (int64_t b = 0; b < blocks; ++b)
      for (int t = 0; t < kThreads; ++t)
        GridStride(cols, b, t, blocks,
                   [&](int64_t c) { ColumnFinish<W>(cols, p.chunks, partial.data(), c, fin); });
  }

  double* Temp(int64_t n) {
    temp_->assign(n, std::numeric_limits<double>::quiet_NaN());  // stale on purpose
    return temp_->data();
  }
  void CopyDevice(float* dst, const float* src, int64_t n) {
    if (n > 0) std::memcpy(dst, src, n * sizeof(float));
  }

 private:
  template <int W>
  static Sums<W> Stale() {
    Sums<W> s;
    for (int k = 0; k < W; ++k) s.v[k] = std::numeric_limits<double>::quiet_NaN();
    return s;
  }
  // One block's reduction: load(t, acc) per thread, then the tree of ReducePartialsKernel.
  template <int W, class Load>
  static Sums<W> BlockReduce(const Load& load) {
    double sh[W][kThreads];
    for (int t = 0; t < kThreads; ++t) {
      Sums<W> acc = Sums<W>::Zero();
      load(t, acc);
      ToShared<W>(sh, t, acc);
    }
    for (int s = kThreads / 2; s > 0; s >>= 1)
      for (int t = 0; t < kThreads; ++t) TreeStep<W>(sh, t, s);
    return FromShared<W>(sh, 0);
  }

  bool replay_;
  std::vector<double>* temp_;
  std::string* error_;
};

// A Backend whose element-wise half is the CUDA backend's code on the host (`replay`: with
// CudaExec's launch geometry); memory and the kernel factories are the CPU backend's.
class HostBodiesBackend final : public Backend {
 public:
  explicit HostBodiesBackend(bool replay = false) : replay_(replay), cpu_(CreateCpuBackend()) {}
  std::string name() const override { return replay_ ? "host-replay" : "host-bodies"; }
  float* Allocate(int64_t n) override { return cpu_->Allocate(n); }
  void Free(float* p) override { cpu_->Free(p); }
  void Upload(const float* host, float* dst, int64_t n) override { cpu_->Upload(host, dst, n); }
  void Download(const float* src, float* host, int64_t n) override { cpu_->Download(src, host, n); }
  absl::StatusOr<std::unique_ptr<ConvKernel>> CreateConv(const ConvDesc& d) override {
    return cpu_->CreateConv(d);
  }
  absl::StatusOr<std::unique_ptr<PoolKernel>> CreatePool(const PoolDesc& d) override {
    return cpu_->CreatePool(d);
  }
  absl::StatusOr<std::unique_ptr<MatmulKernel>> CreateMatmul(const MatmulDesc& d) override {
    return cpu_->CreateMatmul(d);
  }
  absl::StatusOr<std::unique_ptr<ConvKernel>> CreateDeconv(const DeconvDesc& d) override {
    return cpu_->CreateDeconv(d);
  }
  // The first error an op reported (as CudaOps::ConsumeError would), and clears it.
  std::string ConsumeError() { return std::exchange(error_, std::string()); }

#include "kernels/cuda/elementwise_overrides.inc"  // Fill ... AdaDeltaUpdate

 private:
  bool replay_;
  std::unique_ptr<Backend> cpu_;
  std::vector<double> temp_;
  std::string error_;
};

#define ELK_OPS_CLASS HostBodiesBackend
#define ELK_OPS_EXEC(ex, name) HostExec ex(replay_, &temp_, &error_)
#include "kernels/cuda/dispatch_batch_norm.inc"
#include "kernels/cuda/dispatch_elementwise.inc"
#include "kernels/cuda/dispatch_losses.inc"
#include "kernels/cuda/dispatch_optim.inc"
#include "kernels/cuda/dispatch_structural.inc"
#undef ELK_OPS_EXEC
#undef ELK_OPS_CLASS

std::vector<float> Draw(int64_t n, uint64_t seed) { return testing::InputRng(seed).Uniform(n); }

// The mask is the CPU's, bit for bit: a job moved between backends drops the same voxels.
TEST(CudaBodies, DropoutMaskIsTheCpuBackendsBitForBit) {
  const int64_t n = 4099;
  const std::vector<float> src = Draw(n, 1);
  std::vector<float> cpu_out(n), host_out(n), cpu_back(n), host_back(n);
  HostBodiesBackend host;
  std::unique_ptr<Backend> cpu = CreateCpuBackend();
  for (float rate : {0.1f, 0.5f, 0.9f}) {
    cpu->Dropout(src.data(), cpu_out.data(), n, rate, 77, 5);
    host.Dropout(src.data(), host_out.data(), n, rate, 77, 5);
    cpu->DropoutBackward(src.data(), cpu_back.data(), n, rate, 77, 6, false);
    host.DropoutBackward(src.data(), host_back.data(), n, rate, 77, 6, false);
    EXPECT_EQ(0, std::memcmp(cpu_out.data(), host_out.data(), n * sizeof(float))) << rate;
    EXPECT_EQ(0, std::memcmp(cpu_back.data(), host_back.data(), n * sizeof(float))) << rate;
  }
}

// The Gaussian noise is the CPU's too (the same counter-based Box-Muller).
TEST(CudaBodies, GaussianSampleMatchesTheCpuBackend) {
  const int64_t outer = 3, samples = 4, inner = 50, n = outer * samples * inner;
  const std::vector<float> mu = Draw(outer * inner, 2), ls = Draw(outer * inner, 3);
  std::vector<float> cpu_out(n), host_out(n);
  HostBodiesBackend host;
  CreateCpuBackend()->GaussianSample(mu.data(), ls.data(), cpu_out.data(), outer, samples, inner, 9,
                                     1);
  host.GaussianSample(mu.data(), ls.data(), host_out.data(), outer, samples, inner, 9, 1);
  for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(cpu_out[i], host_out[i], 1e-6f) << i;
}

// The replayed launches visit every index exactly once, also past the grid caps (grid-stride
// wrap-around, more columns than a tile, more rows than the chunks), and reduce exactly.
TEST(CudaBodies, LaunchGeometryCoversEveryIndexOnce) {
  std::vector<double> temp;
  std::string error;
  HostExec ex(true, &temp, &error);
  for (int64_t n : {int64_t{1}, int64_t{kThreads + 1}, kMaxBlocks * kThreads * 2 + 3}) {
    std::vector<int> visits(n, 0);
    ex.ForEach(n, [&](int64_t i) { ++visits[i]; });
    EXPECT_EQ(std::count(visits.begin(), visits.end(), 1), n) << n;
    const Sums<2> s = ex.Reduce<2>(n, [&](int64_t i) { return Two(1.0, static_cast<double>(i)); });
    EXPECT_EQ(s.v[0], static_cast<double>(n));
    EXPECT_EQ(s.v[1], 0.5 * static_cast<double>(n) * static_cast<double>(n - 1));
  }
  for (auto [rows, cols] :
       {std::pair<int64_t, int64_t>{0, 3}, {1, 1}, {100003, 3}, {5001, 70}, {17, 4099}}) {
    std::vector<int> visits(rows * cols, 0);
    std::vector<double> sums(cols, -1);
    ex.ColumnReduce<1>(
        rows, cols,
        [&](int64_t r, int64_t c) {
          ++visits[r * cols + c];
          return One(static_cast<double>(r));
        },
        [&](int64_t c, Sums<1> s) { sums[c] = s.v[0]; });
    EXPECT_EQ(std::count(visits.begin(), visits.end(), 1), rows * cols) << rows << "x" << cols;
    for (int64_t c = 0; c < cols; ++c) {
      ASSERT_EQ(sums[c], 0.5 * static_cast<double>(rows) * static_cast<double>(rows - 1))
          << rows << "x" << cols << " column " << c;
    }
  }
  EXPECT_EQ(error, "");
}

// A rank the kernels' fixed-size index structs cannot hold is an error naming it, not a launch.
TEST(CudaBodies, TooHighRankIsAnErrorNotALaunch) {
  HostBodiesBackend host;
  std::vector<int64_t> dims(kMaxRank + 1, 1);
  std::vector<int> perm(kMaxRank + 1);
  for (int i = 0; i <= kMaxRank; ++i) perm[i] = kMaxRank - i;
  float src = 1.f, dst = 0.f;
  host.Transpose(dims, perm, &src, &dst, false);
  EXPECT_NE(host.ConsumeError().find("Transpose: rank 9"), std::string::npos);
  EXPECT_EQ(dst, 0.f);
  BoxCopy box{dims, dims, std::vector<int64_t>(9, 0), std::vector<int64_t>(9, 0), dims};
  host.CopyBox(box, &src, &dst, false);
  EXPECT_NE(host.ConsumeError().find("CopyBox: rank 9"), std::string::npos);
  EXPECT_EQ(host.ConsumeError(), "");
}

}  // namespace
}  // namespace elektronn::kernels::cuda

namespace elektronn::testing {
// This binary's parity backends (ELK_PARITY_BACKENDS_OVERRIDE, see parity_harness.h): the CUDA
// ops on the host, in index order and in CudaExec's launch order; the CPU backend has its own run
// in kernel_parity_test.
std::vector<BackendEntry> CudaBodiesParityBackends() {
  return {{"HostBodies",
           []() -> absl::StatusOr<std::unique_ptr<Backend>> {
             return std::make_unique<kernels::cuda::HostBodiesBackend>(false);
           }},
          {"HostReplay", []() -> absl::StatusOr<std::unique_ptr<Backend>> {
             return std::make_unique<kernels::cuda::HostBodiesBackend>(true);
           }}};
}
}  // namespace elektronn::testing
