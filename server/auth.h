// The bearer token of elektronnd: created once in a 0600 file, checked on every RPC but health.
#pragma once

#include <grpcpp/grpcpp.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace elektronn {

// Reads the token from `path`, or creates the file (mode 0600) with a random 256-bit hex token
// when it does not exist.
absl::StatusOr<std::string> LoadOrCreateToken(const std::string& path);

class TokenChecker {
 public:
  explicit TokenChecker(std::string token) : token_(std::move(token)) {}
  // OK when the call's "authorization" metadata is "Bearer <token>" (constant-time comparison);
  // UNAUTHENTICATED with reason UNAUTHENTICATED otherwise.
  absl::Status Check(const grpc::ServerContext& context) const;

 private:
  std::string token_;
};

}  // namespace elektronn
