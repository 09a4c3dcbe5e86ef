"""DirectMessages over discord.py: a delivery's embed sent as a DM (or to a server's
signal channel) with its nonce.

discord.py sets `enforce_nonce` whenever a nonce is given, so a DM re-sent after a crash
returns Discord's first message instead of a second one. It also waits out 429s itself
(per route and global), so a rate limit delays a delivery and never fails it; every
request is paced under the global limit first (notifier.pacing), so that Discord need
not answer 429 at all.

A user's DM channel is opened once (POST /users/@me/channels) and its id kept here: the
id never changes, and discord.py's own cache holds only the last 128 private channels,
so with more recipients than that every DM of every signal cost two requests instead of
one.
"""

from __future__ import annotations

import aiohttp
import discord
from cachetools import LRUCache

from notifier.ledger import CHANNEL, Delivery
from notifier.pacing import SlidingWindowLimit
from notifier.ports import Outcome, Sent, TryLater, Unreachable

# 403 codes that will not change by asking again: DMs closed (50007), no access to a
# channel (50001), missing permissions in it (50013).
NEVER_ALLOWED = {50007, 50001, 50013}
# DM channel ids kept (about 150 bytes each); beyond it the least recently DMed users'
# channels are opened again when next DMed.
DM_CHANNELS_KEPT = 100_000


class DiscordDirectMessages:
    def __init__(self, client: discord.Client, pace: SlidingWindowLimit | None = None) -> None:
        self._client = client
        self._pace = pace or SlidingWindowLimit()
        self._channels: LRUCache[int, int] = LRUCache(maxsize=DM_CHANNELS_KEPT)

    async def send(self, delivery: Delivery) -> Outcome:
        try:
            channel = await self._channel(delivery)
            async with self._pace.slot():
                message = await channel.send(
                    embed=discord.Embed.from_dict(delivery.payload),
                    nonce=delivery.nonce,
                    silent=delivery.silent,
                )
        except discord.Forbidden as refused:
            if refused.code in NEVER_ALLOWED:
                return Unreachable(f"403 {refused.code}: {refused.text}")
            return TryLater(f"403 {refused.code}: {refused.text}")
        except discord.NotFound as gone:
            if delivery.target == CHANNEL:  # the server deleted its signal channel
                return Unreachable(f"404 {gone.code}: {gone.text}")
            self._channels.pop(int(delivery.discord_user_id), None)  # opened again next time
            return TryLater(f"404 {gone.code}: {gone.text}")
        except discord.HTTPException as failed:
            return TryLater(f"{failed.status} {failed.code}: {failed.text}")
        except (aiohttp.ClientError, TimeoutError) as failed:
            return TryLater(f"Discord unreachable: {failed!r}")
        return Sent(str(message.id))

    async def _channel(self, delivery: Delivery) -> discord.PartialMessageable:
        """A server's channel as it is (no request), or the user's DM channel, opened
        (one request) the first time only."""
        target = int(delivery.discord_user_id)
        if delivery.target == CHANNEL:
            return self._client.get_partial_messageable(target)
        channel_id = self._channels.get(target)
        if channel_id is None:
            async with self._pace.slot():
                opened = await self._client.create_dm(discord.Object(target))
            channel_id = self._channels[target] = opened.id
        return self._client.get_partial_messageable(channel_id, type=discord.ChannelType.private)
