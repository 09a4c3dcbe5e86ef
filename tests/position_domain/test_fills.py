"""The fill policy: a level is hit by the tick's range, fills at the level even across a
gap, and the stop-loss wins when one tick crosses both levels."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from position_svc.pnl import Tick, level_hit
from position_svc.positions import CloseReason, Side

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
SL, TP = CloseReason.STOP_LOSS, CloseReason.TAKE_PROFIT


def tick(price: str, low: str | None = None, high: str | None = None) -> Tick:
    return Tick(
        pair="EUR/USD",
        price=Decimal(price),
        high=Decimal(high or price),
        low=Decimal(low or price),
        time=NOW,
    )


# BUY at 1.0850 with SL 1.0800 / TP 1.0950; SELL at 1.0850 with SL 1.0900 / TP 1.0750.
CASES = [
    # side, stop, target, tick, expected
    (Side.BUY, "1.0800", "1.0950", tick("1.0850"), None),
    (Side.BUY, "1.0800", "1.0950", tick("1.0801", low="1.0801"), None),
    (Side.BUY, "1.0800", "1.0950", tick("1.0800"), (SL, "1.0800")),
    (Side.BUY, "1.0800", "1.0950", tick("1.0820", low="1.0799"), (SL, "1.0800")),
    (Side.BUY, "1.0800", "1.0950", tick("1.0950"), (TP, "1.0950")),
    (Side.BUY, "1.0800", "1.0950", tick("1.0900", high="1.0951"), (TP, "1.0950")),
    # gaps: the price jumps past the level, the fill is still the level
    (Side.BUY, "1.0800", "1.0950", tick("1.0700"), (SL, "1.0800")),
    (Side.BUY, "1.0800", "1.0950", tick("1.1100"), (TP, "1.0950")),
    (Side.SELL, "1.0900", "1.0750", tick("1.0850"), None),
    (Side.SELL, "1.0900", "1.0750", tick("1.0900"), (SL, "1.0900")),
    (Side.SELL, "1.0900", "1.0750", tick("1.0880", high="1.0905"), (SL, "1.0900")),
    (Side.SELL, "1.0900", "1.0750", tick("1.0750"), (TP, "1.0750")),
    (Side.SELL, "1.0900", "1.0750", tick("1.0760", low="1.0749"), (TP, "1.0750")),
    (Side.SELL, "1.0900", "1.0750", tick("1.1000"), (SL, "1.0900")),
    (Side.SELL, "1.0900", "1.0750", tick("1.0600"), (TP, "1.0750")),
    # one tick's range crosses both levels: the stop-loss wins, whatever the last price
    (Side.BUY, "1.0800", "1.0950", tick("1.0960", low="1.0790", high="1.0960"), (SL, "1.0800")),
    (Side.SELL, "1.0900", "1.0750", tick("1.0700", low="1.0700", high="1.0950"), (SL, "1.0900")),
    # a missing level is never hit
    (Side.BUY, None, "1.0950", tick("1.0000"), None),
    (Side.BUY, "1.0800", None, tick("1.2000"), None),
    (Side.SELL, None, None, tick("1.5000", low="0.5000"), None),
    (Side.SELL, None, "1.0750", tick("1.0700", high="1.2000"), (TP, "1.0750")),
]


@pytest.mark.parametrize(("side", "stop", "target", "the_tick", "expected"), CASES)
def test_level_hit(side, stop, target, the_tick, expected):
    got = level_hit(
        side,
        None if stop is None else Decimal(stop),
        None if target is None else Decimal(target),
        the_tick,
    )
    if expected is None:
        assert got is None
    else:
        reason, price = got
        assert (reason, str(price)) == expected


def test_jpy_gap_fills_at_the_level():
    gap = Tick("USD/JPY", Decimal("149.500"), Decimal("149.500"), Decimal("149.500"), NOW)
    assert level_hit(Side.SELL, Decimal("152.000"), Decimal("150.000"), gap) == (
        TP,
        Decimal("150.000"),
    )


def test_a_tick_whose_range_excludes_its_price_is_refused():
    with pytest.raises(ValueError, match="does not contain its price"):
        Tick("EUR/USD", Decimal("1.09"), Decimal("1.085"), Decimal("1.08"), NOW)
