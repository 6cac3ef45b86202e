// How `elektronn` reaches an elektronnd: host/token resolution, credentials, errors.
#include "client/connection.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "elektronn/v1/jobs.pb.h"
#include "google/protobuf/any.pb.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"
#include "rpc/status.h"

namespace elektronn {
namespace {

std::string ReadFile(const std::string& path, bool* ok) {
  std::ifstream in(path, std::ios::binary);
  *ok = static_cast<bool>(in);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string DefaultStateDir(const EnvLookup& env) {
  if (auto xdg = env("XDG_STATE_HOME"); xdg && !xdg->empty()) return *xdg + "/elektronnd";
  const std::string home = env("HOME").value_or("");
  return (home.empty() ? std::string(".") : home) + "/.local/state/elektronnd";
}

// Strips the port (and brackets of an IPv6 literal) from "host:port".
std::string HostPart(const std::string& host) {
  std::string h = host;
  for (const char* scheme : {"dns:///", "ipv4:", "ipv6:"}) {
    if (absl::StartsWith(h, scheme)) h = h.substr(std::string(scheme).size());
  }
  if (!h.empty() && h[0] == '[') {
    const size_t close = h.find(']');
    return close == std::string::npos ? h.substr(1) : h.substr(1, close - 1);
  }
  if (std::count(h.begin(), h.end(), ':') == 1) h = h.substr(0, h.find(':'));
  return h;
}

}  // namespace

EnvLookup ProcessEnvironment() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

std::string ResolveHost(const ConnectionOptions& options, const EnvLookup& env) {
  if (!options.host.empty()) return options.host;
  if (auto h = env("ELEKTRONN_HOST"); h && !h->empty()) return *h;
  return kDefaultHost;
}

std::string ResolveTokenFile(const ConnectionOptions& options, const EnvLookup& env) {
  if (!options.token_file.empty()) return options.token_file;
  return DefaultStateDir(env) + "/token";
}

absl::StatusOr<std::string> ResolveToken(const ConnectionOptions& options, const EnvLookup& env) {
  if (!options.token.empty()) return options.token;
  if (auto t = env("ELEKTRONN_TOKEN"); t && !t->empty()) return *t;
  const std::string path = ResolveTokenFile(options, env);
  bool ok = false;
  std::string text = ReadFile(path, &ok);
  if (!ok) {
    return absl::UnauthenticatedError(
        "no token: cannot read the token file '" + path +
        "'; pass --token-file <state-dir>/token (elektronnd writes it there), --token, or set "
        "ELEKTRONN_TOKEN");
  }
  std::string token(absl::StripAsciiWhitespace(text.substr(0, text.find('\n'))));
  if (token.empty()) {
    return absl::UnauthenticatedError("the token file '" + path + "' is empty");
  }
  // The daemon refuses a token file others can read; the client only warns, so a copy with a
  // loose mode still works, but says how to fix it (once per process).
  struct stat st;
  static bool warned = false;
  if (!warned && stat(path.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
    warned = true;
    std::fprintf(stderr,
                 "warning: token file '%s' is accessible by group or others (mode %04o); anyone "
                 "who can read it controls the daemon's jobs. Restrict it with: chmod 600 '%s'\n",
                 path.c_str(), static_cast<unsigned>(st.st_mode & 07777), path.c_str());
  }
  return token;
}

bool IsLoopbackHost(const std::string& host) {
  if (absl::StartsWith(host, "unix:") || absl::StartsWith(host, "unix-abstract:")) return true;
  const std::string h = absl::AsciiStrToLower(HostPart(host));
  return h == "localhost" || h == "::1" || absl::StartsWith(h, "127.");
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const ConnectionOptions& options, const std::string& host) {
  if (!options.tls_ca.empty()) {
    bool ok = false;
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ReadFile(options.tls_ca, &ok);
    if (!ok || ssl.pem_root_certs.empty()) {
      return absl::InvalidArgumentError("--tls-ca: cannot read the PEM file '" + options.tls_ca +
                                        "'");
    }
    return grpc::SslCredentials(ssl);
  }
  if (IsLoopbackHost(host) || options.insecure) return grpc::InsecureChannelCredentials();
  return absl::InvalidArgumentError(
      "refusing a plaintext connection to the non-loopback host '" + host +
      "': the token would travel unencrypted. Pass --tls-ca <ca.pem> (the CA of the daemon's "
      "certificate), or --insecure if the network is trusted");
}

absl::StatusOr<Connection> Connect(const ConnectionOptions& options, const EnvLookup& env,
                                   const std::string& host_override) {
  Connection c;
  c.host = host_override.empty() ? ResolveHost(options, env) : host_override;
  c.timeout_s = options.timeout_s;
  c.state_dir = std::filesystem::path(ResolveTokenFile(options, env)).parent_path().string();
  auto creds = MakeChannelCredentials(options, c.host);
  if (!creds.ok()) return creds.status();
  auto token = ResolveToken(options, env);
  if (!token.ok()) return token.status();
  c.token = *token;
  c.channel = grpc::CreateChannel(c.host, *creds);
  return c;
}

std::unique_ptr<grpc::ClientContext> MakeContext(const Connection& connection, bool streaming) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->AddMetadata("authorization", "Bearer " + connection.token);
  if (!streaming && connection.timeout_s > 0) {
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(static_cast<int64_t>(connection.timeout_s * 1e3)));
  }
  return ctx;
}

int ExitCodeFor(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return kExitOk;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
      return kExitUsage;
    case grpc::StatusCode::NOT_FOUND:
      return kExitNotFound;
    case grpc::StatusCode::FAILED_PRECONDITION:
      return kExitPrecondition;
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
      return kExitAuth;
    case grpc::StatusCode::UNAVAILABLE:
      return kExitUnavailable;
    default:
      return kExitOther;
  }
}

std::string ErrorReason(const grpc::Status& status) {
  const std::string& bytes = status.error_details();
  if (bytes.empty()) return "";
  if (auto info = ErrorInfoOf(status)) return info->reason();
  // A bare ErrorInfo: its field 1 (reason) is a string, where google.rpc.Status has a varint.
  if (static_cast<uint8_t>(bytes[0]) == 0x0a) {
    v1::ErrorInfo info;
    if (info.ParseFromString(bytes)) return info.reason();
  }
  return "";
}

std::string DescribeError(const grpc::Status& status, const Connection& connection) {
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    return "cannot reach elektronnd at " + connection.host + ": " + status.error_message() +
           "; is it running? start it with: elektronnd --state-dir " + connection.state_dir;
  }
  std::string text = status.error_message();
  if (text.empty()) text = "request failed with gRPC code " + std::to_string(status.error_code());
  const std::string reason = ErrorReason(status);
  if (!reason.empty()) text += " (" + reason + ")";
  return text;
}

int ReportError(const grpc::Status& status, const Connection& connection) {
  std::fprintf(stderr, "error: %s\n", DescribeError(status, connection).c_str());
  return ExitCodeFor(status.error_code());
}

int ReportError(const absl::Status& status) {
  std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
  return ExitCodeFor(static_cast<grpc::StatusCode>(status.code()));
}

}  // namespace elektronn
