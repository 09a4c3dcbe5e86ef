"""GetSignal and ListSignals, for SignalService to delegate to once it has admitted the
caller. Proto ⇄ domain only: validation errors are InvalidArgument with one violation
per bad field (all at once), which the server's interceptor turns into INVALID_ARGUMENT
with google.rpc.BadRequest.

GetSignal never computes a signal on demand: signals are made by the scheduler at each
candle close (and at its start, from the latest closed candle), stored once, and served
from the cache. A series without a signal yet is NOT_FOUND saying so. Computing one per
request would put market data and inference on the read path, race the scheduler for
the same candle and could be stampeded by readers of an unconfigured series.
"""

from __future__ import annotations

from aifx.signal.v1 import signal_pb2
from common import request_fields
from common.errors import NotFound, ViolationCollector
from common.pagination import effective_page_size
from common.time import as_utc
from signal_svc.convert import ACTION_FROM_PROTO, ResponseCache, signal_message
from signal_svc.ports import SignalFilter
from signal_svc.repository import SignalRepository
from signal_svc.signal_cache import SignalCache

_ACTIONS = "TRADE_ACTION_BUY, TRADE_ACTION_SELL or TRADE_ACTION_HOLD"


class SignalRpcs:
    def __init__(
        self, signals: SignalRepository, cache: SignalCache, responses: ResponseCache
    ) -> None:
        self._signals = signals
        self._cache = cache
        self._responses = responses

    async def get_signal(
        self, request: signal_pb2.GetSignalRequest
    ) -> signal_pb2.GetSignalResponse:
        violations = ViolationCollector()
        series = request_fields.series(request.pair, request.timeframe, violations)
        violations.raise_if_any()
        assert series is not None
        pair, timeframe = series
        signal = await self._cache.latest(pair, timeframe)
        if signal is None:
            raise NotFound(
                f"no signal for {pair} {timeframe.value} yet: signals are computed at each "
                "candle close of the series the service is configured for",
                reason="SIGNAL_NOT_FOUND",
            )
        # Built once per signal: converting it (timestamps, the indicator snapshot) was
        # the largest part of GetSignal's own Python time.
        return self._responses.response(signal, signal_pb2.GetSignalResponse)

    async def list_signals(
        self, request: signal_pb2.ListSignalsRequest
    ) -> signal_pb2.ListSignalsResponse:
        violations = ViolationCollector()
        pair = request_fields.pair(request.pair, "pair", violations, required=False)
        timeframe = request_fields.timeframe(
            request.timeframe, "timeframe", violations, default=None
        )
        action = None
        if request.action:
            action = ACTION_FROM_PROTO.get(request.action)
            if action is None:
                violations.add("action", f"unknown action {request.action}; use {_ACTIONS}")
        since = None
        if request.HasField("since"):
            try:
                since = as_utc(request.since.ToDatetime())
            except (ValueError, OverflowError) as exc:
                violations.add("since", f"is not a valid time: {exc}")
        if request.page_size < 0:
            violations.add("page_size", "must not be negative")
        violations.raise_if_any()
        wanted = SignalFilter(
            pairs=frozenset({pair}) if pair else frozenset(),
            timeframes=frozenset({timeframe}) if timeframe else frozenset(),
            actions=frozenset({action}) if action else frozenset(),
            since=since,
        )
        page, next_token = await self._signals.list(
            wanted, effective_page_size(request.page_size), request.page_token
        )
        return signal_pb2.ListSignalsResponse(
            signals=[signal_message(s) for s in page], next_page_token=next_token
        )
