"""The backtest's tables: printed, stored in the version's metrics.json under
"backtest", and written as the "Backtest" section of its MODEL_CARD.md (between
markers, so a second run replaces the section instead of adding another)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from position_svc.performance import Performance

START, END = "<!-- backtest:start -->", "<!-- backtest:end -->"
TITLES = {
    "model": "Engine + model",
    "model_any_confidence": "Engine + model, any confidence",
    "technical": "Engine, technical rules only",
    "buy_and_hold": "Buy and hold",
    "always_hold": "Always hold",
}


def figures(performance: Performance, ended_open: int) -> dict[str, Any]:
    """The performance RPC's headline figures (money in USD, as decimal strings)."""
    return {
        "trades": performance.trades,
        "wins": performance.wins,
        "losses": performance.losses,
        "win_rate": performance.win_rate,
        "profit_factor": performance.profit_factor,
        "total_pips": str(performance.total_pips),
        "total_pnl_usd": str(performance.total_pnl),
        "max_drawdown_usd": str(performance.max_drawdown),
        "unconverted_trades": performance.unconverted_trades,
        "closed_at_period_end": ended_open,
    }


def _row(label: str, f: dict[str, Any]) -> str:
    pf = "n/a" if f["profit_factor"] is None else f"{f['profit_factor']:.2f}"
    win = f"{100 * f['win_rate']:.1f} %" if f["trades"] else "n/a"
    return (
        f"| {label} | {f['trades']} | {win} | {pf} | {float(f['total_pips']):,.0f} | "
        f"{float(f['total_pnl_usd']):,.0f} | {float(f['max_drawdown_usd']):,.0f} | "
        f"{f['closed_at_period_end']} |"
    )


def markdown(result: dict[str, Any]) -> str:
    """The card's Backtest section."""
    out: list[str] = []
    add = out.append
    add("## Backtest of the engine's trading rule")
    add("")
    add(result["method"])
    add("")
    head = "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for name, by_year in result["strategies"].items():
        add("")
        add(f"**{TITLES.get(name, name)}**")
        add("")
        add(
            "| Year | Trades | Win rate | Profit factor | Pips | PnL, USD (1 lot) | "
            "Max drawdown, USD | Closed at period end |"
        )
        add(head)
        for year, f in by_year.items():
            add(_row(f"**{year}**" if year == "total" else year, f))
    add("")
    add(result["verdict"])
    return "\n".join(out) + "\n"


def write(version_dir: Path, result: dict[str, Any]) -> None:
    """metrics.json["backtest"] and the card's Backtest section."""
    metrics_path = version_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics["backtest"] = result
    metrics_path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    card_path = version_dir / "MODEL_CARD.md"
    card = card_path.read_text()
    section = f"{START}\n{markdown(result)}{END}\n"
    if START in card and END in card:
        before, rest = card.split(START, 1)
        card = before + section + rest.split(END, 1)[1].lstrip("\n")
    else:
        card = card.rstrip("\n") + "\n\n" + section
    card_path.write_text(card)
