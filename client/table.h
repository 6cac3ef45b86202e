// Plain-text tables of the command-line tools (`elektronn ls`, `hosts`; `elektronn-sched plan`,
// `status`, `ls`).
#pragma once

#include <string>
#include <vector>

namespace elektronn {

// Left-aligned columns separated by two spaces, each as wide as its widest cell.
std::string FormatTable(const std::vector<std::vector<std::string>>& rows);

}  // namespace elektronn
