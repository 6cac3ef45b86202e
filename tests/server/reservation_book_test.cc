// The reservation book alone, on a clock the test moves: leases, consumption by jobs, the file
// that carries reservations over a restart, and which GPUs count as busy.
#include "server/reservation_book.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace elektronn {
namespace {

namespace fs = std::filesystem;

class ReservationBookTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("elk_book_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    gpus_.status = "2 fake GPU(s)";
    gpus_.gpus = {{0, "GPU-0", "g", 0, 0, 0, {}}, {1, "GPU-1", "g", 0, 0, 0, {}}};
    host_.capacity = 4;
    host_.cpu_count = 8;
    host_.memory_total_bytes = int64_t{16} << 30;
  }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(dir_);
  }
  ReservationBook::Clock Clock() {
    return [this] { return now_; };
  }
  // The state of `name`, failing the test (not crashing it) when the book lacks it.
  static v1::ReservationState State(ReservationBook& book, const std::string& name) {
    auto r = book.Get(name);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->state() : v1::RESERVATION_STATE_UNSPECIFIED;
  }
  static v1::ReserveRequest Request(const std::string& id, int gpus, int ttl_seconds) {
    v1::ReserveRequest r;
    r.set_request_id(id);
    r.set_owner("test");
    r.mutable_resources()->set_gpu_count(gpus);
    r.mutable_ttl()->set_seconds(ttl_seconds);
    return r;
  }

  fs::path dir_;
  absl::Time now_ = absl::FromUnixSeconds(1'800'000'000);
  GpuInventory gpus_;
  HostOccupancy host_;
};

// A job asking for a GPU by device (cuda:N, no reservation) must not get one a reservation
// holds, ACTIVE or CONSUMED; once the reservation ends the GPU is free again. (CPU builds refuse
// cuda devices before this check, so the daemon tests cannot reach it.)
TEST_F(ReservationBookTest, AGpuHeldByAReservationIsNotFreeForAPlainJob) {
  ReservationBook book(dir_.string(), Clock());
  EXPECT_TRUE(book.CheckGpuFree("GPU-0", "cuda:0").ok());
  auto a = book.Reserve(Request("a", 1, 10), gpus_, host_);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ(a->gpu_uuids(0), "GPU-0");
  absl::Status s = book.CheckGpuFree("GPU-0", "cuda:0");
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_NE(
      s.message().find("'cuda:0' but that GPU (GPU-0) is held by " + a->name() + " (owner 'test')"),
      std::string::npos)
      << s;
  EXPECT_TRUE(book.CheckGpuFree("GPU-1", "cuda:1").ok());
  ASSERT_TRUE(book.Consume(a->name(), "jobs/000001").ok());
  s = book.CheckGpuFree("GPU-0", "cuda:0");
  EXPECT_NE(s.message().find("(its job jobs/000001)"), std::string::npos) << s;
  book.JobEnded(a->name(), "jobs/000001");
  EXPECT_TRUE(book.CheckGpuFree("GPU-0", "cuda:0").ok());
  auto b = book.Reserve(Request("b", 1, 10), gpus_, host_);
  ASSERT_TRUE(b.ok()) << b.status();
  now_ += absl::Seconds(11);  // its lease runs out
  EXPECT_TRUE(book.CheckGpuFree("GPU-0", "cuda:0").ok());
}

TEST_F(ReservationBookTest, LeasesExpireUnlessRenewed) {
  ReservationBook book(dir_.string(), Clock());
  auto a = book.Reserve(Request("a", 1, 10), gpus_, host_);
  ASSERT_TRUE(a.ok()) << a.status();
  now_ += absl::Seconds(9);
  ASSERT_TRUE(book.Renew(a->name(), absl::Seconds(10)).ok());
  now_ += absl::Seconds(9);  // 18 s after Reserve, 9 s after Renew
  EXPECT_EQ(State(book, a->name()), v1::ACTIVE);
  EXPECT_EQ(book.HeldSlots(), 1);
  now_ += absl::Seconds(1);
  EXPECT_EQ(State(book, a->name()), v1::EXPIRED);
  EXPECT_EQ(book.HeldSlots(), 0);
  EXPECT_EQ(book.Renew(a->name(), absl::Seconds(10)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(book.List(false).empty());
  // Its GPU is free again: the lowest index is handed out.
  auto b = book.Reserve(Request("b", 1, 10), gpus_, host_);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->gpu_uuids(0), "GPU-0");
}

TEST_F(ReservationBookTest, ConsumedReservationsHaveNoLeaseAndEndWithTheirJob) {
  ReservationBook book(dir_.string(), Clock());
  auto a = book.Reserve(Request("a", 2, 1), gpus_, host_);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(book.Consume(a->name(), "jobs/000007").ok());
  now_ += absl::Hours(2);
  EXPECT_EQ(State(book, a->name()), v1::CONSUMED);
  EXPECT_EQ(book.Reserve(Request("b", 1, 10), gpus_, host_).status().code(),
            absl::StatusCode::kResourceExhausted);
  book.JobEnded(a->name(), "jobs/000008");  // another job: no effect
  EXPECT_EQ(State(book, a->name()), v1::CONSUMED);
  book.JobEnded(a->name(), "jobs/000007");
  EXPECT_EQ(State(book, a->name()), v1::RELEASED);
  EXPECT_TRUE(book.Reserve(Request("b", 2, 10), gpus_, host_).ok());
}

TEST_F(ReservationBookTest, SurvivesARestartExceptWhatExpiredMeanwhile) {
  std::string held, brief, consumed;
  {
    ReservationBook book(dir_.string(), Clock());
    held = book.Reserve(Request("held", 1, 600), gpus_, host_)->name();
    brief = book.Reserve(Request("brief", 0, 5), gpus_, host_)->name();
    consumed = book.Reserve(Request("consumed", 1, 5), gpus_, host_)->name();
    ASSERT_TRUE(book.Consume(consumed, "jobs/000001").ok());
  }
  now_ += absl::Seconds(60);
  ReservationBook book(dir_.string(), Clock());
  ASSERT_TRUE(book.Load().ok());
  EXPECT_EQ(State(book, held), v1::ACTIVE);
  EXPECT_EQ(State(book, brief), v1::EXPIRED);
  EXPECT_EQ(State(book, consumed), v1::CONSUMED);
  // The job manager found no such job running: the consumed one is released.
  book.Reconcile([](const std::string&) { return false; });
  EXPECT_EQ(State(book, consumed), v1::RELEASED);
  // Retries still answer with the original; new names continue after the old ones.
  EXPECT_EQ(book.Reserve(Request("held", 1, 600), gpus_, host_)->name(), held);
  auto next = book.Reserve(Request("next", 0, 600), gpus_, host_);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->name(), "reservations/000004");
}

TEST_F(ReservationBookTest, BusyGpusSlotsThreadsAndMemory) {
  ReservationBook book(dir_.string(), Clock());
  gpus_.gpus[0].processes = {{4711, 0}};  // foreign
  gpus_.gpus[1].processes = {{100, 0}};   // our worker: no reservation, but a job uses it
  host_.worker_pids[100] = "jobs/000003";
  auto s = book.Reserve(Request("a", 1, 10), gpus_, host_).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("GPU GPU-0 (index 0) is busy: foreign process 4711"),
            std::string::npos)
      << s;
  EXPECT_NE(s.message().find("GPU GPU-1 (index 1) is busy: used by jobs/000003 (worker 100)"),
            std::string::npos)
      << s;
  gpus_.gpus[1].processes.clear();
  host_.gpu_index_jobs[1] = "jobs/000004";  // a queued job asked for cuda:1
  s = book.Reserve(Request("a", 1, 10), gpus_, host_).status();
  EXPECT_NE(s.message().find("used by jobs/000004 (device cuda:1)"), std::string::npos) << s;
  host_.gpu_index_jobs.clear();

  v1::Resources res;
  book.DescribeGpus(gpus_, host_, &res);
  ASSERT_EQ(res.gpus_size(), 2);
  EXPECT_TRUE(res.gpus(0).busy());
  EXPECT_FALSE(res.gpus(1).busy());

  v1::ReserveRequest threads = Request("t", 0, 10);
  threads.mutable_resources()->set_cpu_threads(6);
  ASSERT_TRUE(book.Reserve(threads, gpus_, host_).ok());
  threads.set_request_id("t2");
  threads.mutable_resources()->set_cpu_threads(3);
  s = book.Reserve(threads, gpus_, host_).status();
  EXPECT_NE(s.message().find("8 CPUs of which reservations hold 6: 2 left"), std::string::npos)
      << s;
  v1::ReserveRequest memory = Request("m", 0, 10);
  memory.mutable_resources()->set_memory_bytes(int64_t{17} << 30);
  s = book.Reserve(memory, gpus_, host_).status();
  EXPECT_NE(s.message().find("16.0 GiB"), std::string::npos) << s;

  host_.capacity = 2;
  host_.plain_active_jobs = 1;  // plus reservation "t": both slots taken
  s = book.Reserve(Request("x", 0, 10), gpus_, host_).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("all 2 job slot(s)"), std::string::npos) << s;
}

}  // namespace
}  // namespace elektronn
