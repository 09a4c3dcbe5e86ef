"""REST inputs in the forms traders write them, through the real Envoy (its Lua filter
turns them into the contract's enum names before transcoding): timeframes as 1h / 4h /
1d / 15m, trade actions as buy / sell, pairs as EURUSD, EUR/USD or eur-usd; every other
value refused with 400 naming the field and the accepted values."""

from __future__ import annotations

import httpx
import pytest

from tests.signal_e2e.conftest import SignalEdge, bearer, error_body, violations
from tests.signal_e2e.test_signal_rest import check_signal

pytestmark = pytest.mark.e2e


async def get(http: httpx.AsyncClient, edge: SignalEdge, path: str, **params: object):
    return await http.get(path, params=params, headers=bearer(edge.access_token))


@pytest.mark.parametrize(
    "form", ["1h", "1H", "h1", "H1", "TIMEFRAME_H1", "timeframe_h1", "timeframe-h1", "2"]
)
async def test_every_form_of_a_timeframe_reads_the_same_series(
    signal_edge: SignalEdge, http: httpx.AsyncClient, form: str
):
    response = await get(http, signal_edge, "/api/v1/trading/signal/EURUSD", timeframe=form)
    assert response.status_code == 200, response.text
    assert response.json()["signal"]["timeframe"] == "TIMEFRAME_H1"


async def test_a_daily_fixing_signal_and_an_hourly_one_both_answer(
    signal_edge: SignalEdge, http: httpx.AsyncClient
):
    daily = await get(http, signal_edge, "/api/v1/trading/signal/GBPUSD", timeframe="1d")
    assert daily.status_code == 200, daily.text
    signal = daily.json()["signal"]
    assert (signal["pair"], signal["timeframe"]) == ("GBP/USD", "TIMEFRAME_D1")
    check_signal(signal)  # from lstm_daily when the model answered
    hourly = await get(http, signal_edge, "/api/v1/trading/signal/EURUSD", timeframe="1h")
    assert hourly.status_code == 200, hourly.text
    assert hourly.json()["signal"]["pair"] == "EUR/USD"
    check_signal(hourly.json()["signal"])  # from lstm


@pytest.mark.parametrize("path_pair", ["EURUSD", "EUR%2FUSD", "eur-usd", "eurusd"])
async def test_a_pair_in_the_path_in_any_usual_spelling(
    signal_edge: SignalEdge, http: httpx.AsyncClient, path_pair: str
):
    response = await get(http, signal_edge, f"/api/v1/market/price/{path_pair}")
    assert response.status_code == 200, response.text
    assert response.json()["price"]["pair"] == "EUR/USD"


async def test_filters_take_trader_forms(signal_edge: SignalEdge, http: httpx.AsyncClient):
    response = await get(
        http, signal_edge, "/api/v1/trading/signals", pair="eur/usd", timeframe="1h", action="hold"
    )
    assert response.status_code == 200, response.text
    for signal in response.json()["signals"]:
        assert signal["timeframe"] == "TIMEFRAME_H1" and signal["action"] == "TRADE_ACTION_HOLD"
    candles = await get(http, signal_edge, "/api/v1/market/candles/GBPUSD", timeframe="1d", limit=3)
    assert candles.status_code == 200, candles.text
    body = candles.json()
    assert body["timeframe"] == "TIMEFRAME_D1" and body["priceKind"] == "PRICE_KIND_CLOSES_ONLY"
    assert len(body["candles"]) == 3
    assert all(c["open"] == c["high"] == c["low"] == c["close"] for c in body["candles"])


@pytest.mark.parametrize(
    ("path", "params", "field", "accepted"),
    [
        ("/api/v1/trading/signal/EURUSD", {"timeframe": "2h"}, "timeframe", "15m, 1h, 4h, 1d"),
        ("/api/v1/trading/signal/EURUSD", {"timeframe": ""}, "timeframe", "15m, 1h, 4h, 1d"),
        ("/api/v1/trading/signals", {"action": "long"}, "action", "buy, sell, hold"),
        ("/api/v1/market/candles/EURUSD", {"timeframe": "weekly"}, "timeframe", "15m, 1h"),
    ],
)
async def test_a_value_of_no_accepted_form_is_400_naming_the_field_and_the_values(
    signal_edge: SignalEdge,
    http: httpx.AsyncClient,
    path: str,
    params: dict[str, str],
    field: str,
    accepted: str,
):
    response = await get(http, signal_edge, path, **params)
    body = error_body(response, 400, 3)
    described = violations(body)
    assert set(described) == {field}
    assert accepted in described[field] and accepted in body["message"]
    assert f'"{params[field]}"' in body["message"]


async def test_a_timeframe_list_in_a_stream_query(signal_edge: SignalEdge, http: httpx.AsyncClient):
    async with http.stream(
        "GET",
        "/api/v1/trading/signals:stream",
        params={
            "timeframes": ["1h", "1d"],
            "pairs": "EURUSD",
            "access_token": signal_edge.access_token,
        },
    ) as refused_none:
        assert refused_none.status_code == 200
    response = await http.get(
        "/api/v1/trading/signals:stream",
        params={"timeframes": ["1h", "2d"], "access_token": signal_edge.access_token},
    )
    body = error_body(response, 400, 3)
    assert set(violations(body)) == {"timeframes"}
