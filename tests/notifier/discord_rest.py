"""A local stand-in for Discord's REST API, enough for the notifier's DMs: the
unmodified discord.py HTTP client logs in and sends DMs to it once
`discord.http.Route.BASE` points here (see `pointed_at`).

It behaves as Discord does where it matters for delivery: a DM channel per user, a
message with a `nonce` and `enforce_nonce` from the bot to the same channel returns the
first message instead of creating a second, 403 with JSON code 50007 for users whose
DMs are closed, and 429 with `retry_after` and X-RateLimit headers when asked to. Every
request is recorded.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import discord
from aiohttp import web

BOT_ID = "400000000000000001"
APPLICATION_ID = "400000000000000002"
BOT_USER = {"id": BOT_ID, "username": "AIFX", "discriminator": "0", "avatar": None, "bot": True}


def _json(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON as Discord sends it: discord.py decodes a body only when its content type is
    exactly `application/json` (aiohttp's json_response adds a charset)."""
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


@dataclass
class Recorded:
    method: str
    path: str
    body: dict[str, Any] | None


@dataclass
class DiscordRest:
    base_url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    # channel id → messages created in it (bodies as sent)
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    closed_dms: set[str] = field(default_factory=set)
    # Answer the next N message creations with 429 (Discord's rate limit).
    rate_limit_next: int = 0
    _channels: dict[str, str] = field(default_factory=dict)
    _by_nonce: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(500000000000000000))

    def dms_to(self, user_id: str) -> list[dict[str, Any]]:
        return self.messages.get(self._channels.get(user_id, ""), [])

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/api/v10/users/@me", self._me)
        app.router.add_get("/api/v10/oauth2/applications/@me", self._application)
        app.router.add_post("/api/v10/users/@me/channels", self._open_dm)
        app.router.add_post("/api/v10/channels/{channel}/messages", self._create_message)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = None
        if request.can_read_body:
            with contextlib.suppress(ValueError):
                body = json.loads(await request.text())
        self.requests.append(Recorded(request.method, request.path, body))
        if request.headers.get("Authorization") != "Bot test-token":
            return _json({"message": "401: Unauthorized", "code": 0}, status=401)
        return await handler(request)

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
                "owner": {**BOT_USER, "id": "400000000000000009", "bot": False},
            }
        )

    async def _open_dm(self, request: web.Request) -> web.Response:
        recipient = str((await request.json())["recipient_id"])
        channel = self._channels.setdefault(recipient, str(next(self._ids)))
        user = {
            "id": recipient,
            "username": f"user{recipient[-4:]}",
            "discriminator": "0",
            "avatar": None,
        }
        return _json({"id": channel, "type": 1, "recipients": [user]})

    async def _create_message(self, request: web.Request) -> web.Response:
        channel = request.match_info["channel"]
        if self.rate_limit_next > 0:
            self.rate_limit_next -= 1
            return _json(
                {"message": "You are being rate limited.", "retry_after": 0.05, "global": False},
                status=429,
                headers={
                    # Discord's edge says Via; discord.py takes a 429 without it for a
                    # Cloudflare ban and gives up instead of waiting.
                    "Via": "1.1 google",
                    "X-RateLimit-Limit": "5",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset-After": "0.05",
                    "X-RateLimit-Bucket": "dm",
                    "Retry-After": "1",
                },
            )
        recipient = next((u for u, c in self._channels.items() if c == channel), None)
        if recipient in self.closed_dms:
            return _json(
                {"message": "Cannot send messages to this user", "code": 50007}, status=403
            )
        payload = await request.json()
        nonce = payload.get("nonce")
        if nonce and payload.get("enforce_nonce") and (channel, nonce) in self._by_nonce:
            return _json(self._by_nonce[(channel, nonce)])
        message = {
            "id": str(next(self._ids)),
            "channel_id": channel,
            "author": BOT_USER,
            "content": payload.get("content") or "",
            "embeds": payload.get("embeds", []),
            "flags": payload.get("flags", 0),
            "nonce": nonce,
            "timestamp": "2026-12-04T12:00:00+00:00",
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "pinned": False,
            "type": 0,
        }
        self.messages.setdefault(channel, []).append(message)
        if nonce:
            self._by_nonce[(channel, nonce)] = message
        return _json(message)


@contextlib.asynccontextmanager
async def running_discord_rest() -> AsyncIterator[DiscordRest]:
    """The stand-in on a free loopback port, with discord.py pointed at it."""
    rest = DiscordRest()
    runner = web.AppRunner(rest.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rest.base_url = f"http://127.0.0.1:{port}"
    previous = discord.http.Route.BASE
    discord.http.Route.BASE = f"{rest.base_url}/api/v10"
    try:
        yield rest
    finally:
        discord.http.Route.BASE = previous
        await runner.cleanup()
