from __future__ import annotations

import grpc
from google.rpc import error_details_pb2

from tessera.runtime.errors import InvalidArgument, PermissionDenied, ResourceExhausted, Unavailable, to_status


def test_field_violation_detail() -> None:
    status = to_status(InvalidArgument("must be >= 1", field="k", reason="K_OUT_OF_RANGE"))
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] == 3
    assert status.message == "must be >= 1"
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    assert [(v.field, v.description) for v in bad.field_violations] == [("k", "must be >= 1")]
    info = error_details_pb2.ErrorInfo()
    assert status.details[1].Unpack(info) and info.reason == "K_OUT_OF_RANGE"


def test_codes_per_error_class() -> None:
    assert to_status(PermissionDenied("no")).code == 7
    assert to_status(ResourceExhausted("big")).code == 8
    assert to_status(Unavailable("down")).code == 14
    assert not to_status(Unavailable("down")).details  # no field named, no BadRequest
