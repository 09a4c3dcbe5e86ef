"""market:update's board: the latest signal and the day's move per pair."""

from __future__ import annotations

import pytest

from edge.market_board import MarketBoard


def quote(price: float, timestamp: str, pair: str = "EUR/USD") -> dict:
    return {"pair": pair, "price": price, "timestamp": timestamp}


def test_the_move_is_from_the_first_quote_of_the_quotes_market_day():
    board = MarketBoard()
    board.on_price(quote(1.1000, "2024-03-01T00:00:00.000Z"))
    board.on_price(quote(1.1110, "2024-03-01T12:00:00.000Z"))
    [row] = board.snapshot()["pairs"]
    assert row["change"] == pytest.approx(0.0110)
    assert row["changePercent"] == pytest.approx(1.0)
    board.on_price(quote(1.1200, "2024-03-02T00:00:00.000Z"))  # a new market day
    [row] = board.snapshot()["pairs"]
    assert row["change"] == 0.0 and row["price"] == 1.12


def test_signals_and_prices_meet_per_pair_sorted_and_changed_tells_the_broadcaster():
    board = MarketBoard()
    assert board.snapshot() == {"pairs": []} and not board.changed
    board.on_signal({"id": "7", "pair": "GBP/USD", "signal": "sell", "confidence": 0.8})
    board.on_price(quote(1.08, "2024-03-01T00:00:00.000Z"))
    assert board.changed
    rows = board.snapshot()["pairs"]
    assert [r["pair"] for r in rows] == ["EUR/USD", "GBP/USD"]
    assert rows[0]["signal"] is None and rows[0]["price"] == 1.08
    assert rows[1]["signal"] == "sell" and rows[1]["signalId"] == "7"
    assert rows[1]["price"] is None and rows[1]["change"] is None
