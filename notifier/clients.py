"""The notifier's gRPC client of auth_svc (through the shared client helper: service
credential, request ids), implementing the domain's ports: who gets a signal, who owns
a position, and the user behind a Discord id during a command."""

from __future__ import annotations

import time

from cachetools import TTLCache

from aifx.auth.v1 import auth_pb2, auth_pb2_grpc
from common.errors import NotFound
from common.grpc_client import GrpcClient
from common.market import Timeframe
from common.proto_convert import TIMEFRAME_TO_PROTO
from notifier.convert import MODE_NAMES, NOTIFICATION_KINDS, preferences_update, preferences_view
from notifier.messages import SignalView
from notifier.ports import Owner, PreferencesUpdate, Recipient
from notifier.views import Account, PreferencesView

RECIPIENTS_PAGE = 1000
# A token issued for a command is reused for the user's next commands while it has at
# least this long to live (tokens live 5 minutes).
TOKEN_REUSE_SECONDS = 240
ACCOUNT_CACHE_SIZE = 10_000


def bearer(account: Account) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {account.access_token}"),)


class AuthClient:
    """SignalRecipients, PositionOwners and Accounts over auth_svc: its internal service
    with the service credential, its public one as the user (`as_user`: a client
    without the credential, carrying the user's token)."""

    def __init__(self, internal: GrpcClient, as_user: GrpcClient) -> None:
        self._internal = internal
        self._as_user = as_user
        self._accounts: TTLCache[str, tuple[float, Account]] = TTLCache(
            maxsize=ACCOUNT_CACHE_SIZE, ttl=TOKEN_REUSE_SECONDS
        )
        # Discord ids whose DMs this process found closed and that have not used a
        # command since (auth_svc keeps the lasting record).
        self._closed: set[str] = set()

    def _stub(self) -> auth_pb2_grpc.AuthInternalServiceStub:
        return self._internal.stub(auth_pb2_grpc.AuthInternalServiceStub)

    def _public(self) -> auth_pb2_grpc.AuthServiceStub:
        return self._as_user.stub(auth_pb2_grpc.AuthServiceStub)

    # --- fan-out -----------------------------------------------------------------------

    async def for_signal(self, signal: SignalView) -> list[Recipient]:
        people: list[Recipient] = []
        token = ""
        while True:
            reply = await self._internal.unary(
                self._stub().ListSignalRecipients,
                auth_pb2.ListSignalRecipientsRequest(
                    pair=signal.pair,
                    timeframe=TIMEFRAME_TO_PROTO[Timeframe(signal.timeframe)],
                    confidence=signal.confidence,
                    page_size=RECIPIENTS_PAGE,
                    page_token=token,
                ),
            )
            people += [Recipient(r.user_id, r.discord_user_id, r.silent) for r in reply.recipients]
            token = reply.next_page_token
            if not token:
                return people

    async def owner(self, user_id: str) -> Owner | None:
        try:
            reply = await self._internal.unary(
                self._stub().GetUserPreferences,
                auth_pb2.GetUserPreferencesRequest(user_id=user_id),
            )
        except NotFound:
            return None  # the account is gone: nobody to tell
        if not reply.HasField("discord"):
            return None
        modes = reply.preferences.discord_notifications
        return Owner(
            discord_user_id=reply.discord.discord_user_id,
            dms=reply.preferences.notify_discord and reply.discord.dm_reachable,
            modes={kind: MODE_NAMES.get(getattr(modes, kind), "on") for kind in NOTIFICATION_KINDS},
        )

    async def dms_closed(self, discord_user_id: str) -> None:
        self._closed.add(discord_user_id)
        self._accounts.pop(discord_user_id, None)
        await self._set_reachable(discord_user_id, False)

    def known_closed(self, discord_user_id: str) -> bool:
        return discord_user_id in self._closed

    # --- commands ----------------------------------------------------------------------

    async def link(self, code: str, discord_user_id: str, discord_username: str) -> str:
        reply = await self._internal.unary(
            self._stub().LinkDiscordAccount,
            auth_pb2.LinkDiscordAccountRequest(
                code=code, discord_user_id=discord_user_id, discord_username=discord_username
            ),
        )
        self._accounts.pop(discord_user_id, None)
        return reply.user.username

    async def unlink(self, discord_user_id: str) -> str:
        self._accounts.pop(discord_user_id, None)
        reply = await self._internal.unary(
            self._stub().UnlinkDiscordAccount,
            auth_pb2.UnlinkDiscordAccountRequest(discord_user_id=discord_user_id),
        )
        return reply.user.username

    async def acting_as(self, discord_user_id: str) -> Account | None:
        cached = self._accounts.get(discord_user_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        try:
            reply = await self._internal.unary(
                self._stub().IssueDiscordUserToken,
                auth_pb2.IssueDiscordUserTokenRequest(discord_user_id=discord_user_id),
            )
        except NotFound:
            return None
        account = Account(
            user_id=reply.user.id,
            username=reply.user.username,
            access_token=reply.access_token,
            dm_reachable=reply.discord.dm_reachable,
        )
        reuse_until = time.monotonic() + min(TOKEN_REUSE_SECONDS, reply.expires_in - 60)
        self._accounts[discord_user_id] = (reuse_until, account)
        return account

    async def dms_open_again(self, discord_user_id: str) -> None:
        self._closed.discard(discord_user_id)
        self._accounts.pop(discord_user_id, None)
        await self._set_reachable(discord_user_id, True)

    async def preferences(self, account: Account) -> PreferencesView:
        reply = await self._as_user.unary(
            self._public().GetPreferences,
            auth_pb2.GetPreferencesRequest(),
            metadata=bearer(account),
        )
        return preferences_view(reply.preferences)

    async def update_preferences(
        self, account: Account, update: PreferencesUpdate
    ) -> PreferencesView:
        message, mask = preferences_update(update)
        request = auth_pb2.UpdatePreferencesRequest(preferences=message)
        request.update_mask.paths.extend(mask)
        reply = await self._as_user.unary(
            self._public().UpdatePreferences, request, metadata=bearer(account)
        )
        return preferences_view(reply.preferences)

    async def _set_reachable(self, discord_user_id: str, reachable: bool) -> None:
        await self._internal.unary(
            self._stub().SetDiscordDmReachable,
            auth_pb2.SetDiscordDmReachableRequest(
                discord_user_id=discord_user_id, dm_reachable=reachable
            ),
        )
