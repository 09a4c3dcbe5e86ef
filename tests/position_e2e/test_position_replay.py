"""A position opened at market on a real EUR/USD bar closes on its take-profit at the
right bar with the right PnL (issue 5, section 5), through the whole chain: the real
signal_svc replays the bundled history, position_svc's watcher follows its price stream,
the user opens and watches through Envoy (REST and Server-Sent Events).

The expected outcome is computed from the same bundled history the replay plays
(common.market_data). The entry is the close of the replay's current bar k. The hit bar
j is the first bar from k+2 on whose high is above every high from k to j-1 AND above
every high of the WINDOW bars after it; the take-profit is one pipette (0.00001) above
the highest of those other highs. So bar j is the only bar from k to j+WINDOW that
reaches the take-profit: a take-profit close seen before the replay passes bar j+WINDOW
can only have been made on bar j's tick, however late the event arrives (a bar lasts
100 ms of real time here; the window gives a second of slack on a loaded machine). The
stop-loss is below every low from k to j+WINDOW, so bar j does not span both levels (the
stop-loss would win, see position_svc.pnl) and nothing else can close the position.
The open returns once the watcher watches the position; the replay may have moved on a
bar or two by then (the entry is then a later bar's close, which changes nothing above:
fewer bars before j). Bar j must come after the bar the replay is on right after the
open returned, or the attempt is discarded and planned again.

Weekend gaps: the next bar after a Friday close comes about 5 s later at this replay
speed; the wait for the event is computed from market time, so a plan across a weekend
just takes longer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import numpy as np
import pytest

from common.candles import Candles
from common.market import Timeframe
from common.market_data import load_bundled_history
from tests.position_e2e.conftest import (
    BAR_SECONDS,
    EVENTS_PATH,
    PAIR,
    POSITIONS_PATH,
    REPLAY_SPEED,
    PositionEdge,
    market_time,
    observed_ticks,
    price_decimal,
)
from tests.position_e2e.test_position_sse import events_of
from tests.signal_e2e.conftest import bearer
from tests.signal_e2e.test_signal_sse import event_stream

pytestmark = pytest.mark.e2e

PIP = Decimal("0.0001")
PIPETTE = Decimal("0.00001")
LOTS = Decimal("0.10")
# Bars after the hit bar that stay below the take-profit.
WINDOW = 10
# The bars a plan may look ahead for its hit bar: 4 s of replay (more across a weekend).
MAX_BARS_AHEAD = 40
ATTEMPTS = 10


@dataclass(frozen=True)
class Plan:
    entry_bar: int
    hit_bar: int
    take_profit: Decimal
    stop_loss: Decimal


def bar_close(history: Candles, bar: int) -> datetime:
    return datetime.fromtimestamp(int(history.times[bar]) + BAR_SECONDS, UTC)


def bar_index(history: Candles, close_time: datetime) -> int:
    """The bar closing at `close_time`."""
    bar = int(np.searchsorted(history.times + BAR_SECONDS, close_time.timestamp()))
    assert bar_close(history, bar) == close_time, close_time
    return bar


def plan_levels(history: Candles, k: int) -> Plan | None:
    """Levels for a BUY entered at the close of bar k whose take-profit only bar j
    reaches among bars k to j+WINDOW (see the module docstring); None when no bar up to
    MAX_BARS_AHEAD ahead qualifies."""
    high = [price_decimal(v) for v in history.high[k : k + MAX_BARS_AHEAD + WINDOW + 1]]
    low = [price_decimal(v) for v in history.low[k : k + MAX_BARS_AHEAD + WINDOW + 1]]
    for j in range(2, min(MAX_BARS_AHEAD, len(high) - WINDOW - 1) + 1):
        others = max([*high[:j], *high[j + 1 : j + 1 + WINDOW]])
        if high[j] > others:
            take_profit = others + PIPETTE
            stop_loss = (min(low[: j + 1 + WINDOW]) - 5 * PIP).quantize(PIP)
            return Plan(k, k + j, take_profit, stop_loss)
    return None


async def test_take_profit_closes_on_the_right_bar_with_the_exact_pnl(
    position_edge: PositionEdge, http: httpx.AsyncClient
):
    history = load_bundled_history(PAIR, Timeframe.H1)
    token = await position_edge.new_user()
    params = {"access_token": token, "resumeAfterId": 0}

    async with (
        observed_ticks(position_edge) as observer,
        event_stream(http, EVENTS_PATH, params) as sse,
    ):
        assert "heartbeat" in await sse.next()  # subscribed (nothing to replay)
        for _ in range(ATTEMPTS):
            before = await position_edge.market_price()
            k = bar_index(history, market_time(before.time))
            plan = plan_levels(history, k)
            if plan is None:  # nothing unambiguous from this bar: try the next one
                await observer.next_after(market_time(before.time), within=10.0)
                continue
            response = await http.post(
                POSITIONS_PATH,
                json={
                    "pair": PAIR,
                    "side": "TRADE_ACTION_BUY",
                    "lotSize": str(LOTS),
                    "stopLoss": str(plan.stop_loss),
                    "takeProfit": str(plan.take_profit),
                },
                headers=bearer(token),
            )
            assert response.status_code == 200, response.text
            position = response.json()["position"]
            # The open returned once the watcher watched the position, when the replay
            # was on bar k_after at the latest: it evaluates every bar after that one.
            k_after = bar_index(history, market_time((await position_edge.market_price()).time))
            entry = Decimal(position["entryPrice"])
            assert entry in {price_decimal(c) for c in history.close[k : k_after + 1]}, (
                entry,
                k,
                k_after,
            )
            if plan.hit_bar > k_after:
                break
            # The replay went past the hit bar's predecessor while opening (a loaded
            # machine): the position may never be hit. Close it and plan again.
            discard = await http.post(
                f"{POSITIONS_PATH}/{position['id']}:close",
                json={"exitPrice": position["entryPrice"]},
                headers=bearer(token),
            )
            assert discard.status_code in (200, 400), discard.text  # 400: already hit
        else:
            pytest.fail(f"no unambiguous plan could be opened in {ATTEMPTS} attempts")

        # Wait for the hit: until bar j closes in market time, plus slack.
        remaining = (bar_close(history, plan.hit_bar) - bar_close(history, k_after)).total_seconds()
        within = remaining / REPLAY_SPEED + 5.0

        def closed(messages: list[dict]) -> bool:
            return any(
                e["position"]["id"] == position["id"] and e["position"]["status"].endswith("CLOSED")
                for e in events_of(messages)
            )

        events = events_of(await sse.until(closed, within=within))
        arrived = time.monotonic()
        replay_bar = market_time((await position_edge.market_price()).time)
        seen = observer.seen_before(arrived)

    mine = [e for e in events if e["position"]["id"] == position["id"]]
    assert [e["type"] for e in mine] == [
        "POSITION_EVENT_TYPE_OPENED",
        "POSITION_EVENT_TYPE_TAKE_PROFIT_HIT",
    ], mine
    hit = mine[-1]["position"]

    # The outcome, exactly.
    gained = plan.take_profit - entry
    assert hit["closeReason"] == "CLOSE_REASON_TAKE_PROFIT"
    assert hit["result"] == "POSITION_RESULT_WIN"
    assert Decimal(hit["exitPrice"]) == plan.take_profit
    assert Decimal(hit["pips"]) == gained / PIP
    assert Decimal(hit["realizedPnl"]) == gained * LOTS * 100_000
    assert hit["pnlCurrency"] == "USD"
    stored = await http.get(f"{POSITIONS_PATH}/{position['id']}", headers=bearer(token))
    assert stored.json()["position"] == hit

    # On bar j: the replay had not gone past bar j+WINDOW when the event arrived (the
    # only bar reaching the take-profit until then is j), and the price stream carried
    # the bars as planned.
    hit_close = bar_close(history, plan.hit_bar)
    assert hit_close <= replay_bar <= bar_close(history, plan.hit_bar + WINDOW), (
        replay_bar,
        plan,
    )
    during = [t for t in seen if t.bar_close > bar_close(history, plan.entry_bar)]
    first = plan.entry_bar + 1
    assert [t.bar_close for t in during] == [
        bar_close(history, bar) for bar in range(first, first + len(during))
    ]
    assert [t.bar_close for t in during if t.high >= plan.take_profit] == [hit_close]
    assert all(t.low > plan.stop_loss for t in during)
