"""The Socket.IO side of the edge: the old system's contract on python-socketio.

Clients connect with `auth: {token}` (an access token, verified like every service
verifies it); a missing, bad or expired token is refused with a `connect_error` saying
why (`err.message`), with `err.data.code` "UNAUTHENTICATED". Every socket joins its
user's room (`user:<id>`).

- `subscribe:signals` joins the signal room and takes `{lastSignalId}` to resume: the
  signals after it are sent first, in order, once; then `market:update` (the latest
  signal and the day's move per pair), again whenever it changes, at most every 2 s.
- `subscribe:notifications` joins the user's notification room (only that user's
  position events, as `notification`) and takes `{lastNotificationId}` the same way.
- `subscribe:price` / `unsubscribe:price` (a pair) for `price:EUR/USD` quotes.
- A token's expiry is watched: `auth:expiring {expiresAt}` a minute before (at once for
  a shorter-lived token); the client answers `auth:refresh {token}` with a new access
  token of the same user, or at expiry gets `error` TOKEN_EXPIRED and is disconnected.

Bad requests get an `error` event `{message, code}`, never a dropped socket.

A user holds at most `max_sockets_per_user` sockets on this edge process (tabs,
devices); one more is refused with a `connect_error` saying so (`err.data.code`
"RESOURCE_EXHAUSTED"), and a slot frees as soon as one of the user's sockets closes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import socketio
import structlog

from common.access_tokens import AccessClaims
from common.errors import DomainError
from common.market import normalize_pair
from common.user_slots import UserSlots
from edge.event_buffer import EventBuffer
from edge.market_board import MarketBoard
from edge.metrics import DELIVERY, EVENTS, EXPIRED, REFUSED, SOCKETS

log = structlog.get_logger(__name__)

SIGNALS_ROOM = "signals:global"
# How long before a token's expiry its socket is asked for a new one.
EXPIRY_WARNING_SECONDS = 60.0
# The least time between two `market:update` broadcasts: each is a write to every
# subscribed socket, so it is kept rarer than the quotes (the chart's pair has its own
# `price:<PAIR>` events for every tick).
MARKET_UPDATE_INTERVAL = 2.0
# The data of a refused connection (socket.io-client: `connect_error` → err.data).
REFUSAL = {"code": "UNAUTHENTICATED"}
TOO_MANY = {"code": "RESOURCE_EXHAUSTED"}
Verify = Callable[[str], Awaitable[AccessClaims]]


def user_room(user_id: str) -> str:
    return f"user:{user_id}"


def notification_room(user_id: str) -> str:
    return f"notifications:{user_id}"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def price_room(pair: str) -> str:
    """The room, and the event name, of a pair's quotes: "price:EUR/USD"."""
    return f"price:{pair}"


# The signals after an id, read from their source (signal_svc), oldest first; None when
# there are too many to send over a socket.
MissedSignals = Callable[[str], Awaitable[list[dict[str, Any]] | None]]
# How long a backfilled client waits for this edge's own stream to reach what it was
# sent, before it joins the room regardless.
RESUME_CATCH_UP_SECONDS = 5.0


class SocketBridge:
    """The event handlers of `server`, and the relays of signals, quotes and position
    events into its rooms."""

    def __init__(
        self,
        server: socketio.AsyncServer,
        verify: Verify,
        signals: EventBuffer,
        notifications: EventBuffer,
        missed_signals: MissedSignals | None = None,
        max_sockets_per_user: int | None = None,
    ) -> None:
        """`max_sockets_per_user` None: no cap (in-process tests and benchmarks)."""
        self._server = server
        self._slots = UserSlots(max_sockets_per_user, "sockets")
        # The user whose slot each connected socket holds.
        self._slot_of: dict[str, str] = {}
        self._verify = verify
        self._signals = signals
        self._notifications = notifications
        self._missed_signals = missed_signals
        self._board = MarketBoard()
        # Resuming a subscriber and relaying a new event take turns, so a resumed
        # client gets what it missed before anything newer, and nothing twice.
        self._signal_turn = asyncio.Lock()
        self._notification_turn = asyncio.Lock()
        # Per socket: the timers of its token's expiry warning and end.
        self._expiry: dict[str, tuple[asyncio.TimerHandle, asyncio.TimerHandle]] = {}
        server.on("connect", self.connect)
        server.on("disconnect", self.disconnect)
        server.on("subscribe:signals", self.subscribe_signals)
        server.on("subscribe:notifications", self.subscribe_notifications)
        server.on("subscribe:price", self.subscribe_price)
        server.on("unsubscribe:price", self.unsubscribe_price)
        server.on("auth:refresh", self.refresh)

    async def connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not token:
            REFUSED.labels("no_token").inc()
            raise socketio.exceptions.ConnectionRefusedError(
                "send your access token: io(url, {auth: {token}})", REFUSAL
            )
        try:
            claims = await self._verify(str(token))
        except DomainError as refused:
            REFUSED.labels("bad_token").inc()
            raise socketio.exceptions.ConnectionRefusedError(refused.message, REFUSAL) from None
        try:
            self._slots.acquire(claims.subject)
        except DomainError as refused:
            REFUSED.labels("too_many").inc()
            raise socketio.exceptions.ConnectionRefusedError(refused.message, TOO_MANY) from None
        self._slot_of[sid] = claims.subject
        await self._server.save_session(sid, {"user_id": claims.subject})
        await self._server.enter_room(sid, user_room(claims.subject))
        self._watch_expiry(sid, claims.expires_at)
        SOCKETS.inc()
        log.info("socket connected", user_id=claims.subject)

    async def disconnect(self, sid: str, reason: Any = None) -> None:
        SOCKETS.dec()
        user_id = self._slot_of.pop(sid, None)
        if user_id is not None:
            self._slots.release(user_id)
        for timer in self._expiry.pop(sid, ()):
            timer.cancel()

    def _watch_expiry(self, sid: str, expires_at: datetime) -> None:
        for timer in self._expiry.pop(sid, ()):
            timer.cancel()
        loop = asyncio.get_running_loop()
        left = (expires_at - datetime.now(UTC)).total_seconds()
        warn = loop.call_later(
            max(0.0, left - EXPIRY_WARNING_SECONDS),
            lambda: loop.create_task(
                self._server.emit("auth:expiring", {"expiresAt": _iso(expires_at)}, to=sid)
            ),
        )
        end = loop.call_later(max(0.0, left), lambda: loop.create_task(self._expire(sid)))
        self._expiry[sid] = (warn, end)

    async def _expire(self, sid: str) -> None:
        self._expiry.pop(sid, None)
        EXPIRED.inc()
        await self.error(
            sid, "your access token expired: sign in again or send auth:refresh", "TOKEN_EXPIRED"
        )
        await self._server.disconnect(sid)

    async def refresh(self, sid: str, data: Any = None) -> dict[str, Any]:
        """`auth:refresh {token}`: a new access token of the same user keeps the socket."""
        token = data.get("token") if isinstance(data, dict) else None
        if not token:
            return {"ok": False, "code": "INVALID_ARGUMENT", "message": "send {token}"}
        try:
            claims = await self._verify(str(token))
        except DomainError as refused:
            return {"ok": False, "code": "UNAUTHENTICATED", "message": refused.message}
        session = await self._server.get_session(sid)
        if claims.subject != session["user_id"]:
            return {
                "ok": False,
                "code": "PERMISSION_DENIED",
                "message": "that token is another user's; connect again to switch users",
            }
        self._watch_expiry(sid, claims.expires_at)
        return {"ok": True, "expiresAt": _iso(claims.expires_at)}

    async def subscribe_signals(self, sid: str, data: Any = None) -> dict[str, Any]:
        """Join the signal room (after sending what was missed); the acknowledgement
        says so, for a client that waits for it (`socket.emitWithAck`)."""
        last_seen = data.get("lastSignalId") if isinstance(data, dict) else None
        backfilled = None
        if (
            last_seen
            and self._missed_signals is not None
            and self._signals.after(str(last_seen)) is None
        ):
            backfilled = await self._backfill(sid, str(last_seen))
        if backfilled is not None:
            # Everything through that id was sent; every newer signal stored since this
            # edge started is in its buffer.
            through, resumed = backfilled
            async with self._signal_turn:
                for event in self._signals.newer_than(through):
                    await self._server.emit("trading:signal", event, to=sid)
                    resumed += 1
                await self._server.enter_room(sid, SIGNALS_ROOM)
            await self._server.emit("market:update", self._board.snapshot(), to=sid)
            return {"subscribed": "signals", "resumed": resumed}
        async with self._signal_turn:
            resumed = await self._resume(
                sid,
                "trading:signal",
                self._signals,
                last_seen,
                lambda _: True,
                "GET /api/v1/trading/signals",
            )
            await self._server.enter_room(sid, SIGNALS_ROOM)
        await self._server.emit("market:update", self._board.snapshot(), to=sid)
        return {"subscribed": "signals", "resumed": resumed}

    async def subscribe_notifications(self, sid: str, data: Any = None) -> dict[str, Any]:
        """Join the user's notification room, after what was missed since
        `{lastNotificationId}`."""
        user_id = (await self._server.get_session(sid))["user_id"]
        last_seen = data.get("lastNotificationId") if isinstance(data, dict) else None
        async with self._notification_turn:
            resumed = await self._resume(
                sid,
                "notification",
                self._notifications,
                last_seen,
                lambda event: _owner(event) == user_id,
                "GET /api/v1/positions",
            )
            await self._server.enter_room(sid, notification_room(user_id))
        return {"subscribed": "notifications", "resumed": resumed}

    async def _backfill(self, sid: str, last_seen: str) -> tuple[str, int] | None:
        """What this edge does not keep since `last_seen` (it was just started, after
        the client's replica died, or the client is far behind), read from signal_svc
        and sent to `sid`: the id it was sent through, and how many; None when it could
        not be read (too many, a malformed id, signal_svc down). Then waits until this
        edge has relayed up to that id, so that none of those comes again in the room."""
        try:
            missed = await self._missed_signals(last_seen)  # type: ignore[misc]
        except DomainError as failed:
            log.warning("signals missed since a resume not read", error=str(failed))
            return None
        if missed is None:
            return None
        for event in missed:
            await self._server.emit("trading:signal", event, to=sid)
        if not missed:
            return last_seen, 0
        through = str(missed[-1]["id"])
        await self._signals.reached(through, RESUME_CATCH_UP_SECONDS)
        return through, len(missed)

    async def _resume(
        self,
        sid: str,
        event_name: str,
        buffer: EventBuffer,
        last_seen: Any,
        mine: Callable[[dict[str, Any]], bool],
        elsewhere: str,
    ) -> int:
        """Send `sid` the events of `buffer` after `last_seen` that are `mine`; how many."""
        if not last_seen:
            return 0
        missed = buffer.after(str(last_seen))
        if missed is None:
            await self.error(
                sid,
                f"events after {last_seen} are no longer kept here; read them with {elsewhere}",
                "RESUME_TOO_OLD",
            )
            return 0
        sent = 0
        for event in missed:
            if mine(event):
                await self._server.emit(event_name, event, to=sid)
                sent += 1
        return sent

    async def subscribe_price(self, sid: str, pair: Any = None) -> dict[str, Any] | None:
        """Join `price:<PAIR>` (the pair as traders write it: "EURUSD", "EUR/USD")."""
        name = await self._pair(sid, pair)
        if name is None:
            return None
        await self._server.enter_room(sid, price_room(name))
        return {"subscribed": price_room(name)}

    async def unsubscribe_price(self, sid: str, pair: Any = None) -> dict[str, Any] | None:
        name = await self._pair(sid, pair)
        if name is None:
            return None
        await self._server.leave_room(sid, price_room(name))
        return {"unsubscribed": price_room(name)}

    async def _pair(self, sid: str, raw: Any) -> str | None:
        """The pair a client named, or None after telling it what is wrong."""
        try:
            return normalize_pair(str(raw) if raw is not None else "")
        except ValueError as wrong:
            await self.error(sid, str(wrong), "INVALID_ARGUMENT")
            return None

    async def relay_signal(self, event: dict[str, Any]) -> None:
        """A new signal to every subscriber (and kept for resumes)."""
        async with self._signal_turn:
            self._signals.add(event)
            self._board.on_signal(event)
            EVENTS.labels("trading:signal").inc()
            await self._server.emit("trading:signal", event, room=SIGNALS_ROOM)
            DELIVERY.observe(_age_seconds(event["timestamp"]))

    async def relay_price(self, event: dict[str, Any]) -> None:
        """A quote to the sockets following its pair, as `price:<PAIR>`."""
        self._board.on_price(event)
        room = price_room(event["pair"])
        EVENTS.labels("price").inc()
        await self._server.emit(room, event, room=room)

    async def relay_notification(self, event: dict[str, Any]) -> None:
        """A position event to its owner's subscribed sockets only."""
        async with self._notification_turn:
            self._notifications.add(event)
            room = notification_room(_owner(event))
            EVENTS.labels("notification").inc()
            await self._server.emit("notification", event, room=room)

    async def broadcast_market(
        self, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    ) -> None:
        """`market:update` to signal subscribers whenever the board changed, at most
        once per MARKET_UPDATE_INTERVAL; forever."""
        while True:
            await sleep(MARKET_UPDATE_INTERVAL)
            if self._board.changed:
                self._board.changed = False
                EVENTS.labels("market:update").inc()
                await self._server.emit("market:update", self._board.snapshot(), room=SIGNALS_ROOM)

    async def error(self, sid: str, message: str, code: str) -> None:
        await self._server.emit("error", {"message": message, "code": code}, to=sid)


def _age_seconds(iso: str) -> float:
    """Seconds since an event's ISO 8601 timestamp ("2026-12-04T10:00:00.000Z")."""
    return (datetime.now(UTC) - datetime.fromisoformat(iso.replace("Z", "+00:00"))).total_seconds()


def _owner(event: dict[str, Any]) -> str:
    return str(event["position"].get("userId", ""))
