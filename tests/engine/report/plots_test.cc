// Training plots: valid PNGs of the documented size, edge cases, clear errors, atomic writes.
#include "engine/report/plots.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/support/test_dir.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

struct PngSize {
  uint32_t width = 0, height = 0;
};

uint32_t BigEndian32(const std::string& b, size_t at) {
  return (uint32_t{static_cast<uint8_t>(b[at])} << 24) |
         (uint32_t{static_cast<uint8_t>(b[at + 1])} << 16) |
         (uint32_t{static_cast<uint8_t>(b[at + 2])} << 8) |
         uint32_t{static_cast<uint8_t>(b[at + 3])};
}

// Checks the 8-byte PNG signature and reads the size from the IHDR chunk that must follow it.
::testing::AssertionResult ReadPngSize(const std::string& path, PngSize* size) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return ::testing::AssertionFailure() << "cannot open " << path;
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string signature("\x89PNG\r\n\x1a\n", 8);
  if (bytes.size() < 33 || bytes.compare(0, 8, signature) != 0) {
    return ::testing::AssertionFailure() << path << " does not start with the PNG signature";
  }
  if (BigEndian32(bytes, 8) != 13 || bytes.compare(12, 4, "IHDR") != 0) {
    return ::testing::AssertionFailure() << path << " has no IHDR chunk first";
  }
  size->width = BigEndian32(bytes, 16);
  size->height = BigEndian32(bytes, 20);
  return ::testing::AssertionSuccess();
}

// No "<name>.tmp-XXXXXX" is left beside the plots.
bool NoTemporaries(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().find(".tmp-") != std::string::npos) return false;
  }
  return true;
}

class PlotsTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::FreshTestDir("elk_plots"); }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

// A 300-step run: decaying noisy loss, prevalence-dependent, 1.7 s per step.
std::vector<TimelinePoint> RealisticTimeline(int steps = 300) {
  std::mt19937 rng(42);
  std::normal_distribution<double> noise(0.0, 1.0);
  std::uniform_real_distribution<double> prevalence(0.05, 0.45);
  std::vector<TimelinePoint> points;
  for (int i = 0; i < steps; ++i) {
    const double p = prevalence(rng);
    const double clean = 0.12 + 0.8 * std::exp(-i / 70.0);
    points.push_back({1.7 * (i + 1), clean * (0.8 + p) + 0.05 * noise(rng) * (0.3 + clean), p});
  }
  return points;
}

// Monitored every 10 steps of the same run; errors in %.
std::vector<HistoryRow> RealisticHistory(int steps = 300, int freq = 10) {
  std::mt19937 rng(7);
  std::normal_distribution<double> noise(0.0, 1.0);
  std::vector<HistoryRow> rows;
  double lr = 1e-3;
  for (int i = 0; i < steps; i += freq) {
    const double clean = 0.12 + 0.8 * std::exp(-i / 70.0);
    HistoryRow r;
    r.step = i;
    r.time_s = 1.7 * i;
    r.train_loss = clean + 0.02 * noise(rng);
    r.valid_loss = clean * 1.1 + 0.03 * noise(rng);
    r.loss_gain = -0.02 * clean + 0.004 * noise(rng);
    r.train_err = 100 * (0.05 + 0.4 * std::exp(-i / 60.0)) + 1.5 * noise(rng);
    r.valid_err = 100 * (0.07 + 0.4 * std::exp(-i / 60.0)) + 2.5 * noise(rng);
    r.lr = lr;
    r.mom = i < 150 ? 0.9 : 0.95;
    lr *= 0.97;
    rows.push_back(r);
  }
  return rows;
}

TEST_F(PlotsTest, HistoryWritesPngOfDocumentedSize) {
  const std::string path = Path("history.png");
  ASSERT_TRUE(PlotHistory(path, RealisticHistory(), /*classification=*/true).ok());
  PngSize size;
  ASSERT_TRUE(ReadPngSize(path, &size));
  EXPECT_EQ(size.width, 1000u);
  EXPECT_EQ(size.height, 800u);
  EXPECT_TRUE(NoTemporaries(dir_));
  std::cout << "example history plot: " << path << "\n";
}

TEST_F(PlotsTest, TimelineWritesPngOfDocumentedSize) {
  const std::string path = Path("timeline.png");
  ASSERT_TRUE(PlotTimeline(path, RealisticTimeline(), 200).ok());
  PngSize size;
  ASSERT_TRUE(ReadPngSize(path, &size));
  EXPECT_EQ(size.width, 1000u);
  EXPECT_EQ(size.height, 800u);
  EXPECT_TRUE(NoTemporaries(dir_));
  std::cout << "example timeline plot: " << path << "\n";
}

TEST_F(PlotsTest, HistoryWithoutValidationData) {
  std::vector<HistoryRow> rows = RealisticHistory();
  for (HistoryRow& r : rows) r.valid_loss = r.valid_err = kNaN;
  const std::string path = Path("history_no_valid.png");
  const absl::Status s = PlotHistory(path, rows, /*classification=*/false);
  ASSERT_TRUE(s.ok()) << s;
  PngSize size;
  EXPECT_TRUE(ReadPngSize(path, &size));
}

TEST_F(PlotsTest, HistoryWithSingleRow) {
  const std::vector<HistoryRow> rows = {{0, 0.0, 0.7, kNaN, -0.01, 45.0, kNaN, 1e-3, 0.9}};
  const std::string path = Path("history_one.png");
  const absl::Status s = PlotHistory(path, rows, true);
  ASSERT_TRUE(s.ok()) << s;
  PngSize size;
  EXPECT_TRUE(ReadPngSize(path, &size));
}

TEST_F(PlotsTest, HistoryWithConstantAndNonFiniteValues) {
  std::vector<HistoryRow> rows(20);
  for (int i = 0; i < 20; ++i) {
    rows[i] = {i * 100, i * 10.0, 0.5, 0.5, 0.0, 10.0, 10.0, 1e-4, 0.9};
  }
  rows[3].train_loss = kInf;
  rows[4].loss_gain = kNaN;
  rows[5].train_err = -kInf;
  rows[6].lr = kNaN;
  const std::string path = Path("history_constant.png");
  const absl::Status s = PlotHistory(path, rows, true);
  ASSERT_TRUE(s.ok()) << s;
  PngSize size;
  EXPECT_TRUE(ReadPngSize(path, &size));
}

TEST_F(PlotsTest, HistoryRejectsEmptyInput) {
  const std::string path = Path("history_empty.png");
  const absl::Status s = PlotHistory(path, {}, true);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("no history rows"), std::string::npos) << s;
  EXPECT_NE(s.message().find(path), std::string::npos) << s;
  EXPECT_FALSE(fs::exists(path));
}

TEST_F(PlotsTest, TimelineRejectsEmptyInputAndBadSmoothing) {
  const std::string path = Path("timeline_empty.png");
  absl::Status s = PlotTimeline(path, {}, 200);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("no timeline points"), std::string::npos) << s;
  s = PlotTimeline(path, RealisticTimeline(10), 0);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("smoothing_length is 0"), std::string::npos) << s;
  EXPECT_FALSE(fs::exists(path));
}

TEST_F(PlotsTest, UnwritablePathIsNamedInTheError) {
  const std::string path = Path("no_such_dir/sub/history.png");
  absl::Status s = PlotHistory(path, RealisticHistory(), true);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find(path), std::string::npos) << s;
  s = PlotTimeline(path, RealisticTimeline(), 200);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find(path), std::string::npos) << s;
  EXPECT_TRUE(NoTemporaries(dir_));
}

TEST_F(PlotsTest, TimelineSkipsNonFiniteLossesAndHandlesOnePoint) {
  std::vector<TimelinePoint> points = RealisticTimeline();
  points[10].loss = kNaN;
  points[50].loss = kInf;
  points[299].loss = -kInf;
  points[100].batch_char = kNaN;
  const std::string path = Path("timeline_nan.png");
  absl::Status s = PlotTimeline(path, points, 200);
  ASSERT_TRUE(s.ok()) << s;
  PngSize size;
  EXPECT_TRUE(ReadPngSize(path, &size));

  const std::string one = Path("timeline_one.png");
  s = PlotTimeline(one, {{2.0, 0.7, 0.3}}, 200);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(ReadPngSize(one, &size));

  const std::string all_nan = Path("timeline_all_nan.png");
  s = PlotTimeline(all_nan, {{1.0, kNaN, 0.1}, {2.0, kInf, 0.2}}, 200);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(ReadPngSize(all_nan, &size));
}

TEST_F(PlotsTest, LongTimelineInHoursAndConstantLoss) {
  std::vector<TimelinePoint> points;
  for (int i = 0; i < 50000; ++i) points.push_back({i * 0.5, 0.25, 0.0});
  const std::string path = Path("timeline_long.png");
  const absl::Status s = PlotTimeline(path, points, 200);
  ASSERT_TRUE(s.ok()) << s;
  PngSize size;
  EXPECT_TRUE(ReadPngSize(path, &size));
}

TEST_F(PlotsTest, OverwritesAnExistingPlot) {
  const std::string path = Path("timeline.png");
  { std::ofstream(path) << "stale"; }
  ASSERT_TRUE(PlotTimeline(path, RealisticTimeline(), 200).ok());
  PngSize size;
  EXPECT_TRUE(ReadPngSize(path, &size));
}

TEST_F(PlotsTest, ConcurrentCallsAreSafe) {
  std::vector<std::thread> threads;
  std::vector<absl::Status> results(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      results[t] = t % 2 == 0
                       ? PlotHistory(Path(absl::StrCat("h", t, ".png")), RealisticHistory(), true)
                       : PlotTimeline(Path(absl::StrCat("t", t, ".png")), RealisticTimeline(), 50);
    });
  }
  for (std::thread& th : threads) th.join();
  for (const absl::Status& s : results) EXPECT_TRUE(s.ok()) << s;
}

}  // namespace
}  // namespace elektronn
