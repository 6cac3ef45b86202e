// `elektronn check job.lua --graph out.svg|out.png`: the model picture from the command line,
// and a clear usage error for other file types.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "tests/support/cli_test.h"
#include "tests/support/tiny_job.h"

namespace elektronn {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

class CheckGraph : public testing::CliTest {
 protected:
  void SetUp() override {
    MakeDir("elk_check_graph_");
    testing::TinyJobOptions o;
    o.errors = true;
    std::ofstream(dir_ / "job.lua") << testing::TinyJobSource(o);
  }
  // Runs `elektronn check job.lua <args>`; returns its exit code, stdout and stderr in out_/err_.
  int Check(const std::string& args, const std::string& env = "") {
    return Run(
        absl::StrCat(env, ELK_ELEKTRONN_BIN, " check ", (dir_ / "job.lua").string(), " ", args));
  }
};

TEST_F(CheckGraph, WritesSvgAndStillPrintsTheSummary) {
  const fs::path svg = dir_ / "model.svg";
  ASSERT_EQ(Check("--graph " + svg.string()), 0) << err_;
  const std::string text = Read(svg);
  EXPECT_NE(text.find("<svg"), std::string::npos);
  EXPECT_NE(text.find("Conv &#45; conv"), std::string::npos);  // Graphviz writes '-' as &#45;
  EXPECT_NE(text.find("AggregateLoss &#45; loss"), std::string::npos);
  EXPECT_THAT(out_, HasSubstr("trainable parameters"));  // the table, as without --graph
  EXPECT_THAT(err_, HasSubstr("model graph written to " + svg.string()));
}

TEST_F(CheckGraph, WritesPngWithJson) {
  const fs::path png = dir_ / "model.PNG";
  ASSERT_EQ(Check("--json --graph " + png.string()), 0) << err_;
  const std::string bytes = Read(png);
  ASSERT_GT(bytes.size(), 1000u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(out_.substr(0, 9), "{\"nodes\":");  // stdout stays one JSON object
}

TEST_F(CheckGraph, OtherExtensionsAreAUsageError) {
  const fs::path jpg = dir_ / "model.jpg";
  EXPECT_EQ(Check("--graph " + jpg.string()), 2);
  EXPECT_THAT(err_, HasSubstr(absl::StrCat("model graph '", jpg.string(),
                                           "': unknown image type '.jpg' (by extension); use "
                                           ".svg or .png")));
  EXPECT_FALSE(fs::exists(jpg));
  EXPECT_EQ(out_, "");  // refused before anything is printed
}

TEST_F(CheckGraph, AnUnwritablePathFailsNamingIt) {
  const fs::path bad = dir_ / "missing" / "model.svg";
  EXPECT_EQ(Check("--graph " + bad.string()), 1);
  EXPECT_THAT(err_, HasSubstr(bad.string()));
}

// Graphviz without its plugins (GVBINDIR names an empty place): Graphviz's own words come back.
TEST_F(CheckGraph, GraphvizFailuresAreReportedWithItsMessage) {
  const fs::path svg = dir_ / "model.svg";
  EXPECT_EQ(Check("--graph " + svg.string(), "GVBINDIR=" + (dir_ / "none").string() + " "), 1);
  EXPECT_THAT(err_, HasSubstr("error: model graph: Graphviz could not lay out the graph (dot "
                              "layout plugin): "));
  EXPECT_THAT(err_, HasSubstr("\"dot\" not recognized"));
  EXPECT_FALSE(fs::exists(svg));
}

}  // namespace
}  // namespace elektronn
