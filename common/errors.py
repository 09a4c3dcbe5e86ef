"""Domain errors, free of gRPC.

Domain code raises these; the server bootstrap's interceptor turns each into the gRPC
status it names, with google.rpc details (BadRequest, RetryInfo, ErrorInfo), which Envoy
maps to the HTTP status and a JSON body.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: `field` is the proto field path (e.g. `preferences.pairs[1]`)."""

    field: str
    description: str


class DomainError(Exception):
    """Base of every error a client may see. `reason` is a stable UPPER_SNAKE code for
    machines (google.rpc.ErrorInfo.reason); the message is for people."""

    reason: str = "ERROR"
    # When the same call may succeed again (RetryInfo over gRPC, Retry-After over HTTP);
    # None: not a matter of waiting.
    retry_after_seconds: float | None = None

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class InvalidArgument(DomainError):
    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[FieldViolation], message: str | None = None) -> None:
        summary = message or "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(summary)
        self.violations = violations


class Unauthenticated(DomainError):
    reason = "UNAUTHENTICATED"


class PermissionDenied(DomainError):
    reason = "PERMISSION_DENIED"


class NotFound(DomainError):
    reason = "NOT_FOUND"


class AlreadyExists(DomainError):
    reason = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    reason = "FAILED_PRECONDITION"


class Unavailable(DomainError):
    """A dependency is down or saturated; the same call may succeed later, after
    `retry_after_seconds` when given."""

    reason = "UNAVAILABLE"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(message, reason=reason)
        self.retry_after_seconds = retry_after_seconds


class RateLimited(DomainError):
    """Too many attempts; the client may retry after `retry_after_seconds`."""

    reason = "RATE_LIMITED"

    def __init__(self, message: str, retry_after_seconds: float) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class ViolationCollector:
    """Collects every bad field of a request, so the client learns all of them at once
    instead of one per round trip."""

    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []

    def add(self, field_path: str, description: str) -> None:
        self.violations.append(FieldViolation(field_path, description))

    def raise_if_any(self) -> None:
        if self.violations:
            raise InvalidArgument(self.violations)
