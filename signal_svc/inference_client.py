"""signal_svc's client of the inference service, behind a circuit breaker.

One call per batch of series that closed together (PredictBatch; Predict for one). Each
series gets either a `ModelPrediction` or the reason there is none:

- `InferenceUnavailable`: the service is down (UNAVAILABLE), slower than
  `inference_timeout_seconds` (DEADLINE_EXCEEDED), answers with any other error, or the
  breaker is open. These count as failures of the dependency.
- `SeriesNotCovered`: INVALID_ARGUMENT naming the series, i.e. the served model has no
  model for that pair/timeframe (or refuses its candles). The dependency is healthy: this
  is not a failure, the breaker is not tripped, and the other series of the batch are
  asked again without the refused ones (PredictBatch is all-or-nothing).

The breaker (common.circuit_breaker): after FAILURE_THRESHOLD = 3 consecutive failed calls
it opens for RECOVERY_SECONDS = 30 s by default (AIFX_INFERENCE_RECOVERY_SECONDS), during
which no call is made at all, so a dead inference service costs nothing per candle
instead of a timeout per candle. Then one
call is let through (half-open): success closes the breaker, failure opens it for
another 30 s. Three failures cost at most 3 x the timeout (1.5 s at the default 0.5 s)
before the breaker opens; thirty seconds bounds how stale a recovery is noticed (at an
hourly candle, the next candle after recovery already gets the model).

Calls go through the shared client helper (common.grpc_client): service credential,
request id, wait-for-ready within the timeout, and failures as domain errors, so nothing
here catches gRPC's own exceptions. What the engine sees (`ModelPrediction`, the
`InferenceError`s) is defined in `ports.py`, free of gRPC.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence

import structlog
from google.protobuf import timestamp_pb2

from aifx.common.v1 import market_pb2
from aifx.inference.v1 import inference_pb2, inference_pb2_grpc
from common.candles import Candles
from common.circuit_breaker import CircuitBreaker
from common.errors import DomainError, InvalidArgument
from common.grpc_client import GrpcClient
from common.proto_convert import TIMEFRAME_TO_PROTO
from signal_svc.ports import (
    InferenceUnavailable,
    ModelPrediction,
    Outcome,
    SeriesNotCovered,
)
from signal_svc.signals import Action

log = structlog.get_logger(__name__)

FAILURE_THRESHOLD = 3
RECOVERY_SECONDS = 30.0
# PredictBatch accepts 1 to 256 requests.
MAX_BATCH = 256

_ACTIONS = {
    market_pb2.TRADE_ACTION_BUY: Action.BUY,
    market_pb2.TRADE_ACTION_SELL: Action.SELL,
    market_pb2.TRADE_ACTION_HOLD: Action.HOLD,
}
_BATCH_INDEX = re.compile(r"^requests\[(\d+)\]")


def candle_messages(candles: Candles) -> list[market_pb2.Candle]:
    return [
        market_pb2.Candle(
            open_time=timestamp_pb2.Timestamp(seconds=t),
            open=o,
            high=h,
            low=lo,
            close=c,
            volume=v,
        )
        for t, o, h, lo, c, v in zip(
            candles.times.tolist(),
            candles.open.tolist(),
            candles.high.tolist(),
            candles.low.tolist(),
            candles.close.tolist(),
            candles.volume.tolist(),
            strict=True,
        )
    ]


def _request(candles: Candles) -> inference_pb2.PredictRequest:
    return inference_pb2.PredictRequest(
        pair=candles.pair,
        timeframe=TIMEFRAME_TO_PROTO[candles.timeframe],
        candles=candle_messages(candles),
    )


def _prediction(response: inference_pb2.PredictResponse) -> ModelPrediction:
    p = response.probabilities
    return ModelPrediction(
        probabilities={"buy": p.buy, "hold": p.hold, "sell": p.sell},
        action=_ACTIONS.get(response.action, Action.HOLD),
        confidence=response.confidence,
        model_name=response.model_name,
        model_version=response.model_version,
    )


def _refused(error: InvalidArgument, count: int) -> dict[int, str]:
    """Which requests of a batch of `count` the refusal names, with why. A violation
    without a `requests[i]` prefix (a single Predict) names request 0; a refusal without
    violations names them all."""
    refused: dict[int, str] = {}
    for violation in error.violations:
        match = _BATCH_INDEX.match(violation.field)
        index = int(match.group(1)) if match else 0
        if index < count:
            refused.setdefault(index, f"{violation.field}: {violation.description}")
    if not refused:
        refused = dict.fromkeys(range(count), error.message or "invalid argument")
    return refused


class InferenceClient:
    """The `Predictions` port over the inference service's gRPC API."""

    def __init__(
        self,
        target: str,
        service_token: str,
        timeout_seconds: float,
        *,
        failure_threshold: int = FAILURE_THRESHOLD,
        recovery_seconds: float = RECOVERY_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = GrpcClient(
            "inference", target, service_token=service_token, timeout_seconds=timeout_seconds
        )
        self.breaker = CircuitBreaker(failure_threshold, recovery_seconds, monotonic=monotonic)
        self.calls = 0  # RPCs actually attempted (for tests and metrics)

    @property
    def target(self) -> str:
        return self._client.target

    async def close(self) -> None:
        await self._client.close()

    async def _call(self, requests: list[inference_pb2.PredictRequest]) -> list[ModelPrediction]:
        stub = self._client.stub(inference_pb2_grpc.InferenceServiceStub)
        self.calls += 1
        if len(requests) == 1:
            response = await self._client.unary(stub.Predict, requests[0])
            return [_prediction(response)]
        batch = await self._client.unary(
            stub.PredictBatch, inference_pb2.PredictBatchRequest(requests=requests)
        )
        return [_prediction(r) for r in batch.responses]

    async def predict(self, series: Sequence[Candles]) -> list[Outcome]:
        """One outcome per series, in order. Never raises for a dependency problem."""
        outcomes: list[Outcome | None] = [None] * len(series)
        for start in range(0, len(series), MAX_BATCH):
            chunk = list(range(start, min(start + MAX_BATCH, len(series))))
            await self._predict_chunk(series, chunk, outcomes)
        return [o if o is not None else InferenceUnavailable("no answer") for o in outcomes]

    async def _predict_chunk(
        self, series: Sequence[Candles], pending: list[int], outcomes: list[Outcome | None]
    ) -> None:
        requests = {index: _request(series[index]) for index in pending}
        while pending:
            if self.breaker.opened:
                reason = InferenceUnavailable(
                    f"circuit open after {self.breaker.failure_count} failures "
                    f"(retry in {self.breaker.open_remaining:.0f}s)"
                )
                for index in pending:
                    outcomes[index] = reason
                return
            try:
                answers = await self._call([requests[index] for index in pending])
            except InvalidArgument as refusal:
                # The service is healthy; the model does not cover some of these series.
                self.breaker.succeeded()
                refused = _refused(refusal, len(pending))
                for position, why in refused.items():
                    outcomes[pending[position]] = SeriesNotCovered(why)
                pending = [i for p, i in enumerate(pending) if p not in refused]
                continue
            except DomainError as error:
                self.breaker.failed()
                self._log_failure(error)
                failure = InferenceUnavailable(error.message)
                for index in pending:
                    outcomes[index] = failure
                return
            self.breaker.succeeded()
            for index, answer in zip(pending, answers, strict=True):
                outcomes[index] = answer
            return

    def _log_failure(self, error: DomainError) -> None:
        log.warning(
            "inference failed",
            target=self.target,
            reason=error.reason,
            details=error.message,
            consecutive_failures=self.breaker.failure_count,
            breaker=self.breaker.state.value,
        )
