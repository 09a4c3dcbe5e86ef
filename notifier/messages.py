"""What the bot says, as Discord embed JSON (the shape `discord.Embed.from_dict` takes
and Discord's REST API receives), within Discord's limits. Plain Python: the servicer
side translates protos into the views here, the Discord side sends the dicts.

Nothing is ever cut short: a text longer than a field's limit continues in the next
field, and fields beyond one embed's limits continue in the next embed (sent as pages,
or as consecutive messages) — traders of other bots complain most about messages dropped
for being too long.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# Discord's embed limits (https://discord.com/developers/docs/resources/message#embed-object-embed-limits).
TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
FIELDS_LIMIT = 25
FIELD_NAME_LIMIT = 256
FIELD_VALUE_LIMIT = 1024
FOOTER_LIMIT = 2048
TOTAL_LIMIT = 6000

BUY_GREEN, SELL_RED, HOLD_GREY, INFO_BLUE, WARN_AMBER = (
    0x2ECC71,
    0xE74C3C,
    0x95A5A6,
    0x3498DB,
    0xF1C40F,
)
ACTION_COLOURS = {"buy": BUY_GREEN, "sell": SELL_RED, "hold": HOLD_GREY}

Embed = dict[str, Any]


@dataclass(frozen=True)
class SignalView:
    """A signal as the bot shows it (prices as decimals, confidence 0 to 1)."""

    id: str
    pair: str
    timeframe: str  # "1h"
    action: str  # "buy" | "sell" | "hold"
    confidence: float
    strength: str  # "strong", "moderate", "weak", "very weak"
    entry: float
    stop_loss: float | None
    take_profit: float | None
    risk_reward: float | None
    from_model: bool
    model: str  # "lstm v1" or "technical rules v1"
    candle_time: datetime


def _price(pair: str, value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if pair.endswith("/JPY") else f"{value:.5f}"


def signal_embed(signal: SignalView) -> Embed:
    """The embed of /signal and of a signal DM."""
    source = f"model {signal.model}" if signal.from_model else "technical fallback (no model)"
    fields = [
        ("Confidence", f"{signal.confidence:.0%}"),
        ("Strength", signal.strength),
        ("Entry", _price(signal.pair, signal.entry)),
        ("Stop-loss", _price(signal.pair, signal.stop_loss)),
        ("Take-profit", _price(signal.pair, signal.take_profit)),
        (
            "Risk/reward",
            "—" if signal.risk_reward is None else f"1 : {signal.risk_reward:.2f}",
        ),
        ("Source", source),
        ("Candle", f"<t:{int(signal.candle_time.timestamp())}:f>"),
    ]
    return {
        "title": f"{signal.pair} {signal.timeframe} — {signal.action.upper()}",
        "color": ACTION_COLOURS.get(signal.action, HOLD_GREY),
        "fields": [{"name": n, "value": v, "inline": True} for n, v in fields],
        "footer": {"text": f"AIFX signal {signal.id} · not financial advice"},
        "timestamp": signal.candle_time.isoformat(),
    }


def error_embed(what_happened: str, what_to_do: str) -> Embed:
    """An ephemeral refusal that says what happened and what to do, never a stack trace
    (our own short texts: a title and a description)."""
    return {"title": what_happened, "description": what_to_do, "color": WARN_AMBER}


def _size(embed: Embed) -> int:
    """Characters counted against the 6,000 total."""
    size = len(embed.get("title", "")) + len(embed.get("description", ""))
    size += len(embed.get("footer", {}).get("text", ""))
    return size + sum(len(f["name"]) + len(f["value"]) for f in embed.get("fields", []))


def paged(title: str, rows: Sequence[tuple[str, str]], *, colour: int = INFO_BLUE) -> list[Embed]:
    """`rows` (name, value) as fields over as many embeds as Discord's limits need —
    every row shown, in order; each embed titled "title (page i/n)" when there are
    several."""
    pages: list[list[dict[str, Any]]] = [[]]
    used = len(title) + 20  # room for " (page 10/10)"
    for name, value in rows:
        parts = [value[i : i + FIELD_VALUE_LIMIT] for i in range(0, len(value), FIELD_VALUE_LIMIT)]
        for index, part in enumerate(parts or [""]):
            field_name = (name if index == 0 else f"{name} (cont.)")[:FIELD_NAME_LIMIT]
            field_value = part or "\u200b"
            field = {"name": field_name, "value": field_value, "inline": False}
            cost = len(field_name) + len(field_value)
            if len(pages[-1]) == FIELDS_LIMIT or used + cost > TOTAL_LIMIT:
                pages.append([])
                used = len(title) + 20
            pages[-1].append(field)
            used += cost
    count = len(pages)
    return [
        {
            "title": title if count == 1 else f"{title} (page {i}/{count})",
            "color": colour,
            "fields": fields,
        }
        for i, fields in enumerate(pages, start=1)
    ]


def within_limits(embed: Embed) -> bool:
    """Whether Discord would take `embed` as it is."""
    fields = embed.get("fields", [])
    return (
        len(embed.get("title", "")) <= TITLE_LIMIT
        and len(embed.get("description", "")) <= DESCRIPTION_LIMIT
        and len(fields) <= FIELDS_LIMIT
        and all(
            len(f["name"]) <= FIELD_NAME_LIMIT and len(f["value"]) <= FIELD_VALUE_LIMIT
            for f in fields
        )
        and len(embed.get("footer", {}).get("text", "")) <= FOOTER_LIMIT
        and _size(embed) <= TOTAL_LIMIT
    )
