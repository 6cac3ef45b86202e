// A small network trains (its loss falls), and steady-state steps allocate no heap memory.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <link.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <random>
#include <string>
#include <thread>

#include "engine/graph/model_builder.h"
#include "engine/graph/network.h"
#include "engine/optim/optimiser.h"
#include "kernels/backend.h"
#include "kernels/cpu/onednn_util.h"

// ---------------------------------------------------------------------------------------------
// Allocation accounting. Every allocation entry point of the process is replaced here: the C
// family (malloc, calloc, realloc, reallocarray, aligned_alloc, posix_memalign, memalign, valloc,
// pvalloc; glibc routes its own internal calls through them too) forwards to glibc's __libc_*
// implementations, and every operator new form (plain, array, nothrow, aligned) is counted once
// and forwards there directly. While a window is open, each call from ANY thread is counted, as
// oneDNN's when
//   - the calling thread is inside a oneDNN call (kernels::InLibraryCall(), a per-thread flag),
//   - or oneDNN's own code made it (the caller's address lies in libdnnl's code): oneDNN's
//     OpenMP workers, which run its parallel loops while the calling thread waits in the call;
// and as ours otherwise, e.g. a malloc on an OpenMP worker in one of our own loops, or on a data
// thread while the stepping thread happens to be inside oneDNN.
// Sanitizer builds bring their own allocator, so there the counting (and its tests) is off.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define ELK_COUNT_ALLOCATIONS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define ELK_COUNT_ALLOCATIONS 0
#endif
#endif
#ifndef ELK_COUNT_ALLOCATIONS
#define ELK_COUNT_ALLOCATIONS 1
#endif

namespace alloc_count {

enum Kind { kMalloc, kCalloc, kRealloc, kAlignedC, kNew, kNewArray, kNewAligned, kNumKinds };
constexpr const char* kKindNames[kNumKinds] = {
    "malloc", "calloc", "realloc/reallocarray", "aligned_alloc/posix_memalign/memalign/valloc",
    "new",    "new[]",  "aligned new/new[]"};

// Only atomics, plain arrays and trivially initialised thread-locals (static TLS of the
// executable): nothing here may allocate, and malloc runs before any constructor.
std::atomic<bool> g_open{false};
std::atomic<int64_t> g_ours[kNumKinds];        // outside oneDNN, any thread
std::atomic<int64_t> g_ours_other_threads{0};  // ... of which not on the stepping thread
std::atomic<int64_t> g_onednn{0};              // oneDNN's (see above), any thread
std::atomic<int64_t> g_onednn_other_threads{0};
std::atomic<size_t> g_onednn_max_bytes{0};
thread_local bool t_stepping_thread = false;
thread_local int64_t t_ours = 0;  // this thread's share of g_ours in the current window

// The executable segments of libdnnl, found when a window opens.
struct Range {
  uintptr_t begin, end;
};
constexpr int kMaxRanges = 8;
Range g_onednn_code[kMaxRanges];
int g_onednn_code_n = 0;

bool InOneDnnCode(const void* caller) {
  const auto a = reinterpret_cast<uintptr_t>(caller);
  for (int i = 0; i < g_onednn_code_n; ++i) {
    if (a >= g_onednn_code[i].begin && a < g_onednn_code[i].end) return true;
  }
  return false;
}

// The first few of our allocations in the window, for the failure message.
struct Seen {
  Kind kind;
  size_t bytes;
  bool stepping_thread;
  const void* caller;
};
constexpr int kSeenMax = 8;
Seen g_seen[kSeenMax];
std::atomic<int> g_seen_n{0};

inline void Count(Kind kind, size_t bytes, const void* caller) {
  if (!g_open.load(std::memory_order_relaxed)) return;
  if (elektronn::kernels::InLibraryCall() || InOneDnnCode(caller)) {
    g_onednn.fetch_add(1, std::memory_order_relaxed);
    if (!t_stepping_thread) g_onednn_other_threads.fetch_add(1, std::memory_order_relaxed);
    size_t m = g_onednn_max_bytes.load(std::memory_order_relaxed);
    while (bytes > m && !g_onednn_max_bytes.compare_exchange_weak(m, bytes)) {
    }
    return;
  }
  g_ours[kind].fetch_add(1, std::memory_order_relaxed);
  ++t_ours;
  if (!t_stepping_thread) g_ours_other_threads.fetch_add(1, std::memory_order_relaxed);
  const int i = g_seen_n.fetch_add(1, std::memory_order_relaxed);
  if (i < kSeenMax) g_seen[i] = {kind, bytes, t_stepping_thread, caller};
}

int64_t Ours() {
  int64_t n = 0;
  for (const auto& c : g_ours) n += c.load();
  return n;
}

// Counts from construction to Close() (or destruction); one window at a time, opened on the
// thread that does the measured work (the "stepping thread").
class Window {
 public:
  Window() {
    FindOneDnnCode();
    for (auto& c : g_ours) c = 0;
    g_ours_other_threads = 0;
    g_onednn = 0;
    g_onednn_other_threads = 0;
    g_onednn_max_bytes = 0;
    g_seen_n = 0;
    t_stepping_thread = true;
    t_ours = 0;
    g_open = true;
  }
  ~Window() { Close(); }
  void Close() {
    g_open = false;
    t_stepping_thread = false;
  }
  // What we allocated, for a failure message (call after Close(), on the stepping thread).
  static std::string Report() {
    std::string s = "  on the stepping thread " + std::to_string(t_ours) +
                    ", on other threads (e.g. OpenMP workers) " +
                    std::to_string(g_ours_other_threads.load()) + "\n";
    for (int k = 0; k < kNumKinds; ++k) {
      if (g_ours[k] > 0) {
        s += "  " + std::to_string(g_ours[k].load()) + " x " + kKindNames[k] + "\n";
      }
    }
    const int n = std::min(g_seen_n.load(), kSeenMax);
    for (int i = 0; i < n; ++i) {
      Dl_info info{};
      const bool named = dladdr(g_seen[i].caller, &info) != 0;
      s += std::string("  ") + kKindNames[g_seen[i].kind] + " of " +
           std::to_string(g_seen[i].bytes) + " bytes on " +
           (g_seen[i].stepping_thread ? "the stepping thread" : "another thread") +
           ", called from " + (named && info.dli_sname ? info.dli_sname : "?") + " in " +
           (named && info.dli_fname ? info.dli_fname : "?") +
           (named ? " +0x" + Hex(g_seen[i].caller, info) + " (addr2line -Cfe ...)" : "") + "\n";
    }
    return s;
  }

 private:
  static std::string Hex(const void* caller, const Dl_info& info) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%lx",
                  static_cast<unsigned long>(reinterpret_cast<uintptr_t>(caller) -
                                             reinterpret_cast<uintptr_t>(info.dli_fbase)));
    return buf;
  }
  static void FindOneDnnCode() {
    g_onednn_code_n = 0;
    dl_iterate_phdr(
        [](dl_phdr_info* info, size_t, void*) {
          if (info->dlpi_name == nullptr || std::strstr(info->dlpi_name, "libdnnl") == nullptr) {
            return 0;
          }
          for (int i = 0; i < info->dlpi_phnum && g_onednn_code_n < kMaxRanges; ++i) {
            const ElfW(Phdr)& ph = info->dlpi_phdr[i];
            if (ph.p_type == PT_LOAD && (ph.p_flags & PF_X) != 0) {
              const uintptr_t begin = info->dlpi_addr + ph.p_vaddr;
              g_onednn_code[g_onednn_code_n++] = {begin, begin + ph.p_memsz};
            }
          }
          return 0;
        },
        nullptr);
  }
};

}  // namespace alloc_count

#if ELK_COUNT_ALLOCATIONS
// Where the replaced function returns to: the allocating code.
#define ELK_CALLER __builtin_return_address(0)

extern "C" {
void* __libc_malloc(size_t n);
void* __libc_calloc(size_t count, size_t n);
void* __libc_realloc(void* p, size_t n);
void* __libc_memalign(size_t alignment, size_t n);
void* __libc_valloc(size_t n);
void* __libc_pvalloc(size_t n);
void __libc_free(void* p);

void* malloc(size_t n) noexcept {
  alloc_count::Count(alloc_count::kMalloc, n, ELK_CALLER);
  return __libc_malloc(n);
}
void free(void* p) noexcept { __libc_free(p); }
void* calloc(size_t count, size_t n) noexcept {
  alloc_count::Count(alloc_count::kCalloc, count * n, ELK_CALLER);
  return __libc_calloc(count, n);
}
void* realloc(void* p, size_t n) noexcept {
  alloc_count::Count(alloc_count::kRealloc, n, ELK_CALLER);
  return __libc_realloc(p, n);
}
void* reallocarray(void* p, size_t count, size_t n) noexcept {
  size_t bytes;
  if (__builtin_mul_overflow(count, n, &bytes)) {
    errno = ENOMEM;
    return nullptr;
  }
  alloc_count::Count(alloc_count::kRealloc, bytes, ELK_CALLER);
  return __libc_realloc(p, bytes);
}
void* memalign(size_t alignment, size_t n) noexcept {
  alloc_count::Count(alloc_count::kAlignedC, n, ELK_CALLER);
  return __libc_memalign(alignment, n);
}
void* aligned_alloc(size_t alignment, size_t n) noexcept {
  alloc_count::Count(alloc_count::kAlignedC, n, ELK_CALLER);
  return __libc_memalign(alignment, n);
}
int posix_memalign(void** out, size_t alignment, size_t n) noexcept {
  if (alignment == 0 || alignment % sizeof(void*) != 0 || (alignment & (alignment - 1)) != 0) {
    return EINVAL;
  }
  alloc_count::Count(alloc_count::kAlignedC, n, ELK_CALLER);
  void* p = __libc_memalign(alignment, n);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}
void* valloc(size_t n) noexcept {
  alloc_count::Count(alloc_count::kAlignedC, n, ELK_CALLER);
  return __libc_valloc(n);
}
void* pvalloc(size_t n) noexcept {
  alloc_count::Count(alloc_count::kAlignedC, n, ELK_CALLER);
  return __libc_pvalloc(n);
}
}  // extern "C"

namespace {
// operator new's contract: retry through the new-handler, then throw (or return null).
void* NewImpl(alloc_count::Kind kind, size_t n, size_t alignment, bool nothrow,
              const void* caller) {
  alloc_count::Count(kind, n, caller);
  if (n == 0) n = 1;
  for (;;) {
    void* p =
        alignment > alignof(std::max_align_t) ? __libc_memalign(alignment, n) : __libc_malloc(n);
    if (p != nullptr) return p;
    std::new_handler h = std::get_new_handler();
    if (h == nullptr) {
      if (nothrow) return nullptr;
      throw std::bad_alloc();
    }
    h();
  }
}
constexpr size_t kPlain = 0;
}  // namespace

void* operator new(size_t n) { return NewImpl(alloc_count::kNew, n, kPlain, false, ELK_CALLER); }
void* operator new[](size_t n) {
  return NewImpl(alloc_count::kNewArray, n, kPlain, false, ELK_CALLER);
}
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  return NewImpl(alloc_count::kNew, n, kPlain, true, ELK_CALLER);
}
void* operator new[](size_t n, const std::nothrow_t&) noexcept {
  return NewImpl(alloc_count::kNewArray, n, kPlain, true, ELK_CALLER);
}
void* operator new(size_t n, std::align_val_t a) {
  return NewImpl(alloc_count::kNewAligned, n, static_cast<size_t>(a), false, ELK_CALLER);
}
void* operator new[](size_t n, std::align_val_t a) {
  return NewImpl(alloc_count::kNewAligned, n, static_cast<size_t>(a), false, ELK_CALLER);
}
void* operator new(size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return NewImpl(alloc_count::kNewAligned, n, static_cast<size_t>(a), true, ELK_CALLER);
}
void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return NewImpl(alloc_count::kNewAligned, n, static_cast<size_t>(a), true, ELK_CALLER);
}
// Every form of delete releases with glibc's free, which takes malloc'ed and memalign'ed memory
// alike. GCC cannot see that our operator new returns malloc'ed memory and warns the pairing.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { __libc_free(p); }
void operator delete[](void* p) noexcept { __libc_free(p); }
void operator delete(void* p, size_t) noexcept { __libc_free(p); }
void operator delete[](void* p, size_t) noexcept { __libc_free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { __libc_free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { __libc_free(p); }
void operator delete(void* p, std::align_val_t) noexcept { __libc_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { __libc_free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { __libc_free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { __libc_free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { __libc_free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  __libc_free(p);
}
#pragma GCC diagnostic pop
#endif  // ELK_COUNT_ALLOCATIONS

namespace elektronn {
namespace {

// A 3-D toy task: is the centre voxel brighter than 0.5? Learnable by a small CNN.
v1::ModelSpec ToyModel() {
  ModelBuilder m("toy", 3);
  std::string x = m.Input({-1, 1, 5, 10, 10}, "b,f,z,x,y", "raw");
  std::string c = m.Conv(x, 8, {1, 3, 3});
  c = m.Conv(c, 8, {3, 3, 3}, {}, v1::TANH);
  c = m.Conv(c, 2, {1, 1, 1}, {}, v1::LIN);
  std::string p = m.Softmax(c);
  std::string t = m.InputLike(p, 1, "target");
  std::string nll = m.MultinoulliNLL(p, t, true);
  std::string loss = m.AggregateLoss({nll}, {}, "loss");
  std::string err = m.Errors(p, t, true);
  m.Designate(x, t, loss, p, {loss, err, p}, err);
  return m.spec();
}

// Fills raw with noise and sets the target of each output voxel to the thresholded raw voxel
// at its centre (offsets 1,2,2).
void MakeBatch(Network& net, std::mt19937& rng) {
  Node* raw = net.graph().Find("raw");
  Node* target = net.graph().Find("target");
  const auto& rs = raw->shape().sizes();
  const auto& ts = target->shape().sizes();
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<float> x(raw->numel()), t(target->numel());
  for (float& v : x) v = u(rng);
  for (int64_t b = 0; b < ts[0]; ++b)
    for (int64_t z = 0; z < ts[2]; ++z)
      for (int64_t i = 0; i < ts[3]; ++i)
        for (int64_t j = 0; j < ts[4]; ++j) {
          const int64_t rz = z + 1, ri = i + 2, rj = j + 2;
          const float v = x[(((b * rs[2]) + rz) * rs[3] + ri) * rs[4] + rj];
          t[(((b * ts[2]) + z) * ts[3] + i) * ts[4] + j] = v > 0.5f ? 1.f : 0.f;
        }
  ASSERT_TRUE(net.SetInput("raw", x).ok());
  ASSERT_TRUE(net.SetInput("target", t).ok());
}

TEST(Training, SmallNetworkLossFalls) {
  auto backend = kernels::CreateCpuBackend();
  auto net = Network::Create(ToyModel(), backend.get(), {4, 0});
  ASSERT_TRUE(net.ok()) << net.status();
  Optimiser adam(OptimiserKind::kAdam, backend.get(), (*net)->params());
  adam.hyper().lr = 1e-2f;
  std::mt19937 rng(1);
  auto mean_loss = [&](int steps, bool train) {
    double sum = 0;
    for (int i = 0; i < steps; ++i) {
      MakeBatch(**net, rng);
      EXPECT_TRUE((*net)->Forward().ok());
      sum += *(*net)->Scalar("loss");
      if (train) {
        EXPECT_TRUE((*net)->Backward().ok());
        adam.Step();
      }
    }
    return sum / steps;
  };
  const double before = mean_loss(10, false);
  mean_loss(400, true);
  const double after = mean_loss(10, false);
  EXPECT_NEAR(before, std::log(2.0), 0.3);
  EXPECT_LT(after, 0.5 * before) << "loss before " << before << ", after " << after;
  EXPECT_LT(*(*net)->Scalar("errors"), 0.3f);
}

// The counter itself: each entry point is seen, on the stepping thread and on others, and one
// thread's oneDNN call does not excuse another thread's allocations.
#if ELK_COUNT_ALLOCATIONS  // sanitizer builds replace malloc: these tests do not exist there
TEST(AllocationCounter, SeesEveryAllocationPathOnEveryThread) {
  using alloc_count::g_ours;
  static void* volatile sink;  // keeps the compiler from eliding allocation/free pairs
  {
    alloc_count::Window window;
    sink = std::malloc(10);
    std::free(sink);
    sink = std::calloc(3, 4);
    sink = std::realloc(sink, 100);
    std::free(sink);
    sink = std::aligned_alloc(64, 128);
    std::free(sink);
    void* p = nullptr;
    EXPECT_EQ(posix_memalign(&p, 64, 32), 0);
    sink = p;
    std::free(sink);
    sink = new int(1);
    delete static_cast<int*>(sink);
    sink = new int[3];
    delete[] static_cast<int*>(sink);
    sink = new (std::nothrow) int(2);
    delete static_cast<int*>(sink);
    struct alignas(128) Wide {
      float v[32];
    };
    sink = new Wide;
    delete static_cast<Wide*>(sink);
    window.Close();
    EXPECT_EQ(g_ours[alloc_count::kMalloc], 1);
    EXPECT_EQ(g_ours[alloc_count::kCalloc], 1);
    EXPECT_EQ(g_ours[alloc_count::kRealloc], 1);
    EXPECT_EQ(g_ours[alloc_count::kAlignedC], 2);
    EXPECT_EQ(g_ours[alloc_count::kNew], 2);
    EXPECT_EQ(g_ours[alloc_count::kNewArray], 1);
    EXPECT_EQ(g_ours[alloc_count::kNewAligned], 1);
    EXPECT_EQ(alloc_count::t_ours, 9);
    EXPECT_EQ(alloc_count::g_ours_other_threads, 0);
    EXPECT_EQ(alloc_count::g_onednn, 0);
  }

  // While this thread is inside a oneDNN call, its own allocation is oneDNN's and another
  // thread's is ours. The other thread exists before the window opens, so its creation is not
  // counted.
  static void* volatile other_sink;
  std::atomic<int> phase{0};
  std::thread other([&phase] {
    while (phase.load() != 1) std::this_thread::yield();
    other_sink = std::malloc(24);
    std::free(other_sink);
    phase = 2;
  });
  {
    alloc_count::Window window;
    kernels::cpu::LibraryCallScope in_onednn;
    sink = std::malloc(40);
    std::free(sink);
    phase = 1;
    while (phase.load() != 2) std::this_thread::yield();
  }
  other.join();
  EXPECT_EQ(alloc_count::g_onednn, 1);
  EXPECT_EQ(alloc_count::g_onednn_other_threads, 0);
  EXPECT_EQ(alloc_count::Ours(), 1);
  EXPECT_EQ(alloc_count::g_ours_other_threads, 1);
  EXPECT_EQ(alloc_count::g_seen[0].bytes, 24u);
}
#endif  // ELK_COUNT_ALLOCATIONS

// neuro3d's steady-state training steps (forward, backward, Adam) allocate nothing themselves on
// any thread, and oneDNN's primitive execute allocates a fixed, small amount of bookkeeping.
#if ELK_COUNT_ALLOCATIONS  // sanitizer builds replace malloc: these tests do not exist there
// oneDNN's bookkeeping allocations per step are bounded by `onednn_per_step_bound`.
void ExpectSteadyStateStepsAllocateOnlyOneDnnBookkeeping(kernels::DataType precision,
                                                         int64_t onednn_per_step_bound) {
  auto backend = kernels::CreateCpuBackend();
  NetworkOptions options{1, 0};
  options.precision = precision;
  auto net = Network::Create(Neuro3dSpec({15, 109, 109}), backend.get(), options);
  ASSERT_TRUE(net.ok()) << net.status();
  Optimiser adam(OptimiserKind::kAdam, backend.get(), (*net)->params());
  adam.hyper().lr = 1e-4f;
  std::mt19937 rng(2);
  std::vector<float> x((*net)->graph().Find("raw")->numel());
  for (float& v : x) v = std::uniform_real_distribution<float>(0, 1)(rng);
  ASSERT_TRUE((*net)->SetInput("raw", x).ok());
  auto step = [&] {
    ASSERT_TRUE((*net)->Forward().ok());
    ASSERT_TRUE((*net)->Backward().ok());
    adam.Step();
  };
  step();  // the first steps may size lazily grown scratch buffers
  step();

  constexpr int kSteps = 20;
  std::array<int64_t, kSteps> onednn_per_step{};
  alloc_count::Window window;
  ASSERT_GT(alloc_count::g_onednn_code_n, 0) << "libdnnl's code is not mapped in this process";
  for (int i = 0; i < kSteps; ++i) {
    const int64_t before = alloc_count::g_onednn.load();
    step();
    onednn_per_step[i] = alloc_count::g_onednn.load() - before;
  }
  window.Close();

  const int64_t ours = alloc_count::Ours();
  EXPECT_EQ(ours, 0) << "outside oneDNN's calls, " << kSteps << " steady-state steps made " << ours
                     << " heap allocations:\n"
                     << alloc_count::Window::Report();
  const auto [lo, hi] = std::minmax_element(onednn_per_step.begin(), onednn_per_step.end());
  EXPECT_LE(*hi, onednn_per_step_bound);
  EXPECT_EQ(*lo, *hi) << "oneDNN's allocations per step vary between " << *lo << " and " << *hi;
  EXPECT_LE(alloc_count::g_onednn_max_bytes.load(), 1024u);
  std::printf(
      "%d steady-state steps: %lld allocations outside oneDNN; oneDNN's %lld..%lld per step "
      "(%.1f of them on its OpenMP workers), largest %zu bytes\n",
      kSteps, static_cast<long long>(ours), static_cast<long long>(*lo),
      static_cast<long long>(*hi), alloc_count::g_onednn_other_threads.load() / double{kSteps},
      alloc_count::g_onednn_max_bytes.load());
}

// oneDNN 2.6's primitive execute builds a small std::unordered_map of its arguments per call
// (measured: 336 allocations per neuro3d step, none over 112 bytes); nothing tensor-sized and
// nothing growing with the step count.
TEST(Training, SteadyStateStepsAllocateOnlyOneDnnBookkeeping) {
  ExpectSteadyStateStepsAllocateOnlyOneDnnBookkeeping(kernels::DataType::kF32, 400);
}

// bf16 mixed precision: the bf16 copies live in buffers made at creation; the rounding reorders
// add executes (measured: 526 allocations per neuro3d step, none over 112 bytes). A CPU without
// AVX512_BF16 defines bf16 as refused, which is what is checked there.
TEST(Training, Bf16StepsAllocateOnlyOneDnnBookkeeping) {
  if (kernels::CpuHasBf16()) {
    ExpectSteadyStateStepsAllocateOnlyOneDnnBookkeeping(kernels::DataType::kBf16, 600);
    return;
  }
  auto backend = kernels::CreateCpuBackend();
  NetworkOptions options{1, 0};
  options.precision = kernels::DataType::kBf16;
  auto net = Network::Create(Neuro3dSpec({15, 109, 109}), backend.get(), options);
  ASSERT_FALSE(net.ok()) << "bf16 accepted on a CPU without AVX512_BF16";
  EXPECT_NE(net.status().message().find("AVX512_BF16"), std::string::npos) << net.status();
}
#endif  // ELK_COUNT_ALLOCATIONS

}  // namespace
}  // namespace elektronn

namespace elektronn {
namespace {

// batch_norm family: BN layers (statistics, running update, fused forward, gradient; enough
// rows for the kernels' multi-threaded path) allocate nothing in steady-state steps either.
TEST(Training, BatchNormStepsAllocateNothingOutsideOneDnn) {
  ModelBuilder m("bn", 3);
  std::string x = m.Input({1, 1, 9, 40, 40}, "b,f,z,x,y", "raw");
  std::string c = m.Conv(x, 8, {1, 3, 3});
  c = m.Conv(c, 8, {1, 3, 3}, {1, 2, 2}, v1::PRELU);
  c = m.Perceptron(c, 4, v1::TANH);
  c = m.Conv(c, 2, {1, 1, 1}, {}, v1::LIN);
  std::string p = m.Softmax(c);
  std::string t = m.InputLike(p, 1, "target");
  m.Designate(x, t, m.AggregateLoss({m.MultinoulliNLL(p, t, true)}, {}, "loss"), p);
  v1::ModelSpec spec = m.spec();
  for (int i : {1, 2}) {
    spec.mutable_nodes(i)->mutable_conv()->set_batch_normalisation(v1::BN_TRAIN);
  }
  spec.mutable_nodes(3)->mutable_perceptron()->set_batch_normalisation(v1::BN_TRAIN);
  auto backend = kernels::CreateCpuBackend();
  auto net = Network::Create(spec, backend.get(), {1, 0});
  ASSERT_TRUE(net.ok()) << net.status();
  Optimiser adam(OptimiserKind::kAdam, backend.get(), (*net)->params());
  std::mt19937 rng(3);
  std::vector<float> in((*net)->graph().Find("raw")->numel());
  for (float& v : in) v = std::uniform_real_distribution<float>(0, 1)(rng);
  ASSERT_TRUE((*net)->SetInput("raw", in).ok());
  auto step = [&] {
    ASSERT_TRUE((*net)->Forward().ok());
    ASSERT_TRUE((*net)->Backward().ok());
    adam.Step();
  };
  step();
  step();
  alloc_count::Window window;
  for (int i = 0; i < 5; ++i) step();
  window.Close();
  EXPECT_EQ(alloc_count::Ours(), 0) << alloc_count::Window::Report();
}

}  // namespace
}  // namespace elektronn
