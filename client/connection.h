// How `elektronn` reaches an elektronnd: host and token resolution, channel credentials (TLS or
// loopback-only plaintext), per-call contexts with the bearer token, and gRPC errors as exit codes.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"

namespace elektronn {

// Looks up an environment variable; passed in so tests control the environment.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
// The process environment (getenv).
EnvLookup ProcessEnvironment();

inline constexpr char kDefaultHost[] = "127.0.0.1:7077";

struct ConnectionOptions {
  std::string host;        // empty: $ELEKTRONN_HOST, else kDefaultHost; "unix:/path" allowed
  std::string token;       // --token; wins over $ELEKTRONN_TOKEN and the token file
  std::string token_file;  // empty: ~/.local/state/elektronnd/token
  std::string tls_ca;      // PEM file of the CA that signed the daemon's certificate
  bool insecure = false;   // allow plaintext to a non-loopback host (the token travels in clear)
  double timeout_s = 30;   // deadline of unary calls
};

// Exit codes of the remote commands, for scripts.
enum ExitCode : int {
  kExitOk = 0,
  kExitOther = 1,         // anything else; also a watched job that FAILED
  kExitUsage = 2,         // invalid argument or usage
  kExitNotFound = 3,      // no such job
  kExitPrecondition = 4,  // wrong state for the request; also a watched job CANCELLED
  kExitAuth = 5,          // unauthenticated or permission denied
  kExitUnavailable = 6,   // the daemon cannot be reached
};

// The host to dial: the option, else $ELEKTRONN_HOST, else kDefaultHost.
std::string ResolveHost(const ConnectionOptions& options, const EnvLookup& env);
// The token file consulted when neither --token nor $ELEKTRONN_TOKEN is set.
std::string ResolveTokenFile(const ConnectionOptions& options, const EnvLookup& env);
// The bearer token: --token, else $ELEKTRONN_TOKEN, else the first line of the token file.
absl::StatusOr<std::string> ResolveToken(const ConnectionOptions& options, const EnvLookup& env);
// True for "unix:..." targets, localhost and 127.0.0.0/8 or ::1 addresses.
bool IsLoopbackHost(const std::string& host);
// TLS credentials when tls_ca is set; plaintext for loopback (or with --insecure); else an error
// that says how to fix it.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const ConnectionOptions& options, const std::string& host);

// A channel to one daemon with the token its calls carry.
struct Connection {
  std::string host;
  std::string token;
  std::string state_dir;  // where the token came from: named in "is it running?" hints
  double timeout_s = 30;
  std::shared_ptr<grpc::Channel> channel;
};

// Resolves host and token and makes the channel (no network traffic yet). `host_override`
// replaces the resolved host (used by `hosts HOST...`).
absl::StatusOr<Connection> Connect(const ConnectionOptions& options, const EnvLookup& env,
                                   const std::string& host_override = "");

// A context carrying "authorization: Bearer <token>" as plain metadata (call credentials are
// dropped on insecure channels) and, unless `streaming`, the unary deadline.
std::unique_ptr<grpc::ClientContext> MakeContext(const Connection& connection,
                                                 bool streaming = false);

// The exit code for a gRPC (or, same numbering, absl) status code.
int ExitCodeFor(grpc::StatusCode code);
// The ErrorInfo.reason carried in error_details (a google.rpc.Status holding an Any, or a bare
// ErrorInfo), or "" if none.
std::string ErrorReason(const grpc::Status& status);
// One line for people: "cannot reach elektronnd at HOST: ...; is it running? ..." for
// UNAVAILABLE, else the message with the reason, e.g. "job is RUNNING (BAD_STATE)".
std::string DescribeError(const grpc::Status& status, const Connection& connection);
// Prints DescribeError to stderr ("error: ...") and returns the exit code.
int ReportError(const grpc::Status& status, const Connection& connection);
// Prints a local error (absl::Status) to stderr and returns the exit code.
int ReportError(const absl::Status& status);

}  // namespace elektronn
