// The parity harness: a backend op described once as a ParityCase (seeded inputs, the op on a
// backend, the reference's outputs) and registered as `Parity/<Case>.<Backend>` for every
// backend this build has, each output compared with the reference by normalised error.
//
// A family of ops keeps its cases in its own file (parity_test.cc: the first families;
// parity_<family>_test.cc: later ones), each registering them with RegisterParityCases.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "kernels/backend.h"

namespace elektronn::testing {

using kernels::Backend;

// fp32 against a double-accumulating reference (normalised error, see NormalisedError).
constexpr double kFp32Tolerance = 1e-4;
// Fills outputs that a kernel must overwrite, so a kernel that reads them instead shows up.
constexpr float kStale = std::numeric_limits<float>::quiet_NaN();

// ---------------------------------------------------------------------------------------------
// Backends

// A backend this build can construct. `create` fails (and the tests skip) when the backend is
// compiled in but has no device at run time.
struct BackendEntry {
  std::string name;  // a test name, so letters and digits only
  std::function<absl::StatusOr<std::unique_ptr<Backend>>()> create;
};

#ifdef ELK_PARITY_BACKENDS_OVERRIDE
// A test binary that compiles the cases against its own backends names the function listing
// them (cuda_bodies_test: the CUDA backend's ops on the host).
std::vector<BackendEntry> ELK_PARITY_BACKENDS_OVERRIDE();
#endif

// kernel_parity_test lists the CPU; kernel_parity_gpu_test (ctest label `gpu`, the same sources
// built with ELK_PARITY_CUDA) lists CUDA device 0 instead.
inline std::vector<BackendEntry> Backends() {
#ifdef ELK_PARITY_BACKENDS_OVERRIDE
  return ELK_PARITY_BACKENDS_OVERRIDE();
#endif
  std::vector<BackendEntry> b;
#ifdef ELK_PARITY_CUDA
  b.push_back({"Cuda", []() -> absl::StatusOr<std::unique_ptr<Backend>> {
                 return kernels::CreateBackend({.device = "cuda:0"});
               }});
#else
  b.push_back({"Cpu", []() -> absl::StatusOr<std::unique_ptr<Backend>> {
                 return kernels::CreateCpuBackend();
               }});
#endif
  return b;
}

// True when a GPU suite may skip for want of a device: its backend reported UNAVAILABLE and
// ELK_REQUIRE_GPU is not set (scripts/gpu-check sets it, so there a missing GPU fails).
bool MaySkipWithoutDevice(const absl::Status& create_status);

// ---------------------------------------------------------------------------------------------
// Inputs and buffers

// Deterministic uniform inputs (SplitMix64), the same on every platform and standard library.
// Continuous values keep max-pooling windows free of ties.
class InputRng {
 public:
  explicit InputRng(uint64_t seed) : state_(seed) {}
  std::vector<float> Uniform(int64_t n, float lo = -1.f, float hi = 1.f) {
    std::vector<float> v(n);
    for (float& x : v) x = lo + (hi - lo) * static_cast<float>((Next() >> 40) * 0x1p-24);
    return v;
  }

 private:
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t state_;
};

// Seeds each case from its name, so adding a case does not change another case's inputs.
inline uint64_t SeedOf(const std::string& name) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (char c : name) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h;
}

// Backend memory holding a copy of host data.
class DeviceBuffer {
 public:
  DeviceBuffer(Backend& b, const std::vector<float>& host)
      : b_(&b), n_(static_cast<int64_t>(host.size())), p_(b.Allocate(n_)) {
    b_->Upload(host.data(), p_, n_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { b_->Free(p_); }

  float* data() { return p_; }
  std::vector<float> Download() const {
    std::vector<float> host(n_);
    b_->Download(p_, host.data(), n_);
    return host;
  }

 private:
  Backend* b_;
  int64_t n_;
  float* p_;
};

inline std::vector<float> Plus(const std::vector<float>& a, const std::vector<float>& b) {
  std::vector<float> s(a.size());
  for (size_t i = 0; i < a.size(); ++i) s[i] = a[i] + b[i];
  return s;
}

// One output of an op on a backend next to the reference's.
struct Comparison {
  std::string what;
  std::vector<float> got, want;
};

struct Outcome {
  std::string impl;  // the implementation the backend picked, where it says
  std::vector<Comparison> outputs;
};

// max |got - want| / (max |want| + 1e-6); infinite on NaN or a size mismatch.
inline double NormalisedError(const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size()) return std::numeric_limits<double>::infinity();
  double diff = 0, scale = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (std::isnan(d)) return std::numeric_limits<double>::infinity();
    diff = std::max(diff, d);
    scale = std::max(scale, std::fabs(static_cast<double>(want[i])));
  }
  return diff / (scale + 1e-6);
}

// One op, described once: `run` draws its inputs from the rng, runs the op on the backend and
// returns the backend's outputs beside the reference's.
struct ParityCase {
  std::string name;
  std::function<absl::StatusOr<Outcome>(Backend&, InputRng&)> run;
  double tolerance = kFp32Tolerance;
};

inline std::string Dims(const std::vector<int64_t>& v) { return "(" + absl::StrJoin(v, ",") + ")"; }

inline absl::Status CheckOutSpatial(const std::vector<int64_t>& got,
                                    const std::vector<int64_t>& want) {
  if (got == want) return absl::OkStatus();
  return absl::InternalError(
      absl::StrFormat("kernel reports out_spatial %s, reference %s", Dims(got), Dims(want)));
}

// Registers each case once per backend (call it from a namespace-scope initialiser, e.g.
// `[[maybe_unused]] const bool kRegistered = RegisterParityCases(MyCases());`).
bool RegisterParityCases(const std::vector<ParityCase>& cases);

}  // namespace elektronn::testing
