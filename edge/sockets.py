"""The Socket.IO side of the edge: the old system's contract on python-socketio.

Clients connect with `auth: {token}` (an access token, verified like every service
verifies it); a missing, bad or expired token is refused with a `connect_error` saying
why (`err.message`), with `err.data.code` "UNAUTHENTICATED". Every socket joins its
user's room (`user:<id>`), so a user's notifications reach only their sockets.
`subscribe:signals` joins the signal room and takes `{lastSignalId}` to resume: the
signals after it are sent first, in order, once.
Bad requests get an `error` event `{message, code}`, never a dropped socket.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import socketio
import structlog

from common.access_tokens import AccessClaims
from common.errors import DomainError
from common.market import normalize_pair
from edge.signal_buffer import SignalBuffer

log = structlog.get_logger(__name__)

SIGNALS_ROOM = "signals:global"
# The data of a refused connection (socket.io-client: `connect_error` → err.data).
REFUSED = {"code": "UNAUTHENTICATED"}
Verify = Callable[[str], Awaitable[AccessClaims]]


def user_room(user_id: str) -> str:
    return f"user:{user_id}"


def price_room(pair: str) -> str:
    """The room, and the event name, of a pair's quotes: "price:EUR/USD"."""
    return f"price:{pair}"


class SocketBridge:
    """The event handlers of `server`, and the relay of signals into its rooms."""

    def __init__(self, server: socketio.AsyncServer, verify: Verify, buffer: SignalBuffer) -> None:
        self._server = server
        self._verify = verify
        self._buffer = buffer
        # Resuming a subscriber and relaying a new signal take turns, so a resumed
        # client gets the signals it missed before any newer one, and none twice.
        self._signals = asyncio.Lock()
        server.on("connect", self.connect)
        server.on("subscribe:signals", self.subscribe_signals)
        server.on("subscribe:price", self.subscribe_price)
        server.on("unsubscribe:price", self.unsubscribe_price)

    async def connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not token:
            raise socketio.exceptions.ConnectionRefusedError(
                "send your access token: io(url, {auth: {token}})", REFUSED
            )
        try:
            claims = await self._verify(str(token))
        except DomainError as refused:
            raise socketio.exceptions.ConnectionRefusedError(refused.message, REFUSED) from None
        await self._server.save_session(sid, {"user_id": claims.subject})
        await self._server.enter_room(sid, user_room(claims.subject))
        log.info("socket connected", user_id=claims.subject)

    async def subscribe_signals(self, sid: str, data: Any = None) -> dict[str, Any]:
        """Join the signal room (after sending what was missed); the acknowledgement
        says so, for a client that waits for it (`socket.emitWithAck`)."""
        last_seen = data.get("lastSignalId") if isinstance(data, dict) else None
        resumed = 0
        async with self._signals:
            if last_seen:
                missed = self._buffer.after(str(last_seen))
                if missed is None:
                    await self.error(
                        sid,
                        f"signals after {last_seen} are no longer kept here; read them with "
                        "GET /api/v1/trading/signals",
                        "RESUME_TOO_OLD",
                    )
                else:
                    for event in missed:
                        await self._server.emit("trading:signal", event, to=sid)
                    resumed = len(missed)
            await self._server.enter_room(sid, SIGNALS_ROOM)
        return {"subscribed": "signals", "resumed": resumed}

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

    async def relay_price(self, event: dict[str, Any]) -> None:
        """A quote to the sockets following its pair, as `price:<PAIR>`."""
        room = price_room(event["pair"])
        await self._server.emit(room, event, room=room)

    async def _pair(self, sid: str, raw: Any) -> str | None:
        """The pair a client named, or None after telling it what is wrong."""
        try:
            return normalize_pair(str(raw) if raw is not None else "")
        except ValueError as wrong:
            await self.error(sid, str(wrong), "INVALID_ARGUMENT")
            return None

    async def relay_signal(self, event: dict[str, Any]) -> None:
        """A new signal to every subscriber (and kept for resumes)."""
        async with self._signals:
            self._buffer.add(event)
            await self._server.emit("trading:signal", event, room=SIGNALS_ROOM)

    async def error(self, sid: str, message: str, code: str) -> None:
        await self._server.emit("error", {"message": message, "code": code}, to=sid)
