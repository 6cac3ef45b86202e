// Occupancy and reservations on a real elektronnd (loopback) with a --fake-gpus inventory that
// the tests edit: foreign processes make GPUs busy, reservations hold GPUs, leases expire,
// retries are idempotent, reservations survive a killed daemon, jobs consume them.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "rpc/status.h"
#include "tests/server/daemon_fixture.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct FakeGpu {
  std::string uuid;
  std::vector<int> pids;  // processes on it
};

class ReservationTest : public DaemonTest {
 protected:
  std::string GpuFile() const { return (dir_ / "fake-gpus.json").string(); }

  // Rewrites the inventory atomically, as a test editing it under a running daemon must.
  void WriteGpus(const std::vector<FakeGpu>& gpus) {
    std::vector<std::string> each;
    for (const FakeGpu& g : gpus) {
      std::vector<std::string> procs;
      for (int pid : g.pids) {
        procs.push_back(absl::StrCat(R"({"pid": )", pid, R"(, "used_memory_bytes": 1048576})"));
      }
      each.push_back(absl::StrCat(R"({"uuid": ")", g.uuid,
                                  R"(", "name": "Fake GPU", "memory_total_bytes": 8589934592, )",
                                  R"("memory_used_bytes": 1073741824, "utilization_percent": 7, )",
                                  R"("processes": [)", absl::StrJoin(procs, ", "), "]}"));
    }
    WriteRaw(absl::StrCat(R"({"gpus": [)", absl::StrJoin(each, ", "), "]}"));
  }
  void WriteRaw(const std::string& text) {
    const std::string tmp = GpuFile() + ".tmp";
    std::ofstream(tmp) << text;
    fs::rename(tmp, GpuFile());
  }
  void TwoFreeGpus() { WriteGpus({{"GPU-fake-0", {}}, {"GPU-fake-1", {}}}); }

  void StartWithFakeGpus(int capacity = 4) {
    StartDaemon({"--fake-gpus", GpuFile(), "--capacity", std::to_string(capacity)});
    reservations_ = v1::Reservations::NewStub(channel_);
  }

  v1::Resources Resources() {
    v1::Resources res;
    grpc::Status s = host_->GetResources(Ctx().get(), {}, &res);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return res;
  }
  const v1::GpuInfo* Gpu(const v1::Resources& res, const std::string& uuid) {
    for (const auto& g : res.gpus()) {
      if (g.uuid() == uuid) return &g;
    }
    ADD_FAILURE() << "no " << uuid << " in " << res.ShortDebugString();
    return nullptr;
  }

  static v1::ReserveRequest Request(const std::string& request_id, int gpu_count,
                                    double ttl_seconds = 600, std::vector<std::string> uuids = {}) {
    v1::ReserveRequest req;
    req.set_request_id(request_id);
    req.set_owner("reservation_test");
    req.mutable_resources()->set_gpu_count(gpu_count);
    for (const auto& u : uuids) req.mutable_resources()->add_gpu_uuids(u);
    const int64_t ns = static_cast<int64_t>(ttl_seconds * 1e9);
    req.mutable_ttl()->set_seconds(ns / 1'000'000'000);
    req.mutable_ttl()->set_nanos(static_cast<int32_t>(ns % 1'000'000'000));
    return req;
  }
  grpc::Status TryReserve(const v1::ReserveRequest& req, v1::Reservation* out) {
    return reservations_->Reserve(Ctx().get(), req, out);
  }
  v1::Reservation Reserve(const v1::ReserveRequest& req) {
    v1::Reservation r;
    grpc::Status s = TryReserve(req, &r);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return r;
  }
  grpc::Status TryGet(const std::string& name, v1::Reservation* out) {
    v1::GetReservationRequest req;
    req.set_name(name);
    return reservations_->GetReservation(Ctx().get(), req, out);
  }
  v1::Reservation GetReservation(const std::string& name) {
    v1::Reservation r;
    grpc::Status s = TryGet(name, &r);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return r;
  }
  grpc::Status Release(const std::string& name, v1::Reservation* out) {
    v1::ReleaseReservationRequest req;
    req.set_name(name);
    return reservations_->ReleaseReservation(Ctx().get(), req, out);
  }
  grpc::Status Renew(const std::string& name, int64_t ttl_seconds, v1::Reservation* out) {
    v1::RenewReservationRequest req;
    req.set_name(name);
    req.mutable_ttl()->set_seconds(ttl_seconds);
    return reservations_->RenewReservation(Ctx().get(), req, out);
  }
  grpc::Status CreateOn(const std::string& reservation, const v1::JobSpec& spec, v1::Job* out,
                        const std::string& request_id = "") {
    v1::CreateJobRequest req;
    *req.mutable_job() = spec;
    req.set_reservation(reservation);
    req.set_request_id(request_id);
    return jobs_->CreateJob(Ctx().get(), req, out);
  }
  static std::string Reason(const grpc::Status& s) {
    auto info = ErrorInfoOf(s);
    return info ? info->reason() : "";
  }
  // Polls GetReservation until it is in `state` (fails the test after 30 s).
  v1::Reservation WaitReservation(const std::string& name, v1::ReservationState state) {
    v1::Reservation r;
    const auto deadline = Clock::now() + std::chrono::seconds(30);
    while (Clock::now() < deadline) {
      r = GetReservation(name);
      if (r.state() == state) return r;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << name << " never became " << v1::ReservationState_Name(state) << ": "
                  << r.ShortDebugString() << "\n"
                  << DaemonLog();
    return r;
  }

  std::unique_ptr<v1::Reservations::Stub> reservations_;
};

TEST_F(ReservationTest, FakeInventoryIsReReadOnEveryCall) {
  TwoFreeGpus();
  StartWithFakeGpus();
  v1::Resources res = Resources();
  EXPECT_NE(res.gpu_status().find("2 fake GPU(s)"), std::string::npos) << res.gpu_status();
  ASSERT_EQ(res.gpus_size(), 2);
  EXPECT_EQ(res.gpus(0).uuid(), "GPU-fake-0");
  EXPECT_EQ(res.gpus(1).index(), 1);
  EXPECT_EQ(res.gpus(0).memory_total_bytes(), int64_t{8} << 30);
  EXPECT_EQ(res.gpus(0).memory_used_bytes(), int64_t{1} << 30);
  EXPECT_EQ(res.gpus(0).utilization_percent(), 7);
  EXPECT_FALSE(res.gpus(0).busy()) << res.gpus(0).busy_reason();

  // A foreign process appears on GPU 1 (pid 1: init, never one of the daemon's workers).
  WriteGpus({{"GPU-fake-0", {}}, {"GPU-fake-1", {1}}});
  res = Resources();
  const v1::GpuInfo* g1 = Gpu(res, "GPU-fake-1");
  ASSERT_NE(g1, nullptr);
  ASSERT_EQ(g1->foreign_pids_size(), 1);
  EXPECT_EQ(g1->foreign_pids(0), 1);
  ASSERT_EQ(g1->processes_size(), 1);
  EXPECT_EQ(g1->processes(0).job(), "");
  EXPECT_EQ(g1->processes(0).used_memory_bytes(), 1 << 20);
  EXPECT_TRUE(g1->busy());
  EXPECT_NE(g1->busy_reason().find("foreign process 1"), std::string::npos) << g1->busy_reason();
  EXPECT_FALSE(Gpu(res, "GPU-fake-0")->busy());

  // It goes away again; then the file breaks: no GPUs, and the status says why.
  TwoFreeGpus();
  EXPECT_FALSE(Gpu(Resources(), "GPU-fake-1")->busy());
  WriteRaw("{\"gpus\": [{\"name\": \"no uuid\"}]}");
  res = Resources();
  EXPECT_EQ(res.gpus_size(), 0);
  EXPECT_EQ(res.gpu_status().rfind("no GPU: --fake-gpus ", 0), 0u) << res.gpu_status();
  EXPECT_NE(res.gpu_status().find("gpus[0] has no \"uuid\""), std::string::npos)
      << res.gpu_status();
  EXPECT_NE(DaemonLog().find("--fake-gpus"), std::string::npos);
}

TEST_F(ReservationTest, HeldAndForeignGpusAreRefused) {
  TwoFreeGpus();
  StartWithFakeGpus();
  {  // every Reservations call needs the token
    v1::Reservation r;
    grpc::Status s = reservations_->Reserve(Ctx("").get(), Request("anon", 1), &r);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    v1::ListReservationsResponse list;
    s = reservations_->ListReservations(Ctx("").get(), {}, &list);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  const v1::Reservation a = Reserve(Request("a", 1));
  EXPECT_EQ(a.name(), "reservations/000001");
  EXPECT_EQ(a.state(), v1::ACTIVE);
  ASSERT_EQ(a.gpu_uuids_size(), 1);
  EXPECT_EQ(a.gpu_uuids(0), "GPU-fake-0");  // the lowest free index
  EXPECT_GT(a.expire_time().seconds(), a.create_time().seconds() + 500);

  // The same GPU by name: refused, naming the GPU and its holder.
  v1::Reservation r;
  grpc::Status s = TryReserve(Request("b", 0, 600, {"GPU-fake-0"}), &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_EQ(Reason(s), "GPU_BUSY");
  EXPECT_NE(s.error_message().find("GPU-fake-0"), std::string::npos) << s.error_message();
  EXPECT_NE(s.error_message().find(a.name()), std::string::npos) << s.error_message();

  // A foreign process makes the other GPU unreservable too: none left.
  WriteGpus({{"GPU-fake-0", {}}, {"GPU-fake-1", {1}}});
  s = TryReserve(Request("c", 1), &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_NE(s.error_message().find("GPU GPU-fake-1 (index 1) is busy: foreign process 1"),
            std::string::npos)
      << s.error_message();
  s = TryReserve(Request("d", 0, 600, {"GPU-fake-1"}), &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  s = TryReserve(Request("e", 0, 600, {"GPU-nowhere"}), &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  EXPECT_NE(s.error_message().find("GPU-fake-0, GPU-fake-1"), std::string::npos)
      << s.error_message();

  // The process ends: GPU 1 can be reserved (a fresh request id: "c" was refused, not made).
  TwoFreeGpus();
  const v1::Reservation c = Reserve(Request("c2", 1));
  ASSERT_EQ(c.gpu_uuids_size(), 1);
  EXPECT_EQ(c.gpu_uuids(0), "GPU-fake-1");
  s = TryReserve(Request("f", 1), &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_NE(s.error_message().find("1 GPU(s) requested, 0 free of 2"), std::string::npos)
      << s.error_message();

  // GetResources: who holds what, and the reservations.
  v1::Resources res = Resources();
  EXPECT_EQ(Gpu(res, "GPU-fake-0")->held_by(), a.name());
  EXPECT_EQ(Gpu(res, "GPU-fake-1")->held_by(), c.name());
  EXPECT_TRUE(Gpu(res, "GPU-fake-1")->busy());
  ASSERT_EQ(res.reservations_size(), 2);
  EXPECT_EQ(res.reservations(0).name(), a.name());
  EXPECT_EQ(res.reservations(1).owner(), "reservation_test");

  // Released: its GPU is free for the next one.
  ASSERT_TRUE(Release(a.name(), &r).ok());
  EXPECT_EQ(r.state(), v1::RELEASED);
  const v1::Reservation g = Reserve(Request("g", 0, 600, {"GPU-fake-0"}));
  EXPECT_EQ(g.state(), v1::ACTIVE);
  EXPECT_EQ(Resources().reservations_size(), 2);
}

TEST_F(ReservationTest, RetriesAreIdempotent) {
  TwoFreeGpus();
  StartWithFakeGpus();
  const v1::Reservation a = Reserve(Request("same", 1));
  const v1::Reservation again = Reserve(Request("same", 1));
  EXPECT_EQ(again.name(), a.name());
  EXPECT_EQ(again.gpu_uuids(0), a.gpu_uuids(0));
  v1::ListReservationsResponse list;
  ASSERT_TRUE(reservations_->ListReservations(Ctx().get(), {}, &list).ok());
  EXPECT_EQ(list.reservations_size(), 1);

  v1::Reservation r;
  grpc::Status s = TryReserve(Request("same", 2), &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_NE(s.error_message().find("request_id 'same'"), std::string::npos);
  s = TryReserve(Request("", 1), &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  s = TryReserve(Request("ttl", 1, 0), &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();

  // Release twice: both succeed. A retried Reserve still answers with the (released) original.
  ASSERT_TRUE(Release(a.name(), &r).ok());
  ASSERT_TRUE(Release(a.name(), &r).ok());
  EXPECT_EQ(r.state(), v1::RELEASED);
  const v1::Reservation late = Reserve(Request("same", 1));
  EXPECT_EQ(late.name(), a.name());
  EXPECT_EQ(late.state(), v1::RELEASED);
  s = Renew(a.name(), 60, &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  s = Release("reservations/424242", &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  list.Clear();
  ASSERT_TRUE(reservations_->ListReservations(Ctx().get(), {}, &list).ok());
  EXPECT_EQ(list.reservations_size(), 0);
  v1::ListReservationsRequest all;
  all.set_include_ended(true);
  ASSERT_TRUE(reservations_->ListReservations(Ctx().get(), all, &list).ok());
  EXPECT_EQ(list.reservations_size(), 1);
}

TEST_F(ReservationTest, AnUnrenewedLeaseExpiresAndFreesTheGpu) {
  TwoFreeGpus();
  StartWithFakeGpus();
  // Renewed well within its 3 s lease for 4 s: still held.
  const v1::Reservation a = Reserve(Request("a", 0, 3, {"GPU-fake-0"}));
  const auto renew_until = Clock::now() + std::chrono::seconds(4);
  v1::Reservation r;
  while (Clock::now() < renew_until) {
    grpc::Status s = Renew(a.name(), 3, &r);
    ASSERT_TRUE(s.ok()) << s.error_message();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  EXPECT_EQ(GetReservation(a.name()).state(), v1::ACTIVE);

  // A 1 s lease nobody renews: expires (a dead scheduler leaks nothing), the GPU is free again.
  const v1::Reservation b = Reserve(Request("b", 0, 1, {"GPU-fake-1"}));
  EXPECT_EQ(b.state(), v1::ACTIVE);
  WaitReservation(b.name(), v1::EXPIRED);
  EXPECT_TRUE(Gpu(Resources(), "GPU-fake-1")->held_by().empty());
  EXPECT_EQ(Reserve(Request("c", 0, 600, {"GPU-fake-1"})).state(), v1::ACTIVE);
  grpc::Status s = Renew(b.name(), 60, &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  EXPECT_NE(s.error_message().find("EXPIRED"), std::string::npos) << s.error_message();
  v1::Job job;
  s = CreateOn(b.name(), TinySpec(10), &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  EXPECT_NE(s.error_message().find("EXPIRED"), std::string::npos) << s.error_message();
  EXPECT_NE(DaemonLog().find(b.name() + " (owner 'reservation_test') expired"), std::string::npos);
}

TEST_F(ReservationTest, ReservationsSurviveAKilledDaemon) {
  TwoFreeGpus();
  StartWithFakeGpus();
  const v1::Reservation held = Reserve(Request("held", 0, 600, {"GPU-fake-0"}));
  const v1::Reservation brief = Reserve(Request("brief", 0, 1, {"GPU-fake-1"}));
  kill(pid_, SIGKILL);
  WaitDaemon();
  // Down for longer than the brief lease.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  StartWithFakeGpus();

  const v1::Reservation h = GetReservation(held.name());
  EXPECT_EQ(h.state(), v1::ACTIVE);
  EXPECT_EQ(h.expire_time().seconds(), held.expire_time().seconds());
  EXPECT_EQ(GetReservation(brief.name()).state(), v1::EXPIRED);
  v1::Reservation r;
  grpc::Status s = TryReserve(Request("other", 0, 600, {"GPU-fake-0"}), &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_EQ(Reserve(Request("held", 0, 600, {"GPU-fake-0"})).name(), held.name());  // a retry
  const v1::Reservation next = Reserve(Request("next", 0, 600, {"GPU-fake-1"}));
  EXPECT_GT(next.name(), brief.name());  // names are not reused
  EXPECT_EQ(Gpu(Resources(), "GPU-fake-0")->held_by(), held.name());
}

TEST_F(ReservationTest, AJobConsumesItsReservationUntilItEnds) {
  TwoFreeGpus();
  StartWithFakeGpus(/*capacity=*/1);
  v1::ReserveRequest req = Request("a", 1);
  req.mutable_resources()->set_cpu_threads(1);
  const v1::Reservation a = Reserve(req);
  v1::Reservation r;
  grpc::Status s = TryReserve(Request("b", 1), &r);  // the reservation holds the only job slot
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_EQ(Reason(s), "CAPACITY");

  v1::Job job;
  v1::JobSpec cuda = TinySpec(10);
  cuda.mutable_resources()->set_device("cuda:1");
  s = CreateOn(a.name(), cuda, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  s = CreateOn("reservations/999999", TinySpec(10), &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  v1::JobSpec greedy = TinySpec(10);
  greedy.mutable_resources()->set_cpu_threads(2);
  s = CreateOn(a.name(), greedy, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_EQ(GetReservation(a.name()).state(), v1::ACTIVE);  // refused jobs leave it untouched

  ASSERT_TRUE(CreateOn(a.name(), TinySpec(10'000'000), &job, "job-a").ok());
  EXPECT_EQ(job.reservation(), a.name());
  ASSERT_EQ(job.gpu_uuids_size(), 1);
  EXPECT_EQ(job.gpu_uuids(0), "GPU-fake-0");
  EXPECT_EQ(job.spec().resources().device(), "");  // fake GPUs: the job runs on the CPU
  EXPECT_EQ(job.spec().resources().cpu_threads(), 1);
  v1::Job retry;
  ASSERT_TRUE(CreateOn(a.name(), TinySpec(10'000'000), &retry, "job-a").ok());
  EXPECT_EQ(retry.name(), job.name());
  r = GetReservation(a.name());
  EXPECT_EQ(r.state(), v1::CONSUMED);
  EXPECT_EQ(r.job(), job.name());
  s = Release(a.name(), &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  v1::Job other;
  s = CreateOn(a.name(), TinySpec(10), &other);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  EXPECT_NE(s.error_message().find("CONSUMED by " + job.name()), std::string::npos);

  // It starts although the reservation holds the daemon's only slot, and sees only its GPU.
  job = WaitState(job.name(), v1::RUNNING);
  const int worker = WorkerPid(job);
  ASSERT_GT(worker, 0);
  {
    std::ifstream in("/proc/" + std::to_string(worker) + "/environ");
    std::stringstream ss;
    ss << in.rdbuf();
    EXPECT_NE(ss.str().find(std::string("CUDA_VISIBLE_DEVICES=GPU-fake-0\0", 32)),
              std::string::npos);
  }
  // The driver would list the worker on its GPU: it is ours, with its job, not foreign.
  WriteGpus({{"GPU-fake-0", {worker}}, {"GPU-fake-1", {}}});
  v1::Resources res = Resources();
  const v1::GpuInfo* g0 = Gpu(res, "GPU-fake-0");
  ASSERT_NE(g0, nullptr);
  EXPECT_EQ(g0->foreign_pids_size(), 0);
  ASSERT_EQ(g0->processes_size(), 1);
  EXPECT_EQ(g0->processes(0).job(), job.name());
  EXPECT_EQ(g0->held_by(), a.name());
  EXPECT_NE(g0->busy_reason().find("consumed by " + job.name()), std::string::npos)
      << g0->busy_reason();
  ASSERT_EQ(res.reservations_size(), 1);
  EXPECT_EQ(res.reservations(0).state(), v1::CONSUMED);

  // The job ends: its reservation is released, the GPU and the slot are free.
  v1::CancelJobRequest cancel;
  cancel.set_name(job.name());
  ASSERT_TRUE(jobs_->CancelJob(Ctx().get(), cancel, &other).ok());
  WaitState(job.name(), v1::CANCELLED);
  TwoFreeGpus();
  EXPECT_EQ(WaitReservation(a.name(), v1::RELEASED).job(), job.name());
  EXPECT_TRUE(Gpu(Resources(), "GPU-fake-0")->held_by().empty());
  EXPECT_EQ(Reserve(Request("c", 1)).gpu_uuids(0), "GPU-fake-0");
}

// The daemon's half of a gang start: jobs created paused on their reservations start together
// on ResumeJob.
TEST_F(ReservationTest, AJobCreatedPausedHoldsItsReservationUntilResumed) {
  TwoFreeGpus();
  StartWithFakeGpus(/*capacity=*/1);
  const v1::Reservation a = Reserve(Request("a", 1, /*ttl_seconds=*/2));
  v1::CreateJobRequest req;
  *req.mutable_job() = TinySpec(10'000'000);
  req.set_reservation(a.name());
  req.set_start_paused(true);
  v1::Job job;
  grpc::Status s = jobs_->CreateJob(Ctx().get(), req, &job);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(job.state(), v1::PAUSED);
  // Longer than the reservation's lease: consumed, it does not expire.
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  EXPECT_EQ(Get(job.name()).state(), v1::PAUSED);
  EXPECT_EQ(GetReservation(a.name()).state(), v1::CONSUMED);
  v1::ResumeJobRequest resume;
  resume.set_name(job.name());
  ASSERT_TRUE(jobs_->ResumeJob(Ctx().get(), resume, &job).ok());
  WaitState(job.name(), v1::RUNNING);
  v1::CancelJobRequest cancel;
  cancel.set_name(job.name());
  ASSERT_TRUE(jobs_->CancelJob(Ctx().get(), cancel, &job).ok());
  WaitReservation(a.name(), v1::RELEASED);
}

// A scheduler that dies between creating a group's paused jobs and resuming them leaks
// nothing: past resume_by the daemon cancels the job and releases its reservation, also when
// the deadline passed while the daemon was down. A ResumeJob in time clears the deadline.
TEST_F(ReservationTest, APausedJobNotResumedByItsDeadlineIsCancelled) {
  TwoFreeGpus();
  StartWithFakeGpus(/*capacity=*/2);
  const v1::Reservation a = Reserve(Request("a", 1));
  const v1::Reservation b = Reserve(Request("b", 1));
  auto create = [&](const v1::Reservation& r, double resume_in_s, v1::Job* job) {
    v1::CreateJobRequest req;
    *req.mutable_job() = TinySpec(10'000'000);
    req.set_reservation(r.name());
    req.set_start_paused(true);
    const absl::Time by = absl::Now() + absl::Seconds(resume_in_s);
    req.mutable_resume_by()->set_seconds(absl::ToUnixSeconds(by));
    return jobs_->CreateJob(Ctx().get(), req, job);
  };
  v1::Job late, on_time;
  ASSERT_TRUE(create(a, 1.5, &late).ok());
  ASSERT_TRUE(create(b, 30, &on_time).ok());
  EXPECT_EQ(late.state(), v1::PAUSED);
  EXPECT_TRUE(late.has_resume_by());
  v1::ResumeJobRequest resume;
  resume.set_name(on_time.name());
  ASSERT_TRUE(jobs_->ResumeJob(Ctx().get(), resume, &on_time).ok());
  EXPECT_FALSE(on_time.has_resume_by());

  late = WaitState(late.name(), v1::CANCELLED);
  EXPECT_NE(late.error().find("not resumed by"), std::string::npos) << late.error();
  EXPECT_EQ(WaitReservation(a.name(), v1::RELEASED).job(), late.name());
  EXPECT_EQ(Get(on_time.name()).state(), v1::RUNNING);

  // The deadline passes while the daemon is down.
  const v1::Reservation c = Reserve(Request("c", 1));
  v1::Job orphan;
  ASSERT_TRUE(create(c, 1.5, &orphan).ok());
  kill(pid_, SIGTERM);
  WaitDaemon();
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  StartWithFakeGpus(/*capacity=*/2);
  orphan = WaitState(orphan.name(), v1::CANCELLED);
  WaitReservation(c.name(), v1::RELEASED);

  v1::CreateJobRequest bad;
  *bad.mutable_job() = TinySpec(10);
  bad.mutable_resume_by()->set_seconds(absl::ToUnixSeconds(absl::Now()) + 60);
  v1::Job none;
  grpc::Status s = jobs_->CreateJob(Ctx().get(), bad, &none);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  v1::CancelJobRequest cancel;
  cancel.set_name(on_time.name());
  ASSERT_TRUE(jobs_->CancelJob(Ctx().get(), cancel, &on_time).ok());
}

TEST_F(ReservationTest, AJobKeepsItsReservationOverADaemonRestart) {
  TwoFreeGpus();
  StartWithFakeGpus(/*capacity=*/1);
  const v1::Reservation a = Reserve(Request("a", 1));
  v1::Job job;
  ASSERT_TRUE(CreateOn(a.name(), TinySpec(10'000'000), &job).ok());
  WaitState(job.name(), v1::RUNNING);
  kill(pid_, SIGTERM);  // the job checkpoints and resumes on the next start
  WaitDaemon();
  StartWithFakeGpus(/*capacity=*/1);

  const v1::Reservation r = GetReservation(a.name());
  EXPECT_EQ(r.state(), v1::CONSUMED);
  EXPECT_EQ(r.job(), job.name());
  job = WaitState(job.name(), v1::RUNNING);  // its slot is the reservation's
  EXPECT_EQ(job.restarts(), 1);
  EXPECT_EQ(Gpu(Resources(), "GPU-fake-0")->held_by(), a.name());
  v1::Reservation other;
  grpc::Status s = TryReserve(Request("b", 0, 600, {"GPU-fake-0"}), &other);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();

  v1::CancelJobRequest cancel;
  cancel.set_name(job.name());
  ASSERT_TRUE(jobs_->CancelJob(Ctx().get(), cancel, &job).ok());
  WaitReservation(a.name(), v1::RELEASED);
}

}  // namespace
}  // namespace elektronn
