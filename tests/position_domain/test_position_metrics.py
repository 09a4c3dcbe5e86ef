"""position_svc's business metrics: opens by pair, closes by result and reason."""

from __future__ import annotations

from decimal import Decimal

from prometheus_client import REGISTRY

from position_svc.metrics import count_closed, count_opened
from position_svc.pnl import settle
from position_svc.positions import CloseReason, EventType, PositionEvent
from tests.position_domain.test_pnl import CLOSED, open_position


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_opens_and_closes_are_counted_by_pair_result_and_reason():
    position = open_position(pair="GBP/USD")
    opened = sample("aifx_positions_opened_total", pair="GBP/USD")
    count_opened(position)
    assert sample("aifx_positions_opened_total", pair="GBP/USD") == opened + 1

    won = settle(position, CloseReason.TAKE_PROFIT, Decimal("1.09345"), CLOSED, Decimal(1))
    lost = settle(position, CloseReason.STOP_LOSS, Decimal("1.07345"), CLOSED, Decimal(1))
    before = {
        key: sample("aifx_positions_closed_total", result=key[0], reason=key[1])
        for key in (("win", "take_profit"), ("loss", "stop_loss"))
    }
    count_closed(
        PositionEvent(n, EventType.TAKE_PROFIT_HIT, p, CLOSED) for n, p in ((1, won), (2, lost))
    )
    for (result, reason), count in before.items():
        after = sample("aifx_positions_closed_total", result=result, reason=reason)
        assert after == count + 1, (result, reason)
