// The path of a file in the repository's examples/ directory, found from the working directory or
// the test binary upwards (ctest runs binaries in the build tree).
#pragma once

#include <filesystem>
#include <string>

namespace elektronn::testing {

inline std::string ExamplePath(const std::string& name) {
  for (std::filesystem::path start :
       {std::filesystem::current_path(), std::filesystem::read_symlink("/proc/self/exe")}) {
    for (std::filesystem::path p = start; !p.empty() && p != p.root_path(); p = p.parent_path()) {
      if (std::filesystem::exists(p / "examples" / name)) return (p / "examples" / name).string();
    }
  }
  return "examples/" + name;
}

}  // namespace elektronn::testing
