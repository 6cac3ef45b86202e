// The hyper-parameter table: every entry is consistent with the protos, round-trips through
// job file -> Trainer -> v1::Hyperparameters and back by name, proto field and alias, refuses
// values outside its range with a message naming it and the range, and is schedulable exactly
// when the table says so. A new entry is covered here without a new line of test.
#include "engine/config/hyperparams.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "elektronn/v1/control.pb.h"
#include "engine/config/schedule.h"
#include "engine/lua/job_file.h"
#include "engine/lua/schedule_text.h"
#include "engine/trainer/trainer.h"
#include "google/protobuf/descriptor.h"
#include "tests/support/tiny_job.h"
#include "worker/worker_control.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// Every spelling a reader accepts: name, proto field, aliases.
std::vector<std::string> Spellings(const HyperparameterDef& d) {
  std::vector<std::string> all = {d.name, d.proto_field};
  all.insert(all.end(), d.aliases.begin(), d.aliases.end());
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  return all;
}

// The k-th valid test value of `d`: inside the range, exact in float, not the default.
double TestValue(const HyperparameterDef& d, int k) {
  if (d.type == HyperparameterType::kInt) return d.min + 3 + k;
  const double hi = std::isinf(d.max) ? d.min + 1 : d.max;
  return d.min + (hi - d.min) * (0.375 + 0.125 * k);
}

// Values the range refuses.
std::vector<double> BadValues(const HyperparameterDef& d) {
  std::vector<double> bad = {d.min - 1, std::nan("")};
  if (!std::isinf(d.max)) bad.push_back(d.max_exclusive ? d.max : d.max + 1);
  if (d.type == HyperparameterType::kInt) bad.push_back(d.min + 0.5);
  return bad;
}

// Lua text that sets `key` to `v` in a job file, or "" if it is not a job-file key.
std::string JobFileLine(const HyperparameterDef& d, const std::string& key, double v) {
  const std::string value = absl::StrCat(v);
  switch (d.job_file) {
    case JobFileKey::kOptimiserParams:
      return absl::StrCat("\noptimiser_params = {", key, " = ", value, "}\n");
    case JobFileKey::kTopLevel:
      return absl::StrCat("\n", key, " = ", value, "\n");
    case JobFileKey::kNone:
      return "";
  }
  return "";
}

TEST(Hyperparameters, TableMatchesTheProtos) {
  const auto* hyper = v1::Hyperparameters::descriptor();
  std::set<std::string> spellings, shortcuts;
  for (const HyperparameterDef& d : Hyperparameters()) {
    SCOPED_TRACE(d.name);
    EXPECT_TRUE(d.get && d.set);
    EXPECT_LT(d.min, d.max);
    EXPECT_FALSE(d.help.empty());
    for (const std::string& s : Spellings(d)) {
      EXPECT_TRUE(spellings.insert(s).second) << "'" << s << "' names two entries";
      EXPECT_EQ(FindHyperparameter(s), &d);
    }
    EXPECT_EQ(FindHyperparameterByProtoField(d.proto_field), &d);
    if (!d.shortcut.empty()) {
      EXPECT_TRUE(shortcuts.insert(d.shortcut).second);
      EXPECT_EQ(d.shortcut.rfind("set", 0), 0u) << d.shortcut;
    }
    // The proto field exists in Hyperparameters with the entry's type.
    const auto* f = hyper->FindFieldByName(d.proto_field);
    ASSERT_NE(f, nullptr) << "v1::Hyperparameters has no field " << d.proto_field;
    EXPECT_EQ(f->cpp_type(), d.type == HyperparameterType::kInt
                                 ? google::protobuf::FieldDescriptor::CPPTYPE_INT64
                                 : google::protobuf::FieldDescriptor::CPPTYPE_DOUBLE);
    // ... and in the message a job file writes, where a job file sets it.
    if (d.job_file == JobFileKey::kOptimiserParams) {
      const auto* o = v1::OptimiserParams::descriptor()->FindFieldByName(d.proto_field);
      ASSERT_NE(o, nullptr) << "v1::OptimiserParams has no field " << d.proto_field;
      EXPECT_TRUE(o->has_presence()) << "unset must mean the default";
    }
    if (d.job_file == JobFileKey::kTopLevel) {
      EXPECT_NE(v1::TrainingSpec::descriptor()->FindFieldByName(d.proto_field), nullptr);
    }
    if (!std::isnan(d.default_value)) {
      EXPECT_TRUE(CheckHyperparameterValue(d, d.default_value).ok());
    }
    // Only job-file keys may be required (no default).
    if (std::isnan(d.default_value)) {
      EXPECT_NE(d.job_file, JobFileKey::kOptimiserParams);
    }
  }
  // Every value field of Hyperparameters is an entry (schedules and step are not values).
  for (int i = 0; i < hyper->field_count(); ++i) {
    const std::string field = hyper->field(i)->name();
    if (field == "schedules" || field == "step") continue;
    EXPECT_NE(FindHyperparameterByProtoField(field), nullptr) << field << " is not in the table";
  }
  EXPECT_EQ(LookupHyperparameter("lernrate").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(LookupHyperparameter("lernrate").status().message()),
              HasSubstr("lr (learning_rate)"));
}

TEST(Hyperparameters, RangesRefuseBadValuesNamingTheNameAndTheRange) {
  for (const HyperparameterDef& d : Hyperparameters()) {
    SCOPED_TRACE(d.name);
    for (int k = 0; k < 3; ++k) EXPECT_TRUE(CheckHyperparameterValue(d, TestValue(d, k)).ok());
    for (double v : BadValues(d)) {
      absl::Status s = CheckHyperparameterValue(d, v);
      EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << v;
      EXPECT_THAT(std::string(s.message()), HasSubstr(d.name));
      EXPECT_THAT(std::string(s.message()), HasSubstr(RangeText(d)));
      EXPECT_TRUE(CheckHyperparameterValue(d, ClampHyperparameterValue(d, v)).ok()) << v;
    }
    EXPECT_FALSE(ParseHyperparameterValue(d, "abc").ok());
    EXPECT_THAT(std::string(ParseHyperparameterValue(d, "abc").status().message()),
                HasSubstr(RangeText(d)));
  }
  // The texts people read.
  EXPECT_EQ(RangeText(*FindHyperparameter("lr")), ">= 0");
  EXPECT_EQ(RangeText(*FindHyperparameter("mom")), "in [0, 1]");
  EXPECT_EQ(RangeText(*FindHyperparameter("dropout")), "in [0, 1)");
  EXPECT_EQ(RangeText(*FindHyperparameter("history_freq")), "an integer >= 1");
  EXPECT_EQ(std::string(CheckHyperparameterValue(*FindHyperparameter("lr"), -1).message()),
            "lr must be >= 0, got -1");
}

TEST(Hyperparameters, SchedulableAgreesWithSchedules) {
  v1::Schedule dec;
  dec.set_dec(0.5);
  std::vector<std::string> schedulable;
  for (const HyperparameterDef& d : Hyperparameters()) {
    if (d.schedulable) schedulable.push_back(d.name);
    for (const std::string& s : Spellings(d)) {
      SCOPED_TRACE(s);
      absl::StatusOr<Schedule> sch = Schedule::Create(s, dec);
      EXPECT_EQ(sch.ok(), d.schedulable) << sch.status();
      if (sch.ok()) {
        EXPECT_EQ(sch->name(), d.name);  // stored under the name
      }
      EXPECT_EQ(ParseScheduleText(s, "{dec = 0.5}").ok(), d.schedulable);
    }
  }
  EXPECT_EQ(HyperparameterNameList(/*schedulable_only=*/true), absl::StrJoin(schedulable, ", "));
  absl::StatusOr<Schedule> none = Schedule::Create("batch_size", dec);
  ASSERT_FALSE(none.ok());
  EXPECT_THAT(std::string(none.status().message()), HasSubstr(HyperparameterNameList(true)));
  // Job-file syntax, checked by the job files' reader.
  absl::StatusOr<v1::Schedule> s = ParseScheduleText("learning_rate", "{dec = 0.99}");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_DOUBLE_EQ(s->dec(), 0.99);
  s = ParseScheduleText("lr", "{lindec = {5000, 1e-3}, granularity = 10}");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->lindec().n(), 5000);
  EXPECT_EQ(s->granularity(), 10);
  s = ParseScheduleText("lr", "{dec = 0.9, lindec = {1000, 1}}");
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("schedules.lr must have only one"));
  s = ParseScheduleText("mom", "{updates = {{100, 2}}}");  // mom must be in [0, 1]
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("mom must be in [0, 1], got 2"));
  EXPECT_FALSE(ParseScheduleText("lr", "os.exit(1)").ok());  // the sandbox
}

class HyperparametersWithTrainer : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("elk_hyper_" + std::to_string(getpid()));
    fs::remove_all(dir_);
    // Dropout and a 'fadeout' layer, so dropout_rates and gradnet_rates have layers to act on.
    testing::TinyJobOptions o;
    o.save_name = "hyper";
    o.optimiser = "Adam";
    o.dropout = true;
    o.history_freq = 1000;
    o.hidden = "out = nm.Conv{out, 4, {1, 3, 3}DROPOUT, batch_normalisation = 'fadeout'}";
    auto job = testing::MakeTinyJob(dir_, o);
    ASSERT_TRUE(job.ok()) << job.status();
    job_ = *job;
    backend_ = kernels::CreateCpuBackend();
  }
  void TearDown() override { fs::remove_all(dir_); }

  // The tiny job's source with `extra` appended (later assignments win), loaded.
  absl::StatusOr<v1::JobSpec> Load(const std::string& extra) {
    return LoadJobSource(job_.job_file_source() + extra, "hyper.lua");
  }

  fs::path dir_;
  v1::JobSpec job_;
  std::unique_ptr<kernels::Backend> backend_;
};

TEST_F(HyperparametersWithTrainer, EveryEntryRoundTrips) {
  // Job file: every job-file key under every spelling lands in its proto field.
  for (const HyperparameterDef& d : Hyperparameters()) {
    if (d.job_file == JobFileKey::kNone) continue;
    for (const std::string& key : Spellings(d)) {
      SCOPED_TRACE(d.name + " as " + key);
      const double v = TestValue(d, 0);
      auto spec = Load(JobFileLine(d, key, v));
      ASSERT_TRUE(spec.ok()) << spec.status();
      const auto& msg =
          d.job_file == JobFileKey::kOptimiserParams
              ? static_cast<const google::protobuf::Message&>(spec->training().optimiser_params())
              : spec->training();
      EXPECT_EQ(GetProtoValue(d, msg).value_or(-1), v);
      // `elektronn train/submit --set key=value` too.
      v1::TrainingSpec over = job_.training();
      ASSERT_TRUE(ApplyTrainingOverride(key + "=" + FormatHyperparameterValue(d, v), &over).ok());
      const auto& omsg =
          d.job_file == JobFileKey::kOptimiserParams
              ? static_cast<const google::protobuf::Message&>(over.optimiser_params())
              : over;
      EXPECT_EQ(GetProtoValue(d, omsg).value_or(-1), v);
      for (double bad : BadValues(d)) {
        if (std::isnan(bad)) continue;
        auto refused = Load(JobFileLine(d, key, bad));
        ASSERT_FALSE(refused.ok()) << bad;
        EXPECT_THAT(std::string(refused.status().message()),
                    HasSubstr(absl::StrCat(key, " must be ", RangeText(d))));
        absl::Status o = ApplyTrainingOverride(key + "=" + absl::StrCat(bad), &over);
        EXPECT_THAT(std::string(o.message()), HasSubstr(RangeText(d))) << bad;
      }
    }
  }
  // Job file with every job-file key at its test value -> Trainer -> Hyperparameters.
  std::string extra = "\noptimiser_params = {";
  for (const HyperparameterDef& d : Hyperparameters()) {
    if (d.job_file == JobFileKey::kOptimiserParams) {
      absl::StrAppend(&extra, d.name, " = ", FormatHyperparameterValue(d, TestValue(d, 0)), ", ");
    }
  }
  extra += "}\n";
  for (const HyperparameterDef& d : Hyperparameters()) {
    if (d.job_file == JobFileKey::kTopLevel) extra += JobFileLine(d, d.name, TestValue(d, 0));
  }
  auto spec = Load(extra);
  ASSERT_TRUE(spec.ok()) << spec.status();
  TrainerOptions opt;
  opt.console = false;
  auto trainer = Trainer::Create(*spec, backend_.get(), opt);
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  Trainer& t = **trainer;
  v1::Hyperparameters start;
  WriteStartValues(spec->training(), &start);  // what the daemon shows before the worker reports
  v1::Hyperparameters live;
  FillHyperparameters(t, &live);
  for (const HyperparameterDef& d : Hyperparameters()) {
    SCOPED_TRACE(d.name);
    absl::StatusOr<double> v = t.GetHyperparameter(d.name);
    ASSERT_TRUE(v.ok()) << v.status();
    if (d.job_file != JobFileKey::kNone) {
      EXPECT_FLOAT_EQ(*v, TestValue(d, 0));
      EXPECT_FLOAT_EQ(GetProtoValue(d, start).value_or(-1), TestValue(d, 0));
    }
    EXPECT_FLOAT_EQ(GetProtoValue(d, live).value_or(-1), *v);
    // Set by every spelling; read back through the Trainer and the proto.
    int k = 1;
    for (const std::string& s : Spellings(d)) {
      SCOPED_TRACE(s);
      const double want = TestValue(d, k++);
      ASSERT_TRUE(t.SetHyperparameter(s, want, "test").ok());
      EXPECT_FLOAT_EQ(t.GetHyperparameter(d.name).value_or(-1), want);
      EXPECT_FLOAT_EQ(t.GetHyperparameter(s).value_or(-1), want);
      FillHyperparameters(t, &live);
      EXPECT_FLOAT_EQ(GetProtoValue(d, live).value_or(-1), want);
    }
    // Bad values change nothing and name the hyper-parameter and its range.
    const double before = *t.GetHyperparameter(d.name);
    for (double bad : BadValues(d)) {
      absl::Status s = t.SetHyperparameter(d.proto_field, bad, "test");
      EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
      EXPECT_THAT(std::string(s.message()), HasSubstr(d.name + " must be " + RangeText(d)));
      EXPECT_FLOAT_EQ(*t.GetHyperparameter(d.name), before);
    }
  }
  EXPECT_FALSE(t.SetHyperparameter("lernrate", 1, "test").ok());
  // Values kept as float read back as the decimal that was set (JSON shows 0.9, not 0.89999997).
  for (const HyperparameterDef& d : Hyperparameters()) {
    if (d.type != HyperparameterType::kDouble) continue;
    const double v = d.max_exclusive || d.max <= 1 ? 0.1 : 1e-5;
    ASSERT_TRUE(t.SetHyperparameter(d.name, v, "test").ok()) << d.name;
    FillHyperparameters(t, &live);
    EXPECT_EQ(GetProtoValue(d, live).value_or(-1), v) << d.name;
  }
}

TEST_F(HyperparametersWithTrainer, SchedulesAreSetReplacedAndRemovedLive) {
  auto spec = Load("\nschedules = {learning_rate = {dec = 0.5, granularity = 2}}\n");
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_EQ(spec->training().schedules().count("lr"), 1u);  // stored under the name
  TrainerOptions opt;
  opt.console = false;
  auto trainer = Trainer::Create(*spec, backend_.get(), opt);
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  Trainer& t = **trainer;
  v1::Hyperparameters h;
  FillHyperparameters(t, &h);
  ASSERT_EQ(h.schedules().count("lr"), 1u);
  EXPECT_EQ(h.schedules().at("lr").granularity(), 2);
  // Every schedulable entry takes a schedule; the others are refused.
  v1::Schedule up;
  for (const HyperparameterDef& d : Hyperparameters()) {
    auto* u = up.mutable_updates()->add_updates();
    u->set_step(10);
    u->set_value(TestValue(d, 0));
    absl::Status s = t.SetSchedule(d.proto_field, &up, "test");
    EXPECT_EQ(s.ok(), d.schedulable) << d.name << ": " << s;
    up.clear_updates();
  }
  FillHyperparameters(t, &h);
  for (const HyperparameterDef& d : Hyperparameters()) {
    EXPECT_EQ(h.schedules().count(d.name), d.schedulable ? 1u : 0u) << d.name;
  }
  ASSERT_EQ(h.schedules().count("lr"), 1u);
  EXPECT_TRUE(h.schedules().at("lr").has_updates()) << "the job file's dec was not replaced";
  for (const HyperparameterDef& d : Hyperparameters()) {
    ASSERT_TRUE(t.SetSchedule(d.name, nullptr, "test").ok());
  }
  FillHyperparameters(t, &h);
  EXPECT_TRUE(h.schedules().empty());
  v1::Schedule bad;
  bad.set_dec(-1);
  EXPECT_FALSE(t.SetSchedule("lr", &bad, "test").ok());
}

}  // namespace
}  // namespace elektronn
