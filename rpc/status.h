// One absl::Status <-> grpc::Status mapping with a machine-readable ErrorInfo reason, shared by
// the daemon, the worker and the client.
#pragma once

#include <grpcpp/grpcpp.h>

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "elektronn/v1/jobs.pb.h"

namespace elektronn {

inline constexpr char kErrorDomain[] = "elektronn.dev";
inline constexpr char kReasonPayload[] = "elektronn.dev/reason";

// Returns `status` carrying `reason` (e.g. "BAD_STATE") for the ErrorInfo of its RPC answer.
absl::Status WithReason(absl::Status status, const std::string& reason);

// Maps codes one-to-one; attaches google.rpc.Status{code, message, details=[ErrorInfo]} as the
// binary error details when the status carries a reason.
grpc::Status ToGrpcStatus(const absl::Status& status);

// The ErrorInfo inside a grpc::Status's error details, if any (used by clients and tests).
std::optional<v1::ErrorInfo> ErrorInfoOf(const grpc::Status& status);

}  // namespace elektronn
