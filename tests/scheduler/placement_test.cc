// Placement: free GPUs only, no oversubscription, groups all or nothing, priority order, and a
// search that finds fits a first-fit would miss.
#include "scheduler/placement.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace elektronn::sched {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

v1::Resources Host(const std::string& name, int gpus, int cpus = 16, int capacity = 8) {
  v1::Resources r;
  r.set_hostname(name);
  r.set_cpu_count(cpus);
  r.set_memory_total_bytes(int64_t{64} << 30);
  r.set_memory_available_bytes(int64_t{64} << 30);
  r.set_capacity(capacity);
  for (int i = 0; i < gpus; ++i) r.add_gpus()->set_uuid(absl::StrCat("GPU-", name, "-", i));
  return r;
}

v1::ExperimentMember* Add(v1::Experiment* e, const std::string& name, int gpus,
                          const std::string& group = "", int priority = 0) {
  v1::ExperimentMember* m = e->add_members();
  m->set_name(name);
  m->mutable_needs()->set_gpus(gpus);
  m->set_group(group);
  m->set_priority(priority);
  return m;
}

TEST(PlacementTest, SnapshotMarksGpusWithForeignProcessesBusy) {
  v1::Resources r = Host("h", 2, 8, 3);
  r.mutable_gpus(1)->add_foreign_pids(4711);
  r.add_running_jobs("jobs/000001");
  const HostSnapshot s = SnapshotOf("h:7077", r);
  ASSERT_EQ(s.gpus.size(), 2u);
  EXPECT_TRUE(s.gpus[0].free);
  EXPECT_FALSE(s.gpus[1].free);
  EXPECT_THAT(s.gpus[1].busy_why, HasSubstr("4711"));
  EXPECT_EQ(s.job_slots_free, 2);
  EXPECT_EQ(s.cpu_threads_free, 8);
}

TEST(PlacementTest, SnapshotCountsReservationsAndTheDaemonsBusyVerdict) {
  v1::Resources r = Host("h", 3, 8, 4);
  r.mutable_gpus(0)->set_busy(true);
  r.mutable_gpus(0)->set_busy_reason("held by reservations/000002");
  v1::Reservation* held = r.add_reservations();
  held->set_state(v1::ACTIVE);
  held->set_cpu_threads(3);
  held->set_memory_bytes(int64_t{16} << 30);
  v1::Reservation* used = r.add_reservations();
  used->set_state(v1::CONSUMED);
  used->set_cpu_threads(2);
  r.add_running_jobs("jobs/000004");  // the consumed reservation's job
  v1::Reservation* ended = r.add_reservations();
  ended->set_state(v1::EXPIRED);
  ended->set_cpu_threads(100);
  const HostSnapshot s = SnapshotOf("h:7077", r);
  EXPECT_FALSE(s.gpus[0].free);
  EXPECT_EQ(s.gpus[0].busy_why, "held by reservations/000002");
  EXPECT_TRUE(s.gpus[1].free);
  EXPECT_EQ(s.cpu_threads_free, 8 - 3 - 2);
  EXPECT_EQ(s.memory_free, int64_t{48} << 30);
  EXPECT_EQ(s.job_slots_free, 4 - 1 - 1);
}

TEST(PlacementTest, NeverTwoMembersOnOneGpu) {
  v1::Experiment e;
  for (int i = 0; i < 5; ++i) Add(&e, absl::StrCat("m", i), 1);
  std::vector<HostSnapshot> hosts = {SnapshotOf("a", Host("a", 2)), SnapshotOf("b", Host("b", 2))};
  std::set<std::string> used;
  int placed = 0;
  for (const auto& g : GroupsInOrder(e)) {
    auto fit = PlaceGroup(e, g, &hosts);
    if (!fit) continue;
    for (const Assignment& a : *fit) {
      ASSERT_EQ(a.gpu_uuids.size(), 1u);
      EXPECT_TRUE(used.insert(a.gpu_uuids[0]).second) << a.gpu_uuids[0] << " given twice";
      ++placed;
    }
  }
  EXPECT_EQ(placed, 4);  // the fifth waits
}

TEST(PlacementTest, AGroupStartsWhollyOrNotAtAll) {
  v1::Experiment e;
  for (int i = 0; i < 3; ++i) Add(&e, absl::StrCat("g", i), 1, "g");
  std::vector<HostSnapshot> hosts = {SnapshotOf("a", Host("a", 2))};
  const std::vector<HostSnapshot> before = hosts;
  EXPECT_FALSE(PlaceGroup(e, GroupsInOrder(e)[0], &hosts).has_value());
  // Nothing was taken by the failed attempt.
  EXPECT_TRUE(hosts[0].gpus[0].free && hosts[0].gpus[1].free);
  EXPECT_EQ(hosts[0].job_slots_free, before[0].job_slots_free);
  hosts.push_back(SnapshotOf("b", Host("b", 1)));
  auto fit = PlaceGroup(e, GroupsInOrder(e)[0], &hosts);
  ASSERT_TRUE(fit.has_value());
  EXPECT_EQ(fit->size(), 3u);
}

TEST(PlacementTest, ASearchFindsWhatFirstFitMisses) {
  // Two 2-GPU hosts, b with 64 GiB and a with 8. Member x (more threads) is placed first and
  // first-fit would put it on b, leaving y (32 GiB) nowhere; the search backs up and puts x on a.
  v1::Experiment e;
  v1::ExperimentMember* y = Add(&e, "y", 2, "g");
  y->mutable_needs()->set_memory_bytes(int64_t{32} << 30);
  v1::ExperimentMember* x = Add(&e, "x", 2, "g");
  x->mutable_needs()->set_cpu_threads(2);
  x->mutable_needs()->set_memory_bytes(int64_t{4} << 30);
  v1::Resources small = Host("a", 2);
  small.set_memory_available_bytes(int64_t{8} << 30);
  std::vector<HostSnapshot> hosts = {SnapshotOf("b", Host("b", 2)), SnapshotOf("a", small)};
  auto fit = PlaceGroup(e, GroupsInOrder(e)[0], &hosts);
  ASSERT_TRUE(fit.has_value());
  EXPECT_EQ((*fit)[0].member, 0);  // in group order
  EXPECT_EQ((*fit)[0].host, 0);    // y on b
  EXPECT_EQ((*fit)[1].host, 1);    // x on a
  // CPU threads bound: three 6-thread members on two 10-thread hosts; the third waits.
  v1::Experiment cpu;
  for (int i = 0; i < 3; ++i)
    Add(&cpu, absl::StrCat("c", i), 0)->mutable_needs()->set_cpu_threads(6);
  std::vector<HostSnapshot> two = {SnapshotOf("a", Host("a", 0, 10)),
                                   SnapshotOf("b", Host("b", 0, 10))};
  int placed = 0;
  for (const auto& g : GroupsInOrder(cpu)) placed += PlaceGroup(cpu, g, &two).has_value();
  EXPECT_EQ(placed, 2);
}

TEST(PlacementTest, PriorityThenFileOrder) {
  v1::Experiment e;
  Add(&e, "first", 1);
  Add(&e, "grouped1", 1, "g");
  Add(&e, "urgent", 1, "", 10);
  Add(&e, "grouped2", 1, "g", 3);
  const auto groups = GroupsInOrder(e);
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_THAT(groups[0], ElementsAre(2));
  EXPECT_THAT(groups[1], ElementsAre(1, 3));  // the group takes its highest priority
  EXPECT_THAT(groups[2], ElementsAre(0));
}

TEST(PlacementTest, HostConstraintsAndJobSlots) {
  v1::Experiment e;
  Add(&e, "pinned", 1)->add_hosts("b-host");  // by hostname
  Add(&e, "any", 1);
  std::vector<HostSnapshot> hosts = {SnapshotOf("a:1", Host("a-host", 4, 16, 1)),
                                     SnapshotOf("b:1", Host("b-host", 1, 16, 1))};
  auto g = GroupsInOrder(e);
  auto p = PlaceGroup(e, g[0], &hosts);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ((*p)[0].host, 1);
  auto q = PlaceGroup(e, g[1], &hosts);
  ASSERT_TRUE(q.has_value());
  EXPECT_EQ((*q)[0].host, 0);
  // Both daemons are at capacity (one job each) now.
  Add(&e, "third", 0);
  EXPECT_FALSE(PlaceGroup(e, GroupsInOrder(e)[2], &hosts).has_value());
}

TEST(PlacementTest, FeasibilityNamesWhatCanNeverStart) {
  v1::Experiment e;
  Add(&e, "ok", 1);
  Add(&e, "huge", 3);
  Add(&e, "nowhere", 1)->add_hosts("gpu9:7077");
  std::vector<HostSnapshot> hosts = {SnapshotOf("a:1", Host("a", 2))};
  const absl::Status s = CheckFeasible(e, hosts);
  EXPECT_THAT(std::string(s.message()), HasSubstr("member 'huge' needs 3 GPUs"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("a:1 has 2 GPUs"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("member 'nowhere' may run only on gpu9:7077"));
  EXPECT_THAT(std::string(s.message()), ::testing::Not(HasSubstr("'ok'")));
}

}  // namespace
}  // namespace elektronn::sched
