// A fresh, empty folder per test: <gtest TempDir>/<prefix>_<pid>_<test name>, so parallel ctest
// runs and repeated tests never see each other's files.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"

namespace elektronn::testing {

inline std::filesystem::path FreshTestDir(const std::string& prefix) {
  const auto dir = std::filesystem::path(::testing::TempDir()) /
                   absl::StrCat(prefix, "_", ::getpid(), "_",
                                ::testing::UnitTest::GetInstance()->current_test_info()->name());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace elektronn::testing
