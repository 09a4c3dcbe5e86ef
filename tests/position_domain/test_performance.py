"""Performance figures over closed positions, and the reporting window."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from common.errors import InvalidArgument
from position_svc.performance import EquityPoint, PerformancePeriod, compute, window
from position_svc.positions import CloseReason, Position, Result, Side, Status

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def closed(
    id_: str,
    hours: int,
    usd: str | None,
    pips: str,
    pair: str = "EUR/USD",
    entry: str = "1.1000",
    stop: str | None = None,
    target: str | None = None,
) -> Position:
    """A closed position; result follows the sign of `pips`."""
    gained = Decimal(pips)
    result = Result.WIN if gained > 0 else Result.LOSS if gained < 0 else Result.BREAKEVEN
    return Position(
        id=id_,
        user_id="u-1",
        pair=pair,
        side=Side.BUY,
        lot_size=Decimal("1"),
        entry_price=Decimal(entry),
        stop_loss=None if stop is None else Decimal(stop),
        take_profit=None if target is None else Decimal(target),
        status=Status.CLOSED,
        open_time=T0,
        update_time=T0 + timedelta(hours=hours),
        close_reason=CloseReason.MANUAL,
        exit_price=Decimal(entry),
        close_time=T0 + timedelta(hours=hours),
        result=result,
        pips=gained,
        realized_pnl=None if usd is None else Decimal(usd),
        realized_pnl_usd=None if usd is None else Decimal(usd),
    )


# Equity: 100, 50, 80, -40, 160 → peak 100, deepest fall to -40: drawdown 140.00.
SEQUENCE = [
    closed("a", 1, "100.00", "10"),
    closed("b", 2, "-50.00", "-5"),
    closed("c", 3, "30.00", "3"),
    closed("d", 4, "-120.00", "-12"),
    closed("e", 5, "200.00", "20"),
]


def test_figures_on_a_known_sequence():
    perf = compute(list(reversed(SEQUENCE)))  # input order does not matter
    assert (perf.trades, perf.wins, perf.losses, perf.breakevens) == (5, 3, 2, 0)
    assert perf.win_rate == 0.6
    assert str(perf.total_pips) == "16"
    assert str(perf.total_pnl) == "160.00"
    assert perf.profit_factor == 330 / 170
    assert str(perf.max_drawdown) == "140.00"
    assert perf.currency == "USD"
    assert perf.unconverted_trades == 0
    assert [
        (p.position_id, str(p.cumulative_pnl), str(p.cumulative_pips)) for p in perf.equity_curve
    ] == [
        ("a", "100.00", "10"),
        ("b", "50.00", "5"),
        ("c", "80.00", "8"),
        ("d", "-40.00", "-4"),
        ("e", "160.00", "16"),
    ]
    assert [p.time for p in perf.equity_curve] == [T0 + timedelta(hours=h) for h in range(1, 6)]


def test_drawdown_starts_from_zero_equity():
    perf = compute([closed("a", 1, "-30.00", "-3"), closed("b", 2, "10.00", "1")])
    assert str(perf.max_drawdown) == "30.00"


def test_no_loss_means_no_profit_factor_and_no_drawdown():
    perf = compute([closed("a", 1, "10.00", "1"), closed("b", 2, "0.00", "0")])
    assert perf.profit_factor is None
    assert str(perf.max_drawdown) == "0"
    assert (perf.wins, perf.breakevens, perf.win_rate) == (1, 1, 0.5)


def test_only_losses_give_a_zero_profit_factor():
    perf = compute([closed("a", 1, "-10.00", "-1")])
    assert perf.profit_factor == 0.0
    assert perf.win_rate == 0.0


def test_no_trades():
    perf = compute([])
    assert (perf.trades, perf.win_rate, perf.profit_factor) == (0, 0.0, None)
    assert (str(perf.total_pips), str(perf.total_pnl), str(perf.max_drawdown)) == ("0", "0.00", "0")
    assert perf.average_risk_reward is None
    assert perf.pairs == [] and perf.equity_curve == []


def test_equal_close_times_are_ordered_by_id():
    perf = compute([closed("b", 1, "1.00", "1"), closed("a", 1, "2.00", "2")])
    assert [p.position_id for p in perf.equity_curve] == ["a", "b"]
    assert perf.equity_curve[0] == EquityPoint(
        T0 + timedelta(hours=1), "a", Decimal("2.00"), Decimal("2")
    )


def test_per_pair_breakdown_sorted_by_pair():
    perf = compute(
        [
            closed("a", 1, "331.67", "50", pair="USD/JPY", entry="151.250"),
            closed("b", 2, "15.50", "15.5"),
            closed("c", 3, "-20.00", "-20"),
            closed("d", 4, "-66.67", "-10", pair="USD/JPY", entry="150.000"),
            closed("e", 5, "0.00", "0", pair="EUR/GBP", entry="0.85"),
        ]
    )
    summary = [
        (
            p.pair,
            p.trades,
            p.wins,
            p.losses,
            p.breakevens,
            p.win_rate,
            str(p.total_pips),
            str(p.total_pnl),
        )
        for p in perf.pairs
    ]
    assert summary == [
        ("EUR/GBP", 1, 0, 0, 1, 0.0, "0", "0.00"),
        ("EUR/USD", 2, 1, 1, 0, 0.5, "-4.5", "-4.50"),
        ("USD/JPY", 2, 1, 1, 0, 0.5, "40", "265.00"),
    ]
    assert str(perf.total_pnl) == "260.50"


def test_unconverted_trades_count_as_trades_but_not_money():
    perf = compute(
        [
            closed("a", 1, "100.00", "10"),
            closed("b", 2, None, "-40", pair="EUR/GBP", entry="0.85"),
            closed("c", 3, "-25.00", "-2.5"),
        ]
    )
    assert (perf.trades, perf.wins, perf.losses, perf.unconverted_trades) == (3, 1, 2, 1)
    assert str(perf.total_pips) == "-32.5"
    assert str(perf.total_pnl) == "75.00"
    assert perf.profit_factor == 4.0
    assert str(perf.max_drawdown) == "25.00"
    assert [str(p.cumulative_pnl) for p in perf.equity_curve] == ["100.00", "100.00", "75.00"]
    assert perf.pairs[0].pair == "EUR/GBP" and str(perf.pairs[0].total_pnl) == "0.00"


def test_average_risk_reward_uses_positions_with_both_levels():
    perf = compute(
        [
            closed("a", 1, "1.00", "1", entry="1.1000", stop="1.0950", target="1.1100"),  # 2
            closed("b", 2, "1.00", "1", entry="1.1000", stop="1.0900", target="1.1050"),  # 0.5
            closed("c", 3, "1.00", "1", entry="1.1000", stop="1.0900"),
            closed("d", 4, "1.00", "1", entry="1.1000", target="1.1200"),
            # a stop moved to the entry risks nothing: no ratio
            closed("e", 5, "0.00", "0", entry="1.1000", stop="1.1000", target="1.1200"),
        ]
    )
    assert perf.average_risk_reward == 1.25


def test_only_one_level_gives_no_average_risk_reward():
    perf = compute([closed("a", 1, "1.00", "1", stop="1.0900")])
    assert perf.average_risk_reward is None


def test_an_open_position_is_refused():
    open_ = replace(closed("a", 1, "1.00", "1"), close_time=None, result=None, pips=None)
    with pytest.raises(ValueError, match="not closed"):
        compute([open_])


NOW = datetime(2024, 6, 15, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("period", "since"),
    [
        (PerformancePeriod.ALL_TIME, None),
        (PerformancePeriod.DAY, NOW - timedelta(days=1)),
        (PerformancePeriod.WEEK, NOW - timedelta(days=7)),
        (PerformancePeriod.MONTH, NOW - timedelta(days=30)),
        (PerformancePeriod.YEAR, NOW - timedelta(days=365)),
    ],
)
def test_period_windows_end_now(period, since):
    assert window(period, None, None, NOW) == (since, NOW)


def test_explicit_window():
    since, until = NOW - timedelta(days=3), NOW - timedelta(days=1)
    assert window(None, since, until, NOW) == (since, until)
    assert window(None, since, None, NOW) == (since, NOW)
    assert window(None, None, until, NOW) == (None, until)
    assert window(None, None, None, NOW) == (None, NOW)


@pytest.mark.parametrize(
    ("since", "until"), [(NOW - timedelta(days=1), None), (None, NOW), (NOW, NOW)]
)
def test_period_with_since_or_until_is_refused(since, until):
    with pytest.raises(InvalidArgument) as caught:
        window(PerformancePeriod.ALL_TIME, since, until, NOW)
    assert [v.field for v in caught.value.violations] == ["period"]


@pytest.mark.parametrize(
    ("since", "until"),
    [
        (NOW, NOW),
        (NOW, NOW - timedelta(seconds=1)),
        (NOW + timedelta(hours=1), None),  # until defaults to now
    ],
)
def test_since_not_before_until_is_refused(since, until):
    with pytest.raises(InvalidArgument) as caught:
        window(None, since, until, NOW)
    assert [v.field for v in caught.value.violations] == ["since"]
