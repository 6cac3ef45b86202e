"""ElektronnError: a failed call to elektronnd, with its gRPC status code and ErrorInfo reason."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import grpc
from google.protobuf import any_pb2, message

from ._stubs import jobs_pb2

# Exit codes of the `elektronn` CLI (client/connection.h) as the status codes they stand for.
_EXIT_CODES = {
    2: grpc.StatusCode.INVALID_ARGUMENT,
    3: grpc.StatusCode.NOT_FOUND,
    4: grpc.StatusCode.FAILED_PRECONDITION,
    5: grpc.StatusCode.UNAUTHENTICATED,
    6: grpc.StatusCode.UNAVAILABLE,
}


class ElektronnError(Exception):
    """A call that failed: `code` (grpc.StatusCode), `details` (the server's message), `reason`
    and `metadata` (from the ErrorInfo the daemon attaches, e.g. "BAD_STATE"; "" if none)."""

    def __init__(self, details: str, code: grpc.StatusCode = grpc.StatusCode.UNKNOWN,
                 reason: str = "", metadata: Mapping[str, str] | None = None) -> None:
        self.details = details
        self.code = code
        self.reason = reason
        self.metadata = dict(metadata or {})
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.code.name}: {self.details}"
        return f"{text} ({self.reason})" if self.reason else text


def _fields(data: bytes) -> Iterator[tuple[int, int, bytes | int]]:
    """Yields (field number, wire type, value) of a serialised message; raises on bad input."""
    pos = 0

    def varint() -> int:
        nonlocal pos
        value, shift = 0, 0
        while True:
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7

    while pos < len(data):
        tag = varint()
        wire = tag & 7
        if wire == 0:
            yield tag >> 3, wire, varint()
        elif wire == 2:
            size = varint()
            if pos + size > len(data):
                raise ValueError("truncated field")
            yield tag >> 3, wire, data[pos:pos + size]
            pos += size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError(f"wire type {wire}")


def error_info(status_details: bytes) -> jobs_pb2.ErrorInfo | None:
    """The ErrorInfo in the `grpc-status-details-bin` trailer: a serialised google.rpc.Status
    (details = field 3, each an Any), or, as the C++ client also accepts, a bare ErrorInfo."""
    try:
        if status_details[:1] == b"\x0a":  # field 1 a string: ErrorInfo.reason, not Status.code
            return jobs_pb2.ErrorInfo.FromString(status_details)
        for number, wire, value in _fields(status_details):
            if number == 3 and wire == 2:
                detail = any_pb2.Any.FromString(value)  # type: ignore[arg-type]
                if detail.type_url.endswith(".ErrorInfo"):
                    return jobs_pb2.ErrorInfo.FromString(detail.value)
    except (IndexError, ValueError, message.DecodeError):
        return None
    return None


def from_rpc_error(error: grpc.RpcError, host: str) -> ElektronnError:
    """An ElektronnError for a failed call (a grpc.RpcError that is also a grpc.Call)."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = (error.details() if hasattr(error, "details") else None) or str(error)
    if code == grpc.StatusCode.UNAVAILABLE:
        details = (f"cannot reach elektronnd at {host}: {details}; is it running? "
                   "(start it with: elektronnd --state-dir DIR)")
    info = None
    trailers = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in trailers or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            info = error_info(value)
    if info is None:
        return ElektronnError(details, code)
    return ElektronnError(details, code, info.reason, info.metadata)


def from_exit_code(returncode: int, message: str) -> ElektronnError:
    """An ElektronnError for an `elektronn` command that exited with `returncode`."""
    return ElektronnError(message, _EXIT_CODES.get(returncode, grpc.StatusCode.UNKNOWN))
