"""Servers' signal channels: a server admin names a channel (and optionally pairs and a
minimum confidence) and matching signals are posted there, once each, through the same
ledger as DMs. Plain Python over the notifier's table."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.time import utcnow
from notifier.messages import SignalView
from notifier.models import ChannelRow


@dataclass(frozen=True)
class SignalChannel:
    guild_id: str
    channel_id: str
    pairs: list[str]  # empty: every pair
    min_confidence: float

    def wants(self, signal: SignalView) -> bool:
        return (not self.pairs or signal.pair in self.pairs) and (
            signal.confidence >= self.min_confidence
        )


def _channel(row: ChannelRow) -> SignalChannel:
    return SignalChannel(row.guild_id, row.channel_id, list(row.pairs), row.min_confidence)


class Channels:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def set(self, channel: SignalChannel, set_by: str) -> SignalChannel:
        """Make `channel` the server's signal channel (replacing any earlier one)."""
        async with self._sessions() as session:
            row = await session.get(ChannelRow, channel.guild_id)
            if row is None:
                row = ChannelRow(guild_id=channel.guild_id)
                session.add(row)
            row.channel_id, row.pairs = channel.channel_id, channel.pairs
            row.min_confidence, row.set_by, row.updated_at = (
                channel.min_confidence,
                set_by,
                utcnow(),
            )
            await session.commit()
        return channel

    async def of_guild(self, guild_id: str) -> SignalChannel | None:
        async with self._sessions() as session:
            row = await session.get(ChannelRow, guild_id)
        return None if row is None else _channel(row)

    async def clear(self, guild_id: str) -> bool:
        """Stop posting in the server; whether it had a channel."""
        async with self._sessions() as session:
            result = await session.execute(
                delete(ChannelRow).where(ChannelRow.guild_id == guild_id)
            )
            await session.commit()
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def clear_channel(self, channel_id: str) -> None:
        """Forget a channel Discord no longer lets the bot post in."""
        async with self._sessions() as session:
            await session.execute(delete(ChannelRow).where(ChannelRow.channel_id == channel_id))
            await session.commit()

    async def for_signal(self, signal: SignalView) -> list[SignalChannel]:
        """Every server channel that wants `signal` (few: one per server)."""
        async with self._sessions() as session:
            rows = (await session.execute(select(ChannelRow))).scalars().all()
        return [channel for row in rows if (channel := _channel(row)).wants(signal)]
