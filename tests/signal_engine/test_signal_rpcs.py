"""GetSignal and ListSignals through the real SignalService on a real grpc.aio server
(the server bootstrap with its interceptor), with a fixed-token gate."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta

import grpc
import pytest
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from aifx.common.v1 import market_pb2
from aifx.signal.v1 import signal_pb2, signal_pb2_grpc
from common.kv import MemoryStore
from common.server import ServiceSpec, start_server
from signal_svc.convert import ResponseCache, signal_message
from signal_svc.engine import SignalEngine
from signal_svc.market_rpcs import MarketRpcs
from signal_svc.service import SignalService
from signal_svc.signal_cache import SignalCache
from signal_svc.signal_rpcs import SignalRpcs
from signal_svc.signals import Action, Signal
from signal_svc.stream_rpcs import StreamRpcs
from tests.servicer_parts import USER as TOKEN
from tests.servicer_parts import FixedGate, not_exercised
from tests.signal_engine.helpers import FixedModel, closed, rule_ends


@pytest.fixture
def cache(signal_db) -> SignalCache:
    return SignalCache(MemoryStore(), signal_db.repository)


@pytest.fixture
async def stub(signal_db, cache) -> AsyncIterator[signal_pb2_grpc.SignalServiceStub]:
    service = SignalService(
        FixedGate(),
        not_exercised(MarketRpcs),
        SignalRpcs(signal_db.repository, cache, ResponseCache()),
        not_exercised(StreamRpcs),
    )
    spec = ServiceSpec(
        name="signal-test",
        register=lambda server: signal_pb2_grpc.add_SignalServiceServicer_to_server(
            service, server
        ),
        service_names=[signal_pb2.DESCRIPTOR.services_by_name["SignalService"].full_name],
    )
    running = await start_server(spec, "127.0.0.1", 0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    yield signal_pb2_grpc.SignalServiceStub(channel)
    await channel.close()
    await running.stop(grace=0.1)


@pytest.fixture
async def history(signal_db, hours, four_hours) -> list[Signal]:
    """30 real 1h signals (model buy/sell/hold alternating with the rules' views) and 6
    real 4h ones, stored a minute apart."""
    settings = signal_db.settings
    engines = [
        SignalEngine(settings.strategy, FixedModel(*p)) for p in ((0.7, 0.2, 0.1), (0.1, 0.2, 0.7))
    ]
    engines.append(SignalEngine(settings.strategy, None))
    stored = []
    events = [closed(hours, end) for end in range(4600, 4630)]
    events += [closed(four_hours, end) for end in range(1250, 1256)]
    for index, event in enumerate(events):
        (signal,) = await engines[index % 3].evaluate_many([event])
        signal = dataclasses.replace(
            signal, created_at=signal.created_at + timedelta(minutes=index)
        )
        saved = await signal_db.repository.store(signal)
        assert saved is not None
        stored.append(saved)
    return stored


def violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)
    assert status is not None
    found = {}
    for packed in status.details:
        if packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            packed.Unpack(bad)
            found.update({v.field: v.description for v in bad.field_violations})
    return found


async def fails(call, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    return caught.value


async def test_every_rpc_needs_a_token(stub, history) -> None:
    for metadata in ((), (("authorization", "Bearer forged"),)):
        await fails(
            stub.GetSignal(signal_pb2.GetSignalRequest(pair="EURUSD"), metadata=metadata),
            grpc.StatusCode.UNAUTHENTICATED,
        )
        await fails(
            stub.ListSignals(signal_pb2.ListSignalsRequest(), metadata=metadata),
            grpc.StatusCode.UNAUTHENTICATED,
        )


async def test_get_signal_returns_the_latest_of_the_series(stub, history) -> None:
    latest_1h = [s for s in history if s.timeframe.value == "1h"][-1]
    latest_4h = history[-1]
    for pair in ("EUR/USD", "EURUSD", "eur/usd", " eur-usd "):
        response = await stub.GetSignal(signal_pb2.GetSignalRequest(pair=pair), metadata=TOKEN)
        assert response.signal == signal_message(latest_1h)  # timeframe defaults to 1h
    response = await stub.GetSignal(
        signal_pb2.GetSignalRequest(pair="EURUSD", timeframe=market_pb2.TIMEFRAME_H4),
        metadata=TOKEN,
    )
    assert response.signal == signal_message(latest_4h)
    assert response.signal.id == str(latest_4h.id) and response.signal.pair == "EUR/USD"


async def test_get_signal_answers_with_a_new_signal_as_soon_as_it_is_cached(
    stub, signal_db, cache, history, hours
) -> None:
    latest_1h = [s for s in history if s.timeframe.value == "1h"][-1]
    request = signal_pb2.GetSignalRequest(pair="EURUSD")
    for _ in range(2):  # the second answer is the one built for the first
        assert (await stub.GetSignal(request, metadata=TOKEN)).signal == signal_message(latest_1h)

    (newer,) = await SignalEngine(signal_db.settings.strategy, None).evaluate_many(
        [closed(hours, 4630)]
    )
    newer = await signal_db.repository.store(newer)
    await cache.put(newer)
    response = await stub.GetSignal(request, metadata=TOKEN)
    assert response.signal == signal_message(newer)
    assert response.signal.id != str(latest_1h.id)


async def test_get_signal_wire_form_of_trades_and_holds(stub, signal_db, hours, four_hours) -> None:
    buy = await signal_db.repository.store(
        await SignalEngine(signal_db.settings.strategy, FixedModel(0.7, 0.2, 0.1)).evaluate(
            closed(hours, rule_ends(hours, Action.BUY, 1)[0])
        )
    )
    sent = (await stub.GetSignal(signal_pb2.GetSignalRequest(pair="EURUSD"), metadata=TOKEN)).signal
    assert buy.action is Action.BUY  # the rules agree with the model on this bar
    assert sent.id == str(buy.id) and sent.action == market_pb2.TRADE_ACTION_BUY
    assert sent.HasField("stop_loss") and sent.stop_loss < sent.entry_price < sent.take_profit
    assert sent.risk_reward_ratio == pytest.approx(2.0)
    assert sent.source == signal_pb2.SIGNAL_SOURCE_MODEL
    assert sent.probabilities.buy == pytest.approx(0.7)
    assert sent.strength == signal_pb2.SIGNAL_STRENGTH_STRONG
    assert (sent.model_name, sent.model_version) == ("lstm", "7")
    assert sent.indicators.HasField("rsi_14") and sent.indicators.HasField("bollinger_lower")
    assert sent.candle_time.ToDatetime(tzinfo=buy.candle_time.tzinfo) == buy.candle_time
    hold = await signal_db.repository.store(
        await SignalEngine(signal_db.settings.strategy, FixedModel(0.2, 0.6, 0.2)).evaluate(
            closed(four_hours, 1000)
        )
    )
    request = signal_pb2.GetSignalRequest(pair="EURUSD", timeframe=market_pb2.TIMEFRAME_H4)
    sent = (await stub.GetSignal(request, metadata=TOKEN)).signal
    assert hold.action is Action.HOLD and sent.action == market_pb2.TRADE_ACTION_HOLD
    assert not sent.HasField("stop_loss") and not sent.HasField("take_profit")
    assert not sent.HasField("risk_reward_ratio")


async def test_get_signal_without_a_signal_yet_is_not_found(stub, history) -> None:
    for pair, timeframe in (("GBPUSD", 0), ("EURUSD", market_pb2.TIMEFRAME_D1)):
        error = await fails(
            stub.GetSignal(
                signal_pb2.GetSignalRequest(pair=pair, timeframe=timeframe), metadata=TOKEN
            ),
            grpc.StatusCode.NOT_FOUND,
        )
        assert "no signal for" in error.details() and "yet" in error.details()


async def test_get_signal_bad_input_names_the_field(stub) -> None:
    cases = {
        ("", 0): {"pair"},
        ("EURUSDX", 0): {"pair"},
        ("XXX/YYY", 0): {"pair"},
        ("EURUSD", 99): {"timeframe"},
        ("nonsense", 42): {"pair", "timeframe"},
    }
    for (pair, timeframe), fields in cases.items():
        error = await fails(
            stub.GetSignal(
                signal_pb2.GetSignalRequest(pair=pair, timeframe=timeframe), metadata=TOKEN
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert set(violations(error)) == fields, (pair, timeframe)


async def test_list_signals_pages_newest_first(stub, history) -> None:
    seen: list[signal_pb2.Signal] = []
    token = ""
    while True:
        response = await stub.ListSignals(
            signal_pb2.ListSignalsRequest(page_size=10, page_token=token), metadata=TOKEN
        )
        assert len(response.signals) <= 10
        seen.extend(response.signals)
        token = response.next_page_token
        if not token:
            break
    assert [s.id for s in seen] == [str(s.id) for s in reversed(history)]
    default = await stub.ListSignals(signal_pb2.ListSignalsRequest(), metadata=TOKEN)
    assert len(default.signals) == len(history) and not default.next_page_token


async def test_list_signals_filters(stub, history) -> None:
    async def ids(**fields) -> list[str]:
        response = await stub.ListSignals(
            signal_pb2.ListSignalsRequest(page_size=500, **fields), metadata=TOKEN
        )
        return [s.id for s in response.signals]

    newest_first = list(reversed(history))
    assert await ids(pair="eurusd") == [str(s.id) for s in newest_first]
    assert await ids(pair="GBPUSD") == []
    assert await ids(timeframe=market_pb2.TIMEFRAME_H4) == [
        str(s.id) for s in newest_first if s.timeframe.value == "4h"
    ]
    for proto_action, action in (
        (market_pb2.TRADE_ACTION_BUY, Action.BUY),
        (market_pb2.TRADE_ACTION_SELL, Action.SELL),
        (market_pb2.TRADE_ACTION_HOLD, Action.HOLD),
    ):
        expected = [str(s.id) for s in newest_first if s.action is action]
        assert expected, action
        assert await ids(action=proto_action) == expected
    since = timestamp_pb2.Timestamp()
    since.FromDatetime(history[20].created_at)
    assert await ids(since=since) == [str(s.id) for s in newest_first if s.id >= history[20].id]
    combined = await ids(
        pair="EUR/USD", timeframe=market_pb2.TIMEFRAME_H1, action=market_pb2.TRADE_ACTION_HOLD
    )
    assert combined == [
        str(s.id) for s in newest_first if s.timeframe.value == "1h" and s.action is Action.HOLD
    ]


async def test_list_signals_bad_input_names_the_field(stub, history) -> None:
    first = await stub.ListSignals(
        signal_pb2.ListSignalsRequest(page_size=5, timeframe=market_pb2.TIMEFRAME_H1),
        metadata=TOKEN,
    )
    assert first.next_page_token
    cases = [
        (signal_pb2.ListSignalsRequest(pair="EURUSDX"), {"pair"}),
        (signal_pb2.ListSignalsRequest(timeframe=77), {"timeframe"}),
        (signal_pb2.ListSignalsRequest(action=9), {"action"}),
        (signal_pb2.ListSignalsRequest(page_size=-1), {"page_size"}),
        (signal_pb2.ListSignalsRequest(page_token="not-a-token"), {"page_token"}),
        # A token reused with other filters.
        (
            signal_pb2.ListSignalsRequest(
                page_token=first.next_page_token, timeframe=market_pb2.TIMEFRAME_H4
            ),
            {"page_token"},
        ),
        (
            signal_pb2.ListSignalsRequest(pair="x", timeframe=77, action=9),
            {"pair", "timeframe", "action"},
        ),
    ]
    for request, fields in cases:
        error = await fails(
            stub.ListSignals(request, metadata=TOKEN), grpc.StatusCode.INVALID_ARGUMENT
        )
        assert set(violations(error)) == fields, request
    # The same filters with the token: the next page.
    second = await stub.ListSignals(
        signal_pb2.ListSignalsRequest(
            page_size=5, timeframe=market_pb2.TIMEFRAME_H1, page_token=first.next_page_token
        ),
        metadata=TOKEN,
    )
    assert int(second.signals[0].id) < int(first.signals[-1].id)
