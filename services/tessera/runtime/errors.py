"""One mapping from domain errors to gRPC status codes, with google.rpc.Status details.

Domain code raises these (or ValueError); the server's interceptor turns them into a status that names the field
and says what is wrong. Nothing else reaches a client: unexpected exceptions become INTERNAL without a trace.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from tessera.runtime.echo import bounded  # and raisers quote client values with echo.shown

MESSAGE_CHARS = 1024  # a whole message, so that a status always fits gRPC's metadata limit
FIELD_CHARS = 256


class TesseraError(Exception):
    """Base for errors that carry a gRPC code; ``field`` is the request field they are about (dotted path).

    Message and field are bounded here, once, whatever the raiser put in them: a status must fit in metadata."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, *, field: str | None = None, reason: str | None = None) -> None:
        message = bounded(message, MESSAGE_CHARS)
        super().__init__(message)
        self.message = message
        self.field = bounded(field, FIELD_CHARS) if field else field
        self.reason = reason


class InvalidArgument(TesseraError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class OutOfRange(TesseraError):
    code = grpc.StatusCode.OUT_OF_RANGE


class NotFound(TesseraError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(TesseraError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(TesseraError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(TesseraError):
    code = grpc.StatusCode.UNAUTHENTICATED


class FailedPrecondition(TesseraError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(TesseraError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(TesseraError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(TesseraError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(TesseraError):
    code = grpc.StatusCode.CANCELLED


def to_status(error: TesseraError) -> status_pb2.Status:
    """The google.rpc.Status for an error, with a BadRequest field violation when a field is named."""
    status = status_pb2.Status(code=_code_number(error.code), message=error.message)
    if error.field:
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=error.field, description=error.message)
                ]
            )
        )
        status.details.append(detail)
    if error.reason:
        info = any_pb2.Any()
        info.Pack(error_details_pb2.ErrorInfo(reason=error.reason, domain="tessera"))
        status.details.append(info)
    return status


def to_grpc_status(error: TesseraError) -> grpc.Status:
    """The status in the form ``context.abort_with_status`` takes (details in grpc-status-details-bin)."""
    status: grpc.Status = rpc_status.to_status(to_status(error))
    return status


def field_violations(error: grpc.RpcError) -> dict[str, str]:
    """Client side: the BadRequest field violations carried by a failed call, field -> description."""
    status = rpc_status.from_call(error)
    found: dict[str, str] = {}
    if status is None:
        return found
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            for violation in bad.field_violations:
                found[violation.field] = violation.description
    return found


def _code_number(code: grpc.StatusCode) -> int:
    number: int = code.value[0]
    assert code_pb2.Code.Name(number)  # the two enumerations agree by construction
    return number
