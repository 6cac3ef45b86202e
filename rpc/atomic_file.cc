#include "rpc/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace elektronn {

absl::Status WriteAtomically(const std::string& path, const std::string& bytes) {
  auto error = [](const std::string& what, const std::string& p) {
    return absl::UnavailableError(absl::StrCat(what, " '", p, "': ", std::strerror(errno)));
  };
  const std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return error("cannot create", tmp);
  const bool ok =
      write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()) && fsync(fd) == 0;
  close(fd);
  if (!ok) return error("cannot write", tmp);
  if (rename(tmp.c_str(), path.c_str()) != 0) return error("cannot rename to", path);
  return absl::OkStatus();
}

}  // namespace elektronn
