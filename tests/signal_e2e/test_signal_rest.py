"""signal_svc's REST API through a real Envoy (issue 4, section 5): proto3 JSON signals,
history with pagination and filters, market data, errors as google.rpc.Status JSON with
the field named, and auth required (Envoy's jwt_authn, then signal_svc again). Runs on
both backends."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auth_svc.signing_keys import load_signing_key
from common.market_data.ecb import ECB_PAIRS
from tests.infra import sign_access_token
from tests.signal_e2e.conftest import (
    REPLAY_SPEED,
    SignalEdge,
    bearer,
    error_body,
    reason,
    sign_up,
    violations,
)

pytestmark = pytest.mark.e2e

SIGNAL_PATH = "/api/v1/trading/signal/EURUSD"
SIGNALS_PATH = "/api/v1/trading/signals"
SIGNAL_FIELDS = {
    "id",
    "pair",
    "timeframe",
    "action",
    "confidence",
    "strength",
    "entryPrice",
    "indicators",
    "source",
    "modelName",
    "modelVersion",
    "candleTime",
    "createTime",
}
INDICATORS = {
    "sma20",
    "sma50",
    "ema12",
    "ema26",
    "rsi14",
    "macd",
    "macdSignal",
    "macdHistogram",
    "atr14",
    "bollingerUpper",
    "bollingerMiddle",
    "bollingerLower",
}


def rfc3339(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# The series this chain produces: the model that predicts each, and its price range over
# the replayed months (2017-04 to 2018-02).
SERIES = {
    ("EUR/USD", "TIMEFRAME_H1"): ("lstm", 1.0, 1.3),
    ("EUR/USD", "TIMEFRAME_D1"): ("lstm_daily", 1.0, 1.3),
    ("GBP/USD", "TIMEFRAME_D1"): ("lstm_daily", 1.2, 1.45),
}


def check_signal(signal: dict) -> None:
    """A complete proto3 JSON signal of one of the chain's series, from the model that
    covers its timeframe (or the technical fallback)."""
    assert set(signal) >= SIGNAL_FIELDS, signal
    model, low, high = SERIES[(signal["pair"], signal["timeframe"])]
    assert signal["action"] in {"TRADE_ACTION_BUY", "TRADE_ACTION_SELL", "TRADE_ACTION_HOLD"}
    assert 0.0 <= signal["confidence"] <= 1.0
    assert signal["strength"].startswith("SIGNAL_STRENGTH_")
    if signal["source"] == "SIGNAL_SOURCE_MODEL":
        assert signal["modelName"] == model
        assert sum(signal["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    else:  # the inference service was slow under the replay's pace: the rules answered
        assert signal["source"] == "SIGNAL_SOURCE_TECHNICAL_FALLBACK", signal
        assert "probabilities" not in signal
    assert signal["modelVersion"]
    assert set(signal["indicators"]) >= INDICATORS, signal["indicators"]
    # Replayed history: the candle times are the bars' real times (2017-04 to 2018-02).
    candle_time = rfc3339(signal["candleTime"])
    assert datetime(2017, 4, 19, tzinfo=UTC) < candle_time < datetime(2018, 2, 8, tzinfo=UTC)
    assert rfc3339(signal["createTime"]) > datetime.now(UTC) - timedelta(minutes=5)

    entry = signal["entryPrice"]
    assert low < entry < high
    if signal["action"] == "TRADE_ACTION_HOLD":
        assert {"stopLoss", "takeProfit", "riskRewardRatio"}.isdisjoint(signal), signal
        return
    stop, target = signal["stopLoss"], signal["takeProfit"]
    if signal["action"] == "TRADE_ACTION_BUY":
        assert stop < entry < target
    else:
        assert target < entry < stop
    assert signal["riskRewardRatio"] == pytest.approx(abs(target - entry) / abs(entry - stop))


async def signal_pages(http: httpx.AsyncClient, token: str, **query: str | int) -> list[dict]:
    """Every page of ListSignals with `query`, following nextPageToken (page by page,
    checking each page is newest first and older than the previous one)."""
    pages: list[list[dict]] = []
    page_token = ""
    while True:
        params = {**query, **({"pageToken": page_token} if page_token else {})}
        response = await http.get(SIGNALS_PATH, params=params, headers=bearer(token))
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"signals", "nextPageToken"}, body
        ids = [int(s["id"]) for s in body["signals"]]
        assert ids == sorted(ids, reverse=True)
        if pages and ids:
            assert max(ids) < int(pages[-1][-1]["id"])
        pages.append(body["signals"])
        page_token = body["nextPageToken"]
        if not page_token:
            return [signal for page in pages for signal in page]


# --- GetSignal --------------------------------------------------------------------------


@pytest.mark.parametrize("pair", ["EURUSD", "EUR%2FUSD", "eurusd"])
async def test_get_signal_returns_the_latest_signal_as_proto3_json(
    signal_edge: SignalEdge, http: httpx.AsyncClient, pair: str
):
    response = await http.get(
        f"/api/v1/trading/signal/{pair}?timeframe=TIMEFRAME_H1",
        headers=bearer(signal_edge.access_token),
    )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"signal"}
    check_signal(body["signal"])


async def test_get_signal_defaults_to_1h_and_is_the_newest_stored(
    signal_edge: SignalEdge, http: httpx.AsyncClient
):
    headers = bearer(signal_edge.access_token)
    # The newest EUR/USD 1h signal (other series close at the same moments).
    params = {"pageSize": 1, "pair": "EURUSD", "timeframe": "1h"}
    newest_before = (await http.get(SIGNALS_PATH, params=params, headers=headers)).json()
    assert newest_before["signals"][0]["timeframe"] == "TIMEFRAME_H1"

    response = await http.get(SIGNAL_PATH, headers=headers)

    assert response.status_code == 200, response.text
    got = response.json()["signal"]
    assert got["timeframe"] == "TIMEFRAME_H1"
    # The cache lives until the next close: never older than what was stored before.
    assert int(got["id"]) >= int(newest_before["signals"][0]["id"])


async def test_get_signal_with_an_unknown_pair_is_400_naming_pair(
    signal_edge: SignalEdge, http: httpx.AsyncClient
):
    for pair in ("XXXYYY", "EUR"):
        response = await http.get(
            f"/api/v1/trading/signal/{pair}", headers=bearer(signal_edge.access_token)
        )

        body = error_body(response, 400, 3)
        assert set(violations(body)) == {"pair"}, body
        assert "pair" in body["message"]


async def test_get_signal_for_a_pair_without_signals_is_404(
    signal_edge: SignalEdge, http: httpx.AsyncClient
):
    response = await http.get(
        "/api/v1/trading/signal/GBPUSD", headers=bearer(signal_edge.access_token)
    )

    body = error_body(response, 404, 5)
    assert reason(body) == "SIGNAL_NOT_FOUND"


@pytest.mark.parametrize("timeframe", ["TIMEFRAME_H7", "99", "2h"])
async def test_get_signal_with_an_unknown_timeframe_is_400_naming_timeframe(
    signal_edge: SignalEdge, http: httpx.AsyncClient, timeframe: str
):
    response = await http.get(
        SIGNAL_PATH, params={"timeframe": timeframe}, headers=bearer(signal_edge.access_token)
    )

    # Envoy refuses a value of no accepted form before signal_svc sees it (an enum number
    # that names no timeframe, signal_svc refuses); either way the message names the
    # field.
    body = error_body(response, 400, 3)
    assert body["message"].startswith("timeframe:"), body


async def test_get_signal_with_an_unknown_query_parameter_is_400(
    signal_edge: SignalEdge, http: httpx.AsyncClient
):
    response = await http.get(
        SIGNAL_PATH, params={"tf": "TIMEFRAME_H1"}, headers=bearer(signal_edge.access_token)
    )

    error_body(response, 400, 3)


# --- ListSignals ------------------------------------------------------------------------


async def test_list_signals_pages_newest_first_without_overlap(
    signal_edge: SignalEdge, http: httpx.AsyncClient
):
    headers = bearer(signal_edge.access_token)
    first = (await http.get(SIGNALS_PATH, params={"pageSize": 3}, headers=headers)).json()
    assert len(first["signals"]) == 3 and first["nextPageToken"], first
    for signal in first["signals"]:
        check_signal(signal)

    second = await http.get(
        SIGNALS_PATH, params={"pageSize": 3, "pageToken": first["nextPageToken"]}, headers=headers
    )

    assert second.status_code == 200, second.text
    ids_1 = [int(s["id"]) for s in first["signals"]]
    ids_2 = [int(s["id"]) for s in second.json()["signals"]]
    assert ids_1 == sorted(ids_1, reverse=True)
    assert ids_2 == sorted(ids_2, reverse=True)
    # Newer signals stored in between do not shift the pages (keyset pagination).
    assert ids_2 and max(ids_2) < min(ids_1)


async def test_list_signals_filters(signal_edge: SignalEdge, http: httpx.AsyncClient):
    token = signal_edge.access_token
    newest = (await http.get(SIGNALS_PATH, params={"pageSize": 1}, headers=bearer(token))).json()
    newest_time = newest["signals"][0]["createTime"]

    by_series = await signal_pages(
        http, token, pair="EURUSD", timeframe="TIMEFRAME_H1", pageSize=500
    )
    holds = await signal_pages(http, token, action="TRADE_ACTION_HOLD", pageSize=500)
    recent = await signal_pages(http, token, since=newest_time, pageSize=2)
    other_pair = await signal_pages(http, token, pair="EUR/GBP")
    other_timeframe = await signal_pages(http, token, timeframe="TIMEFRAME_D1")

    assert by_series and all(s["pair"] == "EUR/USD" for s in by_series)
    # The model (not the technical fallback) made the signals of this chain.
    from_model = [s for s in by_series if s["source"] == "SIGNAL_SOURCE_MODEL"]
    assert len(from_model) >= 0.9 * len(by_series), len(by_series)
    assert all(s["action"] == "TRADE_ACTION_HOLD" for s in holds)
    assert recent and all(rfc3339(s["createTime"]) >= rfc3339(newest_time) for s in recent)
    assert int(recent[-1]["id"]) == int(newest["signals"][0]["id"])
    assert other_pair == []
    # Daily signals: of the two daily series this stack produces, both ECB fixings, from
    # the daily model (the inference service routes 1d series to it).
    assert other_timeframe and {s["pair"] for s in other_timeframe} <= {"EUR/USD", "GBP/USD"}
    assert all(s["timeframe"] == "TIMEFRAME_D1" for s in other_timeframe)
    daily_model = [s for s in other_timeframe if s["source"] == "SIGNAL_SOURCE_MODEL"]
    assert len(daily_model) >= 0.9 * len(other_timeframe), other_timeframe
    for signal in other_timeframe:
        check_signal(signal)


async def test_list_signals_bad_filters_are_400_naming_the_field(
    signal_edge: SignalEdge, http: httpx.AsyncClient
):
    headers = bearer(signal_edge.access_token)
    first = (await http.get(SIGNALS_PATH, params={"pageSize": 1}, headers=headers)).json()
    cases = [
        ({"pair": "NOPE"}, "pair"),
        ({"pageSize": -1}, "page_size"),
        ({"pageToken": "not-a-token"}, "page_token"),
        # A token issued for other filters.
        ({"pageToken": first["nextPageToken"], "action": "TRADE_ACTION_BUY"}, "page_token"),
    ]
    for params, field in cases:
        response = await http.get(SIGNALS_PATH, params=params, headers=headers)

        body = error_body(response, 400, 3)
        assert set(violations(body)) == {field}, (params, body)


# --- market data ------------------------------------------------------------------------


async def test_candles(signal_edge: SignalEdge, http: httpx.AsyncClient):
    response = await http.get(
        "/api/v1/market/candles/EURUSD?limit=5", headers=bearer(signal_edge.access_token)
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["pair"] == "EUR/USD" and body["timeframe"] == "TIMEFRAME_H1"
    assert body["source"] == "MARKET_DATA_SOURCE_REPLAY"
    candles = body["candles"]
    assert len(candles) == 5
    times = [rfc3339(c["openTime"]) for c in candles]
    assert times == sorted(times) and len(set(times)) == 5
    for candle in candles:
        assert candle["low"] <= min(candle["open"], candle["close"])
        assert candle["high"] >= max(candle["open"], candle["close"])


async def test_candles_of_a_timeframe_without_data_is_404(
    signal_edge: SignalEdge, http: httpx.AsyncClient
):
    response = await http.get(
        "/api/v1/market/candles/EURUSD?timeframe=TIMEFRAME_M15",
        headers=bearer(signal_edge.access_token),
    )

    body = error_body(response, 404, 5)
    assert reason(body) == "NO_MARKET_DATA"


async def test_price(signal_edge: SignalEdge, http: httpx.AsyncClient):
    response = await http.get(
        "/api/v1/market/price/EURUSD", headers=bearer(signal_edge.access_token)
    )

    assert response.status_code == 200, response.text
    price = response.json()["price"]
    assert price["pair"] == "EUR/USD"
    assert 1.0 < price["price"] < 1.3
    assert price["source"] == "MARKET_DATA_SOURCE_REPLAY"
    assert (
        datetime(2017, 4, 19, tzinfo=UTC)
        < rfc3339(price["time"])
        < datetime(2018, 2, 8, tzinfo=UTC)
    )
    assert "bid" not in price and "ask" not in price


async def test_price_of_an_unknown_pair_is_400_naming_pair(
    signal_edge: SignalEdge, http: httpx.AsyncClient
):
    response = await http.get("/api/v1/market/price/XYZ", headers=bearer(signal_edge.access_token))

    body = error_body(response, 400, 3)
    assert set(violations(body)) == {"pair"}


async def test_pairs(signal_edge: SignalEdge, http: httpx.AsyncClient):
    response = await http.get("/api/v1/market/pairs", headers=bearer(signal_edge.access_token))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["nextPageToken"] == ""
    pairs = {p["pair"]: p for p in body["pairs"]}
    assert list(pairs) == sorted(ECB_PAIRS)  # every supported pair, from the ECB's rates
    eurusd = pairs["EUR/USD"]
    assert eurusd["offline"] is True and eurusd["online"] is False
    assert eurusd["sources"] == ["MARKET_DATA_SOURCE_REPLAY"]
    assert eurusd["timeframes"] == ["TIMEFRAME_H1", "TIMEFRAME_D1"]  # signals of this stack
    assert eurusd["pipSize"] == pytest.approx(0.0001)
    assert eurusd["offlineStartTime"] == "2017-04-19T09:00:00Z"
    kinds = {s["timeframe"]: s["priceKind"] for s in eurusd["series"]}
    assert kinds == {
        "TIMEFRAME_H1": "PRICE_KIND_OHLC",
        "TIMEFRAME_H4": "PRICE_KIND_OHLC",
        "TIMEFRAME_D1": "PRICE_KIND_CLOSES_ONLY",
    }
    (gbp_jpy,) = pairs["GBP/JPY"]["series"]
    assert gbp_jpy["priceKind"] == "PRICE_KIND_CLOSES_ONLY"
    assert gbp_jpy["origin"].endswith("the JPY rate divided by the GBP rate of the same day")
    assert gbp_jpy["firstBarTime"] == "1999-01-04T00:00:00Z"
    assert body["replay"]["finished"] is False and body["replay"]["speed"] == REPLAY_SPEED


# --- auth required ----------------------------------------------------------------------

PROTECTED = [
    SIGNAL_PATH,
    SIGNALS_PATH,
    "/api/v1/market/candles/EURUSD",
    "/api/v1/market/price/EURUSD",
    "/api/v1/market/pairs",
]


@pytest.mark.parametrize("path", PROTECTED)
async def test_no_token_is_401_json(http: httpx.AsyncClient, path: str):
    response = await http.get(path)

    body = error_body(response, 401, 16)
    assert "Jwt is missing" in body["message"]


@pytest.mark.parametrize("path", PROTECTED)
async def test_a_forged_token_is_401(signal_edge: SignalEdge, http: httpx.AsyncClient, path: str):
    kid = jwt.get_unverified_header(signal_edge.access_token)["kid"]
    forged = sign_access_token(Ed25519PrivateKey.generate(), kid, signal_edge.settings.tokens)

    response = await http.get(path, headers=bearer(forged))

    body = error_body(response, 401, 16)
    assert "verification fail" in body["message"].lower()


async def test_an_expired_or_foreign_audience_token_is_401(
    signal_edge: SignalEdge, http: httpx.AsyncClient
):
    key = load_signing_key(signal_edge.settings)  # the real key
    past = int(time.time()) - 3600
    tokens = [
        sign_access_token(
            key.private_key, key.kid, signal_edge.settings.tokens, iat=past - 600, exp=past
        ),
        sign_access_token(
            key.private_key, key.kid, signal_edge.settings.tokens, aud="someone-else"
        ),
    ]
    for token in tokens:
        error_body(await http.get(SIGNAL_PATH, headers=bearer(token)), 401, 16)


async def test_the_token_in_the_query_works_for_rest_too(
    signal_edge: SignalEdge, http: httpx.AsyncClient
):
    response = await http.get(SIGNAL_PATH, params={"access_token": signal_edge.access_token})

    assert response.status_code == 200, response.text
    check_signal(response.json()["signal"])


async def test_a_revoked_token_is_refused_by_signal_svc(
    signal_edge: SignalEdge, http: httpx.AsyncClient
):
    """Envoy passes a validly signed token; signal_svc checks revocation itself. The
    revocation list is shared through Redis; without Redis it is per process
    (common/revocation.py), so only the postgres+redis backend can show it."""
    if not signal_edge.settings.storage.redis_url:
        pytest.skip("embedded backend: revocations are per process (no Redis)")
    response = await http.post(
        "/api/v1/auth/register",
        json={
            "email": f"revoked-{uuid.uuid4().hex[:10]}@example.com",
            "username": f"revoked_{uuid.uuid4().hex[:10]}",
            "password": "correct horse battery",
        },
    )
    tokens = response.json()["tokens"]
    logout = await http.post(
        "/api/v1/auth/logout",
        json={"refreshToken": tokens["refreshToken"]},
        headers=bearer(tokens["accessToken"]),
    )
    assert logout.status_code == 200, logout.text

    body = error_body(await http.get(SIGNAL_PATH, headers=bearer(tokens["accessToken"])), 401, 16)
    assert reason(body) == "TOKEN_REVOKED"


async def test_every_user_may_read_signals(signal_edge: SignalEdge, http: httpx.AsyncClient):
    other = await sign_up(signal_edge.url)

    response = await http.get(SIGNAL_PATH, headers=bearer(other))

    assert response.status_code == 200, response.text
