// absl::Status <-> grpc::Status with ErrorInfo details (google.rpc.Status wire format).
#include "rpc/status.h"

#include <google/protobuf/any.pb.h>
#include <google/protobuf/unknown_field_set.h>

namespace elektronn {

absl::Status WithReason(absl::Status status, const std::string& reason) {
  status.SetPayload(kReasonPayload, absl::Cord(reason));
  return status;
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const auto code = static_cast<grpc::StatusCode>(status.code());
  const std::string message(status.message());
  auto reason = status.GetPayload(kReasonPayload);
  if (!reason) return grpc::Status(code, message);
  v1::ErrorInfo info;
  info.set_reason(std::string(*reason));
  info.set_domain(kErrorDomain);
  google::protobuf::Any any;
  any.set_type_url("type.googleapis.com/google.rpc.ErrorInfo");
  any.set_value(info.SerializeAsString());
  google::protobuf::UnknownFieldSet rpc_status;  // google.rpc.Status{code=1, message=2, details=3}
  rpc_status.AddVarint(1, static_cast<uint64_t>(status.code()));
  rpc_status.AddLengthDelimited(2, message);
  rpc_status.AddLengthDelimited(3, any.SerializeAsString());
  std::string details;
  rpc_status.SerializeToString(&details);
  return grpc::Status(code, message, details);
}

std::optional<v1::ErrorInfo> ErrorInfoOf(const grpc::Status& status) {
  google::protobuf::UnknownFieldSet rpc_status;
  if (status.error_details().empty() || !rpc_status.ParseFromString(status.error_details())) {
    return std::nullopt;
  }
  for (int i = 0; i < rpc_status.field_count(); ++i) {
    const auto& f = rpc_status.field(i);
    if (f.number() != 3 || f.type() != google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED) {
      continue;
    }
    google::protobuf::Any any;
    v1::ErrorInfo info;
    if (any.ParseFromString(f.length_delimited()) &&
        any.type_url() == "type.googleapis.com/google.rpc.ErrorInfo" &&
        info.ParseFromString(any.value())) {
      return info;
    }
  }
  return std::nullopt;
}

}  // namespace elektronn
