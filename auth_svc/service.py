"""gRPC servicers of auth_svc: translate proto ⇄ domain and nothing more."""

from __future__ import annotations

import grpc

from aifx.auth.v1 import auth_pb2, auth_pb2_grpc
from auth_svc import notification_modes
from auth_svc.accounts import PREFERENCE_FIELDS, Accounts, Preferences, SignedIn, User
from auth_svc.discord_links import DiscordLink, DiscordLinks
from auth_svc.signing_keys import SigningKey
from auth_svc.tokens import IssuedTokens
from auth_svc.validation import PreferencesInput
from common.access_tokens import AccessClaims
from common.grpc_metadata import bearer_token, client_address, require_service_token
from common.proto_convert import TIMEFRAME_TO_PROTO, timestamp


def user_message(user: User) -> auth_pb2.User:
    return auth_pb2.User(
        id=user.id,
        email=user.email,
        username=user.username,
        create_time=timestamp(user.created_at),
    )


def discord_message(link: DiscordLink) -> auth_pb2.DiscordLink:
    return auth_pb2.DiscordLink(
        discord_user_id=link.discord_user_id,
        discord_username=link.discord_username,
        link_time=timestamp(link.linked_at),
        dm_reachable=link.dm_reachable,
    )


def token_pair(tokens: IssuedTokens) -> auth_pb2.TokenPair:
    return auth_pb2.TokenPair(
        access_token=tokens.access_token,
        token_type="Bearer",  # noqa: S106 (the OAuth token type, not a secret)
        expires_in=tokens.expires_in,
        refresh_token=tokens.refresh_token,
        refresh_expire_time=timestamp(tokens.refresh_expires_at),
    )


def preferences_message(preferences: Preferences) -> auth_pb2.Preferences:
    return auth_pb2.Preferences(
        pairs=preferences.pairs,
        timeframes=[TIMEFRAME_TO_PROTO[tf] for tf in preferences.timeframes],
        min_confidence=preferences.min_confidence,
        notify_discord=preferences.notify_discord,
        notify_browser=preferences.notify_browser,
        update_time=timestamp(preferences.updated_at),
        discord_notifications=auth_pb2.DiscordNotifications(
            **{kind: _MODE_TO_PROTO[mode] for kind, mode in preferences.discord_modes.items()}
        ),
    )


def implied_mask(message: auth_pb2.Preferences) -> list[str]:
    """AIP-134: with no update_mask, update the fields the client sent. Scalars have
    presence (proto3 `optional`); a repeated field counts when it is non-empty."""
    present = [field.name for field, _ in message.ListFields()]
    return [name for name in present if name in PREFERENCE_FIELDS]


def preferences_input(message: auth_pb2.Preferences) -> PreferencesInput:
    return PreferencesInput(
        pairs=list(message.pairs),
        timeframes=list(message.timeframes),
        min_confidence=message.min_confidence,
        notify_discord=message.notify_discord,
        notify_browser=message.notify_browser,
        discord_modes={
            kind: _mode(getattr(message.discord_notifications, kind))
            for kind in notification_modes.KINDS
        },
    )


_MODE_TO_PROTO = {
    notification_modes.ON: auth_pb2.NOTIFICATION_MODE_ON,
    notification_modes.SILENT: auth_pb2.NOTIFICATION_MODE_SILENT,
    notification_modes.OFF: auth_pb2.NOTIFICATION_MODE_OFF,
}
_MODE_FROM_PROTO = {number: mode for mode, number in _MODE_TO_PROTO.items()}


def _mode(number: int) -> str | None:
    """UNSPECIFIED keeps the current mode (None); an unknown number is refused later."""
    if number == auth_pb2.NOTIFICATION_MODE_UNSPECIFIED:
        return None
    return _MODE_FROM_PROTO.get(auth_pb2.NotificationMode.ValueType(number), str(number))


class AuthService(auth_pb2_grpc.AuthServiceServicer):
    def __init__(
        self,
        accounts: Accounts,
        links: DiscordLinks,
        signing_key: SigningKey,
        trusted_proxies: list[str],
    ) -> None:
        self._accounts = accounts
        self._links = links
        self._signing_key = signing_key
        self._trusted_proxies = trusted_proxies

    async def _caller(self, context: grpc.aio.ServicerContext) -> AccessClaims:
        return await self._accounts.authenticate(bearer_token(context))

    @staticmethod
    def _signed_in(result: SignedIn) -> tuple[auth_pb2.User, auth_pb2.TokenPair]:
        return user_message(result.user), token_pair(result.tokens)

    async def Register(  # noqa: N802
        self, request: auth_pb2.RegisterRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.RegisterResponse:
        address = client_address(context, self._trusted_proxies)
        user, tokens = self._signed_in(
            await self._accounts.register(
                request.email, request.username, request.password, address
            )
        )
        return auth_pb2.RegisterResponse(user=user, tokens=tokens)

    async def Login(  # noqa: N802
        self, request: auth_pb2.LoginRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.LoginResponse:
        address = client_address(context, self._trusted_proxies)
        user, tokens = self._signed_in(
            await self._accounts.login(request.identifier, request.password, address)
        )
        return auth_pb2.LoginResponse(user=user, tokens=tokens)

    async def Refresh(  # noqa: N802
        self, request: auth_pb2.RefreshRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.RefreshResponse:
        tokens = await self._accounts.refresh(request.refresh_token)
        return auth_pb2.RefreshResponse(tokens=token_pair(tokens))

    async def Logout(  # noqa: N802
        self, request: auth_pb2.LogoutRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.LogoutResponse:
        await self._accounts.logout(request.refresh_token, bearer_token(context))
        return auth_pb2.LogoutResponse()

    async def GetMe(  # noqa: N802
        self, request: auth_pb2.GetMeRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.GetMeResponse:
        claims = await self._caller(context)
        user = await self._accounts.get_user(claims.subject)
        link = await self._links.for_user(user.id)
        return auth_pb2.GetMeResponse(
            user=user_message(user), discord=discord_message(link) if link else None
        )

    async def CreateDiscordLinkCode(  # noqa: N802
        self, request: auth_pb2.CreateDiscordLinkCodeRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.CreateDiscordLinkCodeResponse:
        claims = await self._caller(context)
        code = await self._links.create_code((await self._accounts.get_user(claims.subject)).id)
        return auth_pb2.CreateDiscordLinkCodeResponse(
            code=code.code, expire_time=timestamp(code.expires_at), instructions=code.instructions
        )

    async def UnlinkDiscord(  # noqa: N802
        self, request: auth_pb2.UnlinkDiscordRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.UnlinkDiscordResponse:
        claims = await self._caller(context)
        await self._links.unlink_user(claims.subject)
        return auth_pb2.UnlinkDiscordResponse()

    async def GetPreferences(  # noqa: N802
        self, request: auth_pb2.GetPreferencesRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.GetPreferencesResponse:
        claims = await self._caller(context)
        preferences = await self._accounts.get_preferences(claims.subject)
        return auth_pb2.GetPreferencesResponse(preferences=preferences_message(preferences))

    async def UpdatePreferences(  # noqa: N802
        self, request: auth_pb2.UpdatePreferencesRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.UpdatePreferencesResponse:
        claims = await self._caller(context)
        preferences = await self._accounts.update_preferences(
            claims.subject,
            preferences_input(request.preferences),
            list(request.update_mask.paths) or implied_mask(request.preferences),
        )
        return auth_pb2.UpdatePreferencesResponse(preferences=preferences_message(preferences))

    async def GetJwks(  # noqa: N802
        self, request: auth_pb2.GetJwksRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.GetJwksResponse:
        return auth_pb2.GetJwksResponse(
            keys=[auth_pb2.Jwk(**key) for key in self._signing_key.jwks()["keys"]]
        )


class AuthInternalService(auth_pb2_grpc.AuthInternalServiceServicer):
    def __init__(self, accounts: Accounts, links: DiscordLinks, service_token: str) -> None:
        self._accounts = accounts
        self._links = links
        self._service_token = service_token

    async def GetUserPreferences(  # noqa: N802
        self, request: auth_pb2.GetUserPreferencesRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.GetUserPreferencesResponse:
        require_service_token(context, self._service_token)
        user = await self._accounts.get_user(request.user_id)
        preferences = await self._accounts.get_preferences(user.id)
        link = await self._links.for_user(user.id)
        return auth_pb2.GetUserPreferencesResponse(
            user=user_message(user),
            preferences=preferences_message(preferences),
            discord=discord_message(link) if link else None,
        )

    async def LinkDiscordAccount(  # noqa: N802
        self, request: auth_pb2.LinkDiscordAccountRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.LinkDiscordAccountResponse:
        require_service_token(context, self._service_token)
        link = await self._links.link(
            request.code, request.discord_user_id, request.discord_username
        )
        user = await self._accounts.get_user(link.user_id)
        return auth_pb2.LinkDiscordAccountResponse(
            user=user_message(user), discord=discord_message(link)
        )

    async def UnlinkDiscordAccount(  # noqa: N802
        self, request: auth_pb2.UnlinkDiscordAccountRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.UnlinkDiscordAccountResponse:
        require_service_token(context, self._service_token)
        link = await self._links.unlink_discord(request.discord_user_id)
        user = await self._accounts.get_user(link.user_id)
        return auth_pb2.UnlinkDiscordAccountResponse(user=user_message(user))

    async def GetUserByDiscordId(  # noqa: N802
        self, request: auth_pb2.GetUserByDiscordIdRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.GetUserByDiscordIdResponse:
        require_service_token(context, self._service_token)
        link = await self._links.by_discord_id(request.discord_user_id)
        user = await self._accounts.get_user(link.user_id)
        preferences = await self._accounts.get_preferences(user.id)
        return auth_pb2.GetUserByDiscordIdResponse(
            user=user_message(user),
            preferences=preferences_message(preferences),
            discord=discord_message(link),
        )

    async def SetDiscordDmReachable(  # noqa: N802
        self, request: auth_pb2.SetDiscordDmReachableRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.SetDiscordDmReachableResponse:
        require_service_token(context, self._service_token)
        link = await self._links.set_dm_reachable(request.discord_user_id, request.dm_reachable)
        return auth_pb2.SetDiscordDmReachableResponse(discord=discord_message(link))

    async def ListSignalRecipients(  # noqa: N802
        self, request: auth_pb2.ListSignalRecipientsRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.ListSignalRecipientsResponse:
        require_service_token(context, self._service_token)
        page, next_token = await self._links.signal_recipients(
            request.pair,
            request.timeframe,
            request.confidence,
            request.page_size,
            request.page_token,
        )
        return auth_pb2.ListSignalRecipientsResponse(
            recipients=[
                auth_pb2.SignalRecipient(user_id=user_id, discord_user_id=discord_id, silent=silent)
                for user_id, discord_id, silent in page
            ],
            next_page_token=next_token,
        )

    async def IssueDiscordUserToken(  # noqa: N802
        self, request: auth_pb2.IssueDiscordUserTokenRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.IssueDiscordUserTokenResponse:
        require_service_token(context, self._service_token)
        link = await self._links.by_discord_id(request.discord_user_id)
        user = await self._accounts.get_user(link.user_id)
        token, expires_in = self._accounts.delegated_access_token(user.id)
        return auth_pb2.IssueDiscordUserTokenResponse(
            user=user_message(user),
            discord=discord_message(link),
            access_token=token,
            expires_in=expires_in,
        )
