// Measures this machine's FP32 peak: every thread runs a tight loop of independent fused
// multiply-adds on the widest vectors the build targets (-march=native), so the number is what
// the FMA units deliver at the clock they really run at under such load (turbo, AVX-512
// licence, hypervisor), which /proc/cpuinfo cannot tell. Prints one JSON line for
// bench/compare-pytorch, beside the nominal formula cores x GHz x FLOPs/cycle.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

#if defined(__AVX512F__)
using Vec = __m512;
constexpr int kLanes = 16;
constexpr const char* kIsa = "avx512";
inline Vec Fma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
inline Vec Set(float v) { return _mm512_set1_ps(v); }
inline float Sum(Vec v) {
  alignas(64) float f[16];
  _mm512_store_ps(f, v);
  float s = 0;
  for (float x : f) s += x;
  return s;
}
#elif defined(__FMA__)
using Vec = __m256;
constexpr int kLanes = 8;
constexpr const char* kIsa = "avx2";
inline Vec Fma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
inline Vec Set(float v) { return _mm256_set1_ps(v); }
inline float Sum(Vec v) {
  alignas(32) float f[8];
  _mm256_store_ps(f, v);
  float s = 0;
  for (float x : f) s += x;
  return s;
}
#else
#error "fp32_peak needs FMA (build with -march=native on an x86-64 with FMA)"
#endif

// Independent chains: at least FMA latency (4) x FMA ports (2), so the ports never wait, and
// few enough to stay in registers (32 zmm, 16 ymm) with the two constants.
constexpr int kChains = kLanes == 16 ? 16 : 12;

float Spin(int64_t iterations) {
  Vec acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = Set(0.001f * i);
  const Vec a = Set(0.999999f), b = Set(1e-7f);
  for (int64_t n = 0; n < iterations; ++n) {
#pragma GCC unroll 16
    for (int i = 0; i < kChains; ++i) acc[i] = Fma(acc[i], a, b);
  }
  Vec s = acc[0];
  for (int i = 1; i < kChains; ++i) s = s + acc[i];
  return Sum(s);
}

// GFLOP/s of `threads` threads spinning `iterations` each (2 FLOPs per lane per FMA).
double Measure(int threads, int64_t iterations) {
  std::vector<std::thread> pool;
  std::vector<float> sink(threads);
  const auto t0 = std::chrono::steady_clock::now();
  for (int t = 0; t < threads; ++t) pool.emplace_back([&, t] { sink[t] = Spin(iterations); });
  for (auto& th : pool) th.join();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  volatile float keep = sink[0];
  (void)keep;
  return 2.0 * kLanes * kChains * static_cast<double>(iterations) * threads / s / 1e9;
}

// The core clock in GHz while busy: a chain of dependent 64-bit integer multiplies takes 3
// cycles each on every Intel core since Nehalem (a chain of adds would not do: Golden Cove folds
// immediate adds in the renamer and retires several per cycle).
double MeasureGhz() {
  constexpr int64_t kMuls = 300'000'000;
  double best = 0;
  for (int r = 0; r < 3; ++r) {
    int64_t x = 3, n = kMuls / 8;
    const auto t0 = std::chrono::steady_clock::now();
    asm volatile(
        "1:\n\t"
        "imul %0, %0\n\timul %0, %0\n\timul %0, %0\n\timul %0, %0\n\t"
        "imul %0, %0\n\timul %0, %0\n\timul %0, %0\n\timul %0, %0\n\t"
        "dec %1\n\tjnz 1b"
        : "+r"(x), "+r"(n));
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 3.0 * kMuls / s / 1e9);
  }
  return best;
}

// The first "cpu MHz" of /proc/cpuinfo (under a hypervisor usually the nominal clock), or 0.
double CpuinfoMhz() {
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);) {
    if (line.rfind("cpu MHz", 0) == 0) return std::atof(line.substr(line.find(':') + 1).c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  if (threads < 1) {
    std::fprintf(stderr, "usage: fp32_peak [THREADS]\n");
    return 2;
  }
  Measure(threads, 20'000'000);  // warm up: lets the clock settle at its AVX level
  double best = 0;
  for (int r = 0; r < 5; ++r) best = std::max(best, Measure(threads, 50'000'000));
  // Nominal: cores x GHz x FLOPs/cycle, FLOPs/cycle = 2 FMA units x lanes x 2 (Xeon SP with
  // AVX-512 has two 512-bit FMA units per core; with AVX2 two 256-bit ones).
  const double mhz = CpuinfoMhz();
  const double per_cycle = 2.0 * kLanes * 2;
  const double nominal = threads * mhz / 1e3 * per_cycle;
  const double ghz = MeasureGhz();
  std::printf(
      "{\"case\": \"fp32_peak\", \"isa\": \"%s\", \"threads\": %d, \"measured_gflops\": %.1f, "
      "\"cpuinfo_ghz\": %.3f, \"busy_ghz\": %.3f, \"flops_per_cycle_nominal\": %.0f, "
      "\"nominal_gflops\": %.1f, \"measured_flops_per_cycle_per_thread\": %.1f}\n",
      kIsa, threads, best, mhz / 1e3, ghz, per_cycle, nominal, best / threads / ghz);
  return 0;
}
