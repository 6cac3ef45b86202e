// A fixture for tests that run one of our command-line programs: a fresh directory per test
// (removed unless the test failed) and Run(), which captures exit code, stdout and stderr.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace elektronn::testing {

class CliTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (!dir_.empty() && !HasFailure()) std::filesystem::remove_all(dir_);
  }
  // Creates dir_ = <gtest temp dir>/<prefix><pid>, empty.
  void MakeDir(const std::string& prefix) {
    dir_ = std::filesystem::path(::testing::TempDir()) / (prefix + std::to_string(getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  // Runs `command` through the shell with stdout and stderr captured into out_ and err_;
  // returns its exit code (-1 if it did not exit normally).
  int Run(const std::string& command) {
    const std::string out = (dir_ / "stdout").string(), err = (dir_ / "stderr").string();
    const int status = std::system((command + " >" + out + " 2>" + err).c_str());
    out_ = Read(out);
    err_ = Read(err);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  static std::string Read(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::filesystem::path dir_;
  std::string out_, err_;
};

}  // namespace elektronn::testing
