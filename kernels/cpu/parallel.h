// The CPU backend's OpenMP loop helpers, shared by cpu_backend.cc and the family files
// (losses.cc, ...), so every loop decides the same way when to wake the thread team.
#pragma once

#include <omp.h>

#include <cstdint>

namespace elektronn::kernels::cpu {

// Loops shorter than this run on one thread: waking the OpenMP team costs more than it saves,
// and every parallel region is a barrier that stalls when another thread (a data worker) holds
// a core.
constexpr int64_t kMinParallelIterations = 16384;

// Runs body(i) for i in [0, n): on the OpenMP team when n is large, else inline. Deliberately not
// an `if` clause: an `if (false)` parallel region still makes libgomp allocate (and free) a
// one-thread team on every call, and a steady-state training step must not allocate
// (tests/engine/training_test.cc).
template <typename Body>
void ParallelFor(int64_t n, const Body& body) {
  if (n > kMinParallelIterations) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) body(i);
  } else {
    for (int64_t i = 0; i < n; ++i) body(i);
  }
}
// The same for element-wise loops the compiler should vectorise.
template <typename Body>
void ParallelForSimd(int64_t n, const Body& body) {
  if (n > kMinParallelIterations) {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; ++i) body(i);
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) body(i);
  }
}
// The sum of body(i) over [0, n) in double, threaded like ParallelFor.
template <typename Body>
double ParallelSum(int64_t n, const Body& body) {
  double s = 0;
  if (n > kMinParallelIterations) {
#pragma omp parallel for reduction(+ : s) schedule(static)
    for (int64_t i = 0; i < n; ++i) s += body(i);
  } else {
    for (int64_t i = 0; i < n; ++i) s += body(i);
  }
  return s;
}

}  // namespace elektronn::kernels::cpu
