"""The access-control matrix from outside, as an attacker holding a valid account of
their own would try it (README "Reliability and security"): the whole stack as `make
run` starts it, two users, every resource that belongs to a user, through Envoy (REST
and SSE) and the edge (Socket.IO). Another user's id or room gives NOT_FOUND or
nothing, never the data; forged tokens are refused on Socket.IO as at Envoy and the
services (tests/token_forgery.py).

(At the gRPC level: tests/position/test_access.py, tests/auth/test_discord_links.py;
internal methods not routed: tests/signal_e2e/test_internal_not_routed.py.)
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import socketio

from auth_svc.signing_keys import load_signing_key
from tests.envoy import http_client, unique_account
from tests.full_stack import FullStack
from tests.infra import eventually, make_settings
from tests.token_forgery import ATTACKS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

POSITIONS = "/api/v1/positions"
# Levels the replayed EUR/USD (1.05 to 1.25) never reaches.
FAR = {"stopLoss": "0.80", "takeProfit": "1.45"}


@dataclass
class User:
    token: str
    headers: dict[str, str]
    user_id: str


@dataclass
class Socket:
    """A python-socketio client through Envoy, recording what it receives."""

    io: socketio.AsyncClient = field(
        default_factory=lambda: socketio.AsyncClient(reconnection=False)
    )
    notifications: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    refusals: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.io.on("notification", self.notifications.append)
        self.io.on("error", self.errors.append)
        self.io.on("connect_error", self.refusals.append)

    async def connect(self, url: str, token: str) -> None:
        await self.io.connect(url, auth={"token": token}, transports=["websocket"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FullStack]:
    with FullStack(
        tmp_path_factory.mktemp("access") / "stack", bcrypt_rounds=4, replay_speed=3600
    ) as full:
        yield full


@pytest.fixture
async def http(stack: FullStack) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(stack.url) as client:
        yield client


async def new_user(http: httpx.AsyncClient) -> User:
    response = await http.post("/api/v1/auth/register", json=unique_account("acl"))
    assert response.status_code == 200, response.text
    body = response.json()
    token = body["tokens"]["accessToken"]
    return User(token, {"authorization": f"Bearer {token}"}, body["user"]["id"])


async def open_position(http: httpx.AsyncClient, user: User, **extra: str) -> dict[str, Any]:
    body = {"pair": "EURUSD", "side": "TRADE_ACTION_BUY", "lotSize": "0.10", **FAR, **extra}

    async def opened() -> httpx.Response | None:
        response = await http.post(POSITIONS, json=body, headers=user.headers)
        if response.status_code == 503:  # no price yet: the replay is starting
            return None
        assert response.status_code == 200, response.text
        return response

    response = await eventually(opened, "a position opened at market", within=30)
    return dict(response.json()["position"])


def assert_not_found_without_data(response: httpx.Response, position: dict[str, Any]) -> None:
    assert response.status_code == 404, response.text
    assert response.json()["code"] == 5
    for secret in (position["lotSize"], position["entryPrice"], position["userId"]):
        assert secret not in response.text


async def sse_events(http: httpx.AsyncClient, user: User, path: str) -> list[dict[str, Any]]:
    """The replayed part of an event stream (resume from 0): up to its heartbeat."""
    events: list[dict[str, Any]] = []
    async with http.stream(
        "GET", path, params={"resumeAfterId": "0"}, headers=user.headers, timeout=30
    ) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            message = json.loads(line.removeprefix("data: "))
            if "heartbeat" in message:
                return events
            events.append(message)
    return events


async def test_another_users_positions_events_and_performance_are_not_theirs(
    http: httpx.AsyncClient,
) -> None:
    alice, bob = await new_user(http), await new_user(http)
    key = "acl-idempotency-key-shared"
    secret = await open_position(http, alice, idempotencyKey=key)
    own = await open_position(http, bob)
    pid = secret["id"]

    # Bob addresses Alice's position by its id: the same answer as for no such id.
    reads = [
        await http.get(f"{POSITIONS}/{pid}", headers=bob.headers),
        await http.patch(f"{POSITIONS}/{pid}", json={"stopLoss": "0.6"}, headers=bob.headers),
        await http.post(f"{POSITIONS}/{pid}:close", json={}, headers=bob.headers),
        await http.post(f"{POSITIONS}/{pid}:close", json={"exitPrice": "1.2"}, headers=bob.headers),
    ]
    for response in reads:
        assert_not_found_without_data(response, secret)
    # ... and it is untouched.
    mine = await http.get(f"{POSITIONS}/{pid}", headers=alice.headers)
    assert mine.status_code == 200
    assert mine.json()["position"]["status"] == "POSITION_STATUS_OPEN"
    assert mine.json()["position"]["stopLoss"] == secret["stopLoss"]

    # Alice's idempotency key is hers: Bob reusing it opens Bob's own position.
    reused = await open_position(http, bob, idempotencyKey=key)
    assert reused["id"] != pid and reused["userId"] == bob.user_id

    # Bob's lists and history hold only his own positions.
    for status in ({"status": "POSITION_STATUS_OPEN"}, {}):
        listed = await http.get(POSITIONS, params=status, headers=bob.headers)
        assert listed.status_code == 200, listed.text
        ids = {p["id"] for p in listed.json()["positions"]}
        assert pid not in ids and own["id"] in ids
    events = await sse_events(http, bob, f"{POSITIONS}/events:stream")
    positions = {e["event"]["position"]["id"] for e in events if "event" in e}
    assert own["id"] in positions and pid not in positions, events

    # Alice's closed trade is in Alice's performance, not Bob's.
    closed = await http.post(f"{POSITIONS}/{pid}:close", json={}, headers=alice.headers)
    assert closed.status_code == 200, closed.text
    for user, trades in ((alice, 1), (bob, 0)):
        report = await http.get(f"{POSITIONS}/performance", headers=user.headers)
        assert report.json()["performance"]["trades"] == trades, report.text


async def test_preferences_and_the_discord_link_are_per_user(http: httpx.AsyncClient) -> None:
    alice, bob = await new_user(http), await new_user(http)
    before = (await http.get("/api/v1/auth/preferences", headers=alice.headers)).json()
    changed = await http.patch(
        "/api/v1/auth/preferences",
        json={"pairs": ["GBP/USD"], "minConfidence": 0.9},
        headers=bob.headers,
    )
    assert changed.status_code == 200, changed.text
    after = (await http.get("/api/v1/auth/preferences", headers=alice.headers)).json()
    assert after == before
    # Alice's link code is hers; Bob's unlink touches only Bob (who has no link).
    code = await http.post("/api/v1/auth/discord/link-code", json={}, headers=alice.headers)
    assert code.status_code == 200
    unlinked = await http.delete("/api/v1/auth/discord", headers=bob.headers)
    assert unlinked.status_code == 404 and unlinked.json()["code"] == 5
    bob_code = await http.post("/api/v1/auth/discord/link-code", json={}, headers=bob.headers)
    assert bob_code.json()["code"] != code.json()["code"]


async def test_socket_rooms_carry_only_their_users_notifications(
    stack: FullStack, http: httpx.AsyncClient
) -> None:
    alice, bob = await new_user(http), await new_user(http)
    sockets = {"alice": Socket(), "bob": Socket()}
    try:
        for name, user in (("alice", alice), ("bob", bob)):
            await sockets[name].connect(stack.url, user.token)
            ack = await sockets[name].io.call("subscribe:notifications")
            assert ack["subscribed"] == "notifications"
        position = await open_position(http, alice)
        closed = await http.post(
            f"{POSITIONS}/{position['id']}:close", json={}, headers=alice.headers
        )
        assert closed.status_code == 200
        await eventually(lambda: len(sockets["alice"].notifications) >= 2, "Alice's open and close")
        # Bob asks to catch up from the beginning: still nothing of Alice's. (The call's
        # acknowledgement also orders after anything emitted to Bob's socket before it:
        # had Alice's notifications reached his room, they would be here by now.)
        resumed = await sockets["bob"].io.call(
            "subscribe:notifications", {"lastNotificationId": "0"}
        )
        assert resumed["subscribed"] == "notifications"
        assert sockets["bob"].notifications == []
        # Bob's socket cannot take on Alice's identity by refreshing with her token.
        answer = await sockets["bob"].io.call("auth:refresh", {"token": alice.token})
        assert answer["ok"] is False and answer["code"] == "PERMISSION_DENIED", answer
    finally:
        for socket in sockets.values():
            await socket.io.disconnect()


@pytest.mark.parametrize("attack", ATTACKS)
async def test_forged_tokens_are_refused_on_socket_io(
    stack: FullStack, http: httpx.AsyncClient, attack: str
) -> None:
    real = await new_user(http)
    settings = make_settings(stack.workdir / "var")
    token = ATTACKS[attack](settings.tokens, load_signing_key(settings), real.token)
    socket = Socket()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await socket.connect(stack.url, token)
    [refusal] = socket.refusals
    assert refusal["data"] == {"code": "UNAUTHENTICATED"}, refusal
    # The control: the real token connects.
    control = Socket()
    await control.connect(stack.url, real.token)
    await control.io.disconnect()
