"""Embeds about a user's trading: open positions with live PnL, performance, and the DM
of a position event (opened, take-profit or stop-loss hit, closed). Plain Python."""

from __future__ import annotations

from notifier.messages import (
    BUY_GREEN,
    HOLD_GREY,
    INFO_BLUE,
    SELL_RED,
    Embed,
    paged,
)
from notifier.views import PerformanceView, PositionEventView, PositionView

EVENT_TITLES = {
    "position_opened": ("Position opened", INFO_BLUE),
    "take_profit_hit": ("Take-profit hit", BUY_GREEN),
    "stop_loss_hit": ("Stop-loss hit", SELL_RED),
    "position_closed": ("Position closed", HOLD_GREY),
}


def _signed(amount: str) -> str:
    return amount if amount.startswith("-") or not amount else f"+{amount}"


def _levels(position: PositionView) -> str:
    return (
        f"SL {position.stop_loss or '—'} · TP {position.take_profit or '—'}"
        f" · opened <t:{int(position.opened_at.timestamp())}:R>"
    )


def positions_pages(positions: list[PositionView]) -> list[Embed]:
    """`/positions`: every open position with its live PnL, paged by Discord's limits."""
    if not positions:
        return [
            {
                "title": "No open positions",
                "description": "Positions you record on the AIFX dashboard or API show here "
                "with their live PnL.",
                "color": INFO_BLUE,
            }
        ]
    rows = [
        (
            f"{p.pair} {p.side.upper()} {p.lots} lots @ {p.entry}",
            f"now {p.current_price or '—'} · {_signed(p.pips)} pips · "
            f"**{_signed(p.pnl)} {p.currency}**\n{_levels(p)}",
        )
        for p in positions
    ]
    return paged(f"Open positions ({len(positions)})", rows)


def performance_embed(performance: PerformanceView, chart_name: str | None) -> Embed:
    """`/performance`: the figures, with the equity curve as the attached PNG."""
    p = performance
    if p.trades == 0:
        return {
            "title": f"Performance — {p.period}",
            "description": "No closed positions in this period yet.",
            "color": INFO_BLUE,
        }
    fields = [
        ("Trades", f"{p.trades} ({p.wins} won, {p.losses} lost)"),
        ("Win rate", f"{p.win_rate:.0%}"),
        ("Profit factor", "—" if p.profit_factor is None else f"{p.profit_factor:.2f}"),
        ("Pips", _signed(p.total_pips)),
        ("PnL", f"{_signed(p.total_pnl)} {p.currency}"),
        ("Max drawdown", f"{p.max_drawdown} {p.currency}"),
    ]
    embed: Embed = {
        "title": f"Performance — {p.period}",
        "color": BUY_GREEN if not p.total_pnl.startswith("-") else SELL_RED,
        "fields": [{"name": n, "value": v, "inline": True} for n, v in fields],
    }
    if chart_name:
        embed["image"] = {"url": f"attachment://{chart_name}"}
    return embed


def position_event_embed(event: PositionEventView) -> Embed:
    """The DM about a change to one of the user's positions."""
    title, colour = EVENT_TITLES[event.kind]
    p = event.position
    fields = [("Side", f"{p.side.upper()} {p.lots} lots"), ("Entry", p.entry)]
    if p.status == "closed":
        fields += [
            ("Exit", p.exit_price or "—"),
            ("Pips", _signed(p.pips)),
            ("PnL", f"{_signed(p.pnl)} {p.currency}"),
        ]
    else:
        fields += [("Stop-loss", p.stop_loss or "—"), ("Take-profit", p.take_profit or "—")]
    return {
        "title": f"{title}: {p.pair}",
        "color": colour,
        "fields": [{"name": n, "value": v, "inline": True} for n, v in fields],
        "footer": {"text": f"AIFX position {p.id}"},
        "timestamp": event.time.isoformat(),
    }
