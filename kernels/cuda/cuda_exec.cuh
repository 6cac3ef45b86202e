// The device executor of the ops templates (kernels/cuda/bodies.h): grid-stride element loops,
// an atomic-free two-stage block reduction in double into CudaOps::Scratch (then one copy and a
// stream synchronisation for the host value), and per-column reductions whose finishing
// functor runs on the device. Every launch goes to the job's stream and is checked.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "kernels/cuda/bodies.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/launch_plan.h"

namespace elektronn::kernels::cuda {

// The kernels: the steps of launch_plan.h between their barriers (the host test replays them).
template <class F>
__global__ void ForEachKernel(int64_t n, F f) {
  GridStride(n, blockIdx.x, threadIdx.x, gridDim.x, f);
}

// Stage 1: each block sums a grid-stride share of f(i) and writes one partial.
template <int W, class F>
__global__ void ReducePartialsKernel(int64_t n, F f, Sums<W>* partial) {
  __shared__ double sh[W][kThreads];
  Sums<W> acc = Sums<W>::Zero();
  GridStride(n, blockIdx.x, threadIdx.x, gridDim.x, [&](int64_t i) { acc += f(i); });
  ToShared<W>(sh, threadIdx.x, acc);
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    TreeStep<W>(sh, threadIdx.x, s);
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[blockIdx.x] = FromShared<W>(sh, 0);
}

// Stage 2: one block sums the partials into *out.
template <int W>
__global__ void ReduceFinalKernel(int64_t n_partial, const Sums<W>* partial, Sums<W>* out) {
  __shared__ double sh[W][kThreads];
  Sums<W> acc = Sums<W>::Zero();
  GridStride(n_partial, 0, threadIdx.x, 1, [&](int64_t i) { acc += partial[i]; });
  ToShared<W>(sh, threadIdx.x, acc);
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    TreeStep<W>(sh, threadIdx.x, s);
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = FromShared<W>(sh, 0);
}

// Column reduction, stage 1: block (x: kColumnTile columns, y: kRowLanes lanes) over one chunk
// of rows; partial[chunk * cols + c].
template <int W, class F>
__global__ void ColumnPartialsKernel(ColumnPlan p, int64_t rows, int64_t cols, F f,
                                     Sums<W>* partial) {
  __shared__ double sh[W][kThreads];
  const int x = threadIdx.x, y = threadIdx.y;
  ToShared<W>(sh, ColumnSlot(x, y),
              ColumnLaneSum<W>(p, rows, cols, blockIdx.x, blockIdx.y, x, y, f));
  __syncthreads();
  if (y == 0) ColumnStorePartial<W>(sh, cols, blockIdx.x, blockIdx.y, x, partial);
}

// Column reduction, stage 2: one thread per column sums its chunks in order and finishes.
template <int W, class G>
__global__ void ColumnFinishKernel(int64_t cols, int64_t chunks, const Sums<W>* partial, G fin) {
  GridStride(cols, blockIdx.x, threadIdx.x, gridDim.x,
             [&](int64_t c) { ColumnFinish<W>(cols, chunks, partial, c, fin); });
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
    ForEachKernel<<<static_cast<unsigned>(BlocksFor(n)), kThreads, 0, ops_->stream_>>>(n, f);
    ops_->CheckLaunch(what_);
  }

  // The sum on the host (synchronises the stream); zero after an error.
  template <int W, class F>
  Sums<W> Reduce(int64_t n, F f) {
    Sums<W> host = Sums<W>::Zero();
    if (n <= 0 || !ok()) return host;
    const int64_t blocks = ReduceBlocksFor(n);
    auto* partial = static_cast<Sums<W>*>(ops_->Scratch((blocks + 1) * sizeof(Sums<W>)));
    if (!partial) return host;
    ReducePartialsKernel<W>
        <<<static_cast<unsigned>(blocks), kThreads, 0, ops_->stream_>>>(n, f, partial);
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
    const ColumnPlan p = MakeColumnPlan(rows, cols);
    Sums<W>* partial = nullptr;
    if (p.chunks > 0) {
      partial = static_cast<Sums<W>*>(ops_->Scratch(p.chunks * cols * sizeof(Sums<W>)));
      if (!partial) return;
      const dim3 grid(static_cast<unsigned>(p.tiles), static_cast<unsigned>(p.chunks));
      const dim3 block(kColumnTile, kRowLanes);
      ColumnPartialsKernel<W><<<grid, block, 0, ops_->stream_>>>(p, rows, cols, f, partial);
      if (!ops_->CheckLaunch(what_)) return;
    }
    ColumnFinishKernel<W><<<static_cast<unsigned>(BlocksFor(cols)), kThreads, 0, ops_->stream_>>>(
        cols, p.chunks, partial, fin);
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
