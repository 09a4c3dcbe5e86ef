"""position_svc's REST API through a real Envoy (issue 5, section 4): open (with the
idempotency key as a JSON field or as the `Idempotency-Key` header), list with filters
and AIP-158 pages, get, change a level with an update mask, close, performance (whose
literal path is not taken for a position id), and errors as google.rpc.Status JSON with
the HTTP status Envoy maps each gRPC code to. Runs on both backends.

The replay keeps moving the market while these run, so positions here either have no
levels or levels hundreds of pips away, which no bar of the few seconds replayed reaches.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import numpy as np
import pytest
import structlog

from common.market import Timeframe
from common.market_data import load_bundled_history
from tests.position_e2e.conftest import (
    BAR_SECONDS,
    PAIR,
    POSITIONS_PATH,
    PositionEdge,
    price_decimal,
)
from tests.signal_e2e.conftest import bearer, error_body, reason, violations

pytestmark = pytest.mark.e2e

POSITION_FIELDS = {
    "id",
    "userId",
    "pair",
    "side",
    "lotSize",
    "entryPrice",
    "stopLoss",
    "takeProfit",
    "status",
    "closeReason",
    "exitPrice",
    "result",
    "pips",
    "realizedPnl",
    "unrealizedPnl",
    "pnlCurrency",
    "currentPrice",
    "signalId",
    "openTime",
    "updateTime",
}
# Far enough from the market that the replay never reaches them during the tests.
FAR = Decimal("0.05")


async def entry_near_market(edge: PositionEdge) -> Decimal:
    """A price at the replay's current level, rounded to a pip."""
    return price_decimal((await edge.market_price()).price).quantize(Decimal("0.0001"))


def open_body(entry: Decimal | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"pair": "EURUSD", "side": "TRADE_ACTION_BUY", "lotSize": "0.10"}
    if entry is not None:
        body["entryPrice"] = str(entry)
    body.update(fields)
    return body


async def open_position(http: httpx.AsyncClient, token: str, body: dict[str, Any]) -> dict:
    response = await http.post(POSITIONS_PATH, json=body, headers=bearer(token))
    assert response.status_code == 200, response.text
    return dict(response.json()["position"])


async def test_open_with_an_idempotency_key_field_returns_the_same_position_on_retry(
    position_edge: PositionEdge, http: httpx.AsyncClient
):
    token = await position_edge.new_user()
    entry = await entry_near_market(position_edge)
    key = str(uuid.uuid4())
    body = open_body(
        entry,
        stopLoss=str(entry - FAR),
        takeProfit=str(entry + FAR),
        signalId="42",
        idempotencyKey=key,
    )

    first = await open_position(http, token, body)
    retry = await open_position(http, token, body)

    assert set(first) >= POSITION_FIELDS, first
    assert uuid.UUID(first["id"])
    assert first["pair"] == "EUR/USD"  # "EURUSD" normalised
    assert first["side"] == "TRADE_ACTION_BUY"
    assert first["lotSize"] == "0.10"
    assert Decimal(first["entryPrice"]) == entry
    assert Decimal(first["stopLoss"]) == entry - FAR
    assert Decimal(first["takeProfit"]) == entry + FAR
    assert first["status"] == "POSITION_STATUS_OPEN"
    assert first["closeReason"] == "CLOSE_REASON_UNSPECIFIED"
    assert first["result"] == "POSITION_RESULT_UNSPECIFIED"
    assert first["exitPrice"] == first["realizedPnl"] == ""
    assert first["pnlCurrency"] == "USD"
    assert first["signalId"] == "42"
    assert retry["id"] == first["id"]

    listed = await http.get(POSITIONS_PATH, headers=bearer(token))
    assert [p["id"] for p in listed.json()["positions"]] == [first["id"]]

    # The same key with different parameters is refused: ALREADY_EXISTS, HTTP 409.
    changed = {**body, "lotSize": "0.20"}
    response = await http.post(POSITIONS_PATH, json=changed, headers=bearer(token))
    body_409 = error_body(response, 409, 6)
    assert reason(body_409) == "IDEMPOTENCY_KEY_REUSED"
    assert first["id"] in body_409["message"]


async def test_open_with_the_idempotency_key_header(
    position_edge: PositionEdge, http: httpx.AsyncClient
):
    token = await position_edge.new_user()
    entry = await entry_near_market(position_edge)
    headers = {**bearer(token), "Idempotency-Key": f"retry-{uuid.uuid4()}"}

    first = await http.post(POSITIONS_PATH, json=open_body(entry), headers=headers)
    retry = await http.post(POSITIONS_PATH, json=open_body(entry), headers=headers)
    assert first.status_code == retry.status_code == 200, (first.text, retry.text)
    assert retry.json()["position"]["id"] == first.json()["position"]["id"]

    other = await http.post(
        POSITIONS_PATH, json=open_body(entry, side="TRADE_ACTION_SELL"), headers=headers
    )
    assert reason(error_body(other, 409, 6)) == "IDEMPOTENCY_KEY_REUSED"

    # Without a key every request opens a position of its own.
    plain = bearer(token)
    a = await open_position(http, token, open_body(entry))
    b = await http.post(POSITIONS_PATH, json=open_body(entry), headers=plain)
    assert b.json()["position"]["id"] != a["id"]
    listed = await http.get(POSITIONS_PATH, headers=plain)
    assert len(listed.json()["positions"]) == 3


async def replayed_closes(edge: PositionEdge, since: Any) -> set[Decimal]:
    """The closes of the bars the replay closed from market time `since` until now, and
    of the bar before (the watcher may not have processed the newest tick yet): what a
    price taken at market meanwhile can be."""
    now = (await edge.market_price()).time.ToSeconds()
    history = load_bundled_history(PAIR, Timeframe.H1)
    closes = history.times + BAR_SECONDS
    first, last = np.searchsorted(closes, [since.ToSeconds(), now])
    return {price_decimal(close) for close in history.close[max(0, first - 1) : last + 1]}


async def test_open_at_market_takes_the_replayed_price(
    position_edge: PositionEdge, http: httpx.AsyncClient
):
    token = await position_edge.new_user()
    before = await position_edge.market_price()
    position = await open_position(http, token, open_body(None))
    replayed = await replayed_closes(position_edge, before.time)
    entry = Decimal(position["entryPrice"])
    assert entry in replayed
    # The unrealized figures are at the latest price the service knows (usually the
    # entry itself; the watcher may have seen a later bar meanwhile).
    current = Decimal(position["currentPrice"])
    assert current in replayed
    assert Decimal(position["pips"]) == (current - entry) / Decimal("0.0001")
    assert Decimal(position["unrealizedPnl"]) == (current - entry) * 10_000


async def test_get_position_and_someone_elses_is_not_found(
    position_edge: PositionEdge, http: httpx.AsyncClient
):
    owner = await position_edge.new_user()
    stranger = await position_edge.new_user()
    position = await open_position(http, owner, open_body(await entry_near_market(position_edge)))
    path = f"{POSITIONS_PATH}/{position['id']}"

    mine = await http.get(path, headers=bearer(owner))
    assert mine.status_code == 200, mine.text
    got = mine.json()["position"]
    assert got["id"] == position["id"]
    assert got["status"] == "POSITION_STATUS_OPEN"
    # An open position reports the latest price and the PnL at it.
    assert got["currentPrice"] and got["pips"] and got["unrealizedPnl"], got

    for response in (
        await http.get(path, headers=bearer(stranger)),
        await http.patch(
            path,
            params={"updateMask": "stopLoss"},
            json={"stopLoss": "1.0"},
            headers=bearer(stranger),
        ),
        await http.post(f"{path}:close", json={}, headers=bearer(stranger)),
        await http.get(f"{POSITIONS_PATH}/{uuid.uuid4()}", headers=bearer(owner)),
    ):
        assert reason(error_body(response, 404, 5)) == "POSITION_NOT_FOUND"
    # Untouched by the stranger's attempts.
    again = (await http.get(path, headers=bearer(owner))).json()["position"]
    assert again["status"] == "POSITION_STATUS_OPEN"
    assert again["stopLoss"] == ""


async def test_list_filters_and_pages(position_edge: PositionEdge, http: httpx.AsyncClient):
    token = await position_edge.new_user()
    entry = await entry_near_market(position_edge)
    opened = [
        (await open_position(http, token, open_body(entry, lotSize=lots)))["id"]
        for lots in ("0.01", "0.02", "0.03")
    ]
    closed = await http.post(
        f"{POSITIONS_PATH}/{opened[0]}:close",
        json={"exitPrice": str(entry)},
        headers=bearer(token),
    )
    assert closed.status_code == 200, closed.text

    async def listing(**params: Any) -> dict[str, Any]:
        response = await http.get(POSITIONS_PATH, params=params, headers=bearer(token))
        assert response.status_code == 200, response.text
        return dict(response.json())

    everything = await listing()
    assert [p["id"] for p in everything["positions"]] == opened[::-1]  # newest first
    assert everything["nextPageToken"] == ""

    first = await listing(pageSize=2)
    assert [p["id"] for p in first["positions"]] == opened[:0:-1]
    assert first["nextPageToken"]
    second = await listing(pageSize=2, pageToken=first["nextPageToken"])
    assert [p["id"] for p in second["positions"]] == [opened[0]]
    assert second["nextPageToken"] == ""

    open_only = await listing(status="POSITION_STATUS_OPEN")
    assert [p["id"] for p in open_only["positions"]] == opened[:0:-1]
    closed_only = await listing(status="POSITION_STATUS_CLOSED", pair="eur/usd")
    assert [p["id"] for p in closed_only["positions"]] == [opened[0]]
    assert closed_only["positions"][0]["closeReason"] == "CLOSE_REASON_MANUAL"
    assert (await listing(pair="GBPUSD"))["positions"] == []

    # A page token belongs to its filters.
    response = await http.get(
        POSITIONS_PATH,
        params={"pageSize": 1, "pageToken": first["nextPageToken"], "status": "2"},
        headers=bearer(token),
    )
    assert "page_token" in violations(error_body(response, 400, 3))
    response = await http.get(
        POSITIONS_PATH, params={"pageToken": "not-a-token"}, headers=bearer(token)
    )
    assert "page_token" in violations(error_body(response, 400, 3))
    response = await http.get(POSITIONS_PATH, params={"pair": "XXXYYY"}, headers=bearer(token))
    assert "pair" in violations(error_body(response, 400, 3))


async def test_update_stop_loss_with_an_update_mask(
    position_edge: PositionEdge, http: httpx.AsyncClient
):
    token = await position_edge.new_user()
    entry = await entry_near_market(position_edge)
    position = await open_position(
        http, token, open_body(entry, stopLoss=str(entry - FAR), takeProfit=str(entry + FAR))
    )
    path = f"{POSITIONS_PATH}/{position['id']}"
    new_stop = entry - FAR / 2

    # Only the masked field changes, whatever else the body carries.
    response = await http.patch(
        path,
        params={"updateMask": "stopLoss"},
        json={"stopLoss": str(new_stop), "takeProfit": str(entry + FAR * 2)},
        headers=bearer(token),
    )
    assert response.status_code == 200, response.text
    updated = response.json()["position"]
    assert Decimal(updated["stopLoss"]) == new_stop
    assert Decimal(updated["takeProfit"]) == entry + FAR
    assert datetime.fromisoformat(updated["updateTime"]) > datetime.fromisoformat(
        position["updateTime"]
    )
    fetched = (await http.get(path, headers=bearer(token))).json()["position"]
    assert Decimal(fetched["stopLoss"]) == new_stop

    # Removing the take-profit: an empty value with its path in the mask.
    response = await http.patch(
        path, params={"updateMask": "takeProfit"}, json={"takeProfit": ""}, headers=bearer(token)
    )
    assert response.status_code == 200, response.text
    assert response.json()["position"]["takeProfit"] == ""

    # A stop-loss above the price of a BUY, and a path that cannot change.
    response = await http.patch(
        path,
        params={"updateMask": "stopLoss"},
        json={"stopLoss": str(entry + FAR)},
        headers=bearer(token),
    )
    assert "position.stop_loss" in violations(error_body(response, 400, 3))
    response = await http.patch(
        path, params={"updateMask": "lotSize"}, json={"lotSize": "1"}, headers=bearer(token)
    )
    assert "update_mask" in violations(error_body(response, 400, 3))


async def test_close_manually_then_changes_fail_with_failed_precondition(
    position_edge: PositionEdge, http: httpx.AsyncClient
):
    token = await position_edge.new_user()
    entry = await entry_near_market(position_edge)
    sell = await open_position(
        http, token, open_body(entry, side="TRADE_ACTION_SELL", lotSize="0.25")
    )
    path = f"{POSITIONS_PATH}/{sell['id']}"
    exit_price = entry - Decimal("0.00123")  # 12.3 pips in the SELL's favour

    response = await http.post(
        f"{path}:close", json={"exitPrice": str(exit_price)}, headers=bearer(token)
    )
    assert response.status_code == 200, response.text
    closed = response.json()["position"]
    assert closed["status"] == "POSITION_STATUS_CLOSED"
    assert closed["closeReason"] == "CLOSE_REASON_MANUAL"
    assert closed["result"] == "POSITION_RESULT_WIN"
    assert Decimal(closed["exitPrice"]) == exit_price
    assert closed["pips"] == "12.3"
    assert Decimal(closed["realizedPnl"]) == Decimal("30.75")  # 0.00123 x 0.25 x 100,000
    assert closed["unrealizedPnl"] == closed["currentPrice"] == ""
    assert closed["closeTime"]

    # Envoy turns FAILED_PRECONDITION into HTTP 400.
    again = await http.post(f"{path}:close", json={}, headers=bearer(token))
    assert reason(error_body(again, 400, 9)) == "POSITION_CLOSED"
    patch = await http.patch(
        path,
        params={"updateMask": "stopLoss"},
        json={"stopLoss": str(entry + FAR)},
        headers=bearer(token),
    )
    assert reason(error_body(patch, 400, 9)) == "POSITION_CLOSED"


async def test_close_at_market(position_edge: PositionEdge, http: httpx.AsyncClient):
    token = await position_edge.new_user()
    entry = await entry_near_market(position_edge)
    position = await open_position(http, token, open_body(entry, lotSize="1"))
    before = await position_edge.market_price()
    response = await http.post(
        f"{POSITIONS_PATH}/{position['id']}:close", json={}, headers=bearer(token)
    )
    assert response.status_code == 200, response.text
    closed = response.json()["position"]
    exit_price = Decimal(closed["exitPrice"])
    assert exit_price in await replayed_closes(position_edge, before.time)
    assert Decimal(closed["pips"]) == (exit_price - entry) / Decimal("0.0001")
    assert Decimal(closed["realizedPnl"]) == (exit_price - entry) * 100_000


async def test_performance_is_not_taken_for_a_position_id(
    position_edge: PositionEdge, http: httpx.AsyncClient
):
    token = await position_edge.new_user()
    entry = await entry_near_market(position_edge)
    trades = [
        # side, lots, exit: +20 pips x 0.10 = +20.00 USD, then -10 pips x 0.50 = -50.00 USD
        ("TRADE_ACTION_BUY", "0.10", entry + Decimal("0.0020")),
        ("TRADE_ACTION_SELL", "0.50", entry + Decimal("0.0010")),
    ]
    for side, lots, exit_price in trades:
        position = await open_position(http, token, open_body(entry, side=side, lotSize=lots))
        response = await http.post(
            f"{POSITIONS_PATH}/{position['id']}:close",
            json={"exitPrice": str(exit_price)},
            headers=bearer(token),
        )
        assert response.status_code == 200, response.text
    await open_position(http, token, open_body(entry))  # open: not counted

    response = await http.get(f"{POSITIONS_PATH}/performance", headers=bearer(token))
    assert response.status_code == 200, response.text
    body = response.json()
    performance = body["performance"]
    assert performance["trades"] == 2
    assert performance["wins"] == performance["losses"] == 1
    assert performance["breakevens"] == 0
    assert performance["winRate"] == 0.5
    assert Decimal(performance["totalPips"]) == 10
    assert Decimal(performance["totalPnl"]) == Decimal("-30")
    assert performance["profitFactor"] == pytest.approx(0.4)
    assert Decimal(performance["maxDrawdown"]) == 50
    assert performance["currency"] == "USD"
    assert [p["pair"] for p in performance["pairs"]] == ["EUR/USD"]
    curve = performance["equityCurve"]
    assert [Decimal(p["cumulativePnl"]) for p in curve] == [20, -30]
    assert [Decimal(p["cumulativePips"]) for p in curve] == [20, 10]
    assert body["until"]

    day = await http.get(
        f"{POSITIONS_PATH}/performance",
        params={"period": "PERFORMANCE_PERIOD_DAY", "pair": "EURUSD"},
        headers=bearer(token),
    )
    assert day.status_code == 200, day.text
    assert day.json()["performance"]["trades"] == 2
    assert day.json()["since"]

    other = await http.get(
        f"{POSITIONS_PATH}/performance", headers=bearer(await position_edge.new_user())
    )
    assert other.json()["performance"]["trades"] == 0


async def test_bad_input_is_400_with_the_fields_named(
    position_edge: PositionEdge, http: httpx.AsyncClient
):
    token = await position_edge.new_user()
    entry = await entry_near_market(position_edge)
    response = await http.post(
        POSITIONS_PATH,
        json=open_body(
            entry, lotSize="0.001", stopLoss=str(entry + Decimal("0.001")), takeProfit="1e2"
        ),
        headers=bearer(token),
    )
    fields = violations(error_body(response, 400, 3))
    assert set(fields) == {"lot_size", "stop_loss", "take_profit"}, fields

    response = await http.post(
        POSITIONS_PATH, json={"pair": "EURUSD", "lotSize": "0.1"}, headers=bearer(token)
    )
    assert "side" in violations(error_body(response, 400, 3))
    response = await http.post(
        POSITIONS_PATH, json=open_body(entry, pair="ABC/XYZ"), headers=bearer(token)
    )
    assert "pair" in violations(error_body(response, 400, 3))
    # An idempotency key too long for the contract.
    response = await http.post(
        POSITIONS_PATH, json=open_body(entry, idempotencyKey="k" * 65), headers=bearer(token)
    )
    assert "idempotency_key" in violations(error_body(response, 400, 3))
    # Nothing was opened by any of them.
    listed = await http.get(POSITIONS_PATH, headers=bearer(token))
    assert listed.json()["positions"] == []


async def test_no_token_is_401(position_edge: PositionEdge, http: httpx.AsyncClient):
    position = await open_position(
        http, position_edge.access_token, open_body(await entry_near_market(position_edge))
    )
    for method, path in (
        ("POST", POSITIONS_PATH),
        ("GET", POSITIONS_PATH),
        ("GET", f"{POSITIONS_PATH}/{position['id']}"),
        ("PATCH", f"{POSITIONS_PATH}/{position['id']}"),
        ("POST", f"{POSITIONS_PATH}/{position['id']}:close"),
        ("GET", f"{POSITIONS_PATH}/performance"),
        ("GET", f"{POSITIONS_PATH}/events:stream"),
    ):
        response = await http.request(method, path, json={} if method != "GET" else None)
        error_body(response, 401, 16)
        bad = await http.request(
            method, path, headers=bearer("not.a.jwt"), json={} if method != "GET" else None
        )
        error_body(bad, 401, 16)


class RpcLines:
    """The per-RPC log lines (method, code, request id) every service in this process
    writes, captured with the request id structlog binds to each RPC."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def __call__(self, logger: object, method: str, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("event") == "rpc":
            self.lines.append(event)
        raise structlog.DropEvent

    def ids_of(self, method: str) -> list[str]:
        return [line.get("request_id", "") for line in self.lines if line["method"] == method]


async def test_one_request_id_in_the_log_of_every_service_a_request_touched(
    position_edge: PositionEdge, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Opening at market goes Envoy → position_svc (OpenPosition) → signal_svc
    (GetPriceInternal, for the market price): both log the request id Envoy returns."""
    token = await position_edge.new_user()
    lines = RpcLines()
    previous = structlog.get_config()
    caplog.set_level(logging.DEBUG, logger="rpc")  # a successful RPC's line is DEBUG
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, lines])
    try:
        response = await http.post(POSITIONS_PATH, json=open_body(None), headers=bearer(token))
    finally:
        structlog.configure(**previous)
    assert response.status_code == 200, response.text
    request_id = response.headers["x-request-id"]
    assert request_id
    assert lines.ids_of("/aifx.position.v1.PositionService/OpenPosition") == [request_id]
    assert lines.ids_of("/aifx.signal.v1.SignalInternalService/GetPriceInternal") == [request_id]


async def test_side_status_and_period_as_traders_write_them(
    position_edge: PositionEdge, http: httpx.AsyncClient
):
    token = await position_edge.new_user()
    entry = await entry_near_market(position_edge)
    bought = await open_position(http, token, open_body(entry, side="buy"))
    sold = await open_position(http, token, open_body(entry, side="Sell"))
    assert (bought["side"], sold["side"]) == ("TRADE_ACTION_BUY", "TRADE_ACTION_SELL")
    listed = await http.get(POSITIONS_PATH, params={"status": "open"}, headers=bearer(token))
    assert listed.status_code == 200, listed.text
    assert {p["id"] for p in listed.json()["positions"]} == {bought["id"], sold["id"]}
    performance = await http.get(
        f"{POSITIONS_PATH}/performance", params={"period": "month"}, headers=bearer(token)
    )
    assert performance.status_code == 200, performance.text

    refused = await http.post(
        POSITIONS_PATH, json=open_body(entry, side="long"), headers=bearer(token)
    )
    body = error_body(refused, 400, 3)
    assert set(violations(body)) == {"side"} and "use one of buy, sell" in body["message"]
    assert "hold" not in body["message"]
    refused = await http.get(POSITIONS_PATH, params={"status": "pending"}, headers=bearer(token))
    assert set(violations(error_body(refused, 400, 3))) == {"status"}
    # HOLD is an action, but no side a position can take.
    hold = await http.post(
        POSITIONS_PATH, json=open_body(entry, side="hold"), headers=bearer(token)
    )
    hold_body = error_body(hold, 400, 3)
    assert set(violations(hold_body)) == {"side"} and "use one of buy, sell" in hold_body["message"]
