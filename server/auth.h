// The bearer token of elektronnd: kept in an owner-only file, checked on every RPC but health.
#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/server_interceptor.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace elektronn {

// Reads the token from `path`, or creates the file (mode 0600) with a random 256-bit hex token
// when it does not exist. An existing file must be a regular file of the calling user with no
// permission bits for group or others (PERMISSION_DENIED naming the file and the chmod to run
// otherwise): anyone who can read the token can train, read and overwrite models.
absl::StatusOr<std::string> LoadOrCreateToken(const std::string& path);

class TokenChecker {
 public:
  using Metadata = std::multimap<grpc::string_ref, grpc::string_ref>;
  explicit TokenChecker(std::string token) : token_(std::move(token)) {}
  // OK when the call's "authorization" metadata is "Bearer <token>" (constant-time comparison);
  // UNAUTHENTICATED with reason UNAUTHENTICATED otherwise.
  absl::Status Check(const grpc::ServerContext& context) const;
  absl::Status Check(const Metadata& client_metadata) const;

 private:
  std::string token_;
};

// A server interceptor for the calls whose full method name starts with `method_prefix`, for a
// service whose handlers are not ours (gRPC's server reflection, which linking its library
// turns on): when `serve` is false it ends every such call with UNIMPLEMENTED, otherwise each
// call without a valid token with UNAUTHENTICATED; either as soon as the call's headers arrive,
// before the handler can read or answer anything.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeServiceGate(
    const TokenChecker* auth, std::string method_prefix, bool serve, std::string off_message);

}  // namespace elektronn
