"""From signals to DMs: owe each signal to its recipients (recorded in the ledger with
the stream cursor), then send what is owed. Plain Python over the ports.

The two halves are separate loops on purpose: reading the stream never waits for
Discord (a slow or rate-limited Discord only delays sending), and sending works from the
ledger, so what was owed before a crash is sent after it.
"""

from __future__ import annotations

import asyncio

import structlog

from notifier.ledger import CHANNEL, Delivery, Ledger, Owed
from notifier.ledger import PENDING as PENDING_STATUS
from notifier.messages import SignalView, signal_embed
from notifier.metrics import DELIVERIES, PENDING
from notifier.ports import (
    DirectMessages,
    PositionOwners,
    Reachability,
    Sent,
    SignalChannels,
    SignalRecipients,
    Unreachable,
)
from notifier.trading_messages import position_event_embed
from notifier.views import PositionEventView

log = structlog.get_logger(__name__)

SIGNALS = "signals"
POSITION_EVENTS = "position_events"
SIGNAL = "signal"


class SignalFanout:
    """Owes every signal of the stream to the users whose preferences it matches, and
    to the servers' signal channels that want it."""

    def __init__(
        self,
        ledger: Ledger,
        recipients: SignalRecipients,
        channels: SignalChannels | None = None,
    ) -> None:
        self._ledger = ledger
        self._recipients = recipients
        self._channels = channels

    async def resume_after(self) -> str | None:
        """The id of the last signal already owed (the stream resumes after it)."""
        return await self._ledger.cursor(SIGNALS)

    async def owe(self, signal: SignalView) -> int:
        """Owe `signal` to its recipients; how many deliveries are new."""
        people = await self._recipients.for_signal(signal)
        embed = signal_embed(signal)
        owed = [
            Owed(SIGNAL, signal.id, p.user_id, p.discord_user_id, embed, silent=p.silent)
            for p in people
        ]
        if self._channels is not None:
            owed += [
                Owed(SIGNAL, signal.id, f"guild:{c.guild_id}", c.channel_id, embed, target=CHANNEL)
                for c in await self._channels.for_signal(signal)
            ]
        return await self._ledger.record(SIGNALS, signal.id, owed)


class PositionFanout:
    """Owes every position event (opened, take-profit or stop-loss hit, closed) to the
    position's owner, when they are linked and have that kind of DM on or silent."""

    def __init__(self, ledger: Ledger, owners: PositionOwners) -> None:
        self._ledger = ledger
        self._owners = owners

    async def resume_after(self) -> str | None:
        return await self._ledger.cursor(POSITION_EVENTS)

    async def owe(self, event: PositionEventView) -> int:
        owner = await self._owners.owner(event.position_user_id)
        owed = []
        if owner is not None and owner.dms and owner.modes.get(event.kind, "on") != "off":
            owed.append(
                Owed(
                    event.kind,
                    str(event.id),
                    event.position_user_id,
                    owner.discord_user_id,
                    position_event_embed(event),
                    silent=owner.modes.get(event.kind) == "silent",
                )
            )
        # The cursor moves past every event, DM or not, so none is read twice.
        return await self._ledger.record(POSITION_EVENTS, str(event.id), owed)


class Sender:
    """Sends what the ledger says is owed, oldest first, to up to `concurrency` users at
    once.

    One DM at a time would be bound by Discord's round trip, not by its rate limit: at
    ~100 ms a request, and two requests for a user's first DM, that is a few DMs a
    second where the global limit allows 50 requests. A user's own deliveries still go
    one after another, in order, so their DMs arrive in order and a user whose DMs are
    closed is asked once, not once per delivery.
    """

    def __init__(
        self,
        ledger: Ledger,
        messages: DirectMessages,
        reachability: Reachability,
        channels: SignalChannels | None = None,
        *,
        concurrency: int = 10,
    ) -> None:
        self._ledger = ledger
        self._messages = messages
        self._reachability = reachability
        self._channels = channels
        self._concurrency = concurrency

    async def send_pending(self, limit: int = 100) -> int:
        """One pass over up to `limit` pending deliveries; how many were sent. A transient
        failure (TryLater) ends the pass: the DMs in flight finish, no new one starts."""
        by_user: dict[str, list[Delivery]] = {}
        for delivery in await self._ledger.claim(limit):
            by_user.setdefault(delivery.discord_user_id, []).append(delivery)
        gate = asyncio.Semaphore(self._concurrency)
        struggling = asyncio.Event()

        async def send_to_user(deliveries: list[Delivery]) -> int:
            sent = 0
            async with gate:
                for delivery in deliveries:
                    if struggling.is_set():
                        break  # the next pass starts again from here
                    if delivery.target != CHANNEL and self._reachability.known_closed(
                        delivery.discord_user_id
                    ):
                        # Owed while the refusal was being recorded: never a second 403.
                        await self._ledger.give_up_on(delivery.discord_user_id, "DMs closed")
                        break
                    if not await self._ledger.renew(delivery.id):
                        break  # another replica took this user's claims when ours lapsed
                    outcome = await self._messages.send(delivery)
                    if isinstance(outcome, Sent):
                        await self._ledger.mark_sent(delivery.id)
                        DELIVERIES.labels("sent").inc()
                        sent += 1
                    elif isinstance(outcome, Unreachable):
                        await self._refused(delivery, outcome)
                        DELIVERIES.labels("unreachable").inc()
                        break
                    else:
                        struggling.set()  # Discord is struggling: start no more
                        log.warning(
                            "DM not sent; will retry",
                            delivery=delivery.id,
                            discord_user_id=delivery.discord_user_id,
                            reason=outcome.reason,
                        )
                        await self._ledger.attempt_failed(delivery.id, outcome.reason)
                        DELIVERIES.labels("retry").inc()
                        break
            return sent

        # Every user's sending finishes before a failure (the database, auth_svc) is
        # raised: none is left running behind the caller's back. What this pass claimed
        # but did not finish is given back at once, for the next pass of any replica.
        results = await asyncio.gather(
            *(send_to_user(d) for d in by_user.values()), return_exceptions=True
        )
        if by_user:
            await self._ledger.release()
        PENDING.set((await self._ledger.counts()).get(PENDING_STATUS, 0))
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return sum(r for r in results if isinstance(r, int))

    async def _refused(self, delivery: Delivery, outcome: Unreachable) -> None:
        """Discord will never take it: every pending delivery to that target is given
        up (this one included), and the user marked unreachable — or a server's
        channel that no longer lets the bot post forgotten."""
        await self._ledger.give_up_on(delivery.discord_user_id, outcome.reason)
        if delivery.target != CHANNEL:
            await self._reachability.dms_closed(delivery.discord_user_id)
            return
        log.warning(
            "signal channel refused; forgotten",
            channel=delivery.discord_user_id,
            reason=outcome.reason,
        )
        if self._channels is not None:
            await self._channels.clear_channel(delivery.discord_user_id)
