// The device executor of the ops templates (kernels/cuda/bodies.h): grid-stride element loops,
// an atomic-free two-stage block reduction in double into CudaOps::Scratch (then one copy and a
// stream synchronisation for the host value), and per-column reductions whose finishing
// functor runs on the device. Every launch goes to the job's stream and is checked.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "kernels/cuda/bodies.h"
#include "kernels/cuda/cuda_ops.h"

namespace elektronn::kernels::cuda {

constexpr int kThreads = 256;         // threads per block of every launch here
constexpr int64_t kMaxBlocks = 8192;  // grid-stride loops beyond this
constexpr int kReduceBlocks = 1024;   // partial sums of a whole-tensor reduction
constexpr int kColumnTile = 32;       // columns per block of a column reduction
constexpr int kRowLanes = 8;          // row lanes per column (kColumnTile * kRowLanes threads)
constexpr int64_t kMaxColumnChunks = 1024;

template <class F>
__global__ void ForEachKernel(int64_t n, F f) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    f(i);
  }
}

// Stage 1: each block sums a grid-stride share of f(i) and writes one partial.
template <int W, class F>
__global__ void ReducePartialsKernel(int64_t n, F f, Sums<W>* partial) {
  __shared__ double sh[W][kThreads];
  Sums<W> acc = Sums<W>::Zero();
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    acc += f(i);
  }
  for (int k = 0; k < W; ++k) sh[k][threadIdx.x] = acc.v[k];
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      for (int k = 0; k < W; ++k) sh[k][threadIdx.x] += sh[k][threadIdx.x + s];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    for (int k = 0; k < W; ++k) partial[blockIdx.x].v[k] = sh[k][0];
  }
}

// Stage 2: one block sums the partials into *out.
template <int W>
__global__ void ReduceFinalKernel(int n_partial, const Sums<W>* partial, Sums<W>* out) {
  __shared__ double sh[W][kThreads];
  Sums<W> acc = Sums<W>::Zero();
  for (int i = threadIdx.x; i < n_partial; i += blockDim.x) acc += partial[i];
  for (int k = 0; k < W; ++k) sh[k][threadIdx.x] = acc.v[k];
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      for (int k = 0; k < W; ++k) sh[k][threadIdx.x] += sh[k][threadIdx.x + s];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    for (int k = 0; k < W; ++k) out->v[k] = sh[k][0];
  }
}

// Column reduction, stage 1: block (x: kColumnTile columns, y: kRowLanes lanes) over one chunk of
// rows; partial[chunk * cols + c].
template <int W, class F>
__global__ void ColumnPartialsKernel(int64_t rows, int64_t cols, int64_t rows_per_chunk, F f,
                                     Sums<W>* partial) {
  __shared__ double sh[W][kRowLanes][kColumnTile];
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kColumnTile + threadIdx.x;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = MinI(rows, r0 + rows_per_chunk);
  Sums<W> acc = Sums<W>::Zero();
  if (c < cols) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kRowLanes) acc += f(r, c);
  }
  for (int k = 0; k < W; ++k) sh[k][threadIdx.y][threadIdx.x] = acc.v[k];
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    Sums<W> s = Sums<W>::Zero();
    for (int lane = 0; lane < kRowLanes; ++lane) {
      for (int k = 0; k < W; ++k) s.v[k] += sh[k][lane][threadIdx.x];
    }
    partial[static_cast<int64_t>(blockIdx.y) * cols + c] = s;
  }
}

// Column reduction, stage 2: one thread per column sums its chunks in order and finishes.
template <int W, class G>
__global__ void ColumnFinishKernel(int64_t cols, int64_t chunks, const Sums<W>* partial, G fin) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < cols;
       c += stride) {
    Sums<W> s = Sums<W>::Zero();
    for (int64_t k = 0; k < chunks; ++k) s += partial[k * cols + c];
    fin(c, s);
  }
}

inline unsigned BlocksFor(int64_t n) {
  return static_cast<unsigned>(MinI((n + kThreads - 1) / kThreads, kMaxBlocks));
}

// One op's launches on CudaOps' stream; `what` names the op in errors.
class CudaExec {
 public:
  CudaExec(CudaOps* ops, const char* what) : ops_(ops), what_(what) {
    if (ops_->ok()) ops_->Check(cudaSetDevice(ops_->device_), what_);
  }
  bool ok() const { return ops_->ok(); }
  void Fail(const std::string& message) { ops_->Fail(message); }

  template <class F>
  void ForEach(int64_t n, F f) {
    if (n <= 0 || !ok()) return;
    ForEachKernel<<<BlocksFor(n), kThreads, 0, ops_->stream_>>>(n, f);
    ops_->CheckLaunch(what_);
  }

  // The sum on the host (synchronises the stream); zero after an error.
  template <int W, class F>
  Sums<W> Reduce(int64_t n, F f) {
    Sums<W> host = Sums<W>::Zero();
    if (n <= 0 || !ok()) return host;
    const int blocks = static_cast<int>(MinI((n + kThreads - 1) / kThreads, kReduceBlocks));
    auto* partial = static_cast<Sums<W>*>(ops_->Scratch((blocks + 1) * sizeof(Sums<W>)));
    if (!partial) return host;
    ReducePartialsKernel<W><<<blocks, kThreads, 0, ops_->stream_>>>(n, f, partial);
    if (!ops_->CheckLaunch(what_)) return host;
    ReduceFinalKernel<W><<<1, kThreads, 0, ops_->stream_>>>(blocks, partial, partial + blocks);
    if (!ops_->CheckLaunch(what_)) return host;
    if (!ops_->Check(cudaMemcpyAsync(&host, partial + blocks, sizeof(Sums<W>),
                                     cudaMemcpyDeviceToHost, ops_->stream_),
                     what_) ||
        !ops_->Check(cudaStreamSynchronize(ops_->stream_), what_)) {
      return Sums<W>::Zero();
    }
    return host;
  }

  // fin(c, sum over rows of f(r, c)) for every column, on the device.
  template <int W, class F, class G>
  void ColumnReduce(int64_t rows, int64_t cols, F f, G fin) {
    if (cols <= 0 || !ok()) return;
    const int64_t tiles = (cols + kColumnTile - 1) / kColumnTile;
    // Enough chunks to fill the device, each at least a few rows per lane.
    int64_t chunks = MinI(MaxI(1, kMaxColumnChunks / tiles), MaxI(1, rows / (4 * kRowLanes)));
    const int64_t rows_per_chunk = MaxI(1, (rows + chunks - 1) / chunks);
    chunks = rows > 0 ? (rows + rows_per_chunk - 1) / rows_per_chunk : 0;
    Sums<W>* partial = nullptr;
    if (chunks > 0) {
      partial = static_cast<Sums<W>*>(ops_->Scratch(chunks * cols * sizeof(Sums<W>)));
      if (!partial) return;
      const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(chunks));
      const dim3 block(kColumnTile, kRowLanes);
      ColumnPartialsKernel<W>
          <<<grid, block, 0, ops_->stream_>>>(rows, cols, rows_per_chunk, f, partial);
      if (!ops_->CheckLaunch(what_)) return;
    }
    ColumnFinishKernel<W>
        <<<BlocksFor(cols), kThreads, 0, ops_->stream_>>>(cols, chunks, partial, fin);
    ops_->CheckLaunch(what_);
  }

  // n doubles of device memory, valid until the next op that asks.
  double* Temp(int64_t n) {
    if (!ok()) return nullptr;
    return static_cast<double*>(ops_->Workspace(MaxI(n, 1) * sizeof(double)));
  }

  void CopyDevice(float* dst, const float* src, int64_t n) {
    if (n <= 0 || !ok()) return;
    ops_->Check(
        cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, ops_->stream_),
        what_);
  }

 private:
  CudaOps* ops_;
  const char* what_;
};

}  // namespace elektronn::kernels::cuda
