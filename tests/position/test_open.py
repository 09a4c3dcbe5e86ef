"""OpenPosition over gRPC: at market (the price service's current price) and at a given
entry, and every validation failure as INVALID_ARGUMENT with field violations."""

from __future__ import annotations

from decimal import Decimal

import grpc
import pytest

from aifx.common.v1 import market_pb2
from aifx.position.v1 import position_pb2
from tests.infra import free_port
from tests.position.conftest import (
    BUY,
    PAIR,
    SELL,
    PositionEnv,
    fails,
    serve_positions,
    violations,
)

# Real bar 164: close 1.08628.
MARKET_BAR = 164


async def test_open_at_market_takes_the_current_price(env: PositionEnv) -> None:
    user = await env.user()
    close = await env.tick(MARKET_BAR)
    assert close == Decimal("1.08628")  # the bundled history as this test knows it
    position = await env.open(
        user,
        pair="eurusd",
        side=BUY,
        lot_size="0.25",
        stop_loss="1.08500",
        take_profit="1.08840",
        signal_id="signal-42",
    )
    assert position.id and position.user_id == user.id
    assert position.pair == PAIR and position.side == BUY
    assert position.entry_price == "1.08628"
    assert (position.stop_loss, position.take_profit) == ("1.085", "1.0884")
    assert position.lot_size == "0.25"
    assert position.status == position_pb2.POSITION_STATUS_OPEN
    assert position.close_reason == position_pb2.CLOSE_REASON_UNSPECIFIED
    assert position.result == position_pb2.POSITION_RESULT_UNSPECIFIED
    assert position.exit_price == "" and position.realized_pnl == ""
    assert not position.HasField("close_time")
    assert position.signal_id == "signal-42" and position.pnl_currency == "USD"
    # Opened at the current price: nothing gained yet.
    assert (position.current_price, position.pips, position.unrealized_pnl) == (
        "1.08628",
        "0",
        "0.00",
    )
    assert position.open_time == position.update_time
    assert await env.get(user, position.id) == position


async def test_open_at_a_given_entry_prices_it_against_the_market(env: PositionEnv) -> None:
    user = await env.user()
    await env.tick(MARKET_BAR + 1)  # close 1.088
    position = await env.open(
        user, side=SELL, lot_size="1", entry_price="1.08628", stop_loss="1.09", take_profit="1.08"
    )
    assert (position.entry_price, position.lot_size) == ("1.08628", "1.00")
    assert position.side == SELL
    # A SELL from 1.08628 with the market at 1.088: 17.2 pips and 172 USD down.
    assert (position.current_price, position.pips, position.unrealized_pnl) == (
        "1.088",
        "-17.2",
        "-172.00",
    )


def _request(**fields: object) -> position_pb2.OpenPositionRequest:
    values: dict[str, object] = {"pair": PAIR, "side": BUY, "lot_size": "0.10"}
    values.update(fields)
    return position_pb2.OpenPositionRequest(**values)  # type: ignore[arg-type]


INVALID = {
    "buy stop-loss above the entry": (
        _request(entry_price="1.08628", stop_loss="1.087", take_profit="1.09"),
        {"stop_loss"},
    ),
    "buy take-profit below the entry": (
        _request(entry_price="1.08628", stop_loss="1.08", take_profit="1.086"),
        {"take_profit"},
    ),
    "buy levels both wrong": (
        _request(entry_price="1.08628", stop_loss="1.09", take_profit="1.08"),
        {"stop_loss", "take_profit"},
    ),
    "sell stop-loss below the entry": (
        _request(side=SELL, entry_price="1.08628", stop_loss="1.086", take_profit="1.08"),
        {"stop_loss"},
    ),
    "sell take-profit above the entry": (
        _request(side=SELL, entry_price="1.08628", stop_loss="1.09", take_profit="1.087"),
        {"take_profit"},
    ),
    "stop-loss at the entry": (
        _request(entry_price="1.08628", stop_loss="1.08628"),
        {"stop_loss"},
    ),
    "lot size too small": (_request(lot_size="0.001"), {"lot_size"}),
    "lot size zero": (_request(lot_size="0"), {"lot_size"}),
    "lot size too large": (_request(lot_size="100.01"), {"lot_size"}),
    "lot size with 3 decimals": (_request(lot_size="1.005"), {"lot_size"}),
    "lot size missing": (_request(lot_size=""), {"lot_size"}),
    "entry not a plain decimal": (_request(entry_price="1.08e0"), {"entry_price"}),
    "entry with a comma": (_request(entry_price="1,08628"), {"entry_price"}),
    "stop-loss NaN": (_request(stop_loss="NaN"), {"stop_loss"}),
    "negative entry": (_request(entry_price="-1.08"), {"entry_price"}),
    "unknown pair": (_request(pair="XXX/YYY"), {"pair"}),
    "not a pair": (_request(pair="EURUSDX"), {"pair"}),
    "missing pair": (_request(pair=""), {"pair"}),
    "hold": (_request(side=market_pb2.TRADE_ACTION_HOLD), {"side"}),
    "no side": (_request(side=market_pb2.TRADE_ACTION_UNSPECIFIED), {"side"}),
    "everything wrong at once": (
        _request(pair="nope", side=market_pb2.TRADE_ACTION_HOLD, lot_size="x", entry_price="y"),
        {"pair", "side", "lot_size", "entry_price"},
    ),
    "idempotency key with a space": (_request(idempotency_key="a b"), {"idempotency_key"}),
    "idempotency key too long": (_request(idempotency_key="k" * 65), {"idempotency_key"}),
}


@pytest.mark.parametrize("case", list(INVALID))
async def test_open_refuses_bad_input_naming_the_fields(env: PositionEnv, case: str) -> None:
    user = await env.user()
    request, fields = INVALID[case]
    error = await fails(
        env.stub.OpenPosition(request, metadata=user.auth), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert set(violations(error)) == fields
    assert await env.positions_of(user) == 0


async def test_open_at_market_checks_the_levels_against_the_market_price(
    env: PositionEnv,
) -> None:
    user = await env.user()
    await env.tick(MARKET_BAR)  # 1.08628
    buy = _request(stop_loss="1.0870", take_profit="1.0900")
    error = await fails(
        env.stub.OpenPosition(buy, metadata=user.auth), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert violations(error) == {
        "stop_loss": "stop_loss 1.0870 must be below the entry price 1.08628 for a BUY"
    }
    sell = _request(side=SELL, stop_loss="1.0900", take_profit="1.0870")
    error = await fails(
        env.stub.OpenPosition(sell, metadata=user.auth), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert set(violations(error)) == {"take_profit"}
    # A misplaced decimal point: 50 % away from the entry is not a sane level.
    far = _request(take_profit="10.8628")
    error = await fails(
        env.stub.OpenPosition(far, metadata=user.auth), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert set(violations(error)) == {"take_profit"}
    # ... nor an entry that far from the market.
    error = await fails(
        env.stub.OpenPosition(_request(entry_price="0.108628"), metadata=user.auth),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert set(violations(error)) == {"entry_price"}
    assert await env.positions_of(user) == 0


async def test_open_at_market_on_a_pair_without_market_data(env: PositionEnv) -> None:
    """The price service has no GBP/USD (only the bundled EUR/USD): the pair is named."""
    user = await env.user()
    error = await fails(
        env.stub.OpenPosition(_request(pair="GBPUSD"), metadata=user.auth),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "no market price is available for GBP/USD" in violations(error)["pair"]


async def test_open_without_the_price_service(env: PositionEnv, tmp_path) -> None:
    """signal_svc down: at market is UNAVAILABLE; a given entry still opens."""
    settings = env.settings.replace(**{"signal_target": f"127.0.0.1:{free_port()}"})
    user = await env.user()
    async with serve_positions(settings) as lonely:
        error = await fails(
            lonely.stub.OpenPosition(_request(), metadata=user.auth),
            grpc.StatusCode.UNAVAILABLE,
        )
        assert "price service is unavailable" in error.details()
        assert await env.positions_of(user) == 0
        opened = await env.open(user, lonely.stub, entry_price="1.08628", stop_loss="1.08")
        assert opened.entry_price == "1.08628" and opened.current_price == ""
        closing = position_pb2.ClosePositionRequest(id=opened.id)
        await fails(
            lonely.stub.ClosePosition(closing, metadata=user.auth), grpc.StatusCode.UNAVAILABLE
        )
        closing.exit_price = "1.08728"
        closed = (await lonely.stub.ClosePosition(closing, metadata=user.auth)).position
        assert (closed.pips, closed.realized_pnl) == ("10", "10.00")
