"""From signals to DMs: owe each signal to its recipients (recorded in the ledger with
the stream cursor), then send what is owed. Plain Python over the ports.

The two halves are separate loops on purpose: reading the stream never waits for
Discord (a slow or rate-limited Discord only delays sending), and sending works from the
ledger, so what was owed before a crash is sent after it.
"""

from __future__ import annotations

import structlog

from notifier.ledger import Ledger, Owed
from notifier.messages import SignalView, signal_embed
from notifier.ports import DirectMessages, Reachability, Sent, SignalRecipients, Unreachable

log = structlog.get_logger(__name__)

SIGNALS = "signals"
SIGNAL = "signal"


class SignalFanout:
    """Owes every signal of the stream to the users whose preferences it matches."""

    def __init__(self, ledger: Ledger, recipients: SignalRecipients) -> None:
        self._ledger = ledger
        self._recipients = recipients

    async def resume_after(self) -> str | None:
        """The id of the last signal already owed (the stream resumes after it)."""
        return await self._ledger.cursor(SIGNALS)

    async def on_signal(self, signal: SignalView) -> int:
        """Owe `signal` to its recipients; how many deliveries are new."""
        people = await self._recipients.for_signal(signal)
        embed = signal_embed(signal)
        owed = [
            Owed(SIGNAL, signal.id, user_id, discord_id, embed) for user_id, discord_id in people
        ]
        return await self._ledger.record(SIGNALS, signal.id, owed)


class Sender:
    """Sends what the ledger says is owed, oldest first."""

    def __init__(
        self, ledger: Ledger, messages: DirectMessages, reachability: Reachability
    ) -> None:
        self._ledger = ledger
        self._messages = messages
        self._reachability = reachability

    async def send_pending(self, limit: int = 100) -> int:
        """One pass over up to `limit` pending deliveries; how many were sent."""
        sent = 0
        closed: set[str] = set()
        for delivery in await self._ledger.pending(limit):
            if delivery.discord_user_id in closed:
                continue  # given up on with the first refusal below
            outcome = await self._messages.send(delivery)
            if isinstance(outcome, Sent):
                await self._ledger.mark_sent(delivery.id)
                sent += 1
            elif isinstance(outcome, Unreachable):
                closed.add(delivery.discord_user_id)
                await self._ledger.give_up_on(delivery.discord_user_id, outcome.reason)
                await self._reachability.dms_closed(delivery.discord_user_id)
            else:
                log.warning(
                    "DM not sent; will retry",
                    delivery=delivery.id,
                    discord_user_id=delivery.discord_user_id,
                    reason=outcome.reason,
                )
                await self._ledger.attempt_failed(delivery.id, outcome.reason)
                break  # Discord is struggling: the next pass starts again from here
        return sent
