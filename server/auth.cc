// Token file handling, the constant-time bearer-token check and the service gate interceptor.
#include "server/auth.h"

#include <fcntl.h>
#include <grpc/grpc.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "rpc/status.h"

namespace elektronn {
namespace {

// The longest token file read; a token is 64 hex characters.
constexpr size_t kMaxTokenFileBytes = 4096;

absl::StatusOr<std::string> CreateToken(int fd, const std::string& path) {
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
  const int err = errno;
  close(fd);
  if (!ok) {
    return absl::UnavailableError(
        absl::StrCat("cannot write token file '", path, "': ", std::strerror(err)));
  }
  return token;
}

}  // namespace

absl::StatusOr<std::string> LoadOrCreateToken(const std::string& path) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd >= 0) return CreateToken(fd, path);
  if (errno != EEXIST) {
    return absl::UnavailableError(
        absl::StrCat("cannot create token file '", path, "': ", std::strerror(errno)));
  }
  // The checks look at the file actually opened (fstat), not at a path that may change.
  fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot open token file '", path, "': ", std::strerror(errno)));
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat("token file '", path, "' is not a regular file"));
  }
  if ((st.st_mode & 077) != 0) {
    close(fd);
    return absl::PermissionDeniedError(absl::StrFormat(
        "token file '%s' is accessible by group or others (mode %04o); anyone who can read it "
        "controls every job. Restrict it with: chmod 600 '%s'",
        path, st.st_mode & 07777, path));
  }
  if (st.st_uid != geteuid()) {
    close(fd);
    return absl::PermissionDeniedError(absl::StrFormat(
        "token file '%s' belongs to uid %d, not to elektronnd's user (uid %d), who could not "
        "keep it private; chown it or pass --token-file",
        path, st.st_uid, geteuid()));
  }
  std::string text(kMaxTokenFileBytes, '\0');
  const ssize_t n = read(fd, text.data(), text.size());
  close(fd);
  if (n < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot read token file '", path, "': ", std::strerror(errno)));
  }
  text.resize(static_cast<size_t>(n));
  std::string token(absl::StripAsciiWhitespace(text));
  if (token.size() < 16) {
    return absl::InvalidArgumentError(absl::StrCat("token file '", path, "' holds a token of ",
                                                   token.size(),
                                                   " characters; at least 16 needed"));
  }
  return token;
}

absl::Status TokenChecker::Check(const grpc::ServerContext& context) const {
  return Check(context.client_metadata());
}

absl::Status TokenChecker::Check(const Metadata& md) const {
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

namespace {

class ServiceGate final : public grpc::experimental::Interceptor {
 public:
  ServiceGate(const TokenChecker* auth, bool serve, const std::string* off_message,
              grpc::experimental::ServerRpcInfo* info)
      : auth_(auth), serve_(serve), off_message_(off_message), info_(info) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      if (!serve_) {
        code_ = grpc::StatusCode::UNIMPLEMENTED;
        message_ = *off_message_;
      } else if (absl::Status s = auth_->Check(*methods->GetRecvInitialMetadata()); !s.ok()) {
        code_ = grpc::StatusCode::UNAUTHENTICATED;
        message_ = std::string(s.message());
      }
      if (code_ != grpc::StatusCode::OK) {
        // Ends the call with this status towards the client (the transport sends it as the
        // trailers); the handler then usually finds the stream closed.
        grpc_call_cancel_with_status(info_->server_context()->c_call(),
                                     static_cast<grpc_status_code>(code_), message_.c_str(),
                                     nullptr);
      }
    }
    // The handler may still run before the cancellation lands (a race inside gRPC): whatever
    // it sends is emptied, and its status replaced, so nothing leaks either way.
    if (code_ != grpc::StatusCode::OK) {
      if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_MESSAGE)) {
        if (grpc::ByteBuffer* b = methods->GetSerializedSendMessage()) b->Clear();
      }
      if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
        methods->ModifySendStatus(grpc::Status(code_, message_));
      }
    }
    methods->Proceed();
  }

 private:
  const TokenChecker* auth_;
  bool serve_;
  const std::string* off_message_;
  grpc::experimental::ServerRpcInfo* info_;
  grpc::StatusCode code_ = grpc::StatusCode::OK;  // not OK: the call is refused
  std::string message_;
};

class ServiceGateFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  ServiceGateFactory(const TokenChecker* auth, std::string prefix, bool serve,
                     std::string off_message)
      : auth_(auth),
        prefix_(std::move(prefix)),
        serve_(serve),
        off_message_(std::move(off_message)) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    const absl::string_view method = info->method() ? info->method() : "";
    if (!absl::StartsWith(method, prefix_)) return nullptr;  // not gated: our handlers check
    return new ServiceGate(auth_, serve_, &off_message_, info);
  }

 private:
  const TokenChecker* auth_;
  std::string prefix_;
  bool serve_;
  std::string off_message_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeServiceGate(
    const TokenChecker* auth, std::string method_prefix, bool serve, std::string off_message) {
  return std::make_unique<ServiceGateFactory>(auth, std::move(method_prefix), serve,
                                              std::move(off_message));
}

}  // namespace elektronn
