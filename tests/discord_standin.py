"""A local stand-in for Discord — REST API and gateway WebSocket — that the unmodified
discord.py 2.7 client talks to, so the notifier's DMs and slash commands are proven
against the protocol discord.py really speaks rather than against mocks of it.

Use it in the test's own event loop (state is inspected there)::

    async with running_standin(DiscordStandin()) as standin:
        client = discord.Client(intents=discord.Intents.none(), guild_ready_timeout=0.05)
        async with running_client(client):
            record = await standin.interact("status", user_id="111")
            await record.wait_for_response(timeout=5)

`running_standin` points discord.py's class-level `Route.BASE` and
`DiscordWebSocket.DEFAULT_GATEWAY` here and restores them on exit. A process started
separately (the notifier in e2e tests) is pointed here by `standin.api_base` instead; it
derives the gateway from that URL the same way `gateway_url` does: same host and port,
scheme ws, path `/gateway` (also what `GET /api/v10/gateway[/bot]` answers). Start such a
stand-in with `running_standin_server`, which leaves discord.py's globals alone.

discord.py waits `guild_ready_timeout` (2 s by default) after the last GUILD_CREATE before
`on_ready`; pass a small one (e.g. 0.05) to keep tests fast.

Behaviour that matters for delivery is Discord's: nonces honoured for `nonce_window`
seconds, 403/50007 for closed DMs, per-channel message buckets with X-RateLimit headers,
a sliding global limit, 429s carrying `Via` (discord.py takes a 429 without it for a
Cloudflare ban), a count of invalid (401/403/429) requests, interaction callbacks refused
with 404/10062 after `interaction_deadline`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import discord
import yarl
from aiohttp import WSMsgType, web

TOKEN = "standin-token"
BOT_ID = "400000000000000001"
APPLICATION_ID = "400000000000000002"
OWNER_ID = "400000000000000009"
USER_ID = "300000000000000001"  # whoever interacts unless a test says otherwise
BOT_USER: dict[str, Any] = {
    "id": BOT_ID,
    "username": "AIFX",
    "global_name": None,
    "discriminator": "0",
    "avatar": None,
    "bot": True,
}
# What a member without special roles may do in a text channel (view, send, embed,
# attach, read history, use application commands).
MEMBER_PERMISSIONS = (1 << 10) | (1 << 11) | (1 << 14) | (1 << 15) | (1 << 16) | (1 << 31)
EPHEMERAL = 1 << 6
LOADING = 1 << 7
SUPPRESS_NOTIFICATIONS = 1 << 12

# Interaction callback types (Discord's InteractionResponseType).
CHANNEL_MESSAGE = 4
DEFERRED_CHANNEL_MESSAGE = 5
DEFERRED_UPDATE_MESSAGE = 6
UPDATE_MESSAGE = 7
AUTOCOMPLETE_RESULT = 8

# Interaction types (what the user did).
APPLICATION_COMMAND = 2
MESSAGE_COMPONENT = 3
AUTOCOMPLETE = 4

# Application command option types whose values Discord resolves into objects, and how
# every option type's value is written.
OPTION_USER, OPTION_CHANNEL = 6, 7
_OPTION_VALUE: dict[int, Callable[[Any], Any]] = {
    3: str,
    4: int,
    5: bool,
    6: str,
    7: str,
    8: str,
    9: str,
    10: float,
    11: str,
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# How often waits re-check conditions on state the stand-in is not told about.
RECHECK_INTERVAL = 0.01
# A REST request's arrival time, parsed body and uploaded files, taken once by the
# recording middleware (the global window counts arrivals by `Recorded.at`, in order).
ARRIVED: web.RequestKey[float] = web.RequestKey("arrived", float)
BODY: web.RequestKey[Any] = web.RequestKey("body", object)
FILES: web.RequestKey[list[RecordedFile]] = web.RequestKey("files", list)


def gateway_url(api_base: str) -> yarl.URL:
    """The gateway belonging to an API base such as `http://127.0.0.1:PORT/api/v10`: the
    same host and port, scheme ws, path /gateway — how a separately started notifier
    finds the stand-in's gateway from its one API-base setting."""
    base = yarl.URL(api_base)
    return base.with_scheme("wss" if base.scheme == "https" else "ws").with_path("/gateway")


def _json(
    data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """JSON as Discord sends it: discord.py decodes a body only when its content type is
    exactly `application/json` (aiohttp's json_response adds a charset)."""
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def _error(status: int, code: int, message: str) -> web.Response:
    """Discord's error body: a numeric JSON code and a message."""
    return _json({"message": message, "code": code}, status=status)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def user_payload(user_id: str) -> dict[str, Any]:
    """A plain (non-bot) Discord user."""
    return {
        "id": user_id,
        "username": f"user{user_id[-4:]}",
        "global_name": None,
        "discriminator": "0",
        "avatar": None,
    }


@dataclass(frozen=True)
class RecordedFile:
    """A file uploaded in a multipart request (`files[n]` part)."""

    filename: str
    data: bytes
    content_type: str


@dataclass
class Recorded:
    """One REST request as it reached the stand-in (path relative to /api/v10, `body`
    the JSON or multipart `payload_json`, `at` on the stand-in's clock), with the status
    it was answered."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    files: list[RecordedFile]
    status: int
    at: float


@dataclass
class _Fault:
    """A failure injected on demand: the next `times` requests whose "METHOD /path"
    (path relative to /api/v10) contains `route` get `respond()` instead of an answer."""

    route: str
    times: int
    respond: Callable[[], web.Response]


@dataclass
class _Bucket:
    """A fixed-window rate-limit bucket as Discord's are: `limit` requests per `per`
    seconds from the window's first request."""

    started: float
    count: int = 0


@dataclass
class InteractionRecord:
    """An interaction the stand-in dispatched and what the bot answered to it."""

    id: str
    token: str
    payload: dict[str, Any]
    dispatched_at: float
    message_id: str | None = None  # the message a component interaction belongs to
    callbacks: list[tuple[int, dict[str, Any] | None]] = field(default_factory=list)
    callback_files: list[RecordedFile] = field(default_factory=list)
    followups: list[dict[str, Any]] = field(default_factory=list)
    original: dict[str, Any] | None = None
    acknowledged_after: float | None = None
    _standin: DiscordStandin | None = field(default=None, repr=False)

    async def wait_for_response(self, timeout: float = 5.0) -> tuple[int, dict[str, Any] | None]:  # noqa: ASYNC109
        """The first callback (type, data), once the bot has sent it."""
        await self.wait_until(lambda: bool(self.callbacks), timeout, "a callback")
        return self.callbacks[0]

    async def wait_for_followups(
        self,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> list[dict[str, Any]]:
        """The followup messages, once there are at least `count`."""
        await self.wait_until(lambda: len(self.followups) >= count, timeout, f"{count} followups")
        return self.followups

    async def wait_until(
        self,
        predicate: Callable[[], bool],
        timeout: float = 5.0,  # noqa: ASYNC109
        what: str = "the condition",
    ) -> None:
        """Wait for the bot to bring the interaction to `predicate` (no fixed sleeps)."""
        assert self._standin is not None
        await self._standin.wait_until(predicate, timeout, f"{what} for interaction {self.id}")


class _Session:
    """One gateway WebSocket connection and the session it identified or resumed."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.session_id: str | None = None
        self.shard: list[int] = [0, 1]
        self.seq = 0
        self.sent: list[dict[str, Any]] = []  # dispatches, for RESUME to replay

    async def dispatch(self, event: str, data: Any) -> None:
        self.seq += 1
        frame = {"op": 0, "t": event, "s": self.seq, "d": data}
        self.sent.append(frame)
        await self.ws.send_str(json.dumps(frame))


class DiscordStandin:
    """Discord's REST API and gateway for one bot (TOKEN), with everything recorded.

    Windows use `clock` (injectable; monotonic seconds by default)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.base_url = ""
        self.requests: list[Recorded] = []
        self.closed_dms: set[str] = set()
        self.nonce_window = 300.0
        self.interaction_deadline = 3.0
        self.followup_window = 15 * 60.0
        self.heartbeat_interval_ms = 41250
        # Discord's default global limit: 50 requests per second per bot; None disables.
        self.global_limit: int | None = 50
        # Message creation: 5 per 5 s per channel (each channel its own bucket).
        self.message_limit: tuple[int, float] | None = (5, 5.0)
        self.interactions: dict[str, InteractionRecord] = {}
        self._guild_commands: dict[str, list[dict[str, Any]]] = {}
        self._global_commands: list[dict[str, Any]] = []
        self._guilds: dict[str, dict[str, Any]] = {}
        self._channels: dict[str, dict[str, Any]] = {}  # guild text channels and DMs
        self._dm_channels: dict[str, str] = {}  # user id → DM channel id
        self._channel_messages: dict[str, list[dict[str, Any]]] = {}
        self._messages: dict[str, dict[str, Any]] = {}  # every message by id
        self._by_nonce: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self._faults: list[_Fault] = []
        self._global_window: deque[float] = deque()
        self._buckets: dict[str, _Bucket] = {}
        self._invalid: deque[float] = deque()
        self._sessions: list[_Session] = []  # connected now
        self._identified: dict[str, _Session] = {}  # by session id, for RESUME
        self._ids: Iterator[int] = itertools.count(500000000000000000)
        self._changed = asyncio.Condition()

    # -- what tests read --------------------------------------------------------------

    @property
    def api_base(self) -> str:
        """The URL to use as discord.py's `Route.BASE` (e.g. AIFX_DISCORD_API_BASE)."""
        return f"{self.base_url}/api/v10"

    @property
    def gateway(self) -> yarl.URL:
        """The gateway URL for `DiscordWebSocket.DEFAULT_GATEWAY`."""
        return gateway_url(self.api_base)

    @property
    def commands(self) -> list[dict[str, Any]]:
        """The global application commands as last synced."""
        return self._global_commands

    def guild_commands(self, guild_id: str) -> list[dict[str, Any]]:
        """A guild's application commands as last synced."""
        return self._guild_commands.get(guild_id, [])

    @property
    def invalid_requests(self) -> int:
        """401, 403 and 429 answers in the last 10 minutes: what Discord's edge counts
        toward its ban at 10,000."""
        self._expire(self._invalid, 600.0)
        return len(self._invalid)

    @property
    def sessions(self) -> int:
        """Gateway sessions currently identified (or resumed)."""
        return sum(1 for s in self._sessions if s.session_id is not None)

    def dm_channel(self, user_id: str) -> str:
        """The DM channel between the bot and a user (the same id every time)."""
        if user_id not in self._dm_channels:
            channel_id = self._snowflake()
            self._dm_channels[user_id] = channel_id
            self._channels[channel_id] = {
                "id": channel_id,
                "type": 1,
                "last_message_id": None,
                "recipients": [user_payload(user_id)],
            }
        return self._dm_channels[user_id]

    def dms_to(self, user_id: str) -> list[dict[str, Any]]:
        """Messages the bot created in its DM channel with a user."""
        return self.messages_in(self._dm_channels.get(user_id, ""))

    def messages_in(self, channel_id: str) -> list[dict[str, Any]]:
        """Messages the bot created in a channel with POST /channels/{id}/messages."""
        return self._channel_messages.get(channel_id, [])

    def callbacks_for(self, interaction_id: str) -> list[tuple[int, dict[str, Any] | None]]:
        return self.interactions[interaction_id].callbacks

    def followups_for(self, interaction_id: str) -> list[dict[str, Any]]:
        return self.interactions[interaction_id].followups

    async def wait_until(
        self,
        predicate: Callable[[], bool],
        timeout: float = 5.0,  # noqa: ASYNC109
        what: str = "the condition",
    ) -> None:
        """Wait until `predicate()` holds: re-checked after every request and gateway
        message, and every few milliseconds for state outside the stand-in (the bot's).
        A TimeoutError names what was awaited and the last requests."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                while not predicate():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), RECHECK_INTERVAL)
        except TimeoutError:
            last = [f"{r.method} {r.path} → {r.status}" for r in self.requests[-5:]]
            raise TimeoutError(f"waited {timeout} s for {what}; last requests: {last}") from None

    @property
    def shards(self) -> list[list[int]]:
        """The [shard id, shard count] each identified session gave, in order."""
        return sorted(s.shard for s in self._sessions if s.session_id is not None)

    async def wait_for_sessions(self, count: int = 1, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until `count` gateway sessions have identified."""
        await self.wait_until(lambda: self.sessions >= count, timeout, f"{count} sessions")

    # -- what tests arrange -----------------------------------------------------------

    def add_guild(
        self,
        guild_id: str,
        channels: Mapping[str, str] | Iterable[str] = (),
        *,
        name: str = "AIFX test guild",
    ) -> None:
        """Register a guild (with the bot in it) and its text channels, given as ids or
        as {id: name}. Register before the client connects: GUILD_CREATE goes out with
        READY."""
        names = (
            dict(channels)
            if isinstance(channels, Mapping)
            else {c: f"ch-{c[-4:]}" for c in channels}
        )
        for position, (channel_id, channel_name) in enumerate(names.items()):
            self._channels[channel_id] = {
                "id": channel_id,
                "type": 0,
                "guild_id": guild_id,
                "name": channel_name,
                "position": position,
                "parent_id": None,
                "topic": None,
                "nsfw": False,
                "rate_limit_per_user": 0,
                "permission_overwrites": [],
                "last_message_id": None,
            }
        self._guilds[guild_id] = {"id": guild_id, "name": name, "channels": list(names)}

    def rate_limit(
        self, route: str, *, times: int = 1, retry_after: float = 0.05, global_: bool = False
    ) -> None:
        """Answer the next `times` requests matching `route` (a substring of
        "METHOD /path", e.g. "/messages" or "POST /users/@me/channels") with 429."""
        self._faults.append(
            _Fault(route, times, lambda: self._too_many(retry_after, global_=global_))
        )

    def server_error(self, route: str, *, times: int = 1, status: int = 500) -> None:
        """Answer the next `times` requests matching `route` with a 5xx (discord.py
        retries 500, 502, 504 and 524 after 1 s, 3 s, …; it gives up on 503)."""
        self._faults.append(
            _Fault(route, times, lambda: _error(status, 0, f"{status}: Server error"))
        )

    async def interact(
        self,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        user_id: str = USER_ID,
        guild_id: str | None = None,
        channel_id: str | None = None,
        focused: str | None = None,
        subcommand: str | None = None,
        permissions: int = MEMBER_PERMISSIONS,
        locale: str = "en-US",
    ) -> InteractionRecord:
        """A user runs the synced slash command `name` (type 2), or types into its option
        `focused` (type 4 AUTOCOMPLETE). `subcommand` is "sub" or "group sub"."""
        command = self._synced_command(name, guild_id)
        data: dict[str, Any] = {"id": command["id"], "name": name, "type": 1}
        if "guild_id" in command:
            data["guild_id"] = command["guild_id"]
        resolved: dict[str, dict[str, Any]] = {}
        data["options"] = self._options(
            command, subcommand, options or {}, focused, resolved, guild_id
        )
        if resolved:
            data["resolved"] = resolved
        kind = AUTOCOMPLETE if focused else APPLICATION_COMMAND
        return await self._dispatch_interaction(
            kind, data, user_id, guild_id, channel_id, permissions, locale, message=None
        )

    async def press(
        self,
        message: Mapping[str, Any] | str,
        custom_id: str,
        *,
        user_id: str = USER_ID,
        values: list[str] | None = None,
        permissions: int = MEMBER_PERMISSIONS,
        locale: str = "en-US",
    ) -> InteractionRecord:
        """A user presses a button (or picks `values` in a select) with `custom_id` on a
        message the bot sent (type 3 MESSAGE_COMPONENT)."""
        message_id = message if isinstance(message, str) else str(message["id"])
        current = self._messages[message_id]
        component = _find_component(current.get("components") or [], custom_id)
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component["type"]}
        if values is not None:
            data["values"] = values
        channel = self._channels.get(current["channel_id"], {})
        return await self._dispatch_interaction(
            MESSAGE_COMPONENT,
            data,
            user_id,
            channel.get("guild_id"),
            current["channel_id"],
            permissions,
            locale,
            message=current,
        )

    # -- serving ----------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record, self._gatekeep])
        api = "/api/v10"
        routes: list[tuple[str, str, Handler]] = [
            ("GET", "/users/@me", self._me),
            ("GET", "/oauth2/applications/@me", self._application),
            ("GET", "/gateway", self._gateway_info),
            ("GET", "/gateway/bot", self._gateway_info),
            ("POST", "/users/@me/channels", self._open_dm),
            ("GET", "/channels/{channel}", self._get_channel),
            ("POST", "/channels/{channel}/messages", self._create_message),
            ("GET", "/guilds/{guild}", self._get_guild),
            ("GET", "/guilds/{guild}/channels", self._get_guild_channels),
            ("PUT", "/applications/{app}/commands", self._sync_commands),
            ("GET", "/applications/{app}/commands", self._get_commands),
            ("PUT", "/applications/{app}/guilds/{guild}/commands", self._sync_commands),
            ("GET", "/applications/{app}/guilds/{guild}/commands", self._get_commands),
            ("POST", "/interactions/{id}/{token}/callback", self._callback),
            ("POST", "/webhooks/{app}/{token}", self._followup),
            ("GET", "/webhooks/{app}/{token}/messages/{message}", self._get_webhook_message),
            ("PATCH", "/webhooks/{app}/{token}/messages/{message}", self._edit_webhook_message),
            ("DELETE", "/webhooks/{app}/{token}/messages/{message}", self._delete_webhook_message),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, api + path, handler)
        app.router.add_get("/gateway", self._gateway)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Record every REST request with its answer, and count the invalid ones."""
        if request.path == "/gateway":
            return await handler(request)
        body, files = await _read_body(request)
        at = self.clock()  # once the body is in: nothing awaits between this and admission
        request[ARRIVED], request[BODY], request[FILES] = at, body, files
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # no such route or method: Discord's JSON 404/405
            response = _error(exc.status, 0, f"{exc.status}: {exc.reason}")
        path = request.path.removeprefix("/api/v10")
        self.requests.append(
            Recorded(request.method, path, dict(request.query), body, files, response.status, at)
        )
        if response.status in (401, 403, 429):
            self._invalid.append(self.clock())
        await self._notify()
        return response

    @web.middleware
    async def _gatekeep(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Authorization, injected faults, then the global limit — in Discord's order.
        Interaction callbacks and webhooks carry their token in the path instead of a
        bot token, and are exempt from the global limit as on Discord."""
        if request.path == "/gateway":
            return await handler(request)
        path = request.path.removeprefix("/api/v10")
        token_routed = path.startswith(("/interactions/", "/webhooks/"))
        if not token_routed and request.headers.get("Authorization") != f"Bot {TOKEN}":
            return _error(401, 0, "401: Unauthorized")
        if isinstance(request[BODY], str):
            return _error(400, 50109, "The request body contains invalid JSON.")
        fault = self._take_fault(f"{request.method} {path}")
        if fault is not None:
            return fault
        if not token_routed:
            limited = self._over_global_limit(request[ARRIVED])
            if limited is not None:
                return limited
        return await handler(request)

    def _take_fault(self, route: str) -> web.Response | None:
        for fault in self._faults:
            if fault.times > 0 and fault.route in route:
                fault.times -= 1
                return fault.respond()
        return None

    def _over_global_limit(self, now: float) -> web.Response | None:
        """Count a request arriving at `now` against the sliding one-second global
        window, or answer 429 global when the window is full."""
        if self.global_limit is None:
            return None
        while self._global_window and self._global_window[0] <= now - 1.0:
            self._global_window.popleft()
        if len(self._global_window) >= self.global_limit:
            retry_after = max(self._global_window[0] + 1.0 - now, 0.001)
            return self._too_many(retry_after, global_=True)
        self._global_window.append(now)
        return None

    def _too_many(
        self, retry_after: float, *, global_: bool, bucket: str = "injected"
    ) -> web.Response:
        """A 429 as Discord's edge sends it (with `Via`, or discord.py gives up)."""
        headers = {"Via": "1.1 google", "Retry-After": str(math.ceil(retry_after))}
        if global_:
            headers |= {"X-RateLimit-Global": "true", "X-RateLimit-Scope": "global"}
        else:
            headers |= _bucket_headers(1, 0, retry_after, bucket) | {"X-RateLimit-Scope": "user"}
        body = {
            "message": "You are being rate limited.",
            "retry_after": retry_after,
            "global": global_,
        }
        return _json(body, status=429, headers=headers)

    def _expire(self, window: deque[float], seconds: float) -> None:
        cutoff = self.clock() - seconds
        while window and window[0] <= cutoff:
            window.popleft()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _snowflake(self) -> str:
        return str(next(self._ids))

    # -- REST: identity ---------------------------------------------------------------

    async def _me(self, request: web.Request) -> web.Response:
        return _json(BOT_USER)

    async def _application(self, request: web.Request) -> web.Response:
        return _json(
            {
                "id": APPLICATION_ID,
                "name": "AIFX",
                "icon": None,
                "description": "",
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "flags": 0,
                "owner": user_payload(OWNER_ID),
            }
        )

    async def _gateway_info(self, request: web.Request) -> web.Response:
        limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        return _json({"url": str(self.gateway), "shards": 1, "session_start_limit": limit})

    # -- REST: channels and messages --------------------------------------------------

    async def _open_dm(self, request: web.Request) -> web.Response:
        recipient = str(request[BODY]["recipient_id"])
        return _json(self._channels[self.dm_channel(recipient)])

    async def _get_channel(self, request: web.Request) -> web.Response:
        channel = self._channels.get(request.match_info["channel"])
        return _json(channel) if channel else _error(404, 10003, "Unknown Channel")

    async def _get_guild(self, request: web.Request) -> web.Response:
        guild_id = request.match_info["guild"]
        if guild_id not in self._guilds:
            return _error(404, 10004, "Unknown Guild")
        return _json(self._guild_payload(guild_id))

    async def _get_guild_channels(self, request: web.Request) -> web.Response:
        guild_id = request.match_info["guild"]
        if guild_id not in self._guilds:
            return _error(404, 10004, "Unknown Guild")
        return _json([self._channels[c] for c in self._guilds[guild_id]["channels"]])

    async def _create_message(self, request: web.Request) -> web.Response:
        channel_id = request.match_info["channel"]
        channel = self._channels.get(channel_id)
        if channel is None:
            return _error(404, 10003, "Unknown Channel")
        if channel["type"] == 1 and channel["recipients"][0]["id"] in self.closed_dms:
            return _error(403, 50007, "Cannot send messages to this user")
        payload: dict[str, Any] = request[BODY] or {}
        earlier = self._earlier_by_nonce(channel_id, payload)
        if earlier is not None:
            return _json(earlier)
        limited, headers = self._take_message_bucket(channel_id)
        if limited is not None:
            return limited
        message = self._new_message(channel_id, payload, request[FILES])
        self._channel_messages.setdefault(channel_id, []).append(message)
        if payload.get("nonce") is not None and payload.get("enforce_nonce"):
            self._by_nonce[(channel_id, str(payload["nonce"]))] = (self.clock(), message)
        return _json(message, headers=headers)

    def _earlier_by_nonce(
        self, channel_id: str, payload: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """The message an enforced nonce already created in this channel within the
        window: Discord answers it again instead of creating a second."""
        if payload.get("nonce") is None or not payload.get("enforce_nonce"):
            return None
        earlier = self._by_nonce.get((channel_id, str(payload["nonce"])))
        if earlier is None or self.clock() - earlier[0] > self.nonce_window:
            return None
        return earlier[1]

    def _take_message_bucket(self, channel_id: str) -> tuple[web.Response | None, dict[str, str]]:
        """Count a message creation against its channel's bucket: the headers to send
        with the answer, or a 429 when the bucket is empty."""
        if self.message_limit is None:
            return None, {}
        limit, per = self.message_limit
        now = self.clock()
        bucket = self._buckets.get(channel_id)
        if bucket is None or now - bucket.started >= per:
            bucket = self._buckets[channel_id] = _Bucket(started=now)
        reset_after = bucket.started + per - now
        if bucket.count >= limit:
            return self._too_many(reset_after, global_=False, bucket="messages"), {}
        bucket.count += 1
        return None, _bucket_headers(limit, limit - bucket.count, reset_after, "messages")

    def _new_message(
        self,
        channel_id: str,
        payload: Mapping[str, Any],
        files: list[RecordedFile],
        *,
        kind: int = 0,
        flags: int | None = None,
    ) -> dict[str, Any]:
        """A message object as Discord returns it, remembered by id for edits and
        component interactions."""
        message: dict[str, Any] = {
            "id": self._snowflake(),
            "channel_id": channel_id,
            "author": BOT_USER,
            "content": payload.get("content") or "",
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "tts": bool(payload.get("tts")),
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [self._attachment(f) for f in files],
            "embeds": payload.get("embeds") or [],
            "components": payload.get("components") or [],
            "pinned": False,
            "type": kind,
            "flags": int(payload.get("flags") or 0) if flags is None else flags,
            "nonce": payload.get("nonce"),
        }
        guild_id = self._channels.get(channel_id, {}).get("guild_id")
        if guild_id is not None:
            message["guild_id"] = guild_id
        self._messages[message["id"]] = message
        return message

    def _attachment(self, file: RecordedFile) -> dict[str, Any]:
        attachment_id = self._snowflake()
        url = f"{self.base_url}/attachments/{attachment_id}/{file.filename}"
        return {
            "id": attachment_id,
            "filename": file.filename,
            "size": len(file.data),
            "url": url,
            "proxy_url": url,
            "content_type": file.content_type,
        }

    def _edit(
        self, message: dict[str, Any], payload: Mapping[str, Any], files: list[RecordedFile]
    ) -> None:
        """Apply an edit as Discord does: fields present replace, a deferred message
        stops loading, attachments not listed are dropped and new files are added."""
        for key in ("content", "embeds", "components"):
            if key in payload:
                message[key] = payload[key] or ([] if key != "content" else "")
        if "flags" in payload:
            message["flags"] = int(payload["flags"] or 0) | (message["flags"] & EPHEMERAL)
        message["flags"] &= ~LOADING
        if "attachments" in payload:
            kept = {str(a.get("id")) for a in payload["attachments"] or []}
            message["attachments"] = [a for a in message["attachments"] if a["id"] in kept]
        message["attachments"] += [self._attachment(f) for f in files]
        message["edited_timestamp"] = _now_iso()

    # -- REST: application commands ---------------------------------------------------

    async def _sync_commands(self, request: web.Request) -> web.Response:
        """Bulk overwrite: the given commands replace the old ones; a command keeps its
        id when one of the same name and type existed, as on Discord."""
        guild_id = request.match_info.get("guild")
        old = self._guild_commands.get(guild_id, []) if guild_id else self._global_commands
        ids = {(c["name"], c["type"]): c["id"] for c in old}
        synced = []
        for payload in request[BODY] or []:
            command = {
                "type": 1,
                "options": [],
                "nsfw": False,
                "default_member_permissions": None,
                **payload,
                "application_id": APPLICATION_ID,
                "version": self._snowflake(),
            }
            command["id"] = ids.get((command["name"], command["type"])) or self._snowflake()
            if guild_id:
                command["guild_id"] = guild_id
            synced.append(command)
        if guild_id:
            self._guild_commands[guild_id] = synced
        else:
            self._global_commands = synced
        return _json(synced)

    async def _get_commands(self, request: web.Request) -> web.Response:
        guild_id = request.match_info.get("guild")
        return _json(self.guild_commands(guild_id) if guild_id else self._global_commands)

    def _synced_command(self, name: str, guild_id: str | None) -> dict[str, Any]:
        """The command a user can run where they are: the guild's own first, then the
        global one, as in Discord's client."""
        candidates = (self.guild_commands(guild_id) if guild_id else []) + self._global_commands
        for command in candidates:
            if command["name"] == name and command["type"] == 1:
                return command
        raise LookupError(f"no synced slash command {name!r}; has the bot synced its tree?")

    def _options(
        self,
        command: Mapping[str, Any],
        subcommand: str | None,
        values: Mapping[str, Any],
        focused: str | None,
        resolved: dict[str, dict[str, Any]],
        guild_id: str | None,
    ) -> list[dict[str, Any]]:
        """Options as Discord sends them, typed from the synced definition; subcommands
        wrap their options; snowflake options get their `resolved` objects."""
        definitions = command.get("options") or []
        path = subcommand.split() if subcommand else []
        if path:
            definition = _option_named(definitions, path[0], command["name"])
            inner = {**definition, "name": path[0]}
            rest = " ".join(path[1:]) or None
            options = self._options(inner, rest, values, focused, resolved, guild_id)
            return [{"name": path[0], "type": definition["type"], "options": options}]
        options = []
        for name, value in values.items():
            kind = _option_named(definitions, name, command["name"])["type"]
            option: dict[str, Any] = {"name": name, "type": kind}
            if name == focused:
                option |= {"value": str(value), "focused": True}
            else:
                option["value"] = _OPTION_VALUE[kind](value)
                self._resolve(kind, str(value), resolved, guild_id)
            options.append(option)
        return options

    def _resolve(
        self, kind: int, value: str, resolved: dict[str, dict[str, Any]], guild_id: str | None
    ) -> None:
        if kind == OPTION_CHANNEL:
            channel = self._channels.get(value)
            if channel is None:
                raise LookupError(f"channel {value} is not registered (add_guild)")
            entry = {**channel, "permissions": str(MEMBER_PERMISSIONS)}
            resolved.setdefault("channels", {})[value] = entry
        elif kind == OPTION_USER:
            resolved.setdefault("users", {})[value] = user_payload(value)
            if guild_id is not None:
                member = _member(value, MEMBER_PERMISSIONS)
                del member["user"]
                resolved.setdefault("members", {})[value] = member

    # -- interactions -----------------------------------------------------------------

    async def _dispatch_interaction(
        self,
        kind: int,
        data: dict[str, Any],
        user_id: str,
        guild_id: str | None,
        channel_id: str | None,
        permissions: int,
        locale: str,
        *,
        message: dict[str, Any] | None,
    ) -> InteractionRecord:
        """Send INTERACTION_CREATE to every gateway session and remember the
        interaction, its token and its dispatch time for the callback deadline."""
        if channel_id is None:
            channel_id = (
                self._guilds[guild_id]["channels"][0] if guild_id else self.dm_channel(user_id)
            )
        interaction_id = self._snowflake()
        payload: dict[str, Any] = {
            "id": interaction_id,
            "application_id": APPLICATION_ID,
            "type": kind,
            "data": data,
            "channel_id": channel_id,
            "channel": {**self._channels[channel_id], "permissions": str(permissions)},
            "token": f"interaction-{uuid.uuid4().hex}",
            "version": 1,
            "app_permissions": str(MEMBER_PERMISSIONS),
            "locale": locale,
            "entitlements": [],
            "attachment_size_limit": 10 * 1024 * 1024,
        }
        if guild_id is not None:
            payload |= {
                "guild_id": guild_id,
                "guild": {"id": guild_id, "locale": "en-US", "features": []},
                "guild_locale": "en-US",
                "member": _member(user_id, permissions),
                "context": 0,
                "authorizing_integration_owners": {"0": guild_id},
            }
        else:
            payload |= {
                "user": user_payload(user_id),
                "context": 1,
                "authorizing_integration_owners": {"0": "0"},
            }
        if message is not None:
            payload["message"] = message
        record = InteractionRecord(
            id=interaction_id,
            token=payload["token"],
            payload=payload,
            dispatched_at=self.clock(),
            message_id=message["id"] if message else None,
            _standin=self,
        )
        self.interactions[interaction_id] = record
        await self._broadcast("INTERACTION_CREATE", payload)
        return record

    async def _callback(self, request: web.Request) -> web.Response:
        """The bot's answer to an interaction: refused after the deadline (10062) or a
        second time (40060); answered with an InteractionCallbackResponse when
        discord.py asks `with_response` (2.7 always does), else 204."""
        record = self.interactions.get(request.match_info["id"])
        if record is None or record.token != request.match_info["token"]:
            return _error(404, 10062, "Unknown interaction")
        elapsed = self.clock() - record.dispatched_at
        if elapsed > self.interaction_deadline:
            return _error(404, 10062, "Unknown interaction")
        if record.callbacks:
            return _error(400, 40060, "Interaction has already been acknowledged.")
        body = request[BODY] or {}
        kind, data = int(body["type"]), body.get("data")
        record.callbacks.append((kind, data))
        record.callback_files += request[FILES]
        record.acknowledged_after = elapsed
        message = self._callback_message(record, kind, data or {}, request[FILES])
        if not _truthy(request.query.get("with_response")):
            return web.Response(status=204)
        return _json(_callback_response(record, kind, message))

    def _callback_message(
        self,
        record: InteractionRecord,
        kind: int,
        data: Mapping[str, Any],
        files: list[RecordedFile],
    ) -> dict[str, Any] | None:
        """The message a callback creates or updates, which becomes @original."""
        channel_id = record.payload["channel_id"]
        if kind == CHANNEL_MESSAGE:
            record.original = self._new_message(channel_id, data, files, kind=20)
        elif kind == DEFERRED_CHANNEL_MESSAGE:
            flags = LOADING | (int(data.get("flags") or 0) & EPHEMERAL)
            record.original = self._new_message(channel_id, {}, [], kind=20, flags=flags)
        elif kind in (UPDATE_MESSAGE, DEFERRED_UPDATE_MESSAGE) and record.message_id:
            record.original = self._messages[record.message_id]
            if kind == UPDATE_MESSAGE:
                self._edit(record.original, data, files)
        return (
            record.original
            if kind in (CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, UPDATE_MESSAGE)
            else None
        )

    def _webhook_record(self, request: web.Request) -> InteractionRecord | None:
        """The interaction a webhook token belongs to, if it is usable: Discord accepts
        followups only after the callback and for 15 minutes."""
        if request.match_info["app"] != APPLICATION_ID:
            return None
        token = request.match_info["token"]
        for record in self.interactions.values():
            fresh = self.clock() - record.dispatched_at <= self.followup_window
            if record.token == token and record.callbacks and fresh:
                return record
        return None

    async def _followup(self, request: web.Request) -> web.Response:
        record = self._webhook_record(request)
        if record is None:
            return _error(404, 10015, "Unknown Webhook")
        message = self._new_message(
            record.payload["channel_id"], request[BODY] or {}, request[FILES]
        )
        message["webhook_id"] = APPLICATION_ID
        record.followups.append(message)
        if not _truthy(request.query.get("wait")):
            return web.Response(status=204)
        return _json(message)

    def _webhook_message(self, request: web.Request) -> dict[str, Any] | None:
        record = self._webhook_record(request)
        if record is None:
            return None
        wanted = request.match_info["message"]
        if wanted == "@original":
            return record.original
        return next((m for m in record.followups if m["id"] == wanted), None)

    async def _get_webhook_message(self, request: web.Request) -> web.Response:
        message = self._webhook_message(request)
        return _json(message) if message else _error(404, 10008, "Unknown Message")

    async def _edit_webhook_message(self, request: web.Request) -> web.Response:
        message = self._webhook_message(request)
        if message is None:
            return _error(404, 10008, "Unknown Message")
        self._edit(message, request[BODY] or {}, request[FILES])
        return _json(message)

    async def _delete_webhook_message(self, request: web.Request) -> web.Response:
        """Deleting the original response (e.g. a public "thinking…" replaced by an
        ephemeral refusal): recorded as `deleted` on it."""
        message = self._webhook_message(request)
        if message is None:
            return _error(404, 10008, "Unknown Message")
        message["deleted"] = True
        return web.Response(status=204)

    # -- gateway ----------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        """One gateway connection: HELLO, then IDENTIFY or RESUME, heartbeats ACKed.
        Frames go out as text JSON (discord.py inflates only binary frames, so the
        zlib-stream it asks for can be ignored)."""
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        session = _Session(ws)
        self._sessions.append(session)
        try:
            await ws.send_json({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
            async for frame in ws:
                if frame.type is not WSMsgType.TEXT:
                    break
                await self._on_gateway_message(session, json.loads(frame.data))
                await self._notify()
        finally:
            self._sessions.remove(session)
            await self._notify()
        return ws

    async def _on_gateway_message(self, session: _Session, message: dict[str, Any]) -> None:
        op, data = message.get("op"), message.get("d")
        if op == 1:
            await session.ws.send_json({"op": 11})
        elif op == 2:
            await self._identify(session, data)
        elif op == 6:
            await self._resume(session, data)

    async def _identify(self, session: _Session, data: Mapping[str, Any]) -> None:
        """READY (guilds unavailable at first, as on Discord), then GUILD_CREATE for
        each registered guild so discord.py's guild_ready_timeout wait can end."""
        if data.get("token") != TOKEN:
            await session.ws.close(code=4004, message=b"Authentication failed.")
            return
        session.session_id = uuid.uuid4().hex
        session.shard = list(data.get("shard") or [0, 1])
        self._identified[session.session_id] = session
        ready = {
            "v": 10,
            "user": {**BOT_USER, "verified": True, "mfa_enabled": False, "flags": 0},
            "guilds": [{"id": g, "unavailable": True} for g in self._guilds],
            "session_id": session.session_id,
            "resume_gateway_url": str(self.gateway),
            "shard": session.shard,
            "application": {"id": APPLICATION_ID, "flags": 0},
            "private_channels": [],
            "relationships": [],
        }
        await session.dispatch("READY", ready)
        for guild_id in self._guilds:
            await session.dispatch("GUILD_CREATE", self._guild_payload(guild_id))

    async def _resume(self, session: _Session, data: Mapping[str, Any]) -> None:
        """RESUME a session this stand-in started: replay what was missed, then
        RESUMED; an unknown session is told to identify afresh (op 9, false)."""
        if data.get("token") != TOKEN:
            await session.ws.close(code=4004, message=b"Authentication failed.")
            return
        old = self._identified.get(str(data.get("session_id")))
        if old is None:
            await session.ws.send_json({"op": 9, "d": False})
            return
        session.session_id, session.shard, session.seq = old.session_id, old.shard, old.seq
        session.sent = old.sent
        self._identified[old.session_id] = session
        for frame in old.sent:
            if frame["s"] > int(data.get("seq") or 0):
                await session.ws.send_str(json.dumps(frame))
        await session.dispatch("RESUMED", {})

    async def _broadcast(self, event: str, data: Any) -> None:
        live = [s for s in self._sessions if s.session_id is not None]
        if not live:
            raise RuntimeError(f"no gateway session to send {event} to; is the client connected?")
        for session in live:
            await session.dispatch(event, data)

    def _guild_payload(self, guild_id: str) -> dict[str, Any]:
        guild = self._guilds[guild_id]
        everyone = {
            "id": guild_id,
            "name": "@everyone",
            "permissions": str(MEMBER_PERMISSIONS),
            "position": 0,
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }
        return {
            "id": guild_id,
            "name": guild["name"],
            "icon": None,
            "owner_id": OWNER_ID,
            "unavailable": False,
            "large": False,
            "member_count": 2,
            "joined_at": _now_iso(),
            "features": [],
            "roles": [everyone],
            "emojis": [],
            "stickers": [],
            "members": [],
            "voice_states": [],
            "presences": [],
            "threads": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "preferred_locale": "en-US",
            "channels": [self._channels[c] for c in guild["channels"]],
        }


def _bucket_headers(limit: int, remaining: int, reset_after: float, bucket: str) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
        "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        "X-RateLimit-Bucket": bucket,
    }


def _callback_response(
    record: InteractionRecord, kind: int, message: dict[str, Any] | None
) -> dict[str, Any]:
    """Discord's InteractionCallbackResponse, which discord.py 2.7 parses into the
    return value of defer()/send_message(), taking `response_message_id` as the id
    under which it stores a sent view."""
    interaction: dict[str, Any] = {
        "id": record.id,
        "type": record.payload["type"],
        "response_message_loading": kind == DEFERRED_CHANNEL_MESSAGE,
        "response_message_ephemeral": bool(message and message["flags"] & EPHEMERAL),
    }
    response: dict[str, Any] = {"interaction": interaction}
    if message is not None:
        interaction["response_message_id"] = message["id"]
        response["resource"] = {"type": kind, "message": message}
    return response


def _member(user_id: str, permissions: int) -> dict[str, Any]:
    return {
        "user": user_payload(user_id),
        "roles": [],
        "joined_at": _now_iso(),
        "deaf": False,
        "mute": False,
        "flags": 0,
        "pending": False,
        "nick": None,
        "avatar": None,
        "permissions": str(permissions),
    }


def _option_named(
    definitions: Iterable[Mapping[str, Any]], name: str, command: str
) -> Mapping[str, Any]:
    for definition in definitions:
        if definition["name"] == name:
            return definition
    raise LookupError(f"{command!r} has no option {name!r} in its synced definition")


def _find_component(rows: Iterable[Mapping[str, Any]], custom_id: str) -> Mapping[str, Any]:
    for row in rows:
        for component in row.get("components", [row]):
            if component.get("custom_id") == custom_id:
                return component
    raise LookupError(f"the message has no component {custom_id!r}")


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true")


async def _read_body(request: web.Request) -> tuple[Any, list[RecordedFile]]:
    """The JSON body, or a multipart body's `payload_json` and its files."""
    if not request.can_read_body:
        return None, []
    if request.content_type.startswith("multipart/"):
        body, files = None, []
        reader = await request.multipart()
        async for part in reader:
            data = await part.read()  # type: ignore[union-attr]
            if part.name == "payload_json":
                body = json.loads(data)
            else:
                content_type = part.headers.get("Content-Type", "application/octet-stream")
                files.append(RecordedFile(part.filename or "", bytes(data), content_type))
        return body, files
    text = await request.text()
    with contextlib.suppress(ValueError):
        return json.loads(text), []
    return text, []


@contextlib.asynccontextmanager
async def running_standin_server(
    standin: DiscordStandin | None = None, *, port: int = 0
) -> AsyncIterator[DiscordStandin]:
    """The stand-in served on 127.0.0.1 (a free port unless given), without touching
    discord.py's globals: for a client in another process pointed at `api_base`."""
    standin = standin or DiscordStandin()
    runner = web.AppRunner(standin.app(), shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    standin.base_url = f"http://127.0.0.1:{bound}"
    try:
        yield standin
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def running_standin(standin: DiscordStandin | None = None) -> AsyncIterator[DiscordStandin]:
    """The stand-in on a free loopback port with discord.py in this process pointed at
    it (REST base and default gateway), both restored on exit."""
    async with running_standin_server(standin) as served:
        previous = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE = served.api_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = served.gateway
        try:
            yield served
        finally:
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = previous


@contextlib.asynccontextmanager
async def running_client(
    client: discord.Client,
    *,
    timeout: float = 10.0,  # noqa: ASYNC109
) -> AsyncIterator[discord.Client]:
    """A discord.py client logged in with TOKEN and connected through the gateway until
    `on_ready`; closed on exit."""
    await client.login(TOKEN)
    connection = asyncio.create_task(client.connect(reconnect=False))
    try:
        async with asyncio.timeout(timeout):
            ready = asyncio.create_task(client.wait_until_ready())
            await asyncio.wait({ready, connection}, return_when=asyncio.FIRST_COMPLETED)
            if not ready.done():
                ready.cancel()
                await connection  # raises why the connection ended
        yield client
    finally:
        await client.close()
        with contextlib.suppress(Exception):
            await connection


async def _serve_forever(port: int) -> None:
    async with running_standin_server(port=port) as standin:
        print(
            f"Discord stand-in: API base {standin.api_base}, gateway {standin.gateway}", flush=True
        )
        await asyncio.Event().wait()


def main() -> None:
    """`python -m tests.discord_standin --port N`: a stand-in to point a bot at by hand
    (its state is not inspectable from outside; tests run it in their own loop)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(_serve_forever(parser.parse_args().port))


if __name__ == "__main__":
    main()
