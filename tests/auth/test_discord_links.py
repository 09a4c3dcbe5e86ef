"""Discord account linking over gRPC, on both backends: the code the web creates, the
notifier's link / unlink / lookup / reachability with the service credential, and every
refusal (unknown, expired, spent and guessed codes; a Discord account linked elsewhere;
calls without a token or the credential)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import pytest
from google.rpc import error_details_pb2
from sqlalchemy import update

from aifx.auth.v1 import auth_pb2, auth_pb2_grpc
from auth_svc.discord_links import CODE_ALPHABET, CODE_LENGTH
from auth_svc.models import DiscordLinkCodeRow
from common.db import create_engine
from common.service_credentials import load_service_token
from common.time import utcnow
from tests.auth.test_auth_rpcs import bearer, detail, register, rpc_error, stub, violated_fields

DISCORD_ID = "123456789012345678"


def internal(stack) -> auth_pb2_grpc.AuthInternalServiceStub:
    return auth_pb2_grpc.AuthInternalServiceStub(stack.channel)


def credential(stack) -> tuple[tuple[str, str], ...]:
    return (("x-aifx-service-token", load_service_token(stack.settings)),)


async def new_code(stack, token: str) -> auth_pb2.CreateDiscordLinkCodeResponse:
    return await stub(stack).CreateDiscordLinkCode(
        auth_pb2.CreateDiscordLinkCodeRequest(), metadata=bearer(token)
    )


async def link(stack, code: str, discord_id: str = DISCORD_ID, name: str = "trader#1"):
    return await internal(stack).LinkDiscordAccount(
        auth_pb2.LinkDiscordAccountRequest(
            code=code, discord_user_id=discord_id, discord_username=name
        ),
        metadata=credential(stack),
    )


def unique_discord_id() -> str:
    import random

    return str(random.randrange(10**17, 10**18))


async def test_a_code_links_the_discord_account_and_getme_shows_it(auth):
    signed_in = await register(auth)
    token = signed_in.tokens.access_token
    code = await new_code(auth, token)
    assert len(code.code) == CODE_LENGTH and set(code.code) <= set(CODE_ALPHABET)
    assert code.instructions == f"/link {code.code}"
    remaining = code.expire_time.ToDatetime() - utcnow().replace(tzinfo=None)
    assert timedelta(minutes=9) < remaining <= timedelta(minutes=10)

    discord_id = unique_discord_id()
    # Typed as a user might: lower case, with a space.
    linked = await link(auth, f"{code.code[:4].lower()} {code.code[4:]}", discord_id)
    assert linked.user.id == signed_in.user.id
    assert (linked.discord.discord_user_id, linked.discord.dm_reachable) == (discord_id, True)

    me = await stub(auth).GetMe(auth_pb2.GetMeRequest(), metadata=bearer(token))
    assert me.discord.discord_user_id == discord_id and me.discord.discord_username == "trader#1"
    found = await internal(auth).GetUserByDiscordId(
        auth_pb2.GetUserByDiscordIdRequest(discord_user_id=discord_id), metadata=credential(auth)
    )
    assert found.user.id == signed_in.user.id and list(found.preferences.pairs) == ["EUR/USD"]


async def test_dm_reachability_is_recorded_and_shown(auth):
    signed_in = await register(auth)
    discord_id = unique_discord_id()
    await link(auth, (await new_code(auth, signed_in.tokens.access_token)).code, discord_id)
    for reachable in (False, True, False):
        reply = await internal(auth).SetDiscordDmReachable(
            auth_pb2.SetDiscordDmReachableRequest(
                discord_user_id=discord_id, dm_reachable=reachable
            ),
            metadata=credential(auth),
        )
        assert reply.discord.dm_reachable is reachable
    me = await stub(auth).GetMe(
        auth_pb2.GetMeRequest(), metadata=bearer(signed_in.tokens.access_token)
    )
    assert me.discord.dm_reachable is False


async def test_a_code_is_single_use_and_a_new_one_voids_the_old(auth):
    token = (await register(auth)).tokens.access_token
    first = await new_code(auth, token)
    second = await new_code(auth, token)
    voided = await rpc_error(link(auth, first.code, unique_discord_id()))
    assert voided.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        "unknown code"
        in detail(voided, error_details_pb2.BadRequest).field_violations[0].description
    )
    await link(auth, second.code, unique_discord_id())
    spent = await rpc_error(link(auth, second.code, unique_discord_id()))
    assert violated_fields(spent) == ["code"]
    assert "already used" in spent.details()


async def test_concurrent_links_with_one_code_let_exactly_one_through(auth):
    token = (await register(auth)).tokens.access_token
    code = (await new_code(auth, token)).code
    results = await asyncio.gather(
        *(link(auth, code, unique_discord_id()) for _ in range(5)), return_exceptions=True
    )
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(
        r.code() == grpc.StatusCode.INVALID_ARGUMENT for r in results if isinstance(r, Exception)
    )


async def test_an_expired_code_is_refused(auth):
    token = (await register(auth)).tokens.access_token
    code = await new_code(auth, token)
    engine = create_engine(auth.settings)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                update(DiscordLinkCodeRow)
                .where(DiscordLinkCodeRow.used_at.is_(None))
                .where(DiscordLinkCodeRow.expires_at > utcnow())
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
    finally:
        await engine.dispose()
    error = await rpc_error(link(auth, code.code, unique_discord_id()))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "expired" in error.details()


async def test_guessing_codes_is_rate_limited_per_discord_user(auth):
    guesser = unique_discord_id()
    for _ in range(5):
        error = await rpc_error(link(auth, "AAAAAAAA", guesser))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    limited = await rpc_error(link(auth, "BBBBBBBB", guesser))
    assert limited.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "too many failed link codes" in limited.details()
    assert detail(limited, error_details_pb2.RetryInfo).retry_delay.seconds > 0
    # Even the right code waits: a guesser cannot tell a hit from the limit.
    token = (await register(auth)).tokens.access_token
    right = await new_code(auth, token)
    assert (await rpc_error(link(auth, right.code, guesser))).code() == (
        grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    # Another Discord user is not held back.
    await link(auth, right.code, unique_discord_id())


async def test_a_discord_account_links_to_one_aifx_account(auth):
    discord_id = unique_discord_id()
    first = await register(auth)
    await link(auth, (await new_code(auth, first.tokens.access_token)).code, discord_id)
    other = await register(auth)
    taken = await rpc_error(
        link(auth, (await new_code(auth, other.tokens.access_token)).code, discord_id)
    )
    assert taken.code() == grpc.StatusCode.ALREADY_EXISTS and "/unlink" in taken.details()
    # The same user linking another Discord account replaces the link.
    newer = unique_discord_id()
    await link(auth, (await new_code(auth, first.tokens.access_token)).code, newer)
    me = await stub(auth).GetMe(auth_pb2.GetMeRequest(), metadata=bearer(first.tokens.access_token))
    assert me.discord.discord_user_id == newer


async def test_unlink_from_discord_and_from_the_web(auth):
    signed_in = await register(auth)
    token = signed_in.tokens.access_token
    discord_id = unique_discord_id()
    await link(auth, (await new_code(auth, token)).code, discord_id)
    unlinked = await internal(auth).UnlinkDiscordAccount(
        auth_pb2.UnlinkDiscordAccountRequest(discord_user_id=discord_id),
        metadata=credential(auth),
    )
    assert unlinked.user.id == signed_in.user.id
    me = await stub(auth).GetMe(auth_pb2.GetMeRequest(), metadata=bearer(token))
    assert not me.HasField("discord")
    lookup = await rpc_error(
        internal(auth).GetUserByDiscordId(
            auth_pb2.GetUserByDiscordIdRequest(discord_user_id=discord_id),
            metadata=credential(auth),
        )
    )
    assert lookup.code() == grpc.StatusCode.NOT_FOUND and "/link" in lookup.details()

    await link(auth, (await new_code(auth, token)).code, discord_id)
    await stub(auth).UnlinkDiscord(auth_pb2.UnlinkDiscordRequest(), metadata=bearer(token))
    again = await rpc_error(
        stub(auth).UnlinkDiscord(auth_pb2.UnlinkDiscordRequest(), metadata=bearer(token))
    )
    assert again.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (auth_pb2.LinkDiscordAccountRequest(discord_user_id=DISCORD_ID), "code"),
        (auth_pb2.LinkDiscordAccountRequest(code="ABCDEFGH"), "discord_user_id"),
        (
            auth_pb2.LinkDiscordAccountRequest(code="ABCDEFGH", discord_user_id="me"),
            "discord_user_id",
        ),
    ],
)
async def test_link_requests_name_the_bad_field(auth, request_, field):
    error = await rpc_error(internal(auth).LinkDiscordAccount(request_, metadata=credential(auth)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and violated_fields(error) == [field]


async def test_tokens_and_the_service_credential_are_required(auth):
    for call in (
        stub(auth).CreateDiscordLinkCode(auth_pb2.CreateDiscordLinkCodeRequest()),
        stub(auth).UnlinkDiscord(auth_pb2.UnlinkDiscordRequest()),
        link_without_credential(auth),
        internal(auth).GetUserByDiscordId(
            auth_pb2.GetUserByDiscordIdRequest(discord_user_id=DISCORD_ID),
            metadata=(("x-aifx-service-token", "wrong"),),
        ),
    ):
        assert (await rpc_error(call)).code() == grpc.StatusCode.UNAUTHENTICATED


def link_without_credential(stack):
    return internal(stack).LinkDiscordAccount(
        auth_pb2.LinkDiscordAccountRequest(code="ABCDEFGH", discord_user_id=DISCORD_ID)
    )


# --- who gets a signal -----------------------------------------------------------------


async def linked_trader(stack, **preferences) -> tuple[str, str]:
    """A registered, linked user with `preferences` (proto field values); their user id
    and Discord id."""
    from google.protobuf import field_mask_pb2

    signed_in = await register(stack)
    token = signed_in.tokens.access_token
    discord_id = unique_discord_id()
    await link(stack, (await new_code(stack, token)).code, discord_id)
    await stub(stack).UpdatePreferences(
        auth_pb2.UpdatePreferencesRequest(
            preferences=auth_pb2.Preferences(**preferences),
            update_mask=field_mask_pb2.FieldMask(paths=list(preferences)),
        ),
        metadata=bearer(token),
    )
    return signed_in.user.id, discord_id


async def recipients(stack, pair: str, timeframe: int, confidence: float, **page) -> list:
    reply = await internal(stack).ListSignalRecipients(
        auth_pb2.ListSignalRecipientsRequest(
            pair=pair, timeframe=timeframe, confidence=confidence, **page
        ),
        metadata=credential(stack),
    )
    return reply


async def test_a_signal_goes_to_the_linked_users_whose_preferences_it_matches(auth):
    from aifx.common.v1 import market_pb2

    h1, d1 = market_pb2.TIMEFRAME_H1, market_pb2.TIMEFRAME_D1
    pair = "AUD/JPY"  # a pair no other test's user names
    wanted = await linked_trader(
        auth, pairs=[pair, "EURUSD"], timeframes=[h1, d1], min_confidence=0.5, notify_discord=True
    )
    too_demanding = await linked_trader(
        auth, pairs=[pair], timeframes=[h1], min_confidence=0.9, notify_discord=True
    )
    silent = await linked_trader(
        auth, pairs=[pair], timeframes=[h1], min_confidence=0.1, notify_discord=False
    )
    other_timeframe = await linked_trader(
        auth, pairs=[pair], timeframes=[d1], min_confidence=0.1, notify_discord=True
    )
    closed_dms = await linked_trader(
        auth, pairs=[pair], timeframes=[h1], min_confidence=0.1, notify_discord=True
    )
    await internal(auth).SetDiscordDmReachable(
        auth_pb2.SetDiscordDmReachableRequest(discord_user_id=closed_dms[1], dm_reachable=False),
        metadata=credential(auth),
    )
    reply = await recipients(auth, "audjpy", h1, 0.7)
    assert [(r.user_id, r.discord_user_id) for r in reply.recipients] == [wanted]
    assert reply.next_page_token == ""
    everyone = await recipients(auth, pair, h1, 0.95)
    assert {r.user_id for r in everyone.recipients} == {wanted[0], too_demanding[0]}
    assert {r.user_id for r in (await recipients(auth, pair, d1, 0.6)).recipients} == {
        wanted[0],
        other_timeframe[0],
    }
    assert silent[0] not in {r.user_id for r in everyone.recipients}


async def test_recipients_come_in_pages(auth):
    from aifx.common.v1 import market_pb2

    h4 = market_pb2.TIMEFRAME_H4
    pair = "EUR/CHF"
    made = sorted(
        [
            await linked_trader(
                auth, pairs=[pair], timeframes=[h4], min_confidence=0.1, notify_discord=True
            )
            for _ in range(5)
        ]
    )
    seen, token = [], ""
    while True:
        reply = await recipients(auth, pair, h4, 0.5, page_size=2, page_token=token)
        seen += [(r.user_id, r.discord_user_id) for r in reply.recipients]
        token = reply.next_page_token
        if not token:
            break
    assert seen == made


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"timeframe": 2, "confidence": 0.5}, "pair"),
        ({"pair": "NOPE", "timeframe": 2}, "pair"),
        ({"pair": "EURUSD", "confidence": 0.5}, "timeframe"),
        ({"pair": "EURUSD", "timeframe": 2, "confidence": 1.5}, "confidence"),
        ({"pair": "EURUSD", "timeframe": 2, "page_size": 9999}, "page_size"),
    ],
)
async def test_recipient_queries_name_the_bad_field(auth, fields, field):
    error = await rpc_error(
        internal(auth).ListSignalRecipients(
            auth_pb2.ListSignalRecipientsRequest(**fields), metadata=credential(auth)
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and field in violated_fields(error)


# --- per-kind DM modes, and the bot acting as a linked user -----------------------------


async def test_signal_dms_off_leave_a_user_out_and_silent_ones_are_flagged(auth):
    from aifx.common.v1 import market_pb2

    h1 = market_pb2.TIMEFRAME_H1
    pair = "GBP/CHF"  # a pair no other test's user names
    base = {"pairs": [pair], "timeframes": [h1], "min_confidence": 0.1, "notify_discord": True}
    loud = await linked_trader(auth, **base)
    quiet = await linked_trader(
        auth,
        **base,
        discord_notifications=auth_pb2.DiscordNotifications(
            signal=auth_pb2.NOTIFICATION_MODE_SILENT
        ),
    )
    off = await linked_trader(
        auth,
        **base,
        discord_notifications=auth_pb2.DiscordNotifications(
            signal=auth_pb2.NOTIFICATION_MODE_OFF,
            take_profit_hit=auth_pb2.NOTIFICATION_MODE_ON,
        ),
    )
    reply = await recipients(auth, pair, h1, 0.5)
    assert {r.user_id: r.silent for r in reply.recipients} == {loud[0]: False, quiet[0]: True}
    assert off[0] not in {r.user_id for r in reply.recipients}


async def test_modes_are_kept_per_kind_and_an_unspecified_kind_is_unchanged(auth):
    from google.protobuf import field_mask_pb2

    token = (await register(auth)).tokens.access_token
    got = await stub(auth).GetPreferences(auth_pb2.GetPreferencesRequest(), metadata=bearer(token))
    modes = got.preferences.discord_notifications
    assert {modes.signal, modes.take_profit_hit, modes.position_closed} == {
        auth_pb2.NOTIFICATION_MODE_ON
    }

    async def update(**kinds):
        return await stub(auth).UpdatePreferences(
            auth_pb2.UpdatePreferencesRequest(
                preferences=auth_pb2.Preferences(
                    discord_notifications=auth_pb2.DiscordNotifications(**kinds)
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["discord_notifications"]),
            ),
            metadata=bearer(token),
        )

    await update(stop_loss_hit=auth_pb2.NOTIFICATION_MODE_SILENT)
    changed = await update(position_opened=auth_pb2.NOTIFICATION_MODE_OFF)
    modes = changed.preferences.discord_notifications
    assert modes.stop_loss_hit == auth_pb2.NOTIFICATION_MODE_SILENT
    assert modes.position_opened == auth_pb2.NOTIFICATION_MODE_OFF
    assert modes.signal == auth_pb2.NOTIFICATION_MODE_ON

    error = await rpc_error(update(signal=7))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(error) == ["preferences.discord_notifications.signal"]


async def test_the_bot_gets_a_short_token_that_acts_as_the_linked_user(auth):
    user_id, discord_id = await linked_trader(auth, min_confidence=0.4)
    issued = await internal(auth).IssueDiscordUserToken(
        auth_pb2.IssueDiscordUserTokenRequest(discord_user_id=discord_id),
        metadata=credential(auth),
    )
    assert issued.user.id == user_id and issued.discord.discord_user_id == discord_id
    assert 0 < issued.expires_in <= 300
    prefs = await stub(auth).GetPreferences(
        auth_pb2.GetPreferencesRequest(), metadata=bearer(issued.access_token)
    )
    assert prefs.preferences.min_confidence == pytest.approx(0.4)

    for call in (
        internal(auth).IssueDiscordUserToken(
            auth_pb2.IssueDiscordUserTokenRequest(discord_user_id=unique_discord_id()),
            metadata=credential(auth),
        ),
        internal(auth).IssueDiscordUserToken(
            auth_pb2.IssueDiscordUserTokenRequest(discord_user_id=discord_id)
        ),
    ):
        assert (await rpc_error(call)).code() in {
            grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.UNAUTHENTICATED,
        }


async def test_a_users_preferences_show_their_discord_link(auth):
    user_id, discord_id = await linked_trader(auth, min_confidence=0.5)
    reply = await internal(auth).GetUserPreferences(
        auth_pb2.GetUserPreferencesRequest(user_id=user_id), metadata=credential(auth)
    )
    assert reply.discord.discord_user_id == discord_id and reply.discord.dm_reachable
    unlinked = await register(auth)
    reply = await internal(auth).GetUserPreferences(
        auth_pb2.GetUserPreferencesRequest(user_id=unlinked.user.id), metadata=credential(auth)
    )
    assert not reply.HasField("discord")
