"""Engine decisions on real EUR/USD bars: the model path against the real inference
service and model server (in process), technical confirmation, fallback when inference
is down, slow or does not cover the series, the circuit breaker, and the levels."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from aifx.inference.v1 import inference_pb2, inference_pb2_grpc
from common.candles import Candles
from common.market import Timeframe
from common.server import ServiceSpec, start_server
from common.settings import Settings
from signal_svc import technical
from signal_svc.engine import SignalEngine, combine, levels
from signal_svc.inference_client import InferenceClient
from signal_svc.ports import ModelPrediction
from signal_svc.signals import Action, Signal, Source, Strength, strength_of
from tests.inference.conftest import InferenceStack
from tests.infra import SteppedClock, free_port, make_settings
from tests.signal_engine.conftest import inference_client
from tests.signal_engine.helpers import FixedModel, closed, rule_ends

# Ends in the model's held-out test period (2018-01-02 on) of the 5,000 bundled hours.
TEST_PERIOD_ENDS = (4700, 4777, 4850, 4921, 5000)


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    return make_settings(tmp_path_factory.mktemp("engine"))


@pytest.fixture
def blackhole() -> Iterator[str]:
    """An address that accepts TCP connections and never answers (a hung server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"127.0.0.1:{sock.getsockname()[1]}"


async def test_model_signals_carry_the_real_models_calibrated_answer(
    hours: Candles, inference, settings: Settings
) -> None:
    client = inference_client(inference)
    engine = SignalEngine(settings.strategy, client)
    try:
        for end in TEST_PERIOD_ENDS:
            event = closed(hours, end)
            signal = await engine.evaluate(event)
            # The same candles asked of the inference service directly.
            from tests.inference.conftest import request_for

            direct = await inference.stub.Predict(
                request_for(event.candles), metadata=inference.credential
            )
            p = direct.probabilities
            assert signal.source is Source.MODEL
            assert signal.model_name == "lstm"
            assert signal.model_version == inference.version_dir.name == direct.model_version
            assert signal.probabilities == pytest.approx(
                {"buy": p.buy, "hold": p.hold, "sell": p.sell}
            )
            _, view = technical.analyse(event.candles)
            model = ModelPrediction(signal.probabilities, Action.HOLD, 0, "lstm", "1")
            action, confidence, _ = combine(model, view)
            assert (signal.action, signal.confidence) == (action, pytest.approx(confidence))
            assert signal.confidence == pytest.approx(signal.probabilities[signal.action.value])
            assert signal.strength is strength_of(signal.confidence, (0.5, 0.6, 0.75))
            assert signal.entry_price == hours.close[end - 1]
            opened = datetime.fromtimestamp(int(hours.times[end - 1]), UTC)
            assert signal.candle_time == opened + timedelta(hours=1)
            assert signal.indicators == technical.snapshot(event.candles)
            assert signal.id == 0
            assert (signal.stop_loss is None) == (signal.action is Action.HOLD)
        assert client.breaker.failure_count == 0
    finally:
        await client.close()


async def test_series_closing_together_are_one_predict_batch(
    hours: Candles, inference, settings: Settings
) -> None:
    client = inference_client(inference)
    engine = SignalEngine(settings.strategy, client)
    try:
        signals = await engine.evaluate_many([closed(hours, end) for end in TEST_PERIOD_ENDS])
        assert client.calls == 1
        assert [s.source for s in signals] == [Source.MODEL] * len(TEST_PERIOD_ENDS)
        alone = await engine.evaluate(closed(hours, TEST_PERIOD_ENDS[2]))
        assert alone.probabilities == pytest.approx(signals[2].probabilities)
    finally:
        await client.close()


async def test_an_uncovered_series_falls_back_without_tripping_the_breaker(
    hours: Candles, four_hours: Candles, inference, settings: Settings
) -> None:
    client = inference_client(inference, failure_threshold=2)
    engine = SignalEngine(settings.strategy, client)
    try:
        for end in (1000, 1100, 1200, 1292):  # more than the failure threshold
            signal = await engine.evaluate(closed(four_hours, end))
            assert signal.source is Source.TECHNICAL_FALLBACK
            assert signal.timeframe is Timeframe.H4
            assert signal.candle_time == datetime.fromtimestamp(
                int(four_hours.times[end - 1]) + 4 * 3600, UTC
            )
        assert client.calls == 4
        assert client.breaker.failure_count == 0 and client.breaker.closed
        # 1h and 4h closing together: the model answers for 1h, 4h falls back.
        one_hour, four_hour = await engine.evaluate_many(
            [closed(hours, 5000), closed(four_hours, 1292)]
        )
        assert one_hour.source is Source.MODEL and four_hour.source is Source.TECHNICAL_FALLBACK
        assert client.calls == 6  # the batch, then 1h again without the refused 4h
        assert client.breaker.closed
    finally:
        await client.close()


async def test_inference_down_gives_fallback_signals_with_capped_confidence(
    hours: Candles, settings: Settings
) -> None:
    client = InferenceClient(f"127.0.0.1:{free_port()}", "token", 0.5)
    engine = SignalEngine(settings.strategy, client)
    strong_buys = rule_ends(hours, Action.BUY)
    strongest = [
        e for e in strong_buys if technical.analyse(closed(hours, e).candles)[1].score == 4
    ]
    assert strongest, "no 4-vote buy in the real history"
    try:
        for end in [
            *strongest[:1],
            *rule_ends(hours, Action.SELL, 1),
            *rule_ends(hours, Action.HOLD, 1),
        ]:
            event = closed(hours, end)
            _, view = technical.analyse(event.candles)
            signal = await engine.evaluate(event)
            assert signal.source is Source.TECHNICAL_FALLBACK
            assert signal.action is view.action
            assert signal.confidence == min(
                view.confidence, settings.strategy.fallback_max_confidence
            )
            assert signal.confidence <= 0.6
            assert signal.probabilities is None
            assert (signal.model_name, signal.model_version) == ("technical", "1")
            assert signal.indicators == technical.snapshot(event.candles)
            assert signal.strength is strength_of(signal.confidence, (0.5, 0.6, 0.75))
        # The 4-vote buy scores 0.75 by the rules: capped to 0.6.
        assert technical.analyse(closed(hours, strongest[0]).candles)[1].confidence == 0.75
    finally:
        await client.close()


async def test_the_breaker_opens_after_three_slow_calls_and_then_adds_no_latency(
    hours: Candles, settings: Settings, blackhole: str
) -> None:
    clock = SteppedClock()
    client = InferenceClient(blackhole, "token", 0.2, recovery_seconds=30, monotonic=clock)
    engine = SignalEngine(settings.strategy, client)
    event = closed(hours, 4000)
    try:
        for attempt in range(1, 4):
            started = time.perf_counter()
            signal = await engine.evaluate(event)
            assert time.perf_counter() - started >= 0.19  # waited for the timeout
            assert signal.source is Source.TECHNICAL_FALLBACK
            assert client.calls == attempt
        assert client.breaker.opened
        for _ in range(20):
            signal = await engine.evaluate(event)
            assert signal.source is Source.TECHNICAL_FALLBACK
        # No call at all while open, so no timeout is waited for: no added latency.
        assert client.calls == 3
        clock.advance(29.9)
        await engine.evaluate(event)
        assert client.calls == 3
        # After the recovery time one call is let through; it fails, the breaker reopens.
        clock.advance(0.2)
        await engine.evaluate(event)
        assert client.calls == 4 and client.breaker.opened
        await engine.evaluate(event)
        assert client.calls == 4
    finally:
        await client.close()


class SwitchableInference(inference_pb2_grpc.InferenceServiceServicer):
    """The inference service, down (UNAVAILABLE at once) until switched up, then
    forwarding to the real one."""

    def __init__(self, real: InferenceStack) -> None:
        self._real = real
        self.up = False

    async def _check_up(self, context: grpc.aio.ServicerContext) -> None:
        if not self.up:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "down for the test")

    async def Predict(self, request, context):  # noqa: N802
        await self._check_up(context)
        return await self._real.stub.Predict(request, metadata=self._real.credential)

    async def PredictBatch(self, request, context):  # noqa: N802
        await self._check_up(context)
        return await self._real.stub.PredictBatch(request, metadata=self._real.credential)


async def test_the_breaker_closes_again_when_inference_answers(
    hours: Candles, inference: InferenceStack, settings: Settings
) -> None:
    switchable = SwitchableInference(inference)
    spec = ServiceSpec(
        "switchable-inference",
        lambda server: inference_pb2_grpc.add_InferenceServiceServicer_to_server(
            switchable, server
        ),
        [inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name],
    )
    running = await start_server(spec, "127.0.0.1", 0)
    clock = SteppedClock()
    client = InferenceClient(
        f"127.0.0.1:{running.port}", "token", 5.0, recovery_seconds=30, monotonic=clock
    )
    engine = SignalEngine(settings.strategy, client)
    try:
        for _ in range(3):  # down: three failures open the breaker
            assert (await engine.evaluate(closed(hours, 5000))).source is Source.TECHNICAL_FALLBACK
        assert client.breaker.opened and client.calls == 3
        switchable.up = True
        assert (await engine.evaluate(closed(hours, 5000))).source is Source.TECHNICAL_FALLBACK
        assert client.calls == 3  # still open: not asked
        clock.advance(30)
        signal = await engine.evaluate(closed(hours, 5000))
        assert signal.source is Source.MODEL and client.calls == 4
        assert client.breaker.closed and client.breaker.failure_count == 0
    finally:
        await client.close()
        await running.stop(grace=0.1)


def test_levels_for_buy_and_sell_are_mirrored() -> None:
    buy = levels(Action.BUY, 1.2000, 0.0010, 1.5, 3.0)
    assert buy is not None
    assert buy.stop_loss == pytest.approx(1.1985) and buy.take_profit == pytest.approx(1.2030)
    assert buy.risk_reward_ratio == pytest.approx(2.0)
    sell = levels(Action.SELL, 1.2000, 0.0010, 1.5, 3.0)
    assert sell is not None
    assert sell.stop_loss == pytest.approx(1.2015) and sell.take_profit == pytest.approx(1.1970)
    assert sell.risk_reward_ratio == pytest.approx(2.0)
    hold = levels(Action.HOLD, 1.2000, 0.0010, 1.5, 3.0)
    assert hold is not None and hold.stop_loss is hold.take_profit is hold.risk_reward_ratio is None
    assert levels(Action.BUY, 1.2, None, 1.5, 3.0) is None
    assert levels(Action.SELL, 1.2, 0.0, 1.5, 3.0) is None


async def test_model_trades_get_atr_levels_from_settings(hours: Candles, tmp_path) -> None:
    settings = make_settings(tmp_path, stop_loss_atr=1.0, take_profit_atr=2.5)
    end = rule_ends(hours, Action.HOLD, 1)[0]  # rules neutral: the model's trade stands
    event = closed(hours, end)
    atr = technical.snapshot(event.candles)["atr_14"]
    entry = float(hours.close[end - 1])

    buy = await SignalEngine(settings.strategy, FixedModel(0.7, 0.2, 0.1)).evaluate(event)
    assert (buy.action, buy.source, buy.confidence) == (Action.BUY, Source.MODEL, 0.7)
    assert buy.strength is Strength.STRONG
    assert buy.entry_price == entry
    assert buy.stop_loss == pytest.approx(entry - atr) and buy.take_profit == pytest.approx(
        entry + 2.5 * atr
    )
    assert buy.risk_reward_ratio == pytest.approx(2.5)
    assert (buy.model_name, buy.model_version) == ("lstm", "7")

    sell = await SignalEngine(settings.strategy, FixedModel(0.05, 0.15, 0.8)).evaluate(event)
    assert (sell.action, sell.confidence, sell.strength) == (Action.SELL, 0.8, Strength.VERY_STRONG)
    assert sell.stop_loss == pytest.approx(entry + atr) and sell.take_profit == pytest.approx(
        entry - 2.5 * atr
    )
    assert sell.risk_reward_ratio == pytest.approx(2.5)
    assert sell.stop_loss > sell.entry_price > sell.take_profit


async def test_technicals_veto_a_model_trade_they_contradict(hours: Candles, settings) -> None:
    model_buy = FixedModel(0.55, 0.3, 0.15)
    engine = SignalEngine(settings.strategy, model_buy)
    for end in rule_ends(hours, Action.SELL):
        signal = await engine.evaluate(closed(hours, end))
        assert signal.action is Action.HOLD and signal.source is Source.MODEL
        assert signal.confidence == 0.3  # the model's calibrated probability of HOLD
        assert signal.stop_loss is signal.take_profit is signal.risk_reward_ratio is None
        assert signal.strength is Strength.WEAK
    for end in rule_ends(hours, Action.BUY) + rule_ends(hours, Action.HOLD):
        signal = await engine.evaluate(closed(hours, end))
        assert (signal.action, signal.confidence) == (Action.BUY, 0.55)
        assert signal.strength is Strength.MODERATE


async def test_the_rules_never_turn_a_model_hold_into_a_trade(hours: Candles, settings) -> None:
    engine = SignalEngine(settings.strategy, FixedModel(0.3, 0.45, 0.25))
    for end in rule_ends(hours, Action.BUY) + rule_ends(hours, Action.SELL):
        signal = await engine.evaluate(closed(hours, end))
        assert (signal.action, signal.confidence, signal.source) == (
            Action.HOLD,
            0.45,
            Source.MODEL,
        )


async def test_without_inference_every_signal_is_a_fallback(hours: Candles, settings) -> None:
    signals = await SignalEngine(settings.strategy, None).evaluate_many(
        [closed(hours, 1000), closed(hours, 2000)]
    )
    assert {s.source for s in signals} == {Source.TECHNICAL_FALLBACK}


async def test_too_short_a_history_holds_instead_of_trading_blind(hours: Candles, settings) -> None:
    # 10 real bars: no ATR yet, so even a confident model buy cannot be sized.
    signal = await SignalEngine(settings.strategy, FixedModel(0.8, 0.15, 0.05)).evaluate(
        closed(hours, 10)
    )
    assert signal.action is Action.HOLD and signal.confidence == 0.15
    assert signal.indicators["atr_14"] is None
    with pytest.raises(ValueError, match="no candles"):
        await SignalEngine(settings.strategy, None).evaluate(closed(hours, 0))


async def test_a_series_the_indicator_batch_cannot_take_fails_alone(settings, hours, monkeypatch):
    """The scan's indicators are computed as one batch; if that batch fails, every series
    is analysed alone, so only a series that cannot be analysed lacks its signal."""

    def batch_fails(many):
        raise FloatingPointError("a batch that cannot be computed")

    monkeypatch.setattr(technical, "analyse_many", batch_fails)
    engine = SignalEngine(settings.strategy, None)
    events = [closed(hours, 400), closed(hours, 900)]
    signals = await engine.evaluate_many(events)
    assert all(isinstance(s, Signal) for s in signals), signals
    assert [s.indicators for s in signals] == [technical.snapshot(e.candles) for e in events]
