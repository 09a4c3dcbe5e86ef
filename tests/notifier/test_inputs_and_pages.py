"""What traders type read leniently, refusals that name the option, and long lists
paged within Discord's limits with nothing dropped."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from common.errors import InvalidArgument
from common.market import Timeframe
from notifier import inputs
from notifier.charts import equity_png
from notifier.messages import within_limits
from notifier.trading_messages import positions_pages
from notifier.views import PositionView


@pytest.mark.parametrize("typed", ["eurusd", "EUR/USD", " eur-usd ", "Eur Usd"])
def test_pairs_as_traders_type_them(typed):
    assert inputs.pair(typed) == "EUR/USD"


@pytest.mark.parametrize(
    ("typed", "timeframe"),
    [("1h", Timeframe.H1), ("H1", Timeframe.H1), ("60m", Timeframe.H1), (None, Timeframe.H1),
     ("4H", Timeframe.H4), ("daily", Timeframe.D1), ("15 m", Timeframe.M15)],
)  # fmt: skip
def test_timeframes_as_traders_type_them(typed, timeframe):
    assert inputs.timeframe(typed) == timeframe


def test_refusals_name_the_option_and_say_what_to_type():
    with pytest.raises(InvalidArgument) as bad_pair:
        inputs.pair("EURXYZ")
    [violation] = bad_pair.value.violations
    assert violation.field == "pair" and "EUR/USD" in violation.description
    with pytest.raises(InvalidArgument) as bad_timeframe:
        inputs.timeframe("2h")
    assert "15m, 1h, 4h, 1d" in bad_timeframe.value.violations[0].description


def test_pair_autocomplete_matches_what_is_typed_so_far():
    known = ["EUR/GBP", "EUR/USD", "GBP/USD", "USD/JPY"]
    assert inputs.pair_choices(known, "eur") == ["EUR/GBP", "EUR/USD"]
    assert inputs.pair_choices(known, "usd/j") == ["USD/JPY"]
    assert inputs.pair_choices(known, "") == known


def position(n: int) -> PositionView:
    return PositionView(
        id=f"p{n}", pair="EUR/USD", side="buy", lots="0.10", entry="1.08000",
        stop_loss="1.07000", take_profit="1.10000", status="open", pips=f"{n}.0",
        pnl=f"{n}.00", currency="USD", current_price="1.08100", exit_price="",
        opened_at=datetime(2026, 12, 1, tzinfo=UTC),
    )  # fmt: skip


def test_sixty_open_positions_are_paged_within_discords_limits_with_none_dropped():
    pages = positions_pages([position(n) for n in range(60)])
    assert len(pages) == 3 and all(within_limits(page) for page in pages)
    assert pages[0]["title"] == "Open positions (60) (page 1/3)"
    shown = [field["value"] for page in pages for field in page["fields"]]
    assert len(shown) == 60 and all(f"+{n}.00 USD" in shown[n] for n in range(60))


def test_the_equity_curve_is_a_png():
    points = [(datetime(2026, 1, d, tzinfo=UTC), v) for d, v in ((1, 10.0), (2, -5.0), (3, 30.5))]
    png = equity_png(points, "USD", "Equity — all time")
    assert png.startswith(b"\x89PNG") and len(png) > 1000
