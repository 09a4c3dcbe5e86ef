"""The one server interceptor every service runs: request ids, a log line per RPC (at
DEBUG unless it is worth a look: see SLOW_RPC_SECONDS), Prometheus metrics, and domain
errors turned into rich gRPC statuses.

Doing all four in one wrapper keeps the status that is logged, counted and sent the
same, and costs one extra coroutine frame per RPC instead of four.

Server-streaming handlers come in gRPC's two styles: async generators (yield each
response) and coroutines that `await context.write(response)` (lighter for streams a
server holds thousands of: see signal_svc.stream_rpcs); each is wrapped in its own
style, since gRPC picks how to run a handler by what the function is.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog
from prometheus_client import Counter, Histogram

from common import request_id, tracing
from common.errors import DomainError
from common.grpc_errors import internal_status, to_status
from common.outages import as_unavailable

log = structlog.get_logger("rpc")
_STDLIB_LOG = logging.getLogger("rpc")

REQUEST_ID_HEADER = request_id.HEADER
QUIET_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")
# The per-RPC line is DEBUG when nothing is worth a look: the request log is Envoy's
# access log, and a line per successful read cost a fifth of the machine's CPU under
# load (issue 15). What is worth a look gets a line at INFO (a client error, a stream's
# end, a unary call slower than this) or WARNING (the server's fault).
SLOW_RPC_SECONDS = 0.25
SERVER_FAULTS = frozenset(
    {
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DATA_LOSS,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)

RPC_REQUESTS = Counter(
    "aifx_grpc_requests_total", "RPCs handled, by method and status code", ["method", "code"]
)
RPC_LATENCY = Histogram(
    "aifx_grpc_request_duration_seconds",
    "RPC handling time (for streams: until the stream ends)",
    ["method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def _request_id(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_HEADER and isinstance(value, str) and value:
            return value[: request_id.MAX_LENGTH]
    return uuid.uuid4().hex


class _Call:
    """Book-keeping of one RPC: what was asked, by whom, how it ended. Slotted: a
    long-lived stream holds one for its whole life, a server thousands at once."""

    __slots__ = ("code", "context", "method", "peer", "request_id", "span", "started", "stream")

    def __init__(
        self, method: str, context: grpc.aio.ServicerContext, *, stream: bool = False
    ) -> None:
        self.method = method
        self.stream = stream
        self.context = context
        self.request_id = _request_id(context)
        self.started = time.perf_counter()
        self.code = grpc.StatusCode.OK
        # Read while the RPC is alive: asking a finished call for its peer crashes grpc.
        self.peer = context.peer()
        self.span: Any = None  # the RPC's trace span, when tracing is on (common.tracing)

    def begin(self) -> None:
        """Bind the request id to every log line of this RPC and echo it to the client
        in the trailers, which go out with the status at no extra cost. (Sending it as
        a header would be a write of its own per RPC, measured at ~7 % of GetSignal's
        CPU; and a stream must not send headers before its first message, or an early
        error could no longer be a trailers-only answer that Envoy turns into an HTTP
        error status.) Browsers get the id as a response header from Envoy, which made
        it (`always_set_request_id_in_response`). The id is also made current
        (common.request_id), so calls this RPC makes to other services carry it; grpc
        runs each RPC in a task of its own, so it ends with the RPC."""
        structlog.contextvars.bind_contextvars(request_id=self.request_id)
        request_id.bind(self.request_id)
        self.context.set_trailing_metadata(((REQUEST_ID_HEADER, self.request_id),))
        self.span = tracing.start_rpc_span(self.method, self.context, self.request_id, self.peer)

    async def fail(self, exc: BaseException) -> None:
        """Record how the RPC failed and answer the client with the right status."""
        if isinstance(exc, (asyncio.CancelledError, GeneratorExit, grpc.aio.InternalError)):
            # The client went away (a stream closed mid-send raises GeneratorExit in a
            # response generator; a handler's `context.write` fails with gRPC's
            # InternalError, "batch failed"): nobody to answer, and aborting a dead call
            # crashes grpc.
            self.code = grpc.StatusCode.CANCELLED
            return
        if isinstance(exc, grpc.aio.AbortError):
            self.code = self.context.code() or grpc.StatusCode.UNKNOWN
            return
        unavailable = None if isinstance(exc, DomainError) else as_unavailable(exc)
        if unavailable is not None:
            # The type only: a database error's text holds the statement's parameters.
            log.warning("dependency unavailable", method=self.method, error=type(exc).__name__)
            status = to_status(unavailable)
        elif isinstance(exc, DomainError):
            status = to_status(exc)
        else:
            log.exception("unhandled error", method=self.method)
            status = internal_status(self.request_id)
            if self.span is not None:
                self.span.record_exception(exc)
        self.code = status.code
        trailers = (*status.trailing_metadata, (REQUEST_ID_HEADER, self.request_id))
        await self.context.abort(status.code, status.details, trailers)

    def finish(self) -> None:
        elapsed = time.perf_counter() - self.started
        code = self.code.name
        RPC_REQUESTS.labels(self.method, code).inc()
        RPC_LATENCY.labels(self.method).observe(elapsed)
        level = self._log_level(elapsed)
        if _STDLIB_LOG.isEnabledFor(level):  # skip building an event nobody would see
            log.log(
                level,
                "rpc",
                method=self.method,
                code=code,
                latency_ms=round(elapsed * 1000, 2),
                peer=self.peer,
            )
        structlog.contextvars.unbind_contextvars("request_id")
        if self.span is not None:
            tracing.end_rpc_span(self.span, self.code.value[0], code)

    def _log_level(self, elapsed: float) -> int:
        """How loud this RPC's line is (see SLOW_RPC_SECONDS)."""
        if self.method.startswith(QUIET_PREFIXES):
            return logging.DEBUG
        if self.code in SERVER_FAULTS:
            return logging.WARNING
        if self.code != grpc.StatusCode.OK or self.stream or elapsed >= SLOW_RPC_SECONDS:
            return logging.INFO
        return logging.DEBUG


# Wrapped handlers kept per (method, handler); past this many (handlers made per call by
# some servicer?) the cache starts over instead of growing.
WRAPPED_HANDLERS_MAX = 1024


class ObservabilityInterceptor(grpc.aio.ServerInterceptor):
    """Wraps unary and server-streaming handlers (the only kinds AIFX contracts use).

    A method's wrapped handler is made once and reused: made per call, it (a handler
    tuple and a closure) would live as long as the call, which for a stream is hours."""

    def __init__(self) -> None:
        self._wrapped: dict[tuple[str, grpc.RpcMethodHandler], grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        key = (handler_call_details.method, handler)
        wrapped = self._wrapped.get(key)
        if wrapped is None:
            if len(self._wrapped) >= WRAPPED_HANDLERS_MAX:
                self._wrapped.clear()
            wrapped = self._wrapped[key] = _wrap(*key)
        return wrapped


def _wrap(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """`handler` with the observability of every call of `method` around it."""
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _wrap_unary(method, handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _wrap_stream(method, handler.unary_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler


def _wrap_unary(method: str, behaviour: Callable[..., Any]) -> Callable[..., Any]:
    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        call = _Call(method, context)
        call.begin()
        try:
            return await behaviour(request, context)
        except BaseException as exc:
            await call.fail(exc)
            raise
        finally:
            call.finish()

    return unary


def _wrap_stream(method: str, behaviour: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(behaviour):
        return _wrap_writer(method, behaviour)

    async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        call = _Call(method, context, stream=True)
        call.begin()
        try:
            async for response in behaviour(request, context):
                yield response
        except BaseException as exc:
            await call.fail(exc)
            raise
        finally:
            call.finish()

    return stream


def _wrap_writer(method: str, behaviour: Callable[..., Any]) -> Callable[..., Any]:
    """A streaming handler that writes its responses (`context.write`) and returns None."""

    async def writer(request: Any, context: grpc.aio.ServicerContext) -> None:
        call = _Call(method, context, stream=True)
        call.begin()
        try:
            await behaviour(request, context)
        except BaseException as exc:
            await call.fail(exc)
            raise
        finally:
            call.finish()

    return writer
