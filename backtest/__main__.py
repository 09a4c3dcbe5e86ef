"""`python -m backtest MODEL_DIR`: backtest the engine's trading rule on a walk-forward
version's recorded held-out predictions (see `backtest.simulate`), print the tables and
add them to the version's metrics.json and MODEL_CARD.md.

MODEL_DIR is a version folder (models/lstm_daily/1) or a model's base folder
(models/lstm_daily: its latest complete version).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from backtest import report
from backtest.predictions import RecordedPredictions, load_recorded
from backtest.simulate import PeriodResult, buy_and_hold, simulate_engine
from common.market_data.ecb import load_ecb_history
from common.settings import StrategySettings
from inference.model_format import ModelMetadata, complete_versions
from position_svc.performance import compute
from signal_svc.engine import SignalEngine

HELDOUT_FILE = "heldout_predictions.csv"


def _year_bounds(year: int) -> tuple[int, int]:
    start = datetime(year, 1, 1, tzinfo=UTC).timestamp()
    return int(start), int(datetime(year + 1, 1, 1, tzinfo=UTC).timestamp())


def version_dir(path: Path) -> Path:
    """`path` itself when it is a version folder, else its latest complete version."""
    if (path / "aifx_metadata.json").is_file():
        return path
    versions = complete_versions(path)
    if not versions:
        raise SystemExit(f"{path}: neither a model version nor a folder of versions")
    return path / str(versions[-1])


async def run(directory: Path, threshold: float | None) -> dict[str, Any]:
    metadata = ModelMetadata.read(directory)
    if not (directory / HELDOUT_FILE).is_file():
        raise SystemExit(
            f"{directory} has no {HELDOUT_FILE}: the backtest replays a walk-forward "
            'version\'s held-out predictions (make train ARGS="--dataset ecb-daily")'
        )
    recorded, years_of = load_recorded(directory / HELDOUT_FILE)
    years = sorted(set(years_of.values()))
    chosen = metadata.metrics["thresholded"]["threshold"] if threshold is None else threshold
    strategy = StrategySettings()
    series = load_ecb_history(metadata.pairs)
    port = RecordedPredictions(recorded, metadata.model_name, str(metadata.version))
    with_model = SignalEngine(strategy, port)
    rules_only = SignalEngine(strategy, None)
    results: dict[str, dict[str, PeriodResult]] = {name: {} for name in report.TITLES}
    for year in years:
        start, end = _year_bounds(year)
        print(f"backtesting {year}", file=sys.stderr, flush=True)
        results["model"][str(year)] = await simulate_engine(
            with_model, series, start, end, chosen, model_only=True
        )
        results["model_any_confidence"][str(year)] = await simulate_engine(
            with_model, series, start, end, 0.0, model_only=True
        )
        results["technical"][str(year)] = await simulate_engine(
            rules_only, series, start, end, chosen
        )
        results["buy_and_hold"][str(year)] = buy_and_hold(series, start, end)
        results["always_hold"][str(year)] = PeriodResult()
    strategies: dict[str, dict[str, dict[str, Any]]] = {}
    for name, by_year in results.items():
        table = {y: report.figures(r.performance, r.ended_open) for y, r in by_year.items()}
        every = [p for r in by_year.values() for p in r.positions]
        table["total"] = report.figures(compute(every), sum(r.ended_open for r in by_year.values()))
        strategies[name] = table
    model_total = strategies["model"]["total"]
    method = (
        f"The real `SignalEngine` (StrategySettings defaults: stop-loss "
        f"{strategy.stop_loss_atr:g} x ATR(14), take-profit {strategy.take_profit_atr:g} x "
        f"ATR(14), technical fallback capped at {strategy.fallback_max_confidence:g}) run "
        f"day by day over each held-out year ({years[0]} to {years[-1]}) of the "
        f"{len(metadata.pairs)} pairs' ECB fixings, with an offline Predictions port that "
        f"answers the recorded out-of-sample probabilities of `{HELDOUT_FILE}` (each "
        "year's from the fold trained before it). So entries, confidence, stop-loss and "
        "take-profit are exactly the engine's, including its technical veto of a model "
        f"trade. A trade opens when the signal is buy or sell with confidence ≥ {chosen:g} "
        "(the model's thresholded-confidence threshold: StrategySettings has no minimum "
        "confidence), one open position per pair, 1 lot; it closes when a later fixing "
        "crosses its stop-loss or take-profit (close-only semantics, exit at the level, "
        "stop-loss first, as the position watcher does); a position still open at the "
        "year's last fixing is closed there (counted in the last column). Each year is "
        "simulated on its own. 'Any confidence' drops the threshold, to show what the "
        "model's direction calls do when traded. 'Technical rules only' is the same "
        "engine with no model (`SignalEngine(strategy, None)`), same threshold. Buy and "
        "hold buys every pair at the year's first fixing and sells at its last. Figures "
        "are position_svc.performance's: PnL converted to USD at the fixings, profit "
        "factor = gross profit / gross loss, max drawdown of the cumulative USD PnL. No "
        "spread, swap or slippage."
    )
    tech_total = strategies["technical"]["total"]
    factor = model_total["profit_factor"]
    verdict = (
        f"In total the engine with the model made {model_total['trades']} trades, "
        f"{float(model_total['total_pips']):,.0f} pips, "
        f"{float(model_total['total_pnl_usd']):,.0f} USD (profit factor "
        f"{'n/a' if factor is None else f'{factor:.2f}'}); the technical rules alone "
        f"{tech_total['trades']} trades, "
        f"{float(tech_total['total_pnl_usd']):,.0f} USD. Costs are not modelled, so real "
        "results would be lower."
    )
    return {
        "threshold": chosen,
        "threshold_source": "model metrics.thresholded.threshold"
        if threshold is None
        else "command line",
        "years": years,
        "lot_size": 1,
        "strategies": strategies,
        "method": method,
        "verdict": verdict,
    }


def _print(result: dict[str, Any]) -> None:
    print(report.markdown(result))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backtest", description=__doc__)
    parser.add_argument("model_dir", type=Path, help="version folder or model base folder")
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="minimum confidence to trade (default: the model's thresholded-confidence "
        "threshold from its metrics.json)",
    )
    args = parser.parse_args(argv)
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        parser.error(f"--threshold is a confidence from 0 to 1, got {args.threshold:g}")
    # The engine logs every signal at info; tens of thousands of them say nothing here.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    directory = version_dir(args.model_dir)
    result = asyncio.run(run(directory, args.threshold))
    report.write(directory, result)
    _print(result)
    print(f"written to {directory}/metrics.json and MODEL_CARD.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
