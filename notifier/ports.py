"""The seams of the notifier's domain: what it needs from the other services and from
Discord, as Protocols. Adapters (gRPC clients, the discord.py bot) implement them; the
domain never imports grpc or discord."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from notifier.ledger import Delivery
from notifier.messages import SignalView


class SignalRecipients(Protocol):
    async def for_signal(self, signal: SignalView) -> list[tuple[str, str]]:
        """(AIFX user id, Discord user id) of everyone to DM about `signal`."""
        ...


class Reachability(Protocol):
    async def dms_closed(self, discord_user_id: str) -> None:
        """Record that Discord refused a DM to this user (their DMs are closed)."""
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
