"""A USD/JPY position opened at market, through Envoy in the forms a trader types
("usdjpy", "buy"), closes on its take-profit with the right pips and USD PnL: the replay
plays the ECB's daily USD/JPY fixings (a closes-only series: a tick is one price), so the
take-profit is reached exactly when a fixing crosses it.

The plan is computed from the same fixings the replay plays: the entry is the fixing k
the replay is on; the hit fixing j is the first from k+2 on that goes one pipette past
every fixing from k to j-1 (up for a buy, down for a sell), and the take-profit is that
pipette past them, so fixing j is the only one to reach it; the stop-loss is far beyond
every fixing from k to j. A fixing lasts 2.4 s of real time at this replay speed.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

import httpx
import pytest

from aifx.signal.v1 import signal_pb2
from common.candles import Candles
from common.market_data.ecb import load_ecb_history
from tests.infra import eventually
from tests.position_e2e.conftest import POSITIONS_PATH, REPLAY_SPEED, PositionEdge, market_time
from tests.signal_e2e.conftest import bearer

pytestmark = pytest.mark.e2e

PAIR = "USD/JPY"
PIP = Decimal("0.01")
PIPETTE = Decimal("0.001")
LOTS = Decimal("0.10")
DAY = 86_400
MAX_FIXINGS_AHEAD = 8
ATTEMPTS = 5


@dataclass(frozen=True)
class Plan:
    side: str
    hit: int
    take_profit: Decimal
    stop_loss: Decimal


def fixing(fixings: Candles, index: int) -> Decimal:
    return Decimal(repr(round(float(fixings.close[index]), 3)))


def plan_from(fixings: Candles, k: int) -> Plan | None:
    """The first fixing after k+1 that alone reaches a take-profit, buy or sell."""
    for j in range(k + 2, min(k + MAX_FIXINGS_AHEAD, len(fixings))):
        before = [fixing(fixings, i) for i in range(k, j)]
        reached = fixing(fixings, j)
        span = [*before, reached]
        if reached >= max(before) + PIPETTE:
            return Plan("buy", j, max(before) + PIPETTE, min(span) - 1)
        if reached <= min(before) - PIPETTE:
            return Plan("sell", j, min(before) - PIPETTE, max(span) + 1)
    return None


async def replay_fixing(edge: PositionEdge, fixings: Candles) -> int:
    """The index of the USD/JPY fixing the replay is on."""
    response = await edge.signal_internal.GetPriceInternal(
        signal_pb2.GetPriceInternalRequest(pair=PAIR), metadata=edge.service_credential
    )
    opened_at = int(market_time(response.price.time).timestamp()) - DAY
    return list(fixings.times).index(opened_at)


async def test_a_usd_jpy_position_closes_on_its_take_profit_with_pips_and_usd_pnl(
    position_edge: PositionEdge, http: httpx.AsyncClient
) -> None:
    fixings = load_ecb_history([PAIR])[PAIR]
    token = await position_edge.new_user()
    for _ in range(ATTEMPTS):
        k = await replay_fixing(position_edge, fixings)
        plan = plan_from(fixings, k)
        if plan is None:  # nothing unambiguous from this fixing: wait for the next one
            await eventually(
                lambda k=k: _past(position_edge, fixings, k), "the next fixing", within=15
            )
            continue
        response = await http.post(
            POSITIONS_PATH,
            json={
                "pair": "usdjpy",
                "side": plan.side,
                "lotSize": str(LOTS),
                "stopLoss": str(plan.stop_loss),
                "takeProfit": str(plan.take_profit),
            },
            headers=bearer(token),
        )
        assert response.status_code == 200, response.text
        position = response.json()["position"]
        assert position["pair"] == PAIR and position["pnlCurrency"] == "JPY"
        k_after = await replay_fixing(position_edge, fixings)
        entry = Decimal(position["entryPrice"])
        assert entry in {fixing(fixings, i) for i in range(k, k_after + 1)}, (entry, k, k_after)
        if plan.hit > k_after and entry == fixing(fixings, k):
            break
        # The replay moved on while opening (a loaded machine): plan again.
        await http.post(
            f"{POSITIONS_PATH}/{position['id']}:close",
            json={"exitPrice": position["entryPrice"]},
            headers=bearer(token),
        )
    else:
        pytest.fail(f"no unambiguous plan could be opened in {ATTEMPTS} attempts")

    days = int(fixings.times[plan.hit] - fixings.times[k_after]) / DAY

    async def closed() -> dict | None:
        got = await http.get(f"{POSITIONS_PATH}/{position['id']}", headers=bearer(token))
        body = got.json()["position"]
        return body if body["status"] == "POSITION_STATUS_CLOSED" else None

    hit = await eventually(closed, "the take-profit", within=days * DAY / REPLAY_SPEED + 10)

    gained = (plan.take_profit - entry) * (1 if plan.side == "buy" else -1)
    assert hit["closeReason"] == "CLOSE_REASON_TAKE_PROFIT", hit
    assert hit["result"] == "POSITION_RESULT_WIN"
    assert Decimal(hit["exitPrice"]) == plan.take_profit
    assert Decimal(hit["pips"]) == gained / PIP
    in_yen = gained * LOTS * 100_000
    assert Decimal(hit["realizedPnl"]) == in_yen
    # In USD at the close: a USD/JPY position's own exit price is the rate.
    in_usd = (in_yen / plan.take_profit).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
    performance = await http.get(f"{POSITIONS_PATH}/performance", headers=bearer(token))
    assert performance.status_code == 200, performance.text
    figures = performance.json()["performance"]
    assert figures["currency"] == "USD"
    assert [(p["pair"], Decimal(p["totalPnl"])) for p in figures["pairs"]] == [(PAIR, in_usd)]
    assert Decimal(figures["totalPnl"]) == in_usd


async def _past(edge: PositionEdge, fixings: Candles, k: int) -> bool:
    return await replay_fixing(edge, fixings) > k
