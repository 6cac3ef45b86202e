// BatchQueue: worker threads fill recycled batch buffers; the trainer takes them in order.
#include "engine/data/batch_queue.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <utility>

#include "absl/strings/str_format.h"

namespace elektronn {
namespace {

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

absl::StatusOr<std::unique_ptr<BatchQueue>> BatchQueue::Create(
    std::shared_ptr<const BatchSource> source, int threads, int capacity, uint64_t seed,
    int64_t first_index) {
  if (source == nullptr) return absl::InvalidArgumentError("BatchQueue: no batch source");
  if (threads < 1 || threads > 256) {
    return absl::InvalidArgumentError(
        absl::StrFormat("BatchQueue: threads=%d; valid: 1..256 (background_processes)", threads));
  }
  if (capacity < 1 || capacity > 4096) {
    return absl::InvalidArgumentError(
        absl::StrFormat("BatchQueue: capacity=%d; valid: 1..4096 ready batches", capacity));
  }
  const BatchGeometry& g = source->geometry();
  const int64_t in_n = g.input.stripnone_prod(), t_n = g.target.stripnone_prod();
  if (!g.input.fully_known() || !g.target.fully_known() || in_n <= 0 || t_n <= 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("BatchQueue: batch shapes must be fully known, got input %s and target %s",
                        g.input.ToString(), g.target.ToString()));
  }
  std::unique_ptr<BatchQueue> q(new BatchQueue());
  q->source_ = std::move(source);
  q->capacity_ = capacity;
  q->seed_ = seed;
  q->next_claim_ = q->next_delivery_ = std::max<int64_t>(0, first_index);
  for (int i = 0; i < capacity + threads; ++i) {
    auto b = std::make_unique<Batch>();
    b->input.assign(static_cast<size_t>(in_n), 0.f);
    b->target.assign(static_cast<size_t>(t_n), 0.f);
    for (const BatchGeometry::Extra& e : g.extras) {
      b->extras.emplace_back(static_cast<size_t>(e.shape.stripnone_prod()), 0.f);
    }
    for (auto& e : b->extras) b->extra_ptrs.push_back(e.data());
    q->free_.push_back(b.get());
    q->pool_.push_back(std::move(b));
  }
  for (int i = 0; i < threads; ++i) {
    q->workers_.emplace_back(&BatchQueue::WorkerLoop, q.get(), i);
  }
  return q;
}

BatchQueue::~BatchQueue() { Stop(); }

void BatchQueue::WorkerLoop(int index) {
  // Workers yield to the compute threads: with as many OpenMP threads as cores, a worker that
  // preempts one stalls the whole team at its next barrier. Nice 10 keeps them in the gaps.
  (void)setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 10);
  while (true) {
    Batch* b = nullptr;
    int64_t k = 0;
    {
      std::unique_lock<std::mutex> lock(mu_);
      free_cv_.wait(lock, [&] { return stop_ || !free_.empty(); });
      if (stop_) return;
      b = free_.back();
      free_.pop_back();
      // Claimed together with a buffer: the batch Next() waits for is always being drawn.
      k = next_claim_++;
    }
    const uint64_t uk = static_cast<uint64_t>(k);
    std::seed_seq seq{static_cast<uint32_t>(seed_), static_cast<uint32_t>(seed_ >> 32),
                      static_cast<uint32_t>(uk), static_cast<uint32_t>(uk >> 32), 0x5eedu};
    std::mt19937_64 rng(seq);
    const auto t0 = std::chrono::steady_clock::now();
    absl::Status s = b->extras.empty()
                         ? source_->GetBatch(Split::kTrain, rng, b->input.data(), b->target.data())
                         : source_->GetBatch(Split::kTrain, rng, b->input.data(), b->target.data(),
                                             b->extra_ptrs.data());
    const double busy = Seconds(std::chrono::steady_clock::now() - t0);
    std::lock_guard<std::mutex> lock(mu_);
    stats_.producer_busy_s += busy;
    if (!s.ok()) {
      if (error_.ok()) {
        error_ = absl::Status(s.code(), absl::StrFormat("batch worker %d: %s", index, s.message()));
      }
      free_.push_back(b);
      stop_ = true;
      ready_cv_.notify_all();
      free_cv_.notify_all();
      return;
    }
    if (stop_) {
      free_.push_back(b);
      return;
    }
    b->worker = index;
    b->sequence = k;
    ++stats_.produced;
    ready_.emplace(k, b);
    if (k == next_delivery_) ready_cv_.notify_one();
  }
}

absl::StatusOr<Batch*> BatchQueue::Next() {
  std::unique_lock<std::mutex> lock(mu_);
  auto done = [&] {
    return !error_.ok() || stop_ || (!ready_.empty() && ready_.begin()->first == next_delivery_);
  };
  if (!done()) {
    ++stats_.waits;
    const auto t0 = std::chrono::steady_clock::now();
    ready_cv_.wait(lock, done);
    stats_.consumer_wait_s += Seconds(std::chrono::steady_clock::now() - t0);
  }
  if (!error_.ok()) return error_;
  if (stop_) return absl::CancelledError("BatchQueue: stopped");
  Batch* b = ready_.begin()->second;
  ready_.erase(ready_.begin());
  ++next_delivery_;
  ++stats_.consumed;
  return b;
}

void BatchQueue::Release(Batch* batch) {
  if (batch == nullptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  free_.push_back(batch);
  free_cv_.notify_one();
}

void BatchQueue::Stop() {
  std::lock_guard<std::mutex> join_lock(join_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  ready_cv_.notify_all();
  free_cv_.notify_all();
  for (std::thread& t : workers_) {
    if (t.joinable()) t.join();
  }
}

BatchQueue::Stats BatchQueue::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  Stats s = stats_;
  s.ready = static_cast<int64_t>(ready_.size());
  return s;
}

}  // namespace elektronn
