// BatchQueue: background threads that keep training batches ready (ELEKTRONN2's background
// processes, reference §7.6, as threads sharing one read-only BatchSource).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/data/batch_source.h"

namespace elektronn {

// One preallocated batch, sized for the source's geometry (logical layout of the input and
// target nodes). Owned by the queue; lent to the consumer between Next() and Release().
struct Batch {
  std::vector<float> input;
  std::vector<float> target;
  std::vector<std::vector<float>> extras;  // per BatchGeometry::extras, same order
  std::vector<float*> extra_ptrs;          // extras[i].data()
  int64_t sequence = 0;  // index in the stream (from Create's `first_index`): delivery order
  int worker = 0;        // thread that produced it
};

// Training batches (Split::kTrain) only: validation batches are drawn synchronously through the
// source. Batch k of the stream is drawn with its own std::mt19937_64 seeded from (seed, k), by
// whichever thread claims it, and batches are delivered in order of k. So the stream is a function
// of the seed alone, whatever the number of threads, and a queue created with first_index = k
// delivers exactly the stream's batches from k on (a resumed run sees the batches the
// uninterrupted run would have seen).
//
// Buffers: capacity + threads are allocated at Create and recycled (a worker pauses while none
// is free), so `capacity` batches can wait ready while every thread fills one more. No
// allocation per batch.
//
//   ASSIGN_OR_RETURN(auto q, BatchQueue::Create(source, 2, 4, seed));
//   ASSIGN_OR_RETURN(Batch* b, q->Next());   // blocks until one is ready
//   ... train on b->input / b->target ...
//   q->Release(b);
class BatchQueue {
 public:
  struct Stats {
    int64_t produced = 0;        // batches finished by the workers
    int64_t consumed = 0;        // batches handed out by Next()
    int64_t ready = 0;           // batches waiting right now
    int64_t waits = 0;           // Next() calls that found no batch ready
    double consumer_wait_s = 0;  // total time Next() blocked
    double producer_busy_s = 0;  // total time the workers spent in GetBatch (all threads)
  };

  static absl::StatusOr<std::unique_ptr<BatchQueue>> Create(
      std::shared_ptr<const BatchSource> source, int threads, int capacity, uint64_t seed,
      int64_t first_index = 0);
  ~BatchQueue();  // Stop()
  BatchQueue(const BatchQueue&) = delete;
  BatchQueue& operator=(const BatchQueue&) = delete;

  // The next batch of the stream; blocks until it is ready. Returns the first worker error as soon
  // as a worker failed (all workers then stop), and Cancelled after Stop().
  absl::StatusOr<Batch*> Next();
  // Gives a batch from Next() back for refilling.
  void Release(Batch* batch);
  // Stops the workers (each finishes the batch it is drawing) and joins them. Idempotent.
  void Stop();

  Stats stats() const;
  int threads() const { return static_cast<int>(workers_.size()); }
  int capacity() const { return capacity_; }

 private:
  BatchQueue() = default;
  void WorkerLoop(int index);

  std::shared_ptr<const BatchSource> source_;
  int capacity_ = 0;
  std::vector<std::unique_ptr<Batch>> pool_;

  mutable std::mutex mu_;
  std::condition_variable ready_cv_;  // a batch became ready, or an error / stop happened
  std::condition_variable free_cv_;   // a buffer became free, or stop
  uint64_t seed_ = 0;
  std::map<int64_t, Batch*> ready_;  // finished batches by stream index; guarded by mu_
  std::vector<Batch*> free_;         // guarded by mu_
  int64_t next_claim_ = 0;           // the next stream index a worker draws; guarded by mu_
  int64_t next_delivery_ = 0;        // the stream index Next() hands out next; guarded by mu_
  bool stop_ = false;                // guarded by mu_
  absl::Status error_;               // first worker error; guarded by mu_
  Stats stats_;                      // guarded by mu_ (except `ready`, computed)

  std::vector<std::thread> workers_;
  std::mutex join_mu_;  // serialises Stop()
};

}  // namespace elektronn
