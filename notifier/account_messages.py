"""Embeds about the user and the bot: linking, preferences, status and help. Plain
Python."""

from __future__ import annotations

from notifier.channels import SignalChannel
from notifier.messages import BUY_GREEN, INFO_BLUE, SELL_RED, WARN_AMBER, Embed, error_embed
from notifier.views import PreferencesView, StatusView

KIND_NAMES = {
    "signal": "Signals",
    "take_profit_hit": "Take-profit hits",
    "stop_loss_hit": "Stop-loss hits",
    "position_opened": "Positions opened",
    "position_closed": "Positions closed",
}
MODE_NAMES = {"on": "on", "silent": "silent (no push)", "off": "off"}

# (command, what it does, an example)
COMMANDS = (
    ("/signal pair [timeframe]", "the latest signal", "/signal eurusd 4h"),
    (
        "/subscribe pair [timeframe] [min_confidence]",
        "DM me its signals",
        "/subscribe GBP/USD 1h 0.7",
    ),
    ("/unsubscribe pair", "stop its signals", "/unsubscribe gbpusd"),
    (
        "/preferences [min_confidence] [dms] [kind] [mode]",
        "show or change what I DM",
        "/preferences kind:stop_loss_hit mode:silent",
    ),
    ("/positions", "open positions with live PnL", "/positions"),
    ("/performance [period]", "results and equity curve", "/performance month"),
    ("/status", "model, data and services", "/status"),
    ("/link code", "link your AIFX account", "/link K7QX2MPD"),
    ("/unlink", "unlink it", "/unlink"),
    (
        "/channel set #channel [pairs] [min_confidence]",
        "server admins: post matching signals in a channel (/channel show, /channel clear)",
        "/channel set #signals EURUSD,GBPUSD 0.6",
    ),
    ("/help", "this list", "/help"),
)


def not_linked() -> Embed:
    return error_embed(
        "Your Discord account is not linked",
        "Sign in on the AIFX dashboard, create a link code (Settings → Discord, or "
        "`POST /api/v1/auth/discord/link-code`), then send `/link CODE` here.",
    )


def linked_embed(username: str) -> Embed:
    return {
        "title": f"Linked to AIFX account {username}",
        "description": "Signals matching your preferences now come as DMs "
        "(`/preferences` to change them). `/unlink` undoes this.",
        "color": BUY_GREEN,
    }


def unlinked_embed(username: str) -> Embed:
    return {
        "title": "Unlinked",
        "description": f"This Discord account is no longer linked to {username}; "
        "no more DMs. `/link CODE` links it again.",
        "color": INFO_BLUE,
    }


def preferences_embed(preferences: PreferencesView, changed: bool = False) -> Embed:
    p = preferences
    modes = "\n".join(f"{KIND_NAMES[k]}: {MODE_NAMES[m]}" for k, m in p.modes.items())
    fields = [
        ("Pairs", ", ".join(p.pairs) or "none — `/subscribe` to add one"),
        ("Timeframes", ", ".join(p.timeframes) or "none"),
        ("Minimum confidence", f"{p.min_confidence:.0%}"),
        ("Discord DMs", "on" if p.notify_discord else "off — `/preferences dms:on`"),
        ("Each kind of DM", modes),
    ]
    return {
        "title": "Preferences updated" if changed else "Your preferences",
        "color": BUY_GREEN if changed else INFO_BLUE,
        "fields": [{"name": n, "value": v, "inline": n != "Each kind of DM"} for n, v in fields],
    }


def status_embed(status: StatusView) -> Embed:
    services = "\n".join(
        f"{'🟢' if up else '🔴'} {name}" for name, up in sorted(status.services.items())
    )
    data = "unknown"
    if status.market_time is not None:
        when = f"<t:{int(status.market_time.timestamp())}:f>"
        data = f"replay of real history, at {when}" if status.replay else f"live, {when}"
    if status.account is None:
        you = "not linked — `/help` says how"
    elif status.account.dm_reachable:
        you = f"linked to {status.account.username}; DMs reach you"
    else:
        you = (
            f"linked to {status.account.username}; **your DMs were closed** — open them "
            "(Privacy settings → Direct messages) and they resume with this command"
        )
    all_up = all(status.services.values())
    return {
        "title": "AIFX status" + ("" if all_up else " — degraded"),
        "color": BUY_GREEN if all_up else WARN_AMBER,
        "fields": [
            {"name": "Model", "value": status.model, "inline": False},
            {"name": "Market data", "value": data, "inline": False},
            {"name": "Services", "value": services or "—", "inline": False},
            {"name": "You", "value": you, "inline": False},
        ],
    }


def channel_embed(channel: SignalChannel | None) -> Embed:
    """The server's signal channel, as `/channel` shows it."""
    if channel is None:
        return {
            "title": "No signal channel",
            "description": "Signals are not posted in this server. "
            "`/channel set #channel` posts them in a channel.",
            "color": INFO_BLUE,
        }
    return {
        "title": "Signal channel",
        "description": f"Signals are posted in <#{channel.channel_id}>, once each.",
        "color": BUY_GREEN,
        "fields": [
            {"name": "Pairs", "value": ", ".join(channel.pairs) or "every pair", "inline": True},
            {
                "name": "Minimum confidence",
                "value": f"{channel.min_confidence:.0%}",
                "inline": True,
            },
        ],
    }


def help_embed() -> Embed:
    return {
        "title": "AIFX — forex signals in Discord",
        "description": "Link your AIFX account with `/link CODE`, then choose pairs with "
        "`/subscribe`. Pairs as you like to type them (`eurusd`, `EUR/USD`); timeframes "
        "15m, 1h, 4h, 1d. Signals are not financial advice.",
        "color": INFO_BLUE,
        "fields": [
            {"name": usage, "value": f"{what} — e.g. `{example}`", "inline": False}
            for usage, what, example in COMMANDS
        ],
    }


def unexpected_embed() -> Embed:
    return {
        "title": "Something went wrong on our side",
        "description": "It has been logged. Please try again in a minute.",
        "color": SELL_RED,
    }
