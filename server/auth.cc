// Token file handling and the constant-time bearer-token check.
#include "server/auth.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "server/common.h"

namespace elektronn {

absl::StatusOr<std::string> LoadOrCreateToken(const std::string& path) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd >= 0) {
    unsigned char bytes[32];
    if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
      close(fd);
      unlink(path.c_str());
      return absl::InternalError("cannot draw random bytes for the token (RAND_bytes failed)");
    }
    static const char kHex[] = "0123456789abcdef";
    std::string token;
    for (unsigned char b : bytes) {
      token.push_back(kHex[b >> 4]);
      token.push_back(kHex[b & 15]);
    }
    const std::string line = token + "\n";
    const bool ok =
        write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) && fsync(fd) == 0;
    close(fd);
    if (!ok) {
      return absl::UnavailableError(
          absl::StrCat("cannot write token file '", path, "': ", std::strerror(errno)));
    }
    return token;
  }
  if (errno != EEXIST) {
    return absl::UnavailableError(
        absl::StrCat("cannot create token file '", path, "': ", std::strerror(errno)));
  }
  struct stat st;
  if (stat(path.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
    return absl::PermissionDeniedError(absl::StrCat("token file '", path,
                                                    "' is readable by group or others (mode ",
                                                    st.st_mode & 0777, "); chmod 600 it"));
  }
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string token(absl::StripAsciiWhitespace(ss.str()));
  if (token.size() < 16) {
    return absl::InvalidArgumentError(absl::StrCat("token file '", path, "' holds a token of ",
                                                   token.size(),
                                                   " characters; at least 16 needed"));
  }
  return token;
}

absl::Status TokenChecker::Check(const grpc::ServerContext& context) const {
  const auto& md = context.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) {
    return WithReason(absl::UnauthenticatedError(
                          "missing 'authorization' metadata; send 'Bearer <token>' (the token is "
                          "in the daemon's token file)"),
                      "UNAUTHENTICATED");
  }
  const absl::string_view value(it->second.data(), it->second.size());
  constexpr absl::string_view kPrefix = "Bearer ";
  const bool ok = value.size() == kPrefix.size() + token_.size() &&
                  value.substr(0, kPrefix.size()) == kPrefix &&
                  CRYPTO_memcmp(value.data() + kPrefix.size(), token_.data(), token_.size()) == 0;
  if (!ok) {
    return WithReason(absl::UnauthenticatedError("wrong bearer token in 'authorization' metadata"),
                      "UNAUTHENTICATED");
  }
  return absl::OkStatus();
}

}  // namespace elektronn
