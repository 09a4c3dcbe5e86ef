"""GetSignal and ListSignals: a servicer mixin composed into SignalService.

The composed class provides `self.signals` (SignalRepository), `self.signal_cache`
(SignalCache) and `async self.authenticate(context)` (a Caller, or Unauthenticated);
every RPC authenticates first. Proto ⇄ domain only: validation errors are
InvalidArgument with one violation per bad field (all at once), which the server's
interceptor turns into INVALID_ARGUMENT with google.rpc.BadRequest.

GetSignal never computes a signal on demand: signals are made by the scheduler at each
candle close (and at its start, from the latest closed candle), stored once, and served
from the cache. A series without a signal yet is NOT_FOUND saying so. Computing one per
request would put market data and inference on the read path, race the scheduler for
the same candle and could be stampeded by readers of an unconfigured series.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aifx.signal.v1 import signal_pb2
from common.errors import NotFound, ViolationCollector
from common.market import Timeframe, normalize_pair
from common.pagination import effective_page_size
from common.proto_convert import TIMEFRAME_FROM_PROTO
from common.time import as_utc
from signal_svc.convert import ACTION_FROM_PROTO, responses_of, signal_message
from signal_svc.ports import SignalFilter

if TYPE_CHECKING:
    from signal_svc.repository import SignalRepository
    from signal_svc.signal_cache import SignalCache

DEFAULT_TIMEFRAME = Timeframe.H1
_TIMEFRAMES = "TIMEFRAME_M15, TIMEFRAME_H1, TIMEFRAME_H4 or TIMEFRAME_D1"
_ACTIONS = "TRADE_ACTION_BUY, TRADE_ACTION_SELL or TRADE_ACTION_HOLD"


def _pair(raw: str, errors: ViolationCollector, *, required: bool) -> str:
    if not raw.strip():
        if required:
            errors.add("pair", "is required, e.g. EUR/USD or EURUSD")
        return ""
    try:
        return normalize_pair(raw)
    except ValueError as exc:
        errors.add("pair", str(exc))
        return ""


def _timeframe(value: int, errors: ViolationCollector, *, default: Timeframe | None) -> Any:
    if value == 0:
        return default
    timeframe = TIMEFRAME_FROM_PROTO.get(value)  # type: ignore[call-overload]
    if timeframe is None:
        errors.add("timeframe", f"unknown timeframe {value}; use {_TIMEFRAMES}")
    return timeframe


class SignalRpcs:
    """Mixin of SignalService: GetSignal and ListSignals."""

    # Set by the composed class (annotations only: nothing here shadows them in the MRO).
    signals: SignalRepository
    signal_cache: SignalCache
    authenticate: Callable[[Any], Awaitable[Any]]

    async def GetSignal(self, request, context):  # noqa: N802
        await self.authenticate(context)
        errors = ViolationCollector()
        pair = _pair(request.pair, errors, required=True)
        timeframe = _timeframe(request.timeframe, errors, default=DEFAULT_TIMEFRAME)
        errors.raise_if_any()
        signal = await self.signal_cache.latest(pair, timeframe)
        if signal is None:
            raise NotFound(
                f"no signal for {pair} {timeframe.value} yet: signals are computed at each "
                "candle close of the series the service is configured for",
                reason="SIGNAL_NOT_FOUND",
            )
        # Built once per signal: converting it (timestamps, the indicator snapshot) was
        # the largest part of GetSignal's own Python time.
        return responses_of(self).response(signal, signal_pb2.GetSignalResponse)

    async def ListSignals(self, request, context):  # noqa: N802
        await self.authenticate(context)
        errors = ViolationCollector()
        pair = _pair(request.pair, errors, required=False)
        timeframe = _timeframe(request.timeframe, errors, default=None)
        action = None
        if request.action:
            action = ACTION_FROM_PROTO.get(request.action)
            if action is None:
                errors.add("action", f"unknown action {request.action}; use {_ACTIONS}")
        since = None
        if request.HasField("since"):
            try:
                since = as_utc(request.since.ToDatetime())
            except (ValueError, OverflowError) as exc:
                errors.add("since", f"is not a valid time: {exc}")
        if request.page_size < 0:
            errors.add("page_size", "must not be negative")
        errors.raise_if_any()
        wanted = SignalFilter(
            pairs=frozenset({pair}) if pair else frozenset(),
            timeframes=frozenset({timeframe}) if timeframe else frozenset(),
            actions=frozenset({action}) if action else frozenset(),
            since=since,
        )
        page, next_token = await self.signals.list(
            wanted, effective_page_size(request.page_size), request.page_token
        )
        return signal_pb2.ListSignalsResponse(
            signals=[signal_message(s) for s in page], next_page_token=next_token
        )
