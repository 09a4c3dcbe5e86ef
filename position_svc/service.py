"""The gRPC servicers of position_svc: admit the caller through the Gate, translate
proto ⇄ domain, and call the position book (`book.py`), which holds the use cases.

PositionService needs a user's access token (header, or ?access_token= through Envoy
for Server-Sent Events); the service credential is refused, as positions belong to a
user. PositionInternalService (the notifier) needs the service credential.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeAlias

import grpc

from aifx.position.v1 import position_pb2, position_pb2_grpc
from common import request_fields
from common.callers import Gate
from common.errors import ViolationCollector
from common.grpc_metadata import metadata_value
from common.pagination import effective_page_size
from common.proto_convert import timestamp
from common.time import as_utc, utcnow
from common.user_slots import UserSlots
from position_svc import convert
from position_svc.book import PositionBook
from position_svc.event_feed import Heartbeat
from position_svc.positions import Position
from position_svc.validation import parse_exit_price, parse_levels, parse_open, update_paths

# The idempotency key may also come as this header (REST clients often set it there).
IDEMPOTENCY_HEADER = "idempotency-key"

Context: TypeAlias = grpc.aio.ServicerContext


def _heartbeat() -> position_pb2.Heartbeat:
    return position_pb2.Heartbeat(time=timestamp(utcnow()))


def _resume_after(
    request: position_pb2.WatchPositionEventsRequest | position_pb2.StreamAllPositionEventsRequest,
) -> int | None:
    return request.resume_after_id if request.HasField("resume_after_id") else None


class PositionService(position_pb2_grpc.PositionServiceServicer):
    def __init__(
        self, gate: Gate, book: PositionBook, stream_slots: UserSlots | None = None
    ) -> None:
        """`stream_slots`: a cap on each user's concurrent event streams (common.
        user_slots); None, counted but not capped (in-process tests)."""
        self._gate = gate
        self._book = book
        self._stream_slots = stream_slots or UserSlots(None, "streams")

    def _message(self, position: Position) -> position_pb2.Position:
        return convert.position_message(position, self._book.current_price(position.pair))

    async def OpenPosition(  # noqa: N802 (gRPC method names)
        self, request: position_pb2.OpenPositionRequest, context: Context
    ) -> position_pb2.OpenPositionResponse:
        user_id = await self._gate.user(context)
        draft = parse_open(
            request.pair,
            convert.SIDE_FROM_PROTO.get(request.side),
            request.lot_size,
            request.entry_price,
            request.stop_loss,
            request.take_profit,
            request.signal_id,
            request.idempotency_key or metadata_value(context, IDEMPOTENCY_HEADER),
        )
        position = await self._book.open(user_id, draft)
        return position_pb2.OpenPositionResponse(position=self._message(position))

    async def UpdatePosition(  # noqa: N802
        self, request: position_pb2.UpdatePositionRequest, context: Context
    ) -> position_pb2.UpdatePositionResponse:
        user_id = await self._gate.user(context)
        paths = update_paths(list(request.update_mask.paths))
        levels = parse_levels(paths, {path: getattr(request.position, path) for path in paths})
        position = await self._book.update_levels(user_id, request.position.id, levels)
        return position_pb2.UpdatePositionResponse(position=self._message(position))

    async def ClosePosition(  # noqa: N802
        self, request: position_pb2.ClosePositionRequest, context: Context
    ) -> position_pb2.ClosePositionResponse:
        user_id = await self._gate.user(context)
        exit_price = parse_exit_price(request.exit_price)
        position = await self._book.close(user_id, request.id, exit_price)
        return position_pb2.ClosePositionResponse(position=self._message(position))

    async def GetPosition(  # noqa: N802
        self, request: position_pb2.GetPositionRequest, context: Context
    ) -> position_pb2.GetPositionResponse:
        user_id = await self._gate.user(context)
        position = await self._book.get(user_id, request.id)
        return position_pb2.GetPositionResponse(position=self._message(position))

    async def ListPositions(  # noqa: N802
        self, request: position_pb2.ListPositionsRequest, context: Context
    ) -> position_pb2.ListPositionsResponse:
        user_id = await self._gate.user(context)
        violations = ViolationCollector()
        pair = request_fields.pair(request.pair, "pair", violations, required=False)
        status = convert.STATUS_FROM_PROTO.get(request.status)
        if request.status and status is None:
            violations.add("status", "is not a known position status")
        violations.raise_if_any()
        size = effective_page_size(request.page_size)
        positions, token = await self._book.list(user_id, status, pair, size, request.page_token)
        return position_pb2.ListPositionsResponse(
            positions=[self._message(position) for position in positions], next_page_token=token
        )

    async def GetPerformance(  # noqa: N802
        self, request: position_pb2.GetPerformanceRequest, context: Context
    ) -> position_pb2.GetPerformanceResponse:
        user_id = await self._gate.user(context)
        violations = ViolationCollector()
        pair = request_fields.pair(request.pair, "pair", violations, required=False)
        period = convert.PERIOD_FROM_PROTO.get(request.period)
        if request.period and period is None:
            violations.add("period", "is not a known performance period")
        violations.raise_if_any()
        since = as_utc(request.since.ToDatetime()) if request.HasField("since") else None
        until = as_utc(request.until.ToDatetime()) if request.HasField("until") else None
        report = await self._book.performance(user_id, period, since, until, pair)
        response = position_pb2.GetPerformanceResponse(
            performance=convert.performance_message(report.performance),
            until=timestamp(report.until),
        )
        if report.since is not None:
            response.since.CopyFrom(timestamp(report.since))
        return response

    async def WatchPositionEvents(  # noqa: N802
        self, request: position_pb2.WatchPositionEventsRequest, context: Context
    ) -> AsyncIterator[position_pb2.WatchPositionEventsResponse]:
        user_id = await self._gate.user(context)
        with self._stream_slots.hold(user_id):
            async for item in self._book.events(user_id, _resume_after(request)):
                if isinstance(item, Heartbeat):
                    yield position_pb2.WatchPositionEventsResponse(heartbeat=_heartbeat())
                else:
                    yield position_pb2.WatchPositionEventsResponse(
                        event=convert.event_message(item)
                    )


class PositionInternalService(position_pb2_grpc.PositionInternalServiceServicer):
    def __init__(self, gate: Gate, book: PositionBook) -> None:
        self._gate = gate
        self._book = book

    async def StreamAllPositionEvents(  # noqa: N802
        self, request: position_pb2.StreamAllPositionEventsRequest, context: Context
    ) -> AsyncIterator[position_pb2.StreamAllPositionEventsResponse]:
        self._gate.service(context)
        async for item in self._book.events(None, _resume_after(request)):
            if isinstance(item, Heartbeat):
                yield position_pb2.StreamAllPositionEventsResponse(heartbeat=_heartbeat())
            else:
                yield position_pb2.StreamAllPositionEventsResponse(
                    event=convert.event_message(item)
                )
