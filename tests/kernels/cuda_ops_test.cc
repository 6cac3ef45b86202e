// CudaOps (the CUDA backend's own kernels) on a GPU through the parity harness: every element-wise
// case of tests/kernels/parity_*_test.cc against the naive references, as backend `CudaOps`
// (memory by plain cudaMalloc here; CudaBackend brings the pool and the cuDNN/cuBLAS factories,
// so the convolution, pooling and matmul cases are filtered out in tests/CMakeLists.txt).
// Label `gpu`: without a device the harness skips every case naming the reason (UNAVAILABLE from
// CreateTestBackend), and fails it under ELK_REQUIRE_GPU (scripts/gpu-check).
#include "kernels/cuda/cuda_ops.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "tests/kernels/parity_harness.h"

namespace elektronn::kernels::cuda {
namespace {

// The first device's count, or the reason there is none.
absl::Status DevicePresent() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    return absl::UnavailableError(std::string("no CUDA device: ") + cudaGetErrorString(e));
  }
  if (n == 0) return absl::UnavailableError("no CUDA device: cudaGetDeviceCount found none");
  return absl::OkStatus();
}

// CudaOps with the memory functions a parity case needs; every download reports the ops' first
// error as a test failure.
class CudaOpsTestBackend final : public CudaOps {
 public:
  explicit CudaOpsTestBackend(cudaStream_t stream) : CudaOps(0, stream) {}
  ~CudaOpsTestBackend() override {
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }
  std::string name() const override { return "cuda-ops-test"; }
  float* Allocate(int64_t n) override {
    void* p = nullptr;
    Check(cudaMalloc(&p, std::max<int64_t>(n, 1) * sizeof(float)), "cudaMalloc");
    return static_cast<float*>(p);
  }
  void Free(float* p) override { Check(cudaFree(p), "cudaFree"); }
  void Upload(const float* host, float* dst, int64_t n) override {
    Check(cudaMemcpyAsync(dst, host, n * sizeof(float), cudaMemcpyHostToDevice, stream_), "upload");
    Check(cudaStreamSynchronize(stream_), "upload");
  }
  void Download(const float* src, float* host, int64_t n) override {
    Check(cudaMemcpyAsync(host, src, n * sizeof(float), cudaMemcpyDeviceToHost, stream_),
          "download");
    Check(cudaStreamSynchronize(stream_), "download");
    const absl::Status s = ConsumeError();
    EXPECT_TRUE(s.ok()) << s;
  }
  absl::StatusOr<std::unique_ptr<ConvKernel>> CreateConv(const ConvDesc&) override {
    return absl::UnimplementedError("CudaOps alone has no convolutions (CudaBackend has)");
  }
  absl::StatusOr<std::unique_ptr<PoolKernel>> CreatePool(const PoolDesc&) override {
    return absl::UnimplementedError("CudaOps alone has no pooling (CudaBackend has)");
  }
  absl::StatusOr<std::unique_ptr<MatmulKernel>> CreateMatmul(const MatmulDesc&) override {
    return absl::UnimplementedError("CudaOps alone has no matmul (CudaBackend has)");
  }
};

absl::StatusOr<std::unique_ptr<CudaOpsTestBackend>> CreateTestBackend() {
  if (absl::Status s = DevicePresent(); !s.ok()) return s;
  if (cudaSetDevice(0) != cudaSuccess) return absl::UnavailableError("cudaSetDevice(0) failed");
  cudaStream_t stream = nullptr;
  if (cudaStreamCreate(&stream) != cudaSuccess) {
    return absl::UnavailableError("cudaStreamCreate failed");
  }
  return std::make_unique<CudaOpsTestBackend>(stream);
}

TEST(CudaOps, ReportsBadArgumentsAndReducesPastOneBlock) {
  auto b = CreateTestBackend();
  ASSERT_TRUE(b.ok()) << b.status() << " (a `gpu`-labelled suite: run it where a device is)";
  // An argument the kernels cannot take is an error naming it, and nothing is launched.
  std::vector<int64_t> dims(9, 1);  // kernels/cuda/bodies.h: kMaxRank is 8
  std::vector<int> perm(9, 0);
  float* p = (*b)->Allocate(2);
  (*b)->Transpose(dims, perm, p, p + 1, false);
  const absl::Status s = (*b)->ConsumeError();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("Transpose: rank 9"), std::string::npos) << s;
  // A sum of more elements than one block's partials reduces through both stages.
  const int64_t n = 3 * 1024 * 1024 + 17;
  float* big = (*b)->Allocate(n);
  (*b)->Fill(big, 0.5f, n);
  EXPECT_EQ((*b)->Sum(big, n), 0.5 * n);
  (*b)->Free(big);
  (*b)->Free(p);
  EXPECT_TRUE((*b)->ConsumeError().ok());
}

}  // namespace
}  // namespace elektronn::kernels::cuda

namespace elektronn::testing {
// This binary's parity backends (ELK_PARITY_BACKENDS_OVERRIDE, see parity_harness.h): CudaOps.
std::vector<BackendEntry> CudaOpsParityBackends() {
  return {{"CudaOps", []() -> absl::StatusOr<std::unique_ptr<Backend>> {
             auto b = kernels::cuda::CreateTestBackend();
             if (!b.ok()) return b.status();
             return std::unique_ptr<Backend>(std::move(*b));
           }}};
}
}  // namespace elektronn::testing
