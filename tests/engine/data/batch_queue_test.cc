// BatchQueue: delivery from several threads, buffer recycling, error propagation, clean stops.
#include "engine/data/batch_queue.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"

namespace elektronn {
namespace {

// Writes a per-thread marker: input[0] = a unique draw id from its rng, the rest a checksum
// pattern; fails on the `fail_at`-th call overall when set.
class FakeSource : public BatchSource {
 public:
  explicit FakeSource(int64_t batch, int fail_at = -1, int sleep_ms = 0)
      : fail_at_(fail_at), sleep_ms_(sleep_ms) {
    geometry_.input = TaggedShape::Create({batch, 1, 4, 4}, "b,f,x,y").value();
    geometry_.target = TaggedShape::Create({batch, 1, 2, 2}, "b,f,x,y").value();
  }
  absl::Status GetBatch(Split split, std::mt19937_64& rng, float* input,
                        float* target) const override {
    const int call = calls_.fetch_add(1);
    if (split != Split::kTrain) return absl::InternalError("queue asked for a non-train batch");
    if (sleep_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms_));
    if (call == fail_at_) return absl::DataLossError("cube 3 is corrupt");
    const float id = static_cast<float>(rng() >> 40);
    const int64_t n = geometry_.input.stripnone_prod();
    for (int64_t i = 0; i < n; ++i) input[i] = id + static_cast<float>(i);
    for (int64_t i = 0; i < geometry_.target.stripnone_prod(); ++i) target[i] = id;
    return absl::OkStatus();
  }
  bool has_validation() const override { return false; }
  const BatchGeometry& geometry() const override { return geometry_; }
  std::string Describe() const override { return "fake"; }
  int calls() const { return calls_.load(); }

 private:
  BatchGeometry geometry_;
  int fail_at_, sleep_ms_;
  mutable std::atomic<int> calls_{0};
};

TEST(BatchQueueTest, DeliversCompleteBatchesFromSeveralThreads) {
  // 1 ms per batch, so that every thread gets work even on a busy two-core machine.
  auto source = std::make_shared<FakeSource>(3, -1, /*sleep_ms=*/1);
  auto q = BatchQueue::Create(source, 3, 4, 42);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ((*q)->threads(), 3);
  std::set<int> workers;
  std::set<const Batch*> buffers;
  int64_t last_seq = -1;
  for (int i = 0; i < 200; ++i) {
    absl::StatusOr<Batch*> b = (*q)->Next();
    ASSERT_TRUE(b.ok()) << b.status();
    ASSERT_EQ((*b)->input.size(), 48u);
    ASSERT_EQ((*b)->target.size(), 12u);
    const float id = (*b)->target[0];
    for (size_t k = 0; k < (*b)->input.size(); ++k) ASSERT_EQ((*b)->input[k], id + k);
    EXPECT_EQ((*b)->sequence, last_seq + 1);  // delivered in stream order
    last_seq = (*b)->sequence;
    workers.insert((*b)->worker);
    buffers.insert(*b);
    (*q)->Release(*b);
  }
  EXPECT_EQ(workers.size(), 3u);
  EXPECT_LE(buffers.size(), 7u);  // capacity + threads buffers, recycled
  const BatchQueue::Stats s = (*q)->stats();
  EXPECT_EQ(s.consumed, 200);
  EXPECT_GE(s.produced, 200);
  EXPECT_GE(s.consumer_wait_s, 0.0);
  (*q)->Stop();
  (*q)->Stop();  // idempotent
  EXPECT_EQ((*q)->Next().status().code(), absl::StatusCode::kCancelled);
}

TEST(BatchQueueTest, SameSeedSameDrawsPerThread) {
  // One thread: the sequence of batches is a deterministic function of the seed.
  auto collect = [](uint64_t seed) {
    auto q = BatchQueue::Create(std::make_shared<FakeSource>(1), 1, 2, seed).value();
    std::vector<float> ids;
    for (int i = 0; i < 10; ++i) {
      Batch* b = q->Next().value();
      ids.push_back(b->target[0]);
      q->Release(b);
    }
    return ids;
  };
  EXPECT_EQ(collect(5), collect(5));
  EXPECT_NE(collect(5), collect(6));
}

TEST(BatchQueueTest, StreamIsAFunctionOfSeedAndIndexWhateverTheThreads) {
  // Batch k is drawn from (seed, k) and delivered in order of k: the same stream with one thread
  // or three, and a queue that starts at k delivers the stream's batches from k on (a resume).
  auto collect = [](int threads, int64_t first, int n) {
    auto q = BatchQueue::Create(std::make_shared<FakeSource>(1, -1, /*sleep_ms=*/1), threads, 2, 7,
                                first)
                 .value();
    std::vector<float> ids;
    for (int i = 0; i < n; ++i) {
      Batch* b = q->Next().value();
      EXPECT_EQ(b->sequence, first + i);
      ids.push_back(b->target[0]);
      q->Release(b);
    }
    return ids;
  };
  const std::vector<float> one = collect(1, 0, 12);
  EXPECT_EQ(collect(3, 0, 12), one);
  EXPECT_EQ(collect(2, 5, 7), std::vector<float>(one.begin() + 5, one.end()));
}

TEST(BatchQueueTest, WorkerErrorReachesTheConsumer) {
  auto source = std::make_shared<FakeSource>(2, /*fail_at=*/5);
  auto q = BatchQueue::Create(source, 2, 2, 1);
  ASSERT_TRUE(q.ok());
  absl::Status err;
  for (int i = 0; i < 100 && err.ok(); ++i) {
    absl::StatusOr<Batch*> b = (*q)->Next();
    if (!b.ok()) {
      err = b.status();
      break;
    }
    (*q)->Release(*b);
  }
  EXPECT_EQ(err.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(err.message().find("cube 3 is corrupt"), std::string::npos) << err;
  EXPECT_NE(err.message().find("batch worker"), std::string::npos) << err;
  // Sticky: later calls report it too, and the destructor joins cleanly.
  EXPECT_EQ((*q)->Next().status().code(), absl::StatusCode::kDataLoss);
}

TEST(BatchQueueTest, FullQueuePausesWorkersAndStopJoinsWhileBuffersAreLent) {
  auto source = std::make_shared<FakeSource>(1, -1, /*sleep_ms=*/1);
  auto q = BatchQueue::Create(source, 2, 3, 1).value();
  Batch* held = q->Next().value();  // keep one lent out
  // Wait until the workers have filled every buffer (bounded, for a loaded machine).
  for (int i = 0; i < 500 && q->stats().ready < 4; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  // All 5 buffers used: 1 lent, 4 ready; the workers wait for a free buffer.
  EXPECT_EQ(q->stats().ready, 4);
  EXPECT_EQ(source->calls(), 5);
  q->Stop();
  q->Release(held);
}

TEST(BatchQueueTest, SlowSourceShowsConsumerWaiting) {
  auto source = std::make_shared<FakeSource>(1, -1, /*sleep_ms=*/20);
  auto q = BatchQueue::Create(source, 1, 1, 1).value();
  for (int i = 0; i < 5; ++i) {
    Batch* b = q->Next().value();
    q->Release(b);
  }
  const BatchQueue::Stats s = q->stats();
  EXPECT_GE(s.waits, 3);
  EXPECT_GT(s.consumer_wait_s, 0.04);
  EXPECT_GT(s.producer_busy_s, 0.08);
}

TEST(BatchQueueTest, RejectsBadArguments) {
  auto source = std::make_shared<FakeSource>(1);
  EXPECT_EQ(BatchQueue::Create(nullptr, 1, 1, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BatchQueue::Create(source, 0, 1, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BatchQueue::Create(source, 1, 0, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Data family: a source with extra inputs (e.g. lazy-label masks) gets one buffer per extra, of
// that extra's size, filled in the same call as input and target.
class ExtraSource : public BatchSource {
 public:
  ExtraSource() {
    geometry_.input = TaggedShape::Create({2, 1, 4, 4}, "b,f,x,y").value();
    geometry_.target = TaggedShape::Create({2, 1, 2, 2}, "b,f,x,y").value();
    geometry_.extras.push_back({"m0", TaggedShape::Create({2, 3}, "b,f").value()});
    geometry_.extras.push_back({"m1", TaggedShape::Create({2, 5}, "b,f").value()});
  }
  absl::Status GetBatch(Split, std::mt19937_64&, float*, float*) const override {
    return absl::InternalError("the queue must call the overload with extras");
  }
  absl::Status GetBatch(Split, std::mt19937_64& rng, float* input, float* target,
                        float* const* extras) const override {
    const float id = static_cast<float>(rng() >> 40);
    std::fill(input, input + 32, id);
    std::fill(target, target + 8, id);
    std::fill(extras[0], extras[0] + 6, id + 1);
    std::fill(extras[1], extras[1] + 10, id + 2);
    return absl::OkStatus();
  }
  bool has_validation() const override { return false; }
  const BatchGeometry& geometry() const override { return geometry_; }
  std::string Describe() const override { return "extras"; }

 private:
  BatchGeometry geometry_;
};

TEST(BatchQueueTest, ExtraInputsTravelWithTheirBatch) {
  auto q = BatchQueue::Create(std::make_shared<ExtraSource>(), 2, 3, 5);
  ASSERT_TRUE(q.ok()) << q.status();
  for (int i = 0; i < 20; ++i) {
    absl::StatusOr<Batch*> b = (*q)->Next();
    ASSERT_TRUE(b.ok()) << b.status();
    ASSERT_EQ((*b)->extras.size(), 2u);
    ASSERT_EQ((*b)->extras[0].size(), 6u);
    ASSERT_EQ((*b)->extras[1].size(), 10u);
    const float id = (*b)->input[0];
    for (float v : (*b)->extras[0]) ASSERT_EQ(v, id + 1);
    for (float v : (*b)->extras[1]) ASSERT_EQ(v, id + 2);
    (*q)->Release(*b);
  }
}

}  // namespace
}  // namespace elektronn
