"""The Socket.IO contract with a client no one here wrote: socket.io-client, the npm
package browser apps use, driven from Node (tests/edge/node/drive.mjs runs a JSON plan
and prints what it receives), always through Envoy: refused and accepted handshakes,
every event, rooms, resume after a reconnect, token expiry and refresh.

Needs Node and `npm ci --prefix tests/edge/node`; without them the tests skip, or fail
when the CI variable is set.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jwt
import pytest

from edge.sockets import MARKET_UPDATE_INTERVAL
from tests.edge.edge_stack import (  # noqa: F401 (running_edge: the `edge` fixture)
    EdgeStack,
    position_event,
    price_update,
    running_edge,
)
from tests.infra import eventually
from tests.notifier_e2e.stream_standin import signal_message

NODE_DIR = Path(__file__).parent / "node"
DRIVER = NODE_DIR / "drive.mjs"
PLAN_TIMEOUT = 15.0  # seconds a plan may take; the driver prints what it got by then
_ids = itertools.count(1000)  # signal and position-event ids, increasing across the module

Checkpoint = Callable[[], Awaitable[None]]
# position_event kind -> the notification's type
NOTIFICATION_TYPES = {
    "opened": "position_opened",
    "updated": "position_updated",
    "take_profit_hit": "take_profit_hit",
    "stop_loss_hit": "stop_loss_hit",
    "closed": "position_closed",
}


def node_binary() -> str:
    """Node, with socket.io-client installed next to the driver; skipped without them,
    failed when CI is set (CI must run these)."""
    node = shutil.which("node")
    installed = (NODE_DIR / "node_modules" / "socket.io-client" / "package.json").exists()
    if node and installed:
        return node
    why = "node is not on PATH" if not node else "run `npm ci --prefix tests/edge/node`"
    if os.environ.get("CI"):
        pytest.fail(f"socket.io-client tests cannot run: {why}", pytrace=False)
    pytest.skip(why)


@dataclass
class Run:
    """What the driver printed, one record a line."""

    records: list[dict[str, Any]]

    def of(self, client: str, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("client") == client and r["type"] == kind]

    def events(self, client: str, name: str) -> list[Any]:
        return [r["data"] for r in self.of(client, "event") if r["event"] == name]

    def acks(self, client: str, name: str) -> list[Any]:
        return [r["data"] for r in self.of(client, "ack") if r["event"] == name]

    def times(self, client: str, name: str) -> list[int]:
        """When each such event arrived (epoch ms)."""
        return [r["at"] for r in self.of(client, "event") if r["event"] == name]

    def order(self, client: str) -> list[str]:
        """What happened to `client`, in order: event names and record types."""
        return [r.get("event", r["type"]) for r in self.records if r.get("client") == client]


async def drive(
    url: str,
    clients: dict[str, dict[str, Any]],
    steps: list[dict[str, Any]],
    checkpoints: dict[str, Checkpoint] | None = None,
) -> Run:
    """Run the plan; at each checkpoint the Node side waits for the named coroutine."""
    plan = {"url": url, "timeoutMs": int(PLAN_TIMEOUT * 1000), "clients": clients, "steps": steps}
    process = await asyncio.create_subprocess_exec(
        node_binary(),
        str(DRIVER),
        json.dumps(plan),
        cwd=NODE_DIR,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdin and process.stdout and process.stderr
    records: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(PLAN_TIMEOUT + 10):
            async for line in process.stdout:
                records.append(json.loads(line))
                if records[-1]["type"] == "checkpoint":
                    await (checkpoints or {})[records[-1]["name"]]()
                    process.stdin.write(b"go\n")
                    await process.stdin.drain()
            status = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    errors = (await process.stderr.read()).decode(errors="replace")
    transcript = "\n".join(json.dumps(r) for r in records)
    assert status == 0 and records and records[-1]["type"] == "done", f"{transcript}\n{errors}"
    return Run(records)


def connect(client: str, **extra: Any) -> dict[str, Any]:
    return {"op": "connect", "client": client, **extra}


def call(client: str, event: str, *args: Any) -> dict[str, Any]:
    """Emit and wait for the acknowledgement."""
    return {"op": "emit", "client": client, "event": event, "args": list(args), "ack": True}


def wait(client: str, event: str, count: int = 1, **contains: Any) -> dict[str, Any]:
    step = {"op": "wait", "client": client, "event": event, "count": count}
    return step | ({"contains": contains} if contains else {})


def checkpoint(name: str) -> dict[str, Any]:
    return {"op": "checkpoint", "name": name}


def new_signal(pair: str = "EUR/USD", timeframe: str = "1h", entry: float = 1.0841):
    return signal_message(str(next(_ids)), pair, timeframe, confidence=0.7, entry=entry)


async def following_signals(edge: EdgeStack) -> None:
    await eventually(lambda: edge.streams.open_signal_streams >= 1, "the edge following signals")


async def following_prices(edge: EdgeStack) -> None:
    await eventually(lambda: edge.streams.open_price_streams >= 1, "the edge following prices")


async def following_positions(edge: EdgeStack) -> None:
    await eventually(
        lambda: edge.streams.open_position_streams >= 1, "the edge following position events"
    )


# --- the handshake ----------------------------------------------------------------------


async def test_no_bad_expired_or_revoked_token_is_refused_with_a_reason(edge):
    _, user = await edge.new_user()
    tokens = {
        "none": None,
        "garbage": "not-a-jwt",
        "unsigned": "eyJhbGciOiJub25lIn0.e30.",
        "forged": edge.token(user, expires_in=600, forged=True),
        "expired": edge.token(user, expires_in=-3600),
    }
    if edge.settings.storage.redis_url:  # without Redis only auth_svc's process knows
        tokens["revoked"] = await edge.revoked_token()
    clients = {name: {"token": token} for name, token in tokens.items()}
    run = await drive(edge.public, clients, [connect(name) for name in tokens])
    for name in tokens:
        assert not run.of(name, "connect"), name
        [refused] = run.of(name, "connect_error")
        assert refused["data"] == {"code": "UNAUTHENTICATED"}, (name, refused)
        assert len(refused["message"]) > 10, (name, refused)  # a sentence, not a code
    assert "token" in run.of("none", "connect_error")[0]["message"]
    assert "expired" in run.of("expired", "connect_error")[0]["message"].lower()
    if "revoked" in tokens:
        assert "revoked" in run.of("revoked", "connect_error")[0]["message"].lower()


# --- signals ----------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_a_real_token_gets_trading_signals_through_envoy(edge, transport):
    token, _ = await edge.new_user()
    sent = new_signal("GBP/USD", "4h", entry=1.2712)

    async def publish() -> None:
        await following_signals(edge)
        await edge.streams.publish(sent)

    run = await drive(
        edge.public,
        {"a": {"token": token, "transports": [transport]}},
        [
            connect("a"),
            call("a", "subscribe:signals"),
            checkpoint("subscribed"),
            wait("a", "trading:signal", id=sent.id),
        ],
        {"subscribed": publish},
    )
    assert [c["transport"] for c in run.of("a", "connect")] == [transport]
    assert run.acks("a", "subscribe:signals") == [{"subscribed": "signals", "resumed": 0}]
    [signal] = [s for s in run.events("a", "trading:signal") if s["id"] == sent.id]
    assert set(signal) >= {
        "id", "pair", "timeframe", "signal", "confidence", "entryPrice", "stopLoss",
        "takeProfit", "riskRewardRatio", "signalStrength", "technicalData", "timestamp",
        "candleTime", "source", "model",
    }  # fmt: skip
    assert (signal["pair"], signal["timeframe"], signal["signal"]) == ("GBP/USD", "4h", "buy")
    assert signal["entryPrice"] == pytest.approx(1.2712)
    assert signal["confidence"] == pytest.approx(0.7) and signal["signalStrength"] == "strong"
    assert (signal["source"], signal["model"]) == ("model", "lstm v1")
    assert signal["candleTime"] == "2024-03-01T12:00:00.000Z"
    assert datetime.fromisoformat(signal["timestamp"])  # ISO 8601


async def test_a_reconnect_with_the_last_signal_id_gets_exactly_what_it_missed(edge):
    """Signals 1-3 live; the socket disconnects; 4 and 5 are relayed (a witness sees
    them); the same socket reconnects with lastSignalId 3: 4 and 5, in order, then 6
    live — each once."""
    (token, _), (witness, _) = await edge.new_user(), await edge.new_user()
    signals = [new_signal(entry=1.08 + n / 1000) for n in range(6)]
    ids = [s.id for s in signals]

    def publish(*which: int) -> Checkpoint:
        async def act() -> None:
            await following_signals(edge)
            for n in which:
                await edge.streams.publish(signals[n])

        return act

    run = await drive(
        edge.public,
        {"a": {"token": token}, "w": {"token": witness}},
        [
            connect("a"),
            connect("w"),
            call("a", "subscribe:signals"),
            call("w", "subscribe:signals"),
            checkpoint("first three"),
            wait("a", "trading:signal", id=ids[2]),
            {"op": "disconnect", "client": "a"},
            checkpoint("two while away"),
            wait("w", "trading:signal", id=ids[4]),
            connect("a"),
            call("a", "subscribe:signals", {"lastSignalId": "$last:a:trading:signal"}),
            wait("a", "trading:signal", id=ids[4]),
            checkpoint("one live"),
            wait("a", "trading:signal", id=ids[5]),
            wait("w", "trading:signal", id=ids[5]),
        ],
        {
            "first three": publish(0, 1, 2),
            "two while away": publish(3, 4),
            "one live": publish(5),
        },
    )
    assert len(run.of("a", "connect")) == 2
    assert run.acks("a", "subscribe:signals") == [
        {"subscribed": "signals", "resumed": 0},
        {"subscribed": "signals", "resumed": 2},
    ]
    assert [s["id"] for s in run.events("a", "trading:signal")] == ids
    assert [s["id"] for s in run.events("w", "trading:signal")] == ids


async def test_a_resume_from_too_long_ago_gets_an_error_event(edge):
    token, _ = await edge.new_user()
    run = await drive(
        edge.public,
        {"a": {"token": token}},
        [
            connect("a"),
            call("a", "subscribe:signals", {"lastSignalId": "1"}),
            wait("a", "error", code="RESUME_TOO_OLD"),
            {"op": "state", "client": "a"},
        ],
    )
    [error] = run.events("a", "error")
    assert error["code"] == "RESUME_TOO_OLD" and error["message"]
    assert run.of("a", "state")[0]["connected"]


# --- prices and the market overview -----------------------------------------------------


async def test_price_subscribe_unsubscribe_and_a_bad_pair(edge):
    token, _ = await edge.new_user()

    async def first_quote() -> None:
        await following_prices(edge)
        await edge.streams.publish_price(price_update("EUR/USD", 1.0841))

    async def after_unsubscribing() -> None:
        await edge.streams.publish_price(price_update("EUR/USD", 1.0842))
        await edge.streams.publish_price(price_update("GBP/USD", 1.2711))

    run = await drive(
        edge.public,
        {"a": {"token": token}},
        [
            connect("a"),
            call("a", "subscribe:price", "EUR/USD"),
            call("a", "subscribe:price", "GBPUSD"),
            checkpoint("subscribed"),
            wait("a", "price:EUR/USD"),
            call("a", "unsubscribe:price", "EURUSD"),
            checkpoint("unsubscribed"),
            wait("a", "price:GBP/USD"),
            call("a", "subscribe:price", "EURXYZ"),
            wait("a", "error", code="INVALID_ARGUMENT"),
            {"op": "state", "client": "a"},
        ],
        {"subscribed": first_quote, "unsubscribed": after_unsubscribing},
    )
    assert run.acks("a", "subscribe:price")[:2] == [
        {"subscribed": "price:EUR/USD"},
        {"subscribed": "price:GBP/USD"},
    ]
    assert run.acks("a", "unsubscribe:price") == [{"unsubscribed": "price:EUR/USD"}]
    # The EUR/USD quote published after unsubscribing came before the GBP/USD one.
    [quote] = run.events("a", "price:EUR/USD")
    assert set(quote) >= {"pair", "price", "high", "low", "timestamp"}
    assert (quote["pair"], quote["price"]) == ("EUR/USD", pytest.approx(1.0841))
    assert quote["low"] < quote["price"] < quote["high"]
    assert run.events("a", "price:GBP/USD")[0]["price"] == pytest.approx(1.2711)
    [error] = run.events("a", "error")
    assert "EUR/XYZ" in error["message"]
    assert run.of("a", "state")[0]["connected"]


async def test_market_update_on_subscribing_and_throttled(edge):
    """A subscriber gets the board on subscribing and then its changes, throttled: nine
    changes in a burst are not nine updates. Another socket subscribing in between
    (it gets the board at once) takes nothing from the first one."""
    (token, _), (late, _) = await edge.new_user(), await edge.new_user()
    signal = new_signal("USD/JPY", "1h", entry=151.2)
    quotes = [151.20 + n / 100 for n in range(8)]

    async def changes() -> None:
        await following_signals(edge)
        await following_prices(edge)
        await edge.streams.publish(signal)
        for price in quotes:
            await edge.streams.publish_price(price_update("USD/JPY", price))

    last = {"pair": "USD/JPY", "signal": "buy", "price": quotes[-1]}
    run = await drive(
        edge.public,
        {"a": {"token": token}, "late": {"token": late}},
        [
            connect("a"),
            call("a", "subscribe:signals"),
            wait("a", "market:update"),
            connect("late"),
            call("late", "subscribe:price", "USD/JPY"),
            checkpoint("changes"),
            wait("late", "price:USD/JPY", price=quotes[-1]),  # the edge has them all
            call("late", "subscribe:signals"),
            wait("late", "market:update", pairs=[last]),
            wait("a", "market:update", pairs=[last]),
        ],
        {"changes": changes},
    )
    updates = run.events("a", "market:update")
    assert isinstance(updates[0]["pairs"], list)
    [row] = [p for p in updates[-1]["pairs"] if p["pair"] == "USD/JPY"]
    assert set(row) >= {"pair", "signal", "confidence", "price", "change", "changePercent"}
    assert row["confidence"] == pytest.approx(0.7)
    assert row["change"] == pytest.approx(quotes[-1] - quotes[0])
    assert row["changePercent"] == pytest.approx((quotes[-1] / quotes[0] - 1) * 100)
    broadcasts = run.times("a", "market:update")[1:]
    assert len(broadcasts) <= 3, updates
    least = MARKET_UPDATE_INTERVAL * 1000 * 0.7  # ms, with the timers' slack
    assert all(b - a >= least for a, b in itertools.pairwise(broadcasts)), broadcasts
    # On subscribing, the board as it is (the late socket saw every change first).
    [row] = [p for p in run.events("late", "market:update")[0]["pairs"] if p["pair"] == "USD/JPY"]
    assert row["price"] == quotes[-1]


# --- notifications ----------------------------------------------------------------------


async def test_each_user_gets_only_their_own_notifications_and_resumes_them(edge):
    """Events of Alice and Bob interleaved on the stream: each socket gets its user's
    only. Alice disconnects, two of hers and one of Bob's pass (Bob's shows the edge
    relayed them), she reconnects with her last id and gets her two, in order, once."""
    (alice, alice_id), (bob, bob_id) = await edge.new_user(), await edge.new_user()
    a, b = alice_id, bob_id
    owners = [a, b, a, b, a, a, b, a, b]
    kinds = list(itertools.islice(itertools.cycle(NOTIFICATION_TYPES), len(owners)))
    events = [position_event(next(_ids), o, k) for o, k in zip(owners, kinds, strict=True)]
    ids = [str(e.id) for e in events]
    mine = {who: [i for i, o in zip(ids, owners, strict=True) if o == who] for who in (a, b)}

    def publish(*which: int) -> Checkpoint:
        async def act() -> None:
            await following_positions(edge)
            for n in which:
                await edge.streams.publish_position_event(events[n])

        return act

    run = await drive(
        edge.public,
        {"alice": {"token": alice}, "bob": {"token": bob}},
        [
            connect("alice"),
            connect("bob"),
            call("alice", "subscribe:notifications"),
            call("bob", "subscribe:notifications"),
            checkpoint("four"),
            wait("alice", "notification", id=ids[2]),
            wait("bob", "notification", id=ids[3]),
            {"op": "disconnect", "client": "alice"},
            checkpoint("three while away"),
            wait("bob", "notification", id=ids[6]),
            connect("alice"),
            call(
                "alice",
                "subscribe:notifications",
                {"lastNotificationId": "$last:alice:notification"},
            ),
            wait("alice", "notification", id=ids[5]),
            checkpoint("one each"),
            wait("alice", "notification", id=ids[7]),
            wait("bob", "notification", id=ids[8]),
        ],
        {
            "four": publish(0, 1, 2, 3),
            "three while away": publish(4, 5, 6),
            "one each": publish(7, 8),
        },
    )
    assert run.acks("alice", "subscribe:notifications") == [
        {"subscribed": "notifications", "resumed": 0},
        {"subscribed": "notifications", "resumed": 2},
    ]
    assert run.acks("bob", "subscribe:notifications") == [
        {"subscribed": "notifications", "resumed": 0}
    ]
    assert [n["id"] for n in run.events("alice", "notification")] == mine[a]
    assert [n["id"] for n in run.events("bob", "notification")] == mine[b]
    received = run.events("alice", "notification") + run.events("bob", "notification")
    by_id = {n["id"]: n for n in received}
    for event, kind in zip(events, kinds, strict=True):
        note = by_id[str(event.id)]
        assert set(note) >= {"id", "type", "message", "timestamp", "position"}, note
        assert note["type"] == NOTIFICATION_TYPES[kind], note
        assert note["position"]["userId"] == event.position.user_id
        assert "EUR/USD" in note["message"]


# --- token expiry -----------------------------------------------------------------------

EXPIRY_SECONDS = 4


def expiry_ms(token: str) -> int:
    """The token's `exp`, in epoch ms."""
    return jwt.decode(token, options={"verify_signature": False})["exp"] * 1000


def iso_ms(moment: str) -> int:
    return int(datetime.fromisoformat(moment).timestamp() * 1000)


async def test_an_expiring_token_is_warned_then_the_socket_is_closed(edge):
    _, user = await edge.new_user()
    token = edge.token(user, expires_in=EXPIRY_SECONDS)
    expires_ms = expiry_ms(token)
    run = await drive(
        edge.public,
        {"a": {"token": token}},
        [
            connect("a"),
            call("a", "subscribe:signals"),
            wait("a", "auth:expiring"),
            wait("a", "error", code="TOKEN_EXPIRED"),
            {"op": "disconnected", "client": "a"},
        ],
    )
    [warning] = run.events("a", "auth:expiring")
    assert iso_ms(warning["expiresAt"]) == expires_ms
    [error] = run.events("a", "error")
    assert error["message"]
    [closed] = run.of("a", "disconnect")
    assert closed["reason"] == "io server disconnect"
    order = run.order("a")
    assert order.index("auth:expiring") < order.index("error") < order.index("disconnect")
    assert run.times("a", "auth:expiring")[0] < expires_ms <= closed["at"] + 500


async def test_a_refreshed_token_keeps_the_socket_and_a_wrong_one_is_refused(edge):
    _, user = await edge.new_user()
    _, other = await edge.new_user()
    first, fresh = edge.token(user, EXPIRY_SECONDS), edge.token(user, expires_in=600)
    last = new_signal()

    async def publish() -> None:
        await following_signals(edge)
        await edge.streams.publish(last)

    run = await drive(
        edge.public,
        {"a": {"token": first}},
        [
            connect("a"),
            call("a", "subscribe:signals"),
            wait("a", "auth:expiring"),
            call("a", "auth:refresh", {"token": edge.token(other, expires_in=600)}),
            call("a", "auth:refresh", {"token": "not-a-jwt"}),
            call("a", "auth:refresh", {"token": fresh}),
            {"op": "until", "epochMs": expiry_ms(first) + 1500},
            checkpoint("past the first expiry"),
            wait("a", "trading:signal", id=last.id),
            {"op": "state", "client": "a"},
        ],
        {"past the first expiry": publish},
    )
    other_user, invalid, accepted = run.acks("a", "auth:refresh")
    for refused in (other_user, invalid):
        assert refused["ok"] is False and refused["code"] and refused["message"], refused
    assert accepted["ok"] is True and iso_ms(accepted["expiresAt"]) == expiry_ms(fresh)
    assert not [e for e in run.events("a", "error") if e.get("code") == "TOKEN_EXPIRED"]
    assert run.of("a", "state")[0]["connected"] and not run.of("a", "disconnect")
