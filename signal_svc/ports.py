"""The seams between signal_svc's parts, so market data, the engine and scheduler, the
model and the streams can be built and tested apart:

    market feed ──CandleClosed──▶ scheduler ──Signal──▶ SignalRepository (store, exactly once)
                                     │  ▲                └──▶ SignalPublisher ──▶ subscribers
                       candles ──────▼  │ Outcome (ModelPrediction or InferenceError)
                                  Predictions (the inference service)

Implementations: market data in `signal_svc/market/`, the scheduler and engine in
`scheduler.py`/`engine.py`, predictions in `inference_client.py` (the only module here
that speaks gRPC to the inference service), the repository in `repository.py`, the
fan-out in `fanout.py`. Everything in this module is plain Python: the domain depends
on these types, never on gRPC or generated code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from common.candles import Candles
from common.market import Timeframe
from signal_svc.signals import Action, Signal


@dataclass(frozen=True)
class CandleClosed:
    """A bar of (pair, timeframe) has closed. `candles` ends with that bar and holds at
    least the history the engine needs before it (see MarketData.history)."""

    pair: str
    timeframe: Timeframe
    candles: Candles
    source: str  # "replay", "csv" or "live"
    # How many times an offline replay had started again from its beginning when this bar
    # closed (0 on the first lap and for live data): the same candle closes once a lap.
    lap: int = 0


@dataclass(frozen=True)
class PriceTick:
    """A price of a pair at `time`, with the range traded since the previous tick (so a
    stop-loss touched between two ticks is not missed). `lap` counts the times an
    offline replay has started its history again (0 for live data): a price of a later
    lap comes from earlier in market time."""

    pair: str
    price: float
    high: float
    low: float
    time: datetime
    source: str
    lap: int = 0


class MarketData(Protocol):
    async def history(self, pair: str, timeframe: Timeframe, count: int) -> Candles:
        """The latest `count` closed candles (fewer if there are not that many)."""
        ...

    def closes(self) -> AsyncIterator[CandleClosed]:
        """Every bar close of every offered series, as it happens."""
        ...


@dataclass(frozen=True)
class SignalFilter:
    """Which signals a subscriber or a list wants; empty means all."""

    pairs: frozenset[str] = frozenset()
    timeframes: frozenset[Timeframe] = frozenset()
    actions: frozenset[Action] = frozenset()
    min_confidence: float = 0.0
    since: datetime | None = None

    def matches(self, signal: Signal) -> bool:
        return (
            (not self.pairs or signal.pair in self.pairs)
            and (not self.timeframes or signal.timeframe in self.timeframes)
            and (not self.actions or signal.action in self.actions)
            and signal.confidence >= self.min_confidence
            and (self.since is None or signal.created_at >= self.since)
        )


class SignalReader(Protocol):
    async def signals_after(self, after_id: int, wanted: SignalFilter, limit: int) -> list[Signal]:
        """Stored signals with id > after_id matching `wanted`, oldest first."""
        ...


@dataclass(frozen=True)
class ModelPrediction:
    """The model's calibrated view of one series' next move."""

    probabilities: dict[str, float]  # "buy", "hold", "sell"; they sum to 1
    action: Action
    confidence: float
    model_name: str
    model_version: str


class InferenceError(Exception):
    """Why a series got no prediction."""


class InferenceUnavailable(InferenceError):
    """The inference service failed (down, slow, erroring) or its breaker is open."""


class SeriesNotCovered(InferenceError):
    """The served model does not predict this series (the service refused it)."""


Outcome = ModelPrediction | InferenceError


class Predictions(Protocol):
    """The model, as the engine sees it."""

    async def predict(self, series: Sequence[Candles]) -> list[Outcome]:
        """One outcome per series, in order; never raises for a dependency problem."""
        ...


class SignalPublisher(Protocol):
    async def publish(self, signal: Signal) -> None:
        """Hand a stored signal to every live subscriber (of every replica)."""
        ...
