"""The seams of the notifier's domain: what it needs from the other services and from
Discord, as Protocols. Adapters (gRPC clients, the discord.py bot) implement them; the
domain never imports grpc or discord."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from notifier.channels import SignalChannel
from notifier.ledger import Delivery
from notifier.messages import SignalView
from notifier.views import (
    Account,
    PerformanceView,
    PositionView,
    PreferencesView,
)


@dataclass(frozen=True)
class Recipient:
    user_id: str
    discord_user_id: str
    silent: bool = False  # sent without a push notification


class SignalChannels(Protocol):
    """Servers' signal channels (notifier.channels.Channels)."""

    async def for_signal(self, signal: SignalView) -> list[SignalChannel]:
        """The channels that want `signal`."""
        ...

    async def clear_channel(self, channel_id: str) -> None:
        """Forget a channel Discord no longer lets the bot post in."""
        ...


class SignalRecipients(Protocol):
    async def for_signal(self, signal: SignalView) -> list[Recipient]:
        """Everyone to DM about `signal`."""
        ...


@dataclass(frozen=True)
class Owner:
    """Who gets the DMs about a user's positions, and how."""

    discord_user_id: str
    dms: bool  # Discord DMs on and reachable
    modes: dict[str, str]  # kind → "on" | "silent" | "off"


class PositionOwners(Protocol):
    async def owner(self, user_id: str) -> Owner | None:
        """The linked Discord account of an AIFX user; None when unlinked."""
        ...


class Reachability(Protocol):
    async def dms_closed(self, discord_user_id: str) -> None:
        """Record that Discord refused a DM to this user (their DMs are closed)."""
        ...

    def known_closed(self, discord_user_id: str) -> bool:
        """Whether this user's DMs were found closed (and not reopened since): what was
        owed to them meanwhile is given up without asking Discord again."""
        ...


@dataclass(frozen=True)
class Sent:
    message_id: str


@dataclass(frozen=True)
class Unreachable:
    """Discord will never take this DM as things stand (403, code 50007)."""

    reason: str


@dataclass(frozen=True)
class TryLater:
    """A transient failure (5xx, a network error): the delivery stays pending."""

    reason: str


Outcome = Sent | Unreachable | TryLater


class DirectMessages(Protocol):
    async def send(self, delivery: Delivery) -> Outcome:
        """Send the delivery's message as a DM, with its nonce (Discord returns the
        first message for a repeated nonce). Rate limits are waited out, not returned."""
        ...


@dataclass(frozen=True)
class PreferencesUpdate:
    """Preferences to change; None leaves a field as it is."""

    pairs: list[str] | None = None
    timeframes: list[str] | None = None
    min_confidence: float | None = None
    notify_discord: bool | None = None
    modes: dict[str, str] | None = None


class Accounts(Protocol):
    """The user behind a Discord id (auth_svc)."""

    async def link(self, code: str, discord_user_id: str, discord_username: str) -> str:
        """Link with a code from the dashboard; the AIFX username."""
        ...

    async def unlink(self, discord_user_id: str) -> str:
        """Remove the link; the AIFX username it had."""
        ...

    async def acting_as(self, discord_user_id: str) -> Account | None:
        """The linked user, with a token to act as them; None when unlinked."""
        ...

    async def dms_open_again(self, discord_user_id: str) -> None:
        """The user used a command: try DMs again."""
        ...

    async def preferences(self, account: Account) -> PreferencesView: ...

    async def update_preferences(
        self, account: Account, update: PreferencesUpdate
    ) -> PreferencesView: ...


class Market(Protocol):
    """Signals and market data (signal_svc, inference)."""

    async def latest_signal(self, pair: str, timeframe: str) -> SignalView:
        """NotFound when there is no signal yet."""
        ...

    async def pairs(self) -> list[str]:
        """Pairs with market data, sorted."""
        ...

    async def model(self) -> str:
        """The model served, in words."""
        ...

    async def market_time(self) -> tuple[datetime | None, bool]:
        """Where the market data stands, and whether it is a replay."""
        ...


class Trading(Protocol):
    """A user's positions (position_svc), as that user."""

    async def open_positions(self, account: Account) -> list[PositionView]: ...

    async def performance(self, account: Account, period: str) -> PerformanceView: ...


class Services(Protocol):
    async def health(self) -> dict[str, bool]:
        """Whether each AIFX service answers its health check."""
        ...


class ServerChannels(SignalChannels, Protocol):
    """What `/channel` changes (notifier.channels.Channels)."""

    async def set(self, channel: SignalChannel, set_by: str) -> SignalChannel: ...

    async def of_guild(self, guild_id: str) -> SignalChannel | None: ...

    async def clear(self, guild_id: str) -> bool: ...
