"""The one way AIFX code calls another gRPC service (or a model server).

    client = GrpcClient("signal_svc", target, service_token=token, timeout_seconds=2.0)
    stub = client.stub(signal_pb2_grpc.SignalInternalServiceStub)
    reply = await client.unary(stub.GetPriceInternal, request)      # domain errors, not gRPC's
    async for message in client.stream(stub.StreamPricesInternal, request): ...
    await client.close()

What every call gets, so no client repeats it:

- **A lazy channel**: opened on first use, inside the running event loop (a grpc.aio
  channel belongs to the loop that made it), with keepalive (a dead peer of a
  long-lived stream is noticed in about a minute, not the kernel's two hours) and
  message-size limits set once.
- **Metadata**: the service credential (`x-aifx-service-token`) when the client has one,
  and the request id of the RPC being served (common.request_id), so one user request
  can be followed through the log of every service it touched.
- **Wait for ready** (unary calls): a call to a dependency that is not up yet (still
  starting, or restarting) waits for it within the call's deadline instead of failing
  at once because the channel is in reconnect backoff. Every unary call has a deadline
  (`timeout_seconds` unless the caller passes one), so nothing waits forever. Streams
  have no deadline and fail at once when the dependency is down: their owners (the
  position watcher's price stream, say) reconnect with backoff of their own and catch
  up on what they missed, which they could not do while blocked waiting.
- **Domain errors**: a failed call raises `common.errors` types (`domain_error`), with
  the callee's field violations, reason and retry delay kept, so code behind a client
  never catches `grpc.aio.AioRpcError`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from common import request_id
from common.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RateLimited,
    Unauthenticated,
    Unavailable,
)
from common.grpc_metadata import SERVICE_TOKEN_HEADER

StubT = TypeVar("StubT")
ResponseT = TypeVar("ResponseT")
ResponseT_co = TypeVar("ResponseT_co", covariant=True)

DEFAULT_TIMEOUT_SECONDS = 2.0
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# With several replicas behind one target (`ipv4:127.0.0.1:50052,50152`, or a DNS name
# with several addresses), spread calls over every replica that reports SERVING on the
# standard health service, instead of pinning all of them to the first address.
SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": ""},
    }
)
CHANNEL_OPTIONS: tuple[tuple[str, int | str], ...] = (
    ("grpc.service_config", SERVICE_CONFIG),
    # Ping a quiet connection that has calls on it every minute; no answer in 20 s
    # closes it and fails its streams, which their owners then re-open.
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Reconnect to a restarted dependency within a second or two, not after grpc's
    # default backoff of up to two minutes.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
)


class _CallMetadata:
    """What every call gets: the service credential and the current request id."""

    def __init__(self, service_token: str) -> None:
        self._fixed: tuple[tuple[str, str], ...] = (
            ((SERVICE_TOKEN_HEADER, service_token),) if service_token else ()
        )

    def details(
        self, details: grpc.aio.ClientCallDetails, *, wait_for_ready: bool
    ) -> grpc.aio.ClientCallDetails:
        metadata = [*self._fixed, *(details.metadata or ())]
        current = request_id.current()
        if current and not any(key == request_id.HEADER for key, _ in metadata):
            metadata.append((request_id.HEADER, current))
        if details.wait_for_ready is not None:  # the caller decided
            wait_for_ready = details.wait_for_ready
        return details._replace(metadata=tuple(metadata), wait_for_ready=wait_for_ready)


# grpc.aio files an interceptor under the first call kind it implements only, so unary
# and streaming calls each get their own.
class _UnaryInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, metadata: _CallMetadata) -> None:
        self._metadata = metadata

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self._metadata.details(details, wait_for_ready=True), request)


class _StreamInterceptor(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, metadata: _CallMetadata) -> None:
        self._metadata = metadata

    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self._metadata.details(details, wait_for_ready=False), request)


class UnaryMethod(Protocol[ResponseT_co]):
    """A unary method of a grpc.aio stub."""

    def __call__(
        self, request: Any, *, timeout: float | None = ..., metadata: Any = ...
    ) -> Awaitable[ResponseT_co]: ...


class StreamMethod(Protocol[ResponseT_co]):
    """A server-streaming method of a grpc.aio stub."""

    def __call__(self, request: Any) -> AsyncIterator[ResponseT_co]: ...


class GrpcClient:
    """Calls to one dependency at `target` (see the module docstring). `name` says who
    it is in error messages ("signal_svc", "the model server")."""

    def __init__(
        self,
        name: str,
        target: str,
        *,
        service_token: str = "",
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.name = name
        self.target = target
        self.timeout_seconds = timeout_seconds
        self._service_token = service_token
        self._channel: grpc.aio.Channel | None = None
        self._stubs: dict[Callable[[grpc.aio.Channel], Any], Any] = {}

    def channel(self) -> grpc.aio.Channel:
        """The channel, opened on first use (call inside the running event loop)."""
        if self._channel is None:
            metadata = _CallMetadata(self._service_token)
            self._channel = grpc.aio.insecure_channel(
                self.target,
                options=CHANNEL_OPTIONS,
                interceptors=[_UnaryInterceptor(metadata), _StreamInterceptor(metadata)],
            )
        return self._channel

    def stub(self, stub_type: Callable[[grpc.aio.Channel], StubT]) -> StubT:
        """A stub of `stub_type` on this client's channel (one per type)."""
        stub = self._stubs.get(stub_type)
        if stub is None:
            stub = self._stubs[stub_type] = stub_type(self.channel())
        return stub

    async def unary(
        self,
        method: UnaryMethod[ResponseT],
        request: Any,
        *,
        deadline_seconds: float | None = None,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> ResponseT:
        """`method(request)` within `deadline_seconds` (default: the client's
        timeout_seconds), with `metadata` added to every call's (e.g. the bearer token of
        the user a service acts for); a failure is the DomainError `domain_error` makes
        of it."""
        try:
            return await method(
                request, timeout=deadline_seconds or self.timeout_seconds, metadata=metadata
            )
        except grpc.aio.AioRpcError as error:
            raise domain_error(error, self.name) from error

    async def stream(
        self, method: StreamMethod[ResponseT], request: Any
    ) -> AsyncIterator[ResponseT]:
        """The messages of a server stream, until it ends; a failure (at the start or
        mid-stream) is the DomainError `domain_error` makes of it."""
        try:
            async for message in method(request):
                yield message
        except grpc.aio.AioRpcError as error:
            raise domain_error(error, self.name) from error

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._stubs.clear()


def _details(error: grpc.aio.AioRpcError) -> tuple[str, list[FieldViolation], float | None]:
    """The ErrorInfo reason, BadRequest violations and RetryInfo delay of a rich status
    (empty when the callee sent none)."""
    reason, violations, retry = "", [], None
    try:
        status = rpc_status.from_call(error)
    except ValueError:  # the status in the details disagrees with the call's
        status = None
    for packed in status.details if status is not None else ():
        if packed.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            packed.Unpack(info)
            reason = info.reason
        elif packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            packed.Unpack(bad)
            violations += [FieldViolation(v.field, v.description) for v in bad.field_violations]
        elif packed.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info_retry = error_details_pb2.RetryInfo()
            packed.Unpack(info_retry)
            retry = info_retry.retry_delay.ToTimedelta().total_seconds()
    return reason, violations, retry


_BY_CODE: dict[grpc.StatusCode, type[DomainError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
}


def domain_error(error: grpc.aio.AioRpcError, dependency: str) -> DomainError:
    """The domain error of a call to `dependency` that failed with `error`.

    The callee's own verdicts keep their meaning (INVALID_ARGUMENT with its field
    violations, NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION, UNAUTHENTICATED,
    PERMISSION_DENIED, RESOURCE_EXHAUSTED with its retry delay) and their reason. Every
    other code (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, a cancelled call...) means the
    dependency could not answer: Unavailable, reason `<DEPENDENCY>_UNAVAILABLE` unless
    the callee gave one."""
    code = error.code()
    message = error.details() or code.name
    reason, violations, retry = _details(error)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return _with_reason(InvalidArgument(violations, message), reason)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return _with_reason(RateLimited(message, retry_after_seconds=retry or 1.0), reason)
    known = _BY_CODE.get(code)
    if known is not None:
        return known(message, reason=reason or None)
    unavailable_reason = reason or f"{dependency.upper().replace(' ', '_')}_UNAVAILABLE"
    return Unavailable(
        f"{dependency} did not answer ({code.name}: {message})",
        reason=unavailable_reason,
        retry_after_seconds=retry or 1.0,  # as Envoy tells REST clients of every 503
    )


def _with_reason(error: DomainError, reason: str) -> DomainError:
    if reason:
        error.reason = reason
    return error
