"""The signal streams, as servicer mixins: translate proto ⇄ domain, nothing more (the
seam logic is in `subscriptions.py`, the fan-out in `fanout.py`).

    class SignalService(MarketRpcs, SignalRpcs, StreamRpcs, SignalServiceServicer): ...
    class SignalInternalService(..., StreamInternalRpcs, SignalInternalServiceServicer): ...

The composed class provides `broadcaster` (fanout.Broadcaster), `signal_reader` (the
repository, a ports.SignalReader), `settings` (common.settings.Settings) and
`async authenticate(context) -> Caller` (raises Unauthenticated / Unavailable).

The RPCs write their responses (`context.write`) instead of being async generators: a
stream holds one coroutine for its whole life instead of a stack of generators (and
each `async for` level's pending step object), and does not keep its last response
alive between messages (gRPC's generator loop holds the last one it sent), about 1.3 kB
less per open stream. The filter of a subscription is shared by the subscriptions that
asked for the same (most ask for the same few pairs).

Errors are domain errors, turned into statuses by the server's interceptor:
INVALID_ARGUMENT naming `pairs[i]`, `timeframes[i]`, `min_confidence` or
`resume_after_id`; UNAUTHENTICATED; RESOURCE_EXHAUSTED (reason SUBSCRIBER_TOO_SLOW) for a
subscriber that fell `settings.subscriber_buffer` signals behind, whose message names the
`resume_after_id` to reconnect with; UNAVAILABLE (reason STREAM_CLOSED) when the server
shuts down.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import grpc

from aifx.common.v1 import market_pb2
from aifx.signal.v1 import signal_pb2
from common.errors import Unauthenticated, ViolationCollector
from common.market import normalize_pair
from common.proto_convert import TIMEFRAME_FROM_PROTO, timestamp
from common.settings import Settings
from signal_svc.convert import parse_signal_id, responses_of
from signal_svc.fanout import Broadcaster
from signal_svc.ports import SignalFilter, SignalReader
from signal_svc.subscriptions import Heartbeat, subscribe

if TYPE_CHECKING:
    from common.callers import Caller

TIMEFRAME_NAMES = "TIMEFRAME_M15, TIMEFRAME_H1, TIMEFRAME_H4 or TIMEFRAME_D1"
# Distinct subscription filters kept to be shared; past this many, starts over.
SHARED_FILTERS = 1024
_shared_filters: dict[SignalFilter, SignalFilter] = {}


def shared_filter(wanted: SignalFilter) -> SignalFilter:
    """An equal filter that other subscriptions already hold, or `wanted` (then shared).
    Thousands of subscribers asking for the same pairs keep one filter, not one each
    (a filter and its sets are ~0.5 kB, kept for the life of the stream)."""
    shared = _shared_filters.get(wanted)
    if shared is None:
        if len(_shared_filters) >= SHARED_FILTERS:
            _shared_filters.clear()
        shared = _shared_filters[wanted] = wanted
    return shared


def subscription_filter(
    pairs: Sequence[str],
    timeframes: Sequence[market_pb2.Timeframe.ValueType],
    min_confidence: float,
    violations: ViolationCollector,
) -> SignalFilter:
    """The domain filter of a SubscribeSignals request; bad fields go to `violations`."""
    wanted_pairs: set[str] = set()
    for index, raw in enumerate(pairs):
        try:
            wanted_pairs.add(normalize_pair(raw))
        except ValueError as exc:
            violations.add(f"pairs[{index}]", str(exc))
    wanted_timeframes = set()
    for index, value in enumerate(timeframes):
        timeframe = TIMEFRAME_FROM_PROTO.get(value)
        if timeframe is None:
            violations.add(f"timeframes[{index}]", f"not a timeframe; use {TIMEFRAME_NAMES}")
        else:
            wanted_timeframes.add(timeframe)
    if not math.isfinite(min_confidence) or not 0.0 <= min_confidence <= 1.0:
        violations.add("min_confidence", "must be between 0 and 1")
    return shared_filter(
        SignalFilter(
            pairs=frozenset(wanted_pairs),
            timeframes=frozenset(wanted_timeframes),
            min_confidence=min_confidence if math.isfinite(min_confidence) else 0.0,
        )
    )


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
    wanted = subscription_filter(
        list(request.pairs), list(request.timeframes), request.min_confidence, violations
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


class _StreamBase:
    broadcaster: Broadcaster
    signal_reader: SignalReader
    settings: Settings

    if TYPE_CHECKING:

        async def authenticate(self, context: grpc.aio.ServicerContext) -> Caller: ...

    async def _stream(
        self,
        context: grpc.aio.ServicerContext,
        wanted: SignalFilter,
        resume_after_id: int | None,
        response_type: type,
    ) -> None:
        """Write the subscription's events to `context` until it ends (an error, or
        the client leaving: the RPC's task is then cancelled)."""
        responses = responses_of(self)
        events = subscribe(
            wanted,
            resume_after_id,
            self.signal_reader,
            self.broadcaster,
            heartbeat_seconds=self.settings.stream_heartbeat_seconds,
        )
        try:
            async for event in events:
                if isinstance(event, Heartbeat):
                    response = response_type(
                        heartbeat=signal_pb2.Heartbeat(time=timestamp(event.time))
                    )
                else:
                    response = responses.response(event, response_type)
                await context.write(response)
                del response  # not held while waiting for the next event
        finally:
            await events.aclose()


class StreamRpcs(_StreamBase):
    """SignalService.SubscribeSignals."""

    async def SubscribeSignals(  # noqa: N802 (gRPC method name)
        self, request: signal_pb2.SubscribeSignalsRequest, context: grpc.aio.ServicerContext
    ) -> None:
        """Writes SubscribeSignalsResponse messages (see the module docstring)."""
        await self.authenticate(context)
        wanted, resume = subscribe_request(request)
        await self._stream(context, wanted, resume, signal_pb2.SubscribeSignalsResponse)


class StreamInternalRpcs(_StreamBase):
    """SignalInternalService.StreamAllSignals: every signal, for the service credential
    only (a user's token is refused)."""

    async def StreamAllSignals(  # noqa: N802 (gRPC method name)
        self, request: signal_pb2.StreamAllSignalsRequest, context: grpc.aio.ServicerContext
    ) -> None:
        """Writes StreamAllSignalsResponse messages."""
        caller = await self.authenticate(context)
        if not caller.is_service:
            raise Unauthenticated(
                "StreamAllSignals is for AIFX services: send the service credential",
                reason="SERVICE_TOKEN",
            )
        resume = stream_all_request(request)
        await self._stream(context, SignalFilter(), resume, signal_pb2.StreamAllSignalsResponse)
