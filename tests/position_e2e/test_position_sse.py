"""A user's position events as Server-Sent Events through a real Envoy, as a browser's
EventSource reads them: the token in `?access_token=`, `text/event-stream`, one
`data: {json}` event per message; OPENED then the close event, and a resume from an
event id that replays what came after it, then a heartbeat, with no duplicate. Runs on
both backends."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.position_e2e.conftest import EVENTS_PATH, POSITIONS_PATH, PositionEdge
from tests.position_e2e.test_position_rest import entry_near_market, open_body, open_position
from tests.signal_e2e.conftest import bearer, error_body, violations
from tests.signal_e2e.test_signal_sse import event_stream

pytestmark = pytest.mark.e2e


def events_of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["event"] for m in messages if "event" in m]


def heartbeat_last(messages: list[dict[str, Any]]) -> bool:
    """Until the heartbeat that ends a replay."""
    return bool(messages) and "heartbeat" in messages[-1]


def has_events(count: int):
    return lambda messages: len(events_of(messages)) >= count


async def test_opened_then_closed_as_server_sent_events(
    position_edge: PositionEdge, http: httpx.AsyncClient
):
    token = await position_edge.new_user()
    stranger = await position_edge.new_user()
    entry = await entry_near_market(position_edge)
    params = {"access_token": token, "resumeAfterId": 0}
    async with event_stream(http, EVENTS_PATH, params) as sse:
        # Nothing to replay for a new user: the heartbeat marks the switch to live.
        first = await sse.next()
        assert "heartbeat" in first and first["heartbeat"]["time"], first

        await open_position(http, stranger, open_body(entry))  # someone else's: not sent
        position = await open_position(http, token, open_body(entry, lotSize="0.30"))
        closed = await http.post(
            f"{POSITIONS_PATH}/{position['id']}:close",
            json={"exitPrice": str(entry - Decimal("0.0005"))},
            headers=bearer(token),
        )
        assert closed.status_code == 200, closed.text
        events = events_of(await sse.until(has_events(2)))

    opened, close = events
    assert opened["type"] == "POSITION_EVENT_TYPE_OPENED"
    assert opened["position"]["id"] == position["id"]
    assert opened["position"]["status"] == "POSITION_STATUS_OPEN"
    assert close["type"] == "POSITION_EVENT_TYPE_CLOSED"
    assert close["position"]["id"] == position["id"]
    assert close["position"]["closeReason"] == "CLOSE_REASON_MANUAL"
    assert close["position"]["result"] == "POSITION_RESULT_LOSS"
    assert close["position"]["pips"] == "-5"
    assert Decimal(close["position"]["realizedPnl"]) == Decimal("-15")
    # Ids are int64, written as JSON strings, increasing.
    assert isinstance(opened["id"], str) and int(close["id"]) > int(opened["id"])
    assert opened["time"] and close["time"]
    assert all(raw.count(b"data: ") == 1 for raw in sse.raw_events)

    # Resume after the OPENED event: the CLOSED event is replayed, then the heartbeat.
    params = {"access_token": token, "resumeAfterId": opened["id"]}
    async with event_stream(http, EVENTS_PATH, params) as sse:
        replayed = await sse.until(heartbeat_last)
    assert events_of(replayed) == [close]

    # Everything from the start, in order, without duplicates.
    params = {"access_token": token, "resumeAfterId": 0}
    async with event_stream(http, EVENTS_PATH, params) as sse:
        replayed = await sse.until(heartbeat_last)
    assert [e["id"] for e in events_of(replayed)] == [opened["id"], close["id"]]


async def test_event_stream_errors(position_edge: PositionEdge, http: httpx.AsyncClient):
    response = await http.get(
        EVENTS_PATH, params={"access_token": position_edge.access_token, "resumeAfterId": -1}
    )
    assert "resume_after_id" in violations(error_body(response, 400, 3))
    response = await http.get(EVENTS_PATH, params={"access_token": "not.a.jwt"})
    error_body(response, 401, 16)
