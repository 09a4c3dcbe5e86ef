"""The gRPC servicers of signal_svc. Each RPC admits its caller through the Gate (the one
place that decides who may call what), then delegates to the handler of its part —
market data (`MarketRpcs`), signal history (`SignalRpcs`), streams (`StreamRpcs`) — which
translates proto ⇄ domain.

SignalService admits a user's access token (header, or ?access_token= through Envoy for
Server-Sent Events) or the service credential; SignalInternalService the service
credential only. A user's concurrent streams (signals and prices together) are capped
per process (`stream_slots`, common.user_slots); services are not capped.

Streaming RPCs write their responses (`context.write`) and return None, which the
generated base classes (typed as returning iterators) do not foresee: hence the
`type: ignore[override]` on them (see stream_rpcs for why they write).
"""

from __future__ import annotations

from typing import TypeAlias

import grpc

from aifx.signal.v1 import signal_pb2, signal_pb2_grpc
from common.callers import Gate
from common.user_slots import UserSlots
from signal_svc.market_rpcs import MarketRpcs
from signal_svc.signal_rpcs import SignalRpcs
from signal_svc.stream_rpcs import StreamRpcs

Context: TypeAlias = grpc.aio.ServicerContext


class SignalService(signal_pb2_grpc.SignalServiceServicer):
    def __init__(
        self,
        gate: Gate,
        market: MarketRpcs,
        signals: SignalRpcs,
        streams: StreamRpcs,
        stream_slots: UserSlots | None = None,
    ) -> None:
        """`stream_slots` None: counted, not capped (in-process tests, benchmarks)."""
        self._gate = gate
        self._market = market
        self._signals = signals
        self._streams = streams
        self._stream_slots = stream_slots or UserSlots(None, "streams")

    async def GetSignal(  # noqa: N802 (gRPC method names)
        self, request: signal_pb2.GetSignalRequest, context: Context
    ) -> signal_pb2.GetSignalResponse:
        await self._gate.user_or_service(context)
        return await self._signals.get_signal(request)

    async def ListSignals(  # noqa: N802
        self, request: signal_pb2.ListSignalsRequest, context: Context
    ) -> signal_pb2.ListSignalsResponse:
        await self._gate.user_or_service(context)
        return await self._signals.list_signals(request)

    async def SubscribeSignals(  # type: ignore[override]  # noqa: N802
        self, request: signal_pb2.SubscribeSignalsRequest, context: Context
    ) -> None:
        caller = await self._gate.user_or_service(context)
        with self._stream_slots.hold(caller.user_id):
            await self._streams.subscribe_signals(request, context)

    async def GetCandles(  # noqa: N802
        self, request: signal_pb2.GetCandlesRequest, context: Context
    ) -> signal_pb2.GetCandlesResponse:
        await self._gate.user_or_service(context)
        return await self._market.get_candles(request)

    async def GetPrice(  # noqa: N802
        self, request: signal_pb2.GetPriceRequest, context: Context
    ) -> signal_pb2.GetPriceResponse:
        await self._gate.user_or_service(context)
        return await self._market.get_price(request)

    async def StreamPrices(  # type: ignore[override]  # noqa: N802
        self, request: signal_pb2.StreamPricesRequest, context: Context
    ) -> None:
        caller = await self._gate.user_or_service(context)
        with self._stream_slots.hold(caller.user_id):
            await self._market.stream_prices(request, context)

    async def ListPairs(  # noqa: N802
        self, request: signal_pb2.ListPairsRequest, context: Context
    ) -> signal_pb2.ListPairsResponse:
        await self._gate.user_or_service(context)
        return await self._market.list_pairs(request)


class SignalInternalService(signal_pb2_grpc.SignalInternalServiceServicer):
    def __init__(self, gate: Gate, market: MarketRpcs, streams: StreamRpcs) -> None:
        self._gate = gate
        self._market = market
        self._streams = streams

    async def GetPriceInternal(  # noqa: N802
        self, request: signal_pb2.GetPriceInternalRequest, context: Context
    ) -> signal_pb2.GetPriceInternalResponse:
        self._gate.service(context)
        return await self._market.get_price_internal(request)

    async def StreamPricesInternal(  # type: ignore[override]  # noqa: N802
        self, request: signal_pb2.StreamPricesInternalRequest, context: Context
    ) -> None:
        self._gate.service(context)
        await self._market.stream_prices_internal(request, context)

    async def StreamAllSignals(  # type: ignore[override]  # noqa: N802
        self, request: signal_pb2.StreamAllSignalsRequest, context: Context
    ) -> None:
        self._gate.service(context)
        await self._streams.stream_all_signals(request, context)
