"""Domain errors become gRPC statuses with the right code and google.rpc details."""

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from common import errors
from common.grpc_errors import internal_status, to_status


def details(status: grpc.Status) -> status_pb2.Status:
    (_key, value), *_ = [m for m in status.trailing_metadata if m[0] == "grpc-status-details-bin"]
    return status_pb2.Status.FromString(value)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (
            errors.InvalidArgument([errors.FieldViolation("a", "bad")]),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (errors.Unauthenticated("no"), grpc.StatusCode.UNAUTHENTICATED),
        (errors.PermissionDenied("no"), grpc.StatusCode.PERMISSION_DENIED),
        (errors.NotFound("no"), grpc.StatusCode.NOT_FOUND),
        (errors.AlreadyExists("no"), grpc.StatusCode.ALREADY_EXISTS),
        (errors.FailedPrecondition("no"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.RateLimited("slow down", 3.5), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.Unavailable("down"), grpc.StatusCode.UNAVAILABLE),
    ],
)
def test_codes(error, code):
    status = to_status(error)
    assert status.code == code
    assert details(status).message == error.message


def test_bad_request_lists_every_violation():
    error = errors.InvalidArgument(
        [errors.FieldViolation("email", "bad"), errors.FieldViolation("password", "short")]
    )
    packed = details(to_status(error)).details
    bad_request = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad_request) for d in packed)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        ("email", "bad"),
        ("password", "short"),
    ]


def test_rate_limited_carries_retry_info_and_error_info():
    packed = details(to_status(errors.RateLimited("slow down", 3.5))).details
    retry, info = error_details_pb2.RetryInfo(), error_details_pb2.ErrorInfo()
    assert any(d.Unpack(retry) for d in packed)
    assert any(d.Unpack(info) for d in packed)
    assert retry.retry_delay.ToMilliseconds() == 3500
    assert info.reason == "RATE_LIMITED" and info.domain == "aifx.dev"


def test_internal_status_hides_the_exception_and_quotes_the_request_id():
    status = internal_status("rid-1")
    assert status.code == grpc.StatusCode.INTERNAL
    assert "rid-1" in status.details
