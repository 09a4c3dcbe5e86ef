"""The signal streams (SignalService.SubscribeSignals, SignalInternalService.
StreamAllSignals), for the servicers to delegate to once they have admitted the caller:
translate proto ⇄ domain, nothing more (the seam logic is in `subscriptions.py`, the
fan-out in `fanout.py`).

The RPCs write their responses (`context.write`) instead of being async generators: a
stream holds one coroutine for its whole life instead of a stack of generators (and
each `async for` level's pending step object), and does not keep its last response
alive between messages (gRPC's generator loop holds the last one it sent), about 1.3 kB
less per open stream. The filter of a subscription is shared by the subscriptions that
asked for the same (most ask for the same few pairs): see `FilterPool`.

Errors are domain errors, turned into statuses by the server's interceptor:
INVALID_ARGUMENT naming `pairs[i]`, `timeframes[i]`, `min_confidence` or
`resume_after_id`; RESOURCE_EXHAUSTED (reason SUBSCRIBER_TOO_SLOW) for a subscriber that
fell `subscriber_buffer` signals behind, whose message names the `resume_after_id` to
reconnect with; UNAVAILABLE (reason STREAM_CLOSED) when the server shuts down.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

import grpc

from aifx.signal.v1 import signal_pb2
from common import request_fields
from common.errors import ViolationCollector
from common.proto_convert import timestamp
from signal_svc.convert import ResponseCache, parse_signal_id
from signal_svc.fanout import Broadcaster
from signal_svc.metrics import SUBSCRIBERS
from signal_svc.ports import SignalFilter, SignalReader
from signal_svc.subscriptions import Heartbeat, subscribe

# Distinct subscription filters kept to be shared; past this many, the pool starts over.
SHARED_FILTERS = 1024


class FilterPool:
    """Equal subscription filters as one object. Thousands of subscribers asking for the
    same pairs keep one filter, not one each (a filter and its sets are ~0.5 kB, kept for
    the life of the stream)."""

    def __init__(self, size: int = SHARED_FILTERS) -> None:
        self._size = size
        self._filters: dict[SignalFilter, SignalFilter] = {}

    def shared(self, wanted: SignalFilter) -> SignalFilter:
        """An equal filter that other subscriptions already hold, or `wanted` (then
        shared)."""
        shared = self._filters.get(wanted)
        if shared is None:
            if len(self._filters) >= self._size:
                self._filters.clear()
            shared = self._filters[wanted] = wanted
        return shared


def resume_id(text: str, violations: ViolationCollector) -> int | None:
    """The `resume_after_id` of a request: None when empty (live only)."""
    if not text.strip():
        return None
    try:
        return parse_signal_id(text)
    except ValueError:
        violations.add(
            "resume_after_id",
            f"'{text[:40]}' is not a signal id; pass the id of the last signal received",
        )
        return None


def subscribe_request(
    request: signal_pb2.SubscribeSignalsRequest,
) -> tuple[SignalFilter, int | None]:
    """The filter and resume id of a SubscribeSignals request; InvalidArgument naming
    every bad field. (A function, so that what validation made is not held by the
    stream's frame for the life of the stream.)"""
    violations = ViolationCollector()
    wanted = SignalFilter(
        pairs=frozenset(request_fields.pairs(request.pairs, "pairs", violations)),
        timeframes=frozenset(
            request_fields.timeframes(request.timeframes, "timeframes", violations)
        ),
        min_confidence=request_fields.confidence(
            request.min_confidence, "min_confidence", violations
        ),
    )
    resume = resume_id(request.resume_after_id, violations)
    violations.raise_if_any()
    return wanted, resume


def stream_all_request(request: signal_pb2.StreamAllSignalsRequest) -> int | None:
    """The resume id of a StreamAllSignals request; InvalidArgument when bad."""
    violations = ViolationCollector()
    resume = resume_id(request.resume_after_id, violations)
    violations.raise_if_any()
    return resume


class StreamRpcs:
    def __init__(
        self,
        broadcaster: Broadcaster,
        reader: SignalReader,
        responses: ResponseCache,
        *,
        heartbeat_seconds: float,
        filters: FilterPool | None = None,
    ) -> None:
        self._broadcaster = broadcaster
        self._reader = reader
        self._responses = responses
        self._heartbeat_seconds = heartbeat_seconds
        self._filters = filters or FilterPool()

    # The two entry points check the request at once (InvalidArgument before anything
    # is sent) and return the stream's coroutine for the servicer to await, instead of
    # awaiting it themselves: a stream lives for hours, and a frame more per stream is
    # memory and time on every message of thousands of them.

    def subscribe_signals(
        self, request: signal_pb2.SubscribeSignalsRequest, context: grpc.aio.ServicerContext
    ) -> Coroutine[Any, Any, None]:
        """Writes SubscribeSignalsResponse messages (see the module docstring)."""
        wanted, resume = subscribe_request(request)
        return self._stream(
            context, self._filters.shared(wanted), resume, signal_pb2.SubscribeSignalsResponse
        )

    def stream_all_signals(
        self, request: signal_pb2.StreamAllSignalsRequest, context: grpc.aio.ServicerContext
    ) -> Coroutine[Any, Any, None]:
        """Writes StreamAllSignalsResponse messages: every signal."""
        resume = stream_all_request(request)
        return self._stream(context, SignalFilter(), resume, signal_pb2.StreamAllSignalsResponse)

    async def _stream(
        self,
        context: grpc.aio.ServicerContext,
        wanted: SignalFilter,
        resume_after_id: int | None,
        response_type: Any,
    ) -> None:
        """Write the subscription's events to `context` until it ends (an error, or
        the client leaving: the RPC's task is then cancelled)."""
        events = subscribe(
            wanted,
            resume_after_id,
            self._reader,
            self._broadcaster,
            heartbeat_seconds=self._heartbeat_seconds,
        )
        # Counted for the stream's whole life (replay included), not by the
        # broadcaster's registrations, which a subscriber that overflows during a replay
        # drops and makes again.
        SUBSCRIBERS.inc()
        try:
            async for event in events:
                if isinstance(event, Heartbeat):
                    response = response_type(
                        heartbeat=signal_pb2.Heartbeat(time=timestamp(event.time))
                    )
                else:
                    response = self._responses.response(event, response_type)
                await context.write(response)
                del response  # not held while waiting for the next event
        finally:
            SUBSCRIBERS.dec()
            await events.aclose()
