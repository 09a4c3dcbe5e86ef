"""The gRPC servicers of position_svc: translate proto ⇄ domain and call the repository,
the price source, the watcher and the event feed. Ownership is enforced here: every
read and change is scoped to the caller's user id, and someone else's position is
NOT_FOUND (never PERMISSION_DENIED, which would confirm that the id exists)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from decimal import Decimal

import grpc

from aifx.position.v1 import position_pb2, position_pb2_grpc
from common.callers import authenticate
from common.errors import (
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    Unauthenticated,
    ViolationCollector,
)
from common.grpc_metadata import metadata_value, require_service_token
from common.market import normalize_pair
from common.pagination import effective_page_size
from common.proto_convert import timestamp
from common.remote_jwks import RemoteJwks
from common.settings import Settings
from common.time import as_utc, utcnow
from position_svc import convert
from position_svc.event_feed import EventFeed, Heartbeat, stream_events
from position_svc.performance import compute, window
from position_svc.pnl import plain_decimal, quote_currency, settle, usd_pair_for, usd_rate
from position_svc.positions import CloseReason, Position, PositionEvent, Status
from position_svc.price_source import PriceSource
from position_svc.repository import Close, PositionRepository
from position_svc.validation import (
    OpenDraft,
    check_entry,
    check_levels,
    parse_decimal,
    parse_open,
    update_paths,
)
from position_svc.watcher import Watcher

# The idempotency key may also come as this header (REST clients often set it there).
IDEMPOTENCY_HEADER = "idempotency-key"
# A manual close retries this often when the position's levels change under it.
CLOSE_ATTEMPTS = 3


@dataclass
class PositionParts:
    """What the servicers use; built by server.py."""

    settings: Settings
    repository: PositionRepository
    prices: PriceSource
    watcher: Watcher
    feed: EventFeed
    jwks: RemoteJwks
    service_token: str


def request_fingerprint(draft: OpenDraft) -> str:
    """What must match for a retry with the same idempotency key to be "the same
    request" (the key itself aside). Decimals by value: "0.3" and "0.30" lots, or
    "1.08" and "1.080" stops, are the same request."""
    canonical = {
        name: None
        if value is None
        else str(plain_decimal(value) if isinstance(value, Decimal) else value)
        for name, value in draft.__dict__.items()
        if name != "idempotency_key"
    }
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


class PositionService(position_pb2_grpc.PositionServiceServicer):
    """A user's access token is required (header, or ?access_token= through Envoy for
    Server-Sent Events); the service credential is refused, as positions belong to a
    user."""

    def __init__(self, parts: PositionParts) -> None:
        self._parts = parts
        self._repository = parts.repository
        self._watcher = parts.watcher

    async def _user(self, context: grpc.aio.ServicerContext) -> str:
        caller = await authenticate(
            context,
            self._parts.jwks,
            self._parts.service_token,
            self._parts.settings.trusted_proxies,
        )
        if caller.user_id is None:
            raise Unauthenticated("positions belong to a user: send the user's access token")
        return caller.user_id

    def _message(self, position: Position) -> position_pb2.Position:
        return convert.position_message(position, self._watcher.latest.get(position.pair))

    def _published(self, position: Position) -> None:
        """A change this process committed: watch it now and wake the event feed."""
        self._watcher.track(position)
        self._parts.feed.notify()

    async def OpenPosition(self, request, context):  # noqa: N802 (gRPC method name)
        user_id = await self._user(context)
        key = request.idempotency_key or metadata_value(context, IDEMPOTENCY_HEADER)
        draft = parse_open(
            request.pair,
            convert.SIDE_FROM_PROTO.get(request.side),
            request.lot_size,
            request.entry_price,
            request.stop_loss,
            request.take_profit,
            request.signal_id,
            key,
        )
        market = await self._market_price(draft)
        entry = draft.entry_price if draft.entry_price is not None else market
        assert entry is not None  # without a given entry, _market_price has a price or raises
        violations = check_levels(draft.side, entry, draft.stop_loss, draft.take_profit)
        if draft.entry_price is not None and market is not None:
            violations += check_entry(draft.entry_price, market)
        if violations:
            raise InvalidArgument(violations)
        now = utcnow()
        position = Position(
            id=str(uuid.uuid4()),
            user_id=user_id,
            pair=draft.pair,
            side=draft.side,
            lot_size=draft.lot_size,
            entry_price=entry,
            stop_loss=draft.stop_loss,
            take_profit=draft.take_profit,
            status=Status.OPEN,
            open_time=now,
            update_time=now,
            signal_id=draft.signal_id,
        )
        if market is not None:
            self._watcher.latest.setdefault(draft.pair, market)
        stored, event = await self._repository.open(
            position, draft.idempotency_key, request_fingerprint(draft)
        )
        if event is not None:
            self._published(stored)
        return position_pb2.OpenPositionResponse(position=self._message(stored))

    async def _market_price(self, draft: OpenDraft) -> Decimal | None:
        """The current price, required to open at market. With a given entry it only
        sanity-checks the entry, so it is skipped (None) when the price service is down
        or has no price for the pair: the error messages tell the user to give the price
        explicitly, and that must then work."""
        if draft.entry_price is None:
            return await self._parts.prices.current(draft.pair, "pair")
        try:
            return await self._parts.prices.current(draft.pair, "pair")
        except DomainError:
            return None

    async def UpdatePosition(self, request, context):  # noqa: N802
        user_id = await self._user(context)
        paths = update_paths(list(request.update_mask.paths))
        current = await self._open_position(user_id, request.position.id, "position.id")
        violations: list[FieldViolation] = []
        levels = {
            path: parse_decimal(
                f"position.{path}", getattr(request.position, path), violations, required=False
            )
            for path in paths
        }
        if violations:
            raise InvalidArgument(violations)
        updated = replace(current, **levels, update_time=utcnow())
        price = self._watcher.latest.get(current.pair)
        violations = check_levels(
            current.side,
            price if price is not None else current.entry_price,
            updated.stop_loss,
            updated.take_profit,
            prefix="position.",
            reference_name="current price" if price is not None else "entry price",
        )
        if violations:
            raise InvalidArgument(violations)
        event = await self._repository.update_levels(current, updated)
        self._published(event.position)
        return position_pb2.UpdatePositionResponse(position=self._message(event.position))

    async def _open_position(self, user_id: str, position_id: str, field: str) -> Position:
        if not position_id:
            raise InvalidArgument([FieldViolation(field, "is required")])
        position = await self._repository.get(user_id, position_id)
        if not position.is_open:
            raise FailedPrecondition(
                f"position {position_id} is already closed "
                f"({position.close_reason and position.close_reason.value})",
                reason="POSITION_CLOSED",
            )
        return position

    async def _usd_rate(self, pair: str, exit_price: Decimal) -> Decimal | None:
        """The quote currency's USD rate now; a price not at hand is asked for once."""
        latest = dict(self._watcher.latest)
        via = usd_pair_for(quote_currency(pair))
        if via is not None and via != pair and via not in latest:
            # No rate at all: the PnL is recorded unconverted.
            with contextlib.suppress(DomainError):
                latest[via] = await self._parts.prices.current(via, "pair")
        return usd_rate(pair, exit_price, latest)

    async def ClosePosition(self, request, context):  # noqa: N802
        user_id = await self._user(context)
        violations: list[FieldViolation] = []
        given = parse_decimal("exit_price", request.exit_price, violations, required=False)
        if given is not None and given <= 0:
            violations.append(FieldViolation("exit_price", "must be greater than 0"))
        if violations:
            raise InvalidArgument(violations)
        for _ in range(CLOSE_ATTEMPTS):
            current = await self._open_position(user_id, request.id, "id")
            exit_price = given or await self._parts.prices.current(current.pair, "exit_price")
            rate = await self._usd_rate(current.pair, exit_price)
            closed = settle(current, CloseReason.MANUAL, exit_price, utcnow(), rate)
            events = await self._repository.close([Close(current, closed)])
            if events:
                self._published(events[0].position)
                return position_pb2.ClosePositionResponse(
                    position=self._message(events[0].position)
                )
        raise FailedPrecondition(
            f"position {request.id} kept changing while closing it; read it and try again",
            reason="POSITION_CHANGED",
        )

    async def GetPosition(self, request, context):  # noqa: N802
        user_id = await self._user(context)
        if not request.id:
            raise InvalidArgument([FieldViolation("id", "is required")])
        position = await self._repository.get(user_id, request.id)
        return position_pb2.GetPositionResponse(position=self._message(position))

    async def ListPositions(self, request, context):  # noqa: N802
        user_id = await self._user(context)
        violations = ViolationCollector()
        pair = _pair_filter(request.pair, violations)
        status = convert.STATUS_FROM_PROTO.get(request.status)
        if request.status and status is None:
            violations.add("status", "is not a known position status")
        violations.raise_if_any()
        size = effective_page_size(request.page_size)
        positions, token = await self._repository.list(
            user_id, status, pair, size, request.page_token
        )
        return position_pb2.ListPositionsResponse(
            positions=[self._message(position) for position in positions], next_page_token=token
        )

    async def GetPerformance(self, request, context):  # noqa: N802
        user_id = await self._user(context)
        violations = ViolationCollector()
        pair = _pair_filter(request.pair, violations)
        period = convert.PERIOD_FROM_PROTO.get(request.period)
        if request.period and period is None:
            violations.add("period", "is not a known performance period")
        violations.raise_if_any()
        since = as_utc(request.since.ToDatetime()) if request.HasField("since") else None
        until = as_utc(request.until.ToDatetime()) if request.HasField("until") else None
        now = utcnow()
        start, end = window(period, since, until, now)
        closed = await self._repository.closed_between(user_id, start, end, pair)
        response = position_pb2.GetPerformanceResponse(
            performance=convert.performance_message(compute(closed)), until=timestamp(end)
        )
        if start is not None:
            response.since.CopyFrom(timestamp(start))
        return response

    async def WatchPositionEvents(self, request, context):  # noqa: N802
        user_id = await self._user(context)
        resume = request.resume_after_id if request.HasField("resume_after_id") else None
        async for item in _events(self._parts, user_id, resume):
            if isinstance(item, Heartbeat):
                yield position_pb2.WatchPositionEventsResponse(heartbeat=_heartbeat())
            else:
                yield position_pb2.WatchPositionEventsResponse(event=convert.event_message(item))


class PositionInternalService(position_pb2_grpc.PositionInternalServiceServicer):
    """Service-to-service only (the notifier): the service credential."""

    def __init__(self, parts: PositionParts) -> None:
        self._parts = parts

    async def StreamAllPositionEvents(self, request, context):  # noqa: N802
        require_service_token(context, self._parts.service_token)
        resume = request.resume_after_id if request.HasField("resume_after_id") else None
        async for item in _events(self._parts, None, resume):
            if isinstance(item, Heartbeat):
                yield position_pb2.StreamAllPositionEventsResponse(heartbeat=_heartbeat())
            else:
                yield position_pb2.StreamAllPositionEventsResponse(
                    event=convert.event_message(item)
                )


def _pair_filter(raw: str, violations: ViolationCollector) -> str | None:
    """An optional pair filter: None when empty; a bad one is recorded on `pair`."""
    if not raw:
        return None
    try:
        return normalize_pair(raw)
    except ValueError as error:
        violations.add("pair", str(error))
        return None


def _heartbeat() -> position_pb2.Heartbeat:
    return position_pb2.Heartbeat(time=timestamp(utcnow()))


def _events(
    parts: PositionParts, user_id: str | None, resume_after_id: int | None
) -> AsyncIterator[PositionEvent | Heartbeat]:
    if resume_after_id is not None and resume_after_id < 0:
        raise InvalidArgument(
            [FieldViolation("resume_after_id", "must be 0 (everything) or an event id")]
        )
    return stream_events(
        parts.feed,
        parts.repository,
        user_id,
        resume_after_id,
        parts.settings.stream_heartbeat_seconds,
    )
