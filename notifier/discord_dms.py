"""DirectMessages over discord.py: a delivery's embed sent as a DM (or to a server's
signal channel) with its nonce.

discord.py sets `enforce_nonce` whenever a nonce is given, so a DM re-sent after a crash
returns Discord's first message instead of a second one. It also waits out 429s itself
(per route and global), so a rate limit delays a delivery and never fails it. The DM
channel of each user is created once and cached by discord.py, so a DM costs one request.
"""

from __future__ import annotations

import aiohttp
import discord

from notifier.ledger import CHANNEL, Delivery
from notifier.ports import Outcome, Sent, TryLater, Unreachable

# 403 codes that will not change by asking again: DMs closed (50007), no access to a
# channel (50001), missing permissions in it (50013).
NEVER_ALLOWED = {50007, 50001, 50013}


class DiscordDirectMessages:
    def __init__(self, client: discord.Client) -> None:
        self._client = client

    async def send(self, delivery: Delivery) -> Outcome:
        try:
            channel = await self._channel(delivery)
            message = await channel.send(
                embed=discord.Embed.from_dict(delivery.payload),
                nonce=delivery.nonce,
                silent=delivery.silent,
            )
        except discord.Forbidden as refused:
            if refused.code in NEVER_ALLOWED:
                return Unreachable(f"403 {refused.code}: {refused.text}")
            return TryLater(f"403 {refused.code}: {refused.text}")
        except discord.HTTPException as failed:
            return TryLater(f"{failed.status} {failed.code}: {failed.text}")
        except (aiohttp.ClientError, TimeoutError) as failed:
            return TryLater(f"Discord unreachable: {failed!r}")
        return Sent(str(message.id))

    async def _channel(self, delivery: Delivery) -> discord.abc.Messageable:
        """A server's channel as it is (no request), or the user's DM channel (opened
        once, then cached by discord.py)."""
        target = int(delivery.discord_user_id)
        if delivery.target == CHANNEL:
            return self._client.get_partial_messageable(target)
        return await self._client.create_dm(discord.Object(target))
