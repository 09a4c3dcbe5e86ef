"""What each slash command does, over the ports: plain Python that returns the reply
to show (embeds, an optional PNG, ephemeral or not). The discord.py side (notifier.bot)
only reads options, defers, and sends these replies.

Every failure becomes an embed that says what to do — an input refused names the
option, an unlinked user is told how to link, a dependency down says so — never a stack
trace and never silence. A linked user whose DMs were found closed is marked reachable
again by any command they send, as the issue of a closed DM is theirs to fix.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

import structlog

from common.errors import (
    DomainError,
    FieldViolation,
    InvalidArgument,
    NotFound,
    RateLimited,
    Unavailable,
)
from notifier import inputs
from notifier.account_messages import (
    channel_embed,
    help_embed,
    linked_embed,
    not_linked,
    preferences_embed,
    status_embed,
    unexpected_embed,
    unlinked_embed,
)
from notifier.channels import SignalChannel
from notifier.charts import equity_png
from notifier.messages import Embed, error_embed, signal_embed
from notifier.metrics import COMMANDS
from notifier.ports import (
    Accounts,
    Market,
    PreferencesUpdate,
    ServerChannels,
    Services,
    Trading,
)
from notifier.trading_messages import performance_embed, positions_pages
from notifier.views import Account, StatusView

log = structlog.get_logger(__name__)
T = TypeVar("T")

PERIODS = {"all": "all time", "day": "the last 24 hours", "week": "the last 7 days",
           "month": "the last 30 days", "year": "the last 365 days"}  # fmt: skip
MODES = ("on", "silent", "off")
CHART_NAME = "equity.png"


@dataclass(frozen=True)
class Reply:
    """What the bot answers: embeds (more than one: pages, shown with buttons), an
    optional attachment (name, bytes), and whether only the asker sees it."""

    embeds: list[Embed]
    ephemeral: bool = False
    file: tuple[str, bytes] | None = None
    paged: bool = False
    refused: bool = False

    @classmethod
    def error(cls, embed: Embed) -> Reply:
        return cls([embed], ephemeral=True, refused=True)


@dataclass(frozen=True)
class Asker:
    """Who sent the command, and from where: a server (`guild_id`, and whether they may
    manage it) or a DM (no guild)."""

    discord_user_id: str
    discord_username: str
    guild_id: str | None = None
    manages_guild: bool = False


class NotLinked(Exception):
    """The command needs an AIFX account and the Discord user has none linked."""


@dataclass
class Commands:
    accounts: Accounts
    market: Market
    trading: Trading
    services: Services
    channels: ServerChannels
    _known_pairs: list[str] = field(default_factory=list)

    async def run(self, asker: Asker, command: str, **options: object) -> Reply:
        """Run one command; every outcome is a Reply."""
        outcome = "refused"
        try:
            handler = getattr(self, f"_{command}")
            reply: Reply = await handler(asker, **options)
            outcome = "refused" if reply.refused else "ok"
            return reply
        except NotLinked:
            return Reply.error(not_linked())
        except NotServerAdmin:
            return Reply.error(
                error_embed(
                    "Only server admins can do that",
                    "Ask someone with the Manage Server permission to set the signal channel.",
                )
            )
        except DomainError as error:
            return error_reply(error)
        except Exception:
            outcome = "failed"
            log.exception("command failed", command=command, discord_user_id=asker.discord_user_id)
            return Reply.error(unexpected_embed())
        finally:
            COMMANDS.labels(command, outcome).inc()

    async def pair_choices(self, typed: str) -> list[str]:
        """Autocomplete of a pair option, from ListPairs (fetched once, kept: the pairs
        a deployment serves change only with its configuration)."""
        if not self._known_pairs:
            self._known_pairs = await self.market.pairs()
        return inputs.pair_choices(self._known_pairs, typed)

    async def _account(self, asker: Asker, *, required: bool = True) -> Account | None:
        account = await self.accounts.acting_as(asker.discord_user_id)
        if account is None:
            if required:
                raise NotLinked
            return None
        if not account.dm_reachable:
            await self.accounts.dms_open_again(asker.discord_user_id)
        return account

    # --- the commands ------------------------------------------------------------------

    async def _signal(self, asker: Asker, pair: str, timeframe: str | None = None) -> Reply:
        series = inputs.pair(pair), inputs.timeframe(timeframe)
        await self._account(asker, required=False)
        try:
            signal = await self.market.latest_signal(series[0], series[1].value)
        except NotFound:
            return Reply.error(
                error_embed(
                    f"No signal yet for {series[0]} {series[1].value}",
                    "Signals come at each candle close; try another timeframe "
                    "or ask again after the next close.",
                )
            )
        return Reply([signal_embed(signal)])

    async def _subscribe(
        self,
        asker: Asker,
        pair: str,
        timeframe: str | None = None,
        min_confidence: float | None = None,
    ) -> Reply:
        wanted, tf = inputs.pair(pair), inputs.timeframe(timeframe)
        _check_confidence(min_confidence)
        account = await self._require(asker)
        current = await self.accounts.preferences(account)
        update = PreferencesUpdate(
            pairs=sorted({*current.pairs, wanted}),
            timeframes=sorted({*current.timeframes, tf.value}, key=_timeframe_order),
            min_confidence=min_confidence,
            notify_discord=True,
        )
        return Reply(
            [preferences_embed(await self.accounts.update_preferences(account, update), True)],
            ephemeral=True,
        )

    async def _unsubscribe(self, asker: Asker, pair: str) -> Reply:
        unwanted = inputs.pair(pair)
        account = await self._require(asker)
        current = await self.accounts.preferences(account)
        if unwanted not in current.pairs:
            return Reply.error(
                error_embed(
                    f"You are not subscribed to {unwanted}",
                    f"Your pairs: {', '.join(current.pairs) or 'none'}.",
                )
            )
        update = PreferencesUpdate(pairs=[p for p in current.pairs if p != unwanted])
        changed = await self.accounts.update_preferences(account, update)
        return Reply([preferences_embed(changed, True)], ephemeral=True)

    async def _preferences(
        self,
        asker: Asker,
        min_confidence: float | None = None,
        dms: str | None = None,
        kind: str | None = None,
        mode: str | None = None,
    ) -> Reply:
        account = await self._require(asker)
        _check_confidence(min_confidence)
        if (kind is None) != (mode is None):
            raise _refuse(
                "mode" if mode is None else "kind",
                "give both kind and mode, e.g. kind:signal mode:silent",
            )
        update = PreferencesUpdate(
            min_confidence=min_confidence,
            notify_discord=None if dms is None else dms == "on",
            modes=None if kind is None or mode is None else {kind: mode},
        )
        if update == PreferencesUpdate():
            return Reply(
                [preferences_embed(await self.accounts.preferences(account))], ephemeral=True
            )
        changed = await self.accounts.update_preferences(account, update)
        return Reply([preferences_embed(changed, True)], ephemeral=True)

    async def _positions(self, asker: Asker) -> Reply:
        account = await self._require(asker)
        pages = positions_pages(await self.trading.open_positions(account))
        return Reply(pages, ephemeral=True, paged=len(pages) > 1)

    async def _performance(self, asker: Asker, period: str | None = None) -> Reply:
        key = (period or "all").strip().lower()
        if key not in PERIODS:
            raise _refuse("period", f"'{period}' is not a period; use {', '.join(PERIODS)}")
        account = await self._require(asker)
        performance = await self.trading.performance(account, key)
        if not performance.equity:
            return Reply([performance_embed(performance, None)], ephemeral=True)
        title = f"Equity — {performance.period} ({performance.currency})"
        chart = equity_png(performance.equity, performance.currency, title)
        return Reply(
            [performance_embed(performance, CHART_NAME)], ephemeral=True, file=(CHART_NAME, chart)
        )

    async def _status(self, asker: Asker) -> Reply:
        account = await self._account(asker, required=False)
        health = await self.services.health()
        model = await _or_reason(
            self.market.model(), "unknown: the inference service does not answer"
        )
        market_time, replay = await _or_reason(self.market.market_time(), (None, False))
        status = StatusView(health, model, market_time, replay, account)
        return Reply([status_embed(status)], ephemeral=True)

    async def _link(self, asker: Asker, code: str) -> Reply:
        username = await self.accounts.link(code, asker.discord_user_id, asker.discord_username)
        return Reply([linked_embed(username)], ephemeral=True)

    async def _unlink(self, asker: Asker) -> Reply:
        try:
            username = await self.accounts.unlink(asker.discord_user_id)
        except NotFound:
            raise NotLinked from None
        return Reply([unlinked_embed(username)], ephemeral=True)

    async def _channel_set(
        self,
        asker: Asker,
        channel_id: str,
        pairs: str | None = None,
        min_confidence: float | None = None,
    ) -> Reply:
        guild_id = _server_admin(asker)
        wanted = sorted(
            {
                inputs.pair(p, "pairs")
                for p in (pairs or "").replace(";", ",").split(",")
                if p.strip()
            }
        )
        _check_confidence(min_confidence)
        channel = SignalChannel(guild_id, channel_id, wanted, min_confidence or 0.0)
        return Reply(
            [channel_embed(await self.channels.set(channel, asker.discord_user_id))], ephemeral=True
        )

    async def _channel_show(self, asker: Asker) -> Reply:
        guild_id = _server_admin(asker)
        return Reply([channel_embed(await self.channels.of_guild(guild_id))], ephemeral=True)

    async def _channel_clear(self, asker: Asker) -> Reply:
        guild_id = _server_admin(asker)
        await self.channels.clear(guild_id)
        return Reply([channel_embed(None)], ephemeral=True)

    async def _help(self, asker: Asker) -> Reply:
        return Reply([help_embed()], ephemeral=True)

    async def _require(self, asker: Asker) -> Account:
        account = await self._account(asker)
        assert account is not None
        return account


async def _or_reason(call: Awaitable[T], fallback: T) -> T:
    """A status figure, or `fallback` when its service does not answer (status must
    show what is down, not fail because of it)."""
    try:
        return await call
    except DomainError:
        return fallback


def _check_confidence(value: float | None) -> None:
    if value is not None and not 0 <= value <= 1:
        raise _refuse("min_confidence", "must be between 0 and 1 (0.7 = 70%)")


def _refuse(option: str, description: str) -> InvalidArgument:
    return InvalidArgument([FieldViolation(option, description)])


class NotServerAdmin(Exception):
    """A `/channel` command outside a server, or from someone who may not manage it."""


def _server_admin(asker: Asker) -> str:
    """The server of an asker allowed to change its signal channel."""
    if asker.guild_id is None:
        raise InvalidArgument([FieldViolation("channel", "use /channel in a server, not in a DM")])
    if not asker.manages_guild:
        raise NotServerAdmin
    return asker.guild_id


def _timeframe_order(value: str) -> int:
    return list(inputs.Timeframe).index(inputs.Timeframe(value))


def error_reply(error: DomainError) -> Reply:
    """A refusal from a service (or from the inputs), as an embed that says what to do."""
    if isinstance(error, InvalidArgument):
        details = "\n".join(f"**{v.field}**: {v.description}" for v in error.violations)
        return Reply.error(error_embed("That was not accepted", details or error.message))
    if isinstance(error, RateLimited):
        wait = (
            f"in {error.retry_after_seconds:.0f} s"
            if error.retry_after_seconds
            else "in a few minutes"
        )
        return Reply.error(error_embed("Too many attempts", f"Try again {wait}."))
    if isinstance(error, NotFound):
        return Reply.error(error_embed("Not found", error.message))
    if isinstance(error, Unavailable):
        return Reply.error(
            error_embed(
                "AIFX is partly unavailable", "A service did not answer; try again in a minute."
            )
        )
    return Reply.error(error_embed("That did not work", error.message))
