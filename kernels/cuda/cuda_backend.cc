// CudaBackend: memory, transfers, the library kernels' factories, and status conversion.
#include "kernels/cuda/cuda_backend.h"

#include <cstdint>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cublas_matmul.h"
#include "kernels/cuda/cudnn_conv.h"
#include "kernels/cuda/cudnn_pool.h"

namespace elektronn::kernels::cuda {

absl::Status CudaStatus(cudaError_t e, const std::string& what) {
  if (e == cudaSuccess) return absl::OkStatus();
  const std::string m = absl::StrCat(what, ": ", cudaGetErrorName(e), ": ", cudaGetErrorString(e));
  if (e == cudaErrorMemoryAllocation) return absl::ResourceExhaustedError(m);
  if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver || e == cudaErrorInvalidDevice) {
    return absl::UnavailableError(m);
  }
  return absl::InternalError(m);
}

absl::Status CudnnStatus(cudnnStatus_t s, const std::string& what) {
  if (s == CUDNN_STATUS_SUCCESS) return absl::OkStatus();
  const std::string m = absl::StrCat(what, ": ", cudnnGetErrorString(s));
  if (s == CUDNN_STATUS_NOT_SUPPORTED) return absl::UnimplementedError(m);
  if (s == CUDNN_STATUS_ALLOC_FAILED) return absl::ResourceExhaustedError(m);
  if (s == CUDNN_STATUS_BAD_PARAM) return absl::InvalidArgumentError(m);
  return absl::InternalError(m);
}

absl::Status CublasStatus(cublasStatus_t s, const std::string& what) {
  if (s == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  const std::string m =
      absl::StrCat(what, ": ", cublasGetStatusName(s), ": ", cublasGetStatusString(s));
  if (s == CUBLAS_STATUS_ALLOC_FAILED) return absl::ResourceExhaustedError(m);
  return absl::InternalError(m);
}

std::vector<int64_t> CudnnSpatial(const std::vector<int64_t>& v, int64_t fill_1d) {
  if (v.size() != 1) return v;
  return {fill_1d, v[0]};
}

absl::Status SetChannelsLast(cudnnTensorDescriptor_t d, int64_t n, int64_t c,
                             std::vector<int64_t> spatial) {
  std::vector<int> dims = {static_cast<int>(n), static_cast<int>(c)};
  for (int64_t s : CudnnSpatial(spatial, 1)) {
    if (s > std::numeric_limits<int>::max()) {
      return absl::InvalidArgumentError(absl::StrCat("tensor axis ", s, " exceeds cuDNN's int"));
    }
    dims.push_back(static_cast<int>(s));
  }
  return CudnnStatus(cudnnSetTensorNdDescriptorEx(d, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT,
                                                  static_cast<int>(dims.size()), dims.data()),
                     "cudnnSetTensorNdDescriptorEx");
}

absl::Status CudaContext::ReserveWorkspace(size_t bytes) {
  if (bytes <= workspace_bytes) return absl::OkStatus();
  if (workspace != nullptr) {
    ELK_CUDA_RETURN_IF_ERROR(
        CudaStatus(cudaFreeAsync(workspace, stream), "cudaFreeAsync (workspace)"));
    workspace = nullptr;
    workspace_bytes = 0;
  }
  ELK_CUDA_RETURN_IF_ERROR(
      CudaStatus(cudaMallocAsync(&workspace, bytes, stream),
                 absl::StrCat("cudaMallocAsync (workspace of ", bytes, " bytes)")));
  workspace_bytes = bytes;
  return absl::OkStatus();
}

StreamHolder::StreamHolder(int device) {
  error = cudaSetDevice(device);
  if (error == cudaSuccess) error = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
}

StreamHolder::~StreamHolder() {
  if (stream != nullptr) cudaStreamDestroy(stream);
}

CudaBackend::CudaBackend(int device, const CudaOptions& options)
    : StreamHolder(device), CudaOps(device, StreamHolder::stream) {
  ctx_.device = device;
  ctx_.stream = StreamHolder::stream;
  ctx_.options = options;
  ctx_.backend = this;
}

CudaBackend::~CudaBackend() {
  cudaSetDevice(device_);
  cudaStreamSynchronize(stream_);
  if (ctx_.workspace != nullptr) cudaFreeAsync(ctx_.workspace, stream_);
  for (int i = 0; i < 2; ++i) {
    if (staged_[i] != nullptr) cudaEventDestroy(staged_[i]);
    if (staging_[i] != nullptr) cudaFreeHost(staging_[i]);
  }
  if (ctx_.cublas != nullptr) cublasDestroy(ctx_.cublas);
  if (ctx_.cudnn != nullptr) cudnnDestroy(ctx_.cudnn);
}

absl::Status CudaBackend::Init() {
  ELK_CUDA_RETURN_IF_ERROR(
      CudaStatus(StreamHolder::error, "cudaSetDevice / cudaStreamCreateWithFlags"));
  // Keep freed blocks in the pool: a recompile reuses them instead of calling the driver.
  cudaMemPool_t pool = nullptr;
  ELK_CUDA_RETURN_IF_ERROR(
      CudaStatus(cudaDeviceGetDefaultMemPool(&pool, device_), "cudaDeviceGetDefaultMemPool"));
  uint64_t keep = std::numeric_limits<uint64_t>::max();
  ELK_CUDA_RETURN_IF_ERROR(
      CudaStatus(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep),
                 "cudaMemPoolSetAttribute(ReleaseThreshold)"));
  ELK_CUDA_RETURN_IF_ERROR(CudnnStatus(cudnnCreate(&ctx_.cudnn), "cudnnCreate"));
  ELK_CUDA_RETURN_IF_ERROR(CudnnStatus(cudnnSetStream(ctx_.cudnn, stream_), "cudnnSetStream"));
  ELK_CUDA_RETURN_IF_ERROR(CublasStatus(cublasCreate(&ctx_.cublas), "cublasCreate"));
  ELK_CUDA_RETURN_IF_ERROR(CublasStatus(cublasSetStream(ctx_.cublas, stream_), "cublasSetStream"));
  // Full FP32 unless the job opts into TF32 (CUBLAS_DEFAULT_MATH never uses tensor cores for
  // sgemm unless NVIDIA_TF32_OVERRIDE says so).
  ELK_CUDA_RETURN_IF_ERROR(CublasStatus(
      cublasSetMathMode(ctx_.cublas,
                        ctx_.options.allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH),
      "cublasSetMathMode"));
  for (int i = 0; i < 2; ++i) {
    ELK_CUDA_RETURN_IF_ERROR(CudaStatus(
        cudaMallocHost(reinterpret_cast<void**>(&staging_[i]), kStagingFloats * sizeof(float)),
        "cudaMallocHost (upload staging)"));
    ELK_CUDA_RETURN_IF_ERROR(CudaStatus(
        cudaEventCreateWithFlags(&staged_[i], cudaEventDisableTiming), "cudaEventCreate"));
  }
  return absl::OkStatus();
}

// The calling thread's current device is per thread: every entry point that allocates or copies
// makes it this backend's (a no-op when it already is), so a backend used from another thread
// than its creator's, or beside a backend on another GPU, still lands on its own device.
bool CudaBackend::OnDevice() { return Check(cudaSetDevice(device_), "cudaSetDevice"); }

float* CudaBackend::Allocate(int64_t n) {
  if (!OnDevice()) return nullptr;
  void* p = nullptr;
  const size_t bytes = static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(float);
  if (!Check(cudaMallocAsync(&p, bytes, stream_), "cudaMallocAsync")) return nullptr;
  return static_cast<float*>(p);
}

void CudaBackend::Free(float* p) {
  if (p != nullptr) Check(cudaFreeAsync(p, stream_), "cudaFreeAsync");
}

void CudaBackend::Upload(const float* host, float* dst, int64_t n) {
  if (!OnDevice()) return;
  for (int64_t done = 0; done < n;) {
    const int64_t chunk = std::min<int64_t>(n - done, kStagingFloats);
    const int i = next_staging_;
    next_staging_ ^= 1;
    // The chunk's previous copy must have left the staging buffer before we overwrite it.
    if (!Check(cudaEventSynchronize(staged_[i]), "cudaEventSynchronize (upload staging)")) return;
    std::memcpy(staging_[i], host + done, chunk * sizeof(float));
    if (!Check(cudaMemcpyAsync(dst + done, staging_[i], chunk * sizeof(float),
                               cudaMemcpyHostToDevice, stream_),
               "cudaMemcpyAsync (upload)")) {
      return;
    }
    if (!Check(cudaEventRecord(staged_[i], stream_), "cudaEventRecord (upload staging)")) return;
    done += chunk;
  }
}

void CudaBackend::Download(const float* src, float* host, int64_t n) {
  if (n <= 0 || !OnDevice()) return;
  if (!Check(cudaMemcpyAsync(host, src, n * sizeof(float), cudaMemcpyDeviceToHost, stream_),
             "cudaMemcpyAsync (download)")) {
    return;
  }
  Check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize (download)");
}

namespace {

// bf16 mixed precision is the CPU backend's (oneDNN); on CUDA a bf16 job would silently compute
// in FP32, so it is refused by name. TF32 (--tf32) is the GPU's faster arithmetic.
absl::Status Fp32Only(const char* kernel, DataType t) {
  if (t == DataType::kF32) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("precision '", DataTypeName(t), "': the CUDA backend's ", kernel,
                   " computes in fp32 only (bf16 runs on CPUs with AVX512_BF16; on a GPU use "
                   "precision 'fp32', optionally with --tf32)"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<ConvKernel>> CudaBackend::CreateConv(const ConvDesc& d) {
  ELK_CUDA_RETURN_IF_ERROR(Fp32Only("convolution", d.dtype));
  OnDevice();
  ELK_CUDA_RETURN_IF_ERROR(ConsumeError());
  return CreateCudnnConv(&ctx_, d);
}

absl::StatusOr<std::unique_ptr<PoolKernel>> CudaBackend::CreatePool(const PoolDesc& d) {
  ELK_CUDA_RETURN_IF_ERROR(Fp32Only("pooling", d.dtype));
  OnDevice();
  ELK_CUDA_RETURN_IF_ERROR(ConsumeError());
  return CreateCudnnPool(&ctx_, d);
}

absl::StatusOr<std::unique_ptr<MatmulKernel>> CudaBackend::CreateMatmul(const MatmulDesc& d) {
  ELK_CUDA_RETURN_IF_ERROR(Fp32Only("matmul", d.dtype));
  OnDevice();
  ELK_CUDA_RETURN_IF_ERROR(ConsumeError());
  return CreateCublasMatmul(&ctx_, d);
}

absl::StatusOr<std::unique_ptr<ConvKernel>> CudaBackend::CreateDeconv(const DeconvDesc& d) {
  ELK_CUDA_RETURN_IF_ERROR(Fp32Only("transposed convolution", d.dtype));
  OnDevice();
  ELK_CUDA_RETURN_IF_ERROR(ConsumeError());
  return CreateCudnnDeconv(&ctx_, d);
}

absl::Status CudaBackend::Synchronize() {
  OnDevice();
  Check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  return ConsumeError();
}

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(int device, const CudaOptions& options) {
  auto count = CudaDeviceCount();
  if (!count.ok()) return count.status();
  if (device < 0 || device >= *count) {
    return absl::UnavailableError(absl::StrCat("no CUDA device cuda:", device,
                                               ": this process sees ", *count,
                                               " (cuda:0 to cuda:", *count - 1, ")"));
  }
  auto b = std::make_unique<CudaBackend>(device, options);
  ELK_CUDA_RETURN_IF_ERROR(b->Init());
  return std::unique_ptr<Backend>(std::move(b));
}

}  // namespace elektronn::kernels::cuda
