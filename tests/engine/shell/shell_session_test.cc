// ShellSession: shortcuts, sandboxed Lua on the live job, errors that keep the session, completion.
#include "engine/shell/shell_session.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "engine/config/hyperparams.h"
#include "engine/data/demo_data.h"
#include "engine/lua/job_file.h"
#include "engine/trainer/trainer.h"
#include "tests/support/tiny_job.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

class ShellSessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("elk_shell_" + std::to_string(getpid()));
    fs::remove_all(dir_);
    // Dropout and a 'fadeout' layer, so every hyper-parameter (dropout_rates, gradnet_rates)
    // has layers to act on.
    testing::TinyJobOptions o;
    o.save_name = "shell";
    o.optimiser = "SGD";
    o.dropout = true;
    o.history_freq = 1000;
    o.hidden = "out = nm.Conv{out, 4, {1, 3, 3}DROPOUT, batch_normalisation = 'fadeout'}";
    auto job = testing::MakeTinyJob(dir_, o);
    ASSERT_TRUE(job.ok()) << job.status();
    backend_ = kernels::CreateCpuBackend();
    TrainerOptions opt;
    opt.console = false;
    auto trainer = Trainer::Create(*job, backend_.get(), opt);
    ASSERT_TRUE(trainer.ok()) << trainer.status();
    trainer_ = std::move(*trainer);
    auto session = ShellSession::Create(trainer_.get(), "tester");
    ASSERT_TRUE(session.ok()) << session.status();
    shell_ = std::move(*session);
  }
  void TearDown() override {
    shell_.reset();
    trainer_.reset();
    fs::remove_all(dir_);
  }
  double Hyper(const std::string& name) { return *trainer_->GetHyperparameter(name); }

  fs::path dir_;
  std::unique_ptr<kernels::Backend> backend_;
  std::unique_ptr<Trainer> trainer_;
  std::unique_ptr<ShellSession> shell_;
};

TEST_F(ShellSessionTest, ShortcutsChangeTheLiveJob) {
  ShellOutput help = shell_->Execute("help");
  EXPECT_FALSE(help.error);
  EXPECT_NE(help.text.find("setlr"), std::string::npos) << help.text;

  ShellOutput set = shell_->Execute("setlr 1e-5");
  EXPECT_FALSE(set.error) << set.text;
  EXPECT_FLOAT_EQ(Hyper("lr"), 1e-5);
  EXPECT_FALSE(shell_->Execute("setmom 0.5").error);
  EXPECT_FLOAT_EQ(Hyper("mom"), 0.5);
  EXPECT_FALSE(shell_->Execute("sethist 7").error);
  EXPECT_EQ(Hyper("history_freq"), 7);

  ShellOutput missing = shell_->Execute("setlr");
  EXPECT_TRUE(missing.error);
  EXPECT_NE(missing.text.find("usage"), std::string::npos);
  EXPECT_TRUE(shell_->Execute("setwd abc").error);

  ShellOutput stats = shell_->Execute("paramstats");
  EXPECT_FALSE(stats.error);
  EXPECT_NE(stats.text.find("conv/w"), std::string::npos) << stats.text;
  EXPECT_NE(shell_->Execute("nodes").text.find("conv"), std::string::npos);

  EXPECT_TRUE(shell_->Execute("save ../x").error);
  EXPECT_TRUE(shell_->Execute("save a/b.h5").error);
  ShellOutput saved = shell_->Execute("save mine.h5");
  EXPECT_FALSE(saved.error) << saved.text;
  EXPECT_TRUE(fs::exists(fs::path(trainer_->dir()) / "mine.h5"));
}

// PNG width and height from the IHDR chunk; {0, 0} if `path` is no PNG.
std::pair<int, int> PngSize(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  unsigned char h[24] = {};
  in.read(reinterpret_cast<char*>(h), sizeof h);
  if (!in || std::string(reinterpret_cast<char*>(h) + 1, 3) != "PNG") return {0, 0};
  auto be = [&](int o) { return (h[o] << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3]; };
  return {be(16), be(20)};
}

// sf, debugbatch, load and preview (reference §6): pictures and parameters, files kept inside
// the training directory.
TEST_F(ShellSessionTest, ToolsWritePicturesAndLoadParameters) {
  const fs::path dir = trainer_->dir();
  // conv: 4 filters of 3x3 (middle z of 1) -> 2x2 tiles of 18 pixels, 2 apart.
  ShellOutput sf = shell_->Execute("sf conv");
  ASSERT_FALSE(sf.error) << sf.text;
  EXPECT_EQ(PngSize(dir / "filters_conv.png"), std::make_pair(38, 38));
  EXPECT_FALSE(shell_->Execute("sf").error);
  EXPECT_GT(PngSize(dir / "filters.png").first, 0);
  ShellOutput unknown = shell_->Execute("sf nosuch");
  EXPECT_TRUE(unknown.error);
  EXPECT_NE(unknown.text.find("no node 'nosuch' (nodes with filters: "), std::string::npos)
      << unknown.text;

  // Input 17x17 (x, y): three 17-pixel panels (input, target, overlay), 4 apart.
  ShellOutput batch = shell_->Execute("debugbatch");
  ASSERT_FALSE(batch.error) << batch.text;
  EXPECT_EQ(PngSize(dir / "Batch_test_image.png"), std::make_pair(3 * 17 + 8, 17));

  ShellOutput preview = shell_->Execute("preview");
  EXPECT_TRUE(preview.error);
  EXPECT_NE(preview.text.find("preview_data_path"), std::string::npos) << preview.text;

  ASSERT_FALSE(shell_->Execute("save before.h5").error);
  ASSERT_FALSE(shell_->Execute("model.conv.w[1] = 5").error);
  EXPECT_EQ(shell_->Execute("model.conv.w[1]").text, "= 5");
  ShellOutput load = shell_->Execute("load before.h5");
  ASSERT_FALSE(load.error) << load.text;
  EXPECT_NE(shell_->Execute("model.conv.w[1]").text, "= 5");
  ShellOutput outside = shell_->Execute("load ../../../etc/passwd");
  EXPECT_TRUE(outside.error);
  EXPECT_NE(outside.text.find("outside the training directory"), std::string::npos) << outside.text;
  EXPECT_TRUE(shell_->Execute("load").error);
  ShellOutput missing = shell_->Execute("load nothing.h5");
  EXPECT_TRUE(missing.error);
  EXPECT_NE(missing.text.find("nothing.h5"), std::string::npos) << missing.text;
}

TEST_F(ShellSessionTest, LuaReadsAndWritesTheLiveJob) {
  ShellOutput assign = shell_->Execute("trainer.lr = 2e-5");
  EXPECT_FALSE(assign.error) << assign.text;
  EXPECT_FLOAT_EQ(Hyper("lr"), 2e-5);
  ShellOutput lr = shell_->Execute("trainer.lr");
  EXPECT_EQ(lr.text, "= 2e-05");
  EXPECT_TRUE(shell_->Execute("trainer.step = 3").error);

  ShellOutput w = shell_->Execute("model.conv.w[1] = 0.5");
  EXPECT_FALSE(w.error) << w.text;
  Network& net = trainer_->network();
  auto p = net.FindParam("conv", "w");
  ASSERT_TRUE(p.ok());
  EXPECT_FLOAT_EQ(net.ParamValue(**p)[0], 0.5f);
  EXPECT_EQ(shell_->Execute("model['conv'].w[1]").text, "= 0.5");

  ShellOutput mean = shell_->Execute("model.conv.w:mean()");
  EXPECT_FALSE(mean.error) << mean.text;
  ASSERT_GT(mean.text.size(), 2u);
  EXPECT_EQ(mean.text.substr(0, 2), "= ");
  double value = 0;
  EXPECT_TRUE(absl::SimpleAtod(mean.text.substr(2), &value)) << mean.text;

  ShellOutput tensor = shell_->Execute("model.conv.w");
  EXPECT_NE(tensor.text.find("tensor conv/w (4,1,1,3,3) mean="), std::string::npos) << tensor.text;
  EXPECT_EQ(shell_->Execute("model.conv.op").text, "= Conv");

  EXPECT_FALSE(shell_->Execute("local_sum = 1 + 2").error);
  EXPECT_EQ(shell_->Execute("local_sum").text, "= 3");
  EXPECT_EQ(shell_->Execute("print('hi', 1)").text, "hi\t1\n");
  EXPECT_EQ(shell_->Execute("{a = 1, 2}").text, "= {2, a=1}");
  EXPECT_TRUE(shell_->Execute("model.nosuch").error);
}

TEST_F(ShellSessionTest, ErrorsAndSandboxRefusalsKeepTheSession) {
  for (const char* line : {"io.open('x')", "os.execute('ls')"}) {
    ShellOutput out = shell_->Execute(line);
    EXPECT_TRUE(out.error) << line;
    EXPECT_NE(out.text.find("sandbox"), std::string::npos) << out.text;
    EXPECT_EQ(shell_->Execute("1 + 1").text, "= 2");
  }
  ShellOutput syntax = shell_->Execute("x = = 3");
  EXPECT_TRUE(syntax.error);
  EXPECT_NE(syntax.text.find("syntax error"), std::string::npos) << syntax.text;
  ShellOutput runtime = shell_->Execute("error('boom')");
  EXPECT_TRUE(runtime.error);
  EXPECT_NE(runtime.text.find("boom"), std::string::npos);
  EXPECT_EQ(shell_->Execute("1 + 1").text, "= 2");
  // An endless loop hits the instruction limit; the Lua state is replaced and still works.
  ShellOutput loop = shell_->Execute("while true do end");
  EXPECT_TRUE(loop.error);
  EXPECT_NE(loop.text.find("reset"), std::string::npos) << loop.text;
  EXPECT_EQ(shell_->Execute("trainer.history_freq").text, "= 1000");
  EXPECT_EQ(shell_->Execute("#history").text, "= 0");
  EXPECT_NE(shell_->Execute("model.params").text.find("conv/w=tensor conv/w"), std::string::npos);
}

TEST_F(ShellSessionTest, LeaveAndKill) {
  ShellOutput q = shell_->Execute("q");
  EXPECT_TRUE(q.leave);
  EXPECT_FALSE(q.kill);
  ShellOutput kill = shell_->Execute("kill");
  EXPECT_TRUE(kill.leave);
  EXPECT_TRUE(kill.kill);
  // The stop request makes Run() stop at once, with reason kRequested.
  auto reason = trainer_->Run();
  ASSERT_TRUE(reason.ok()) << reason.status();
  EXPECT_EQ(*reason, StopReason::kRequested);
}

TEST_F(ShellSessionTest, Completion) {
  std::vector<std::string> set = shell_->Complete("set");
  EXPECT_EQ(set.size(), 4u);
  for (const char* s : {"setlr", "setmom", "setwd", "sethist"}) EXPECT_TRUE(Contains(set, s)) << s;
  EXPECT_TRUE(Contains(shell_->Complete("model."), "model.conv"));
  EXPECT_TRUE(Contains(shell_->Complete("model.conv."), "model.conv.w"));
  EXPECT_EQ(shell_->Complete("trainer.l"), std::vector<std::string>{"trainer.lr"});
  EXPECT_TRUE(Contains(shell_->Complete("x = tra"), "x = trainer"));
  EXPECT_TRUE(shell_->Complete("save ").empty());
  EXPECT_TRUE(shell_->Complete("setlr 1").empty());
}

// Shortcuts, `trainer.` fields and completion come from the hyper-parameter table: every entry
// is reachable, by every spelling, and its range is enforced.
TEST_F(ShellSessionTest, EveryHyperparameterOfTheTable) {
  const std::string banner = shell_->Banner();
  const std::vector<std::string> fields = shell_->Complete("trainer.");
  std::vector<std::string> shortcuts;
  for (const HyperparameterDef& d : Hyperparameters()) {
    SCOPED_TRACE(d.name);
    const bool integer = d.type == HyperparameterType::kInt;
    const double v = integer ? d.min + 2 : d.min + 0.25 * (std::isinf(d.max) ? 1 : d.max - d.min);
    const std::string text = FormatHyperparameterValue(d, v);
    EXPECT_TRUE(Contains(fields, "trainer." + d.name));
    for (const std::string& spelling : {d.name, d.proto_field}) {
      ShellOutput set = shell_->Execute(absl::StrCat("trainer.", spelling, " = ", text));
      EXPECT_FALSE(set.error) << set.text;
      EXPECT_FLOAT_EQ(Hyper(d.name), v);
      EXPECT_EQ(shell_->Execute("trainer." + spelling).text, "= " + text);
    }
    ShellOutput bad = shell_->Execute(absl::StrCat("trainer.", d.name, " = ", d.min - 1));
    EXPECT_TRUE(bad.error);
    EXPECT_NE(bad.text.find(RangeText(d)), std::string::npos) << bad.text;
    if (d.shortcut.empty()) continue;
    shortcuts.push_back(d.shortcut);
    EXPECT_NE(banner.find(d.shortcut), std::string::npos) << banner;
    ShellOutput out = shell_->Execute(absl::StrCat(d.shortcut, " ", text));
    EXPECT_FALSE(out.error) << out.text;
    EXPECT_EQ(out.text, absl::StrCat(d.name, " = ", text, " (was ", text, ")"));
    ShellOutput refused = shell_->Execute(absl::StrCat(d.shortcut, " ", d.min - 1));
    EXPECT_TRUE(refused.error);
    EXPECT_NE(refused.text.find(d.name + " must be " + RangeText(d)), std::string::npos)
        << refused.text;
    EXPECT_FLOAT_EQ(Hyper(d.name), v);
  }
  std::vector<std::string> completed = shell_->Complete("set");
  std::sort(completed.begin(), completed.end());
  std::sort(shortcuts.begin(), shortcuts.end());
  EXPECT_EQ(completed, shortcuts);
}

}  // namespace
}  // namespace elektronn
