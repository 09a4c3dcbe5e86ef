"""One full scan of every configured series through the signal engine and inference:
how long signal_svc takes, from the candles closing to every series having its signal
(target: under 100 ms, the old system's detection bar).

Starts the model server (`python -m inference.model_server`, serving both committed
models from models/models.config, as `make run` does) and the inference service
(`python -m inference`) as subprocesses on free ports, then, in this process, the real
`SignalEngine` with the real inference client, configured like the default `make run`
(AIFX_SIGNAL_PAIRS x AIFX_SIGNAL_TIMEFRAMES, kept to the series the default history
offers: EUR/USD 1h and 4h from the bundled hours, the ten ECB pairs daily). A scan is
one `evaluate_many` of one CandleClosed per series, all at the same moment of the real
history (the last bundled hour, when every series has data), as the scheduler hands
them over when bars close together: one PredictBatch routed to both models, then the
indicators, levels and signal of each series. Timed sequentially after a warm-up; the
same scan with technical rules only (no inference) is timed too, to show where the
time goes.

Run:  .venv/bin/python bench/scan_latency.py [--scans 200]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from inference_load import InferenceProcess
from model_server_load import Server, percentile

from common.logging import configure_logging
from common.settings import MarketSettings, Settings
from signal_svc.engine import HISTORY_BARS, SignalEngine
from signal_svc.inference_client import InferenceClient
from signal_svc.market.series import close_times, default_history
from signal_svc.ports import CandleClosed
from signal_svc.scheduler import configured_series
from signal_svc.signals import Signal

TARGET_MS = 100.0


def scan_events(market: MarketSettings) -> list[CandleClosed]:
    """One CandleClosed per configured series, at the last moment of the bundled hours."""
    history = default_history()
    series = configured_series(market, history.offered())
    moment = int(close_times(history.series[("EUR/USD", series[0][1])])[-1])
    events = []
    for pair, timeframe in series:
        candles = history.series[(pair, timeframe)]
        closed = int((close_times(candles) <= moment).sum())
        events.append(
            CandleClosed(pair, timeframe, candles.slice(0, closed).tail(HISTORY_BARS), "replay")
        )
    return events


async def timed_scans(engine: SignalEngine, events: list[CandleClosed], scans: int) -> list[float]:
    for _ in range(10):
        await engine.evaluate_many(events)
    latencies = []
    for _ in range(scans):
        started = time.perf_counter()
        await engine.evaluate_many(events)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def report(name: str, latencies: list[float]) -> None:
    print(
        f"{name}: p50 {percentile(latencies, 50):.1f} ms  p90 {percentile(latencies, 90):.1f} ms  "
        f"p99 {percentile(latencies, 99):.1f} ms  max {max(latencies):.1f} ms"
    )


async def measure(settings: Settings, target: str, token: str, scans: int) -> None:
    events = scan_events(settings.market)
    moment = time.gmtime(int(close_times(events[0].candles)[-1]))
    listed = ", ".join(f"{e.pair} {e.timeframe.value}" for e in events)
    print(f"{len(events)} series: {listed}")
    print(f"closing at {time.strftime('%Y-%m-%d %H:%M UTC', moment)}, {HISTORY_BARS} bars each\n")
    client = InferenceClient(target, token, settings.strategy.inference_timeout_seconds)
    try:
        engine = SignalEngine(settings.strategy, client)
        full = await timed_scans(engine, events, scans)
        signals = await engine.evaluate_many(events)
    finally:
        await client.close()
    technical = await timed_scans(SignalEngine(settings.strategy, None), events, scans)
    sources = Counter(
        f"{s.source.value} ({s.model_name})" if isinstance(s, Signal) else f"failed: {s.error}"
        for s in signals
    )
    report(f"full scan, engine + inference ({scans} scans)", full)
    report("same scan, technical rules only (no inference)", technical)
    print("signals of a scan by source: " + ", ".join(f"{n} {k}" for k, n in sources.items()))
    p50, p99 = percentile(full, 50), percentile(full, 99)
    print(
        f"\ntarget: a full scan under {TARGET_MS:.0f} ms (p50 {p50:.1f} ms, p99 {p99:.1f} ms): "
        f"{'met' if p99 < TARGET_MS else 'MISSED'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scans", type=int, default=200)
    args = parser.parse_args()
    # The engine logs each signal at INFO; a scan's timing should not be the terminal's.
    settings = Settings.load(log_level="WARNING")
    configure_logging(settings, "scan-bench")
    workdir = Path(tempfile.mkdtemp(prefix="aifx-scan-bench-"))
    server = Server(None, [], workdir / "model-server.log")
    service: InferenceProcess | None = None
    try:
        print(f"models served: {', '.join(server.models)} (models/models.config)")
        service = InferenceProcess(server.target, workdir, models={})
        asyncio.run(measure(settings, service.target, service.token, args.scans))
        print(
            f"memory: inference RSS {service.rss_mb():.0f} MB, model server RSS "
            f"{server.memory_mb()[0]:.0f} MB"
        )
    finally:
        if service is not None:
            service.stop()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
