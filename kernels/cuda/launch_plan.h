// The launch geometry and the per-thread steps of the CUDA executor's kernels
// (kernels/cuda/cuda_exec.cuh), as host-and-device functions: the kernels call them between
// their __syncthreads(), and tests/kernels/cuda_bodies_test.cc replays the same steps block by
// block and thread by thread on the host, so grid sizes, index partitions and reduction trees
// are verified without a GPU. Only the real concurrency stays for a device to check.
#pragma once

#include "kernels/cuda/bodies.h"

namespace elektronn::kernels::cuda {

constexpr int kThreads = 256;         // threads per block of every launch here
constexpr int64_t kMaxBlocks = 8192;  // grid-stride loops beyond this
constexpr int kReduceBlocks = 1024;   // partial sums of a whole-tensor reduction
constexpr int kColumnTile = 32;       // columns per block of a column reduction
constexpr int kRowLanes = 8;          // row lanes per column (kColumnTile * kRowLanes threads)
constexpr int64_t kMaxColumnChunks = 1024;
static_assert(kColumnTile * kRowLanes == kThreads, "column blocks have kThreads threads");

// Blocks of an element-wise launch over n items (n > 0).
inline int64_t BlocksFor(int64_t n) { return MinI((n + kThreads - 1) / kThreads, kMaxBlocks); }
// Blocks (= partials) of the first stage of a whole-tensor reduction (n > 0).
inline int64_t ReduceBlocksFor(int64_t n) {
  return MinI((n + kThreads - 1) / kThreads, kReduceBlocks);
}

// A column reduction's grid: `tiles` x `chunks` blocks, each a tile of columns over a chunk of
// rows; chunks = 0 when there are no rows (the finish then sees zero sums).
struct ColumnPlan {
  int64_t tiles = 0, chunks = 0, rows_per_chunk = 1;
};
inline ColumnPlan MakeColumnPlan(int64_t rows, int64_t cols) {
  ColumnPlan p;
  p.tiles = (cols + kColumnTile - 1) / kColumnTile;
  // Enough chunks to fill the device, each at least a few rows per lane.
  const int64_t want =
      MinI(MaxI(1, kMaxColumnChunks / MaxI(p.tiles, 1)), MaxI(1, rows / (4 * kRowLanes)));
  p.rows_per_chunk = MaxI(1, (rows + want - 1) / want);
  p.chunks = rows > 0 ? (rows + p.rows_per_chunk - 1) / p.rows_per_chunk : 0;
  return p;
}

// f(i) for the items of thread `t` of block `b` in a grid-stride loop over `blocks` blocks.
template <class F>
ELK_HD void GridStride(int64_t n, int64_t b, int64_t t, int64_t blocks, F&& f) {
  const int64_t stride = kThreads * blocks;
  for (int64_t i = b * kThreads + t; i < n; i += stride) f(i);
}

// The tree step `s` of a block reduction over sh[W][kThreads]: thread t < s adds t + s.
template <int W>
ELK_HD void TreeStep(double (*sh)[kThreads], int t, int s) {
  if (t < s) {
    for (int k = 0; k < W; ++k) sh[k][t] += sh[k][t + s];
  }
}
template <int W>
ELK_HD void ToShared(double (*sh)[kThreads], int t, const Sums<W>& v) {
  for (int k = 0; k < W; ++k) sh[k][t] = v.v[k];
}
template <int W>
ELK_HD Sums<W> FromShared(double (*sh)[kThreads], int t) {
  Sums<W> v;
  for (int k = 0; k < W; ++k) v.v[k] = sh[k][t];
  return v;
}

// Column reduction, stage 1, thread (x = column in tile, y = lane) of block (tile, chunk): its
// lane's share of the chunk's rows for one column.
template <int W, class F>
ELK_HD Sums<W> ColumnLaneSum(const ColumnPlan& p, int64_t rows, int64_t cols, int64_t tile,
                             int64_t chunk, int x, int y, F&& f) {
  Sums<W> acc = Sums<W>::Zero();
  const int64_t c = tile * kColumnTile + x;
  if (c >= cols) return acc;
  const int64_t r0 = chunk * p.rows_per_chunk, r1 = MinI(rows, r0 + p.rows_per_chunk);
  for (int64_t r = r0 + y; r < r1; r += kRowLanes) acc += f(r, c);
  return acc;
}
// Shared memory of a column block: lane y, column x at sh[k][y * kColumnTile + x].
ELK_HD inline int ColumnSlot(int x, int y) { return y * kColumnTile + x; }
// Stage 1's end, by the threads of lane 0: the lanes' sums of column x into the partials.
template <int W>
ELK_HD void ColumnStorePartial(double (*sh)[kThreads], int64_t cols, int64_t tile, int64_t chunk,
                               int x, Sums<W>* partial) {
  const int64_t c = tile * kColumnTile + x;
  if (c >= cols) return;
  Sums<W> s = Sums<W>::Zero();
  for (int lane = 0; lane < kRowLanes; ++lane) s += FromShared<W>(sh, ColumnSlot(x, lane));
  partial[chunk * cols + c] = s;
}
// Stage 2: column c's chunks in order, then the finishing functor.
template <int W, class G>
ELK_HD void ColumnFinish(int64_t cols, int64_t chunks, const Sums<W>* partial, int64_t c, G&& fin) {
  Sums<W> s = Sums<W>::Zero();
  for (int64_t k = 0; k < chunks; ++k) s += partial[k * cols + c];
  fin(c, s);
}

}  // namespace elektronn::kernels::cuda
