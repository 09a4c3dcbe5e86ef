"""The market overview behind the old system's `market:update` event:
`{pairs: [{pair, signal, change}]}` — per pair, the latest signal and how far the price
has moved. Plain Python, fed by the relays, read by a throttled broadcaster.

"change" is the move since the day's first quote of that pair (the day of the quote's
market time, UTC, so a historical replay gets its own market days, not today's), in price
units and in percent. `changed` tells the broadcaster whether there is anything new to
send, so an idle market costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Row:
    pair: str
    signal: dict[str, Any] | None = None
    price: float | None = None
    day: str | None = None
    day_open: float | None = None
    timestamp: str | None = None


@dataclass
class MarketBoard:
    """The latest signal and price per pair."""

    _rows: dict[str, _Row] = field(default_factory=dict)
    changed: bool = False

    def _row(self, pair: str) -> _Row:
        return self._rows.setdefault(pair, _Row(pair))

    def on_signal(self, event: dict[str, Any]) -> None:
        """A `trading:signal` payload."""
        self._row(event["pair"]).signal = event
        self.changed = True

    def on_price(self, event: dict[str, Any]) -> None:
        """A `price:<PAIR>` payload; its ISO timestamp's date is the market day."""
        row = self._row(event["pair"])
        day = str(event["timestamp"])[:10]
        if day != row.day:
            row.day, row.day_open = day, float(event["price"])
        row.price, row.timestamp = float(event["price"]), event["timestamp"]
        self.changed = True

    def snapshot(self) -> dict[str, Any]:
        """The `market:update` payload, pairs sorted by name."""
        return {"pairs": [_entry(row) for _, row in sorted(self._rows.items())]}


def _entry(row: _Row) -> dict[str, Any]:
    signal = row.signal or {}
    change = None
    percent = None
    if row.price is not None and row.day_open:
        change = row.price - row.day_open
        percent = change / row.day_open * 100
    return {
        "pair": row.pair,
        "signal": signal.get("signal"),
        "confidence": signal.get("confidence"),
        "timeframe": signal.get("timeframe"),
        "signalId": signal.get("id"),
        "signalTime": signal.get("timestamp"),
        "price": row.price,
        "change": change,
        "changePercent": percent,
        "timestamp": row.timestamp,
    }
