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

The breaker (`circuitbreaker`): after FAILURE_THRESHOLD = 3 consecutive failed calls it
opens for RECOVERY_SECONDS = 30 s, during which no call is made at all, so a dead
inference service costs nothing per candle instead of a timeout per candle. Then one
call is let through (half-open): success closes the breaker, failure opens it for
another 30 s. Three failures cost at most 3 x the timeout (1.5 s at the default 0.5 s)
before the breaker opens; thirty seconds bounds how stale a recovery is noticed (at an
hourly candle, the next candle after recovery already gets the model).

The gRPC channel is created on first use, inside the running event loop (a grpc.aio
channel is bound to the loop it was created in).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import structlog
from circuitbreaker import CircuitBreaker
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from aifx.common.v1 import market_pb2
from aifx.inference.v1 import inference_pb2, inference_pb2_grpc
from common.candles import Candles
from common.grpc_metadata import SERVICE_TOKEN_HEADER
from common.proto_convert import TIMEFRAME_TO_PROTO
from common.settings import Settings
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
    """The inference service failed (down, slow, erroring) or the breaker is open."""


class SeriesNotCovered(InferenceError):
    """The served model does not predict this series (INVALID_ARGUMENT)."""


Outcome = ModelPrediction | InferenceError


def _is_failure(exc_type: type[BaseException], exc: BaseException) -> bool:
    """What trips the breaker: every RPC error except INVALID_ARGUMENT, and timeouts."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code() != grpc.StatusCode.INVALID_ARGUMENT
    return isinstance(exc, TimeoutError | OSError)


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


def _refused(error: grpc.aio.AioRpcError, count: int) -> dict[int, str]:
    """Which requests of a batch of `count` an INVALID_ARGUMENT names, with why. A
    violation without a `requests[i]` prefix (a single Predict) names request 0; an error
    without details names them all."""
    refused: dict[int, str] = {}
    status = None
    try:
        status = rpc_status.from_call(error)
    except ValueError:
        status = None
    if status is not None:
        for packed in status.details:
            if not packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                continue
            bad = error_details_pb2.BadRequest()
            packed.Unpack(bad)
            for violation in bad.field_violations:
                match = _BATCH_INDEX.match(violation.field)
                index = int(match.group(1)) if match else 0
                if index < count:
                    refused.setdefault(index, f"{violation.field}: {violation.description}")
    if not refused:
        refused = dict.fromkeys(range(count), error.details() or "invalid argument")
    return refused


class InferenceClient:
    def __init__(
        self,
        target: str,
        service_token: str,
        timeout_seconds: float,
        *,
        failure_threshold: int = FAILURE_THRESHOLD,
        recovery_seconds: float = RECOVERY_SECONDS,
    ) -> None:
        self.target = target
        self._metadata = ((SERVICE_TOKEN_HEADER, service_token),)
        self._timeout = timeout_seconds
        self.breaker = CircuitBreaker(
            failure_threshold=failure_threshold,
            recovery_timeout=recovery_seconds,
            expected_exception=_is_failure,
            name=f"inference@{target}#{id(self)}",
        )
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None
        self.calls = 0  # RPCs actually attempted (for tests and metrics)

    @classmethod
    def from_settings(cls, settings: Settings, service_token: str) -> InferenceClient:
        """The client of settings.effective_inference_target with the configured timeout
        (service_token: common.service_credentials.load_service_token(settings))."""
        return cls(
            settings.effective_inference_target,
            service_token,
            settings.inference_timeout_seconds,
        )

    def _inference_stub(self) -> Any:
        if self._stub is None:
            self._channel = grpc.aio.insecure_channel(self.target)
            self._stub = inference_pb2_grpc.InferenceServiceStub(self._channel)
        return self._stub

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._stub = None

    async def _call(self, requests: list[inference_pb2.PredictRequest]) -> list[ModelPrediction]:
        stub = self._inference_stub()
        self.calls += 1
        if len(requests) == 1:
            response = await stub.Predict(
                requests[0], timeout=self._timeout, metadata=self._metadata
            )
            return [_prediction(response)]
        batch = await stub.PredictBatch(
            inference_pb2.PredictBatchRequest(requests=requests),
            timeout=self._timeout,
            metadata=self._metadata,
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
                    f"(retry in {self.breaker.open_remaining}s)"
                )
                for index in pending:
                    outcomes[index] = reason
                return
            try:
                answers = await self.breaker.call_async(
                    self._call, [requests[index] for index in pending]
                )
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
                    self._log_failure(error.code().name, error.details())
                    failure = InferenceUnavailable(
                        f"inference {error.code().name}: {error.details() or ''}".strip()
                    )
                    for index in pending:
                        outcomes[index] = failure
                    return
                refused = _refused(error, len(pending))
                for position, why in refused.items():
                    outcomes[pending[position]] = SeriesNotCovered(why)
                pending = [i for p, i in enumerate(pending) if p not in refused]
                continue
            except (TimeoutError, OSError) as error:
                self._log_failure(type(error).__name__, str(error))
                for index in pending:
                    outcomes[index] = InferenceUnavailable(str(error) or type(error).__name__)
                return
            except asyncio.CancelledError:
                raise
            for index, answer in zip(pending, answers, strict=True):
                outcomes[index] = answer
            return

    def _log_failure(self, code: str, details: str | None) -> None:
        log.warning(
            "inference failed",
            target=self.target,
            code=code,
            details=details,
            consecutive_failures=self.breaker.failure_count,
            breaker=self.breaker.state,
        )
