"""A circuit breaker: stop calling a dependency that keeps failing, try again later.

    closed ──failure_threshold consecutive failures──▶ open (no calls) ──recovery_seconds──▶
    half-open (calls let through) ──success──▶ closed
                                  ──failure──▶ open again for recovery_seconds

Our own rather than the `circuitbreaker` package: the breaker's clock is injected, so
tests step through open and half-open without waiting in real time, and the caller
decides what counts as a failure where the error is understood (a dependency refusing
bad input is healthy) instead of through a predicate on exception types.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int,
        recovery_seconds: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.failure_threshold = failure_threshold
        self.recovery_seconds = recovery_seconds
        self._monotonic = monotonic
        self.failure_count = 0
        self._opened_at: float | None = None

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self.open_remaining > 0:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    @property
    def opened(self) -> bool:
        """Open: calls are refused without being made."""
        return self.state is BreakerState.OPEN

    @property
    def closed(self) -> bool:
        return self.state is BreakerState.CLOSED

    @property
    def open_remaining(self) -> float:
        """Seconds until calls are let through again (0 when they are)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.recovery_seconds - self._monotonic())

    def succeeded(self) -> None:
        """A call got an answer: the dependency is healthy."""
        self.failure_count = 0
        self._opened_at = None

    def failed(self) -> None:
        """A call failed for the dependency's sake (down, slow, erroring)."""
        self.failure_count += 1
        if self.state is BreakerState.HALF_OPEN or self.failure_count >= self.failure_threshold:
            self._opened_at = self._monotonic()
