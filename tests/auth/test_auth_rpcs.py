"""Every auth RPC and its failure paths over gRPC, against both the embedded default
(SQLite, in-process) and real PostgreSQL + Redis (the `auth` fixture's two params)."""

import asyncio
import uuid
from datetime import timedelta

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy import update

from aifx.auth.v1 import auth_pb2, auth_pb2_grpc
from aifx.common.v1 import market_pb2
from auth_svc.models import RefreshTokenRow
from auth_svc.tokens import hash_refresh_token
from common.db import create_engine
from common.service_credentials import load_service_token
from common.time import utcnow
from tests.infra import auth_stack, free_port

PASSWORD = "correct horse"


def stub(stack) -> auth_pb2_grpc.AuthServiceStub:
    return auth_pb2_grpc.AuthServiceStub(stack.channel)


def names() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:10]
    return f"user{tag}@example.com", f"user_{tag}"


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def register(stack, email=None, username=None, password=PASSWORD):
    if email is None:
        email, username = names()
    return await stub(stack).Register(
        auth_pb2.RegisterRequest(email=email, username=username, password=password)
    )


async def rpc_error(awaitable) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await awaitable
    return caught.value


def detail(error: grpc.aio.AioRpcError, kind):
    status = rpc_status.from_call(error)
    message = kind()
    for packed in status.details:
        if packed.Unpack(message):
            return message
    raise AssertionError(f"no {kind.__name__} in {status}")


def violated_fields(error: grpc.aio.AioRpcError) -> list[str]:
    return [v.field for v in detail(error, error_details_pb2.BadRequest).field_violations]


# --- Register ------------------------------------------------------------------------


async def test_register_returns_user_and_working_tokens(auth):
    email, username = names()
    reply = await register(auth, email.upper().replace("EXAMPLE.COM", "Example.com"), username)
    assert reply.user.username == username
    assert reply.user.id and reply.user.create_time.seconds > 0
    assert reply.tokens.token_type == "Bearer" and reply.tokens.expires_in == 3600
    me = await stub(auth).GetMe(auth_pb2.GetMeRequest(), metadata=bearer(reply.tokens.access_token))
    assert me.user.id == reply.user.id


async def test_register_names_every_bad_field(auth):
    error = await rpc_error(register(auth, "not-an-email", "x", "short"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(error) == ["email", "username", "password"]


async def test_email_is_unique_regardless_of_case(auth):
    email, username = names()
    await register(auth, email, username)
    error = await rpc_error(register(auth, email.upper(), username + "x"))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert detail(error, error_details_pb2.ErrorInfo).reason == "EMAIL_TAKEN"


async def test_username_is_unique_regardless_of_case_and_nothing_half_written(auth):
    email, username = names()
    await register(auth, email, username)
    other_email, _ = names()
    error = await rpc_error(register(auth, other_email, username.upper()))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert detail(error, error_details_pb2.ErrorInfo).reason == "USERNAME_TAKEN"
    # The refused registration left no account behind.
    login = await rpc_error(
        stub(auth).Login(auth_pb2.LoginRequest(identifier=other_email, password=PASSWORD))
    )
    assert login.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_concurrent_registrations_of_one_email_create_one_account(auth):
    email, username = names()
    results = await asyncio.gather(
        *(register(auth, email, f"{username}{i}") for i in range(4)), return_exceptions=True
    )
    created = [r for r in results if isinstance(r, auth_pb2.RegisterResponse)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(created) == 1
    assert [r.code() for r in refused] == [grpc.StatusCode.ALREADY_EXISTS] * 3


# --- Login ---------------------------------------------------------------------------


async def test_login_by_email_or_username_in_any_case(auth):
    email, username = names()
    await register(auth, email, username)
    for identifier in (email, email.upper(), username, username.upper()):
        reply = await stub(auth).Login(
            auth_pb2.LoginRequest(identifier=identifier, password=PASSWORD)
        )
        assert reply.user.username == username and reply.tokens.access_token


async def test_wrong_password_and_unknown_user_look_the_same(auth):
    email, username = names()
    await register(auth, email, username)
    wrong = await rpc_error(
        stub(auth).Login(auth_pb2.LoginRequest(identifier=username, password="wrong pass"))
    )
    unknown = await rpc_error(
        stub(auth).Login(auth_pb2.LoginRequest(identifier="nobody_" + username, password="x" * 9))
    )
    assert wrong.code() == unknown.code() == grpc.StatusCode.UNAUTHENTICATED
    assert wrong.details() == unknown.details()


async def test_login_requires_both_fields(auth):
    error = await rpc_error(stub(auth).Login(auth_pb2.LoginRequest()))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(error) == ["identifier", "password"]


async def test_failed_logins_are_rate_limited_per_identifier(auth):
    email, username = names()
    await register(auth, email, username)
    bad = auth_pb2.LoginRequest(identifier=username, password="wrong pass")
    for _ in range(5):
        assert (await rpc_error(stub(auth).Login(bad))).code() == grpc.StatusCode.UNAUTHENTICATED
    good = auth_pb2.LoginRequest(identifier=username, password=PASSWORD)
    error = await rpc_error(stub(auth).Login(good))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    delay = detail(error, error_details_pb2.RetryInfo).retry_delay
    assert 0 < delay.seconds <= 300


async def test_failed_logins_are_rate_limited_per_client_address(auth, tmp_path):
    """A tighter per-address limit on a second server over the same storage; the
    address comes from X-Forwarded-For because the peer (loopback) is a trusted proxy."""
    settings = auth.settings.replace(**{"login_failure_limit_per_address": "3/minute"})
    address = f"203.0.113.{uuid.uuid4().int % 250}"
    async with auth_stack(settings) as tight:
        for attempt in range(4):
            email, _ = names()  # a different identifier each time
            error = await rpc_error(
                stub(tight).Login(
                    auth_pb2.LoginRequest(identifier=email, password="wrong pass"),
                    metadata=(("x-forwarded-for", f"198.51.100.7, {address}"),),
                )
            )
            expected = (
                grpc.StatusCode.UNAUTHENTICATED
                if attempt < 3
                else (grpc.StatusCode.RESOURCE_EXHAUSTED)
            )
            assert error.code() == expected
        # Another address is not affected.
        error = await rpc_error(
            stub(tight).Login(
                auth_pb2.LoginRequest(identifier="someone@example.com", password="wrong pass"),
                metadata=(("x-forwarded-for", "192.0.2.1"),),
            )
        )
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED


# --- Refresh and Logout --------------------------------------------------------------


async def test_refresh_rotates_and_reuse_revokes_the_family(auth):
    first = (await register(auth)).tokens
    second = (
        await stub(auth).Refresh(auth_pb2.RefreshRequest(refresh_token=first.refresh_token))
    ).tokens
    assert second.refresh_token != first.refresh_token
    assert second.access_token != first.access_token
    # The spent token is presented again: someone copied it.
    reuse = await rpc_error(
        stub(auth).Refresh(auth_pb2.RefreshRequest(refresh_token=first.refresh_token))
    )
    assert reuse.code() == grpc.StatusCode.UNAUTHENTICATED
    assert detail(reuse, error_details_pb2.ErrorInfo).reason == "REFRESH_REUSED"
    # ... so the legitimate newer token is dead too.
    revoked = await rpc_error(
        stub(auth).Refresh(auth_pb2.RefreshRequest(refresh_token=second.refresh_token))
    )
    assert detail(revoked, error_details_pb2.ErrorInfo).reason == "REFRESH_REVOKED"


async def test_concurrent_refreshes_with_one_token_let_exactly_one_through(auth):
    tokens = (await register(auth)).tokens
    request = auth_pb2.RefreshRequest(refresh_token=tokens.refresh_token)
    results = await asyncio.gather(
        *(stub(auth).Refresh(request) for _ in range(3)), return_exceptions=True
    )
    assert sum(isinstance(r, auth_pb2.RefreshResponse) for r in results) == 1


async def test_refresh_failures(auth):
    empty = await rpc_error(stub(auth).Refresh(auth_pb2.RefreshRequest()))
    assert empty.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(empty) == ["refresh_token"]
    unknown = await rpc_error(stub(auth).Refresh(auth_pb2.RefreshRequest(refresh_token="nope")))
    assert unknown.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_expired_refresh_token_is_refused(auth):
    tokens = (await register(auth)).tokens
    engine = create_engine(auth.settings)
    async with engine.begin() as connection:
        await connection.execute(
            update(RefreshTokenRow)
            .where(RefreshTokenRow.token_hash == hash_refresh_token(tokens.refresh_token))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    await engine.dispose()
    error = await rpc_error(
        stub(auth).Refresh(auth_pb2.RefreshRequest(refresh_token=tokens.refresh_token))
    )
    assert detail(error, error_details_pb2.ErrorInfo).reason == "REFRESH_EXPIRED"


async def test_logout_revokes_refresh_and_access_token_and_is_idempotent(auth):
    tokens = (await register(auth)).tokens
    await stub(auth).Logout(
        auth_pb2.LogoutRequest(refresh_token=tokens.refresh_token),
        metadata=bearer(tokens.access_token),
    )
    refresh = await rpc_error(
        stub(auth).Refresh(auth_pb2.RefreshRequest(refresh_token=tokens.refresh_token))
    )
    assert refresh.code() == grpc.StatusCode.UNAUTHENTICATED
    me = await rpc_error(
        stub(auth).GetMe(auth_pb2.GetMeRequest(), metadata=bearer(tokens.access_token))
    )
    assert detail(me, error_details_pb2.ErrorInfo).reason == "TOKEN_REVOKED"
    # Logging out again is fine; an unknown token is not.
    await stub(auth).Logout(auth_pb2.LogoutRequest(refresh_token=tokens.refresh_token))
    unknown = await rpc_error(stub(auth).Logout(auth_pb2.LogoutRequest(refresh_token="nope")))
    assert unknown.code() == grpc.StatusCode.UNAUTHENTICATED
    empty = await rpc_error(stub(auth).Logout(auth_pb2.LogoutRequest()))
    assert empty.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- GetMe and tokens ----------------------------------------------------------------


async def test_get_me_refuses_missing_malformed_forged_and_expired_tokens(auth):
    tokens = (await register(auth)).tokens
    claims = jwt.decode(tokens.access_token, options={"verify_signature": False})
    header = jwt.get_unverified_header(tokens.access_token)
    forged = jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers=header)
    key_path = auth.settings.general.var_dir / "keys" / "jwt-ed25519.pem"
    real_key = load_pem_private_key(key_path.read_bytes(), None)
    expired = jwt.encode(
        {**claims, "iat": claims["iat"] - 7200, "exp": claims["iat"] - 3600},
        real_key,
        algorithm="EdDSA",
        headers=header,
    )
    cases = {
        (): "TOKEN_MISSING",
        bearer("garbage"): "TOKEN_INVALID",
        bearer(forged): "TOKEN_INVALID",
        bearer(expired): "TOKEN_EXPIRED",
        (("authorization", "Basic abc"),): "TOKEN_MISSING",
    }
    for metadata, reason in cases.items():
        error = await rpc_error(stub(auth).GetMe(auth_pb2.GetMeRequest(), metadata=metadata))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert detail(error, error_details_pb2.ErrorInfo).reason == reason


async def test_jwks_verifies_issued_tokens(auth):
    tokens = (await register(auth)).tokens
    jwks = await stub(auth).GetJwks(auth_pb2.GetJwksRequest())
    (key,) = jwks.keys
    assert (key.kty, key.crv, key.alg, key.use) == ("OKP", "Ed25519", "EdDSA", "sig")
    public = jwt.PyJWK.from_dict({"kty": key.kty, "crv": key.crv, "x": key.x, "kid": key.kid})
    claims = jwt.decode(tokens.access_token, public.key, algorithms=["EdDSA"], audience="aifx")
    assert {"sub", "exp", "iat", "jti", "scope"} <= set(claims)


# --- Preferences ---------------------------------------------------------------------


async def test_preferences_defaults_partial_update_and_explicit_mask(auth):
    meta = bearer((await register(auth)).tokens.access_token)
    defaults = (
        await stub(auth).GetPreferences(auth_pb2.GetPreferencesRequest(), metadata=meta)
    ).preferences
    assert list(defaults.pairs) == ["EUR/USD"]
    assert list(defaults.timeframes) == [market_pb2.TIMEFRAME_H1]
    assert defaults.notify_browser and not defaults.notify_discord

    # No mask: only the fields sent change.
    partial = await stub(auth).UpdatePreferences(
        auth_pb2.UpdatePreferencesRequest(
            preferences=auth_pb2.Preferences(min_confidence=0.8, pairs=["gbpjpy", "EURUSD"])
        ),
        metadata=meta,
    )
    assert partial.preferences.min_confidence == pytest.approx(0.8)
    assert list(partial.preferences.pairs) == ["GBP/JPY", "EUR/USD"]
    assert list(partial.preferences.timeframes) == [market_pb2.TIMEFRAME_H1]
    assert partial.preferences.notify_browser

    # An explicit mask can clear a field and turn a flag off.
    cleared = await stub(auth).UpdatePreferences(
        auth_pb2.UpdatePreferencesRequest(
            preferences=auth_pb2.Preferences(notify_browser=False),
            update_mask=field_mask_pb2.FieldMask(paths=["pairs", "notify_browser"]),
        ),
        metadata=meta,
    )
    assert list(cleared.preferences.pairs) == [] and not cleared.preferences.notify_browser
    again = (
        await stub(auth).GetPreferences(auth_pb2.GetPreferencesRequest(), metadata=meta)
    ).preferences
    assert again.min_confidence == pytest.approx(0.8) and list(again.pairs) == []


async def test_preferences_validation_names_fields_and_changes_nothing(auth):
    meta = bearer((await register(auth)).tokens.access_token)
    error = await rpc_error(
        stub(auth).UpdatePreferences(
            auth_pb2.UpdatePreferencesRequest(
                preferences=auth_pb2.Preferences(
                    pairs=["EURUSD", "BTC/XYZ"],
                    timeframes=[market_pb2.TIMEFRAME_UNSPECIFIED],
                    min_confidence=1.5,
                )
            ),
            metadata=meta,
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(error) == [
        "preferences.pairs[1]",
        "preferences.timeframes[0]",
        "preferences.min_confidence",
    ]
    unchanged = (
        await stub(auth).GetPreferences(auth_pb2.GetPreferencesRequest(), metadata=meta)
    ).preferences
    assert list(unchanged.pairs) == ["EUR/USD"]

    mask = await rpc_error(
        stub(auth).UpdatePreferences(
            auth_pb2.UpdatePreferencesRequest(
                preferences=auth_pb2.Preferences(),
                update_mask=field_mask_pb2.FieldMask(paths=["password"]),
            ),
            metadata=meta,
        )
    )
    assert violated_fields(mask) == ["update_mask"]


async def test_preferences_require_a_token(auth):
    error = await rpc_error(stub(auth).GetPreferences(auth_pb2.GetPreferencesRequest()))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


# --- Internal ------------------------------------------------------------------------


async def test_internal_lookup_needs_the_service_credential(auth):
    user = (await register(auth)).user
    internal = auth_pb2_grpc.AuthInternalServiceStub(auth.channel)
    request = auth_pb2.GetUserPreferencesRequest(user_id=user.id)
    for metadata in ((), (("x-aifx-service-token", "wrong"),)):
        error = await rpc_error(internal.GetUserPreferences(request, metadata=metadata))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    good = (("x-aifx-service-token", load_service_token(auth.settings)),)
    reply = await internal.GetUserPreferences(request, metadata=good)
    assert reply.user.id == user.id and list(reply.preferences.pairs) == ["EUR/USD"]
    missing = await rpc_error(
        internal.GetUserPreferences(
            auth_pb2.GetUserPreferencesRequest(user_id=str(uuid.uuid4())), metadata=good
        )
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    empty = await rpc_error(
        internal.GetUserPreferences(auth_pb2.GetUserPreferencesRequest(), metadata=good)
    )
    assert empty.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- Redis: shared state across replicas, and degrading when it is gone ----------------


async def test_logout_reaches_other_replicas_through_redis_only(auth):
    """With Redis, revocations are shared: a second auth_svc replica on the same
    database refuses a token logged out on the first. Without Redis (the embedded
    default) revocations are per process, as the README says: the other replica still
    accepts the access token until it expires, though the session's refresh tokens are
    revoked in the database for everyone."""
    async with auth_stack(auth.settings) as replica:
        tokens = (await register(auth)).tokens
        await stub(auth).Logout(
            auth_pb2.LogoutRequest(refresh_token=tokens.refresh_token),
            metadata=bearer(tokens.access_token),
        )
        me = stub(replica).GetMe(auth_pb2.GetMeRequest(), metadata=bearer(tokens.access_token))
        if auth.settings.storage.redis_url:
            error = await rpc_error(me)
            assert detail(error, error_details_pb2.ErrorInfo).reason == "TOKEN_REVOKED"
        else:
            assert (await me).user.id
        refresh = await rpc_error(
            stub(replica).Refresh(auth_pb2.RefreshRequest(refresh_token=tokens.refresh_token))
        )
        assert detail(refresh, error_details_pb2.ErrorInfo).reason == "REFRESH_REVOKED"


async def test_a_dead_redis_degrades_instead_of_failing(tmp_path):
    """Redis configured but nothing listening: sign-up, login limits and logout still
    work, from the process's own state."""
    from tests.infra import make_settings

    settings = make_settings(tmp_path, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with auth_stack(settings) as stack:
        email, username = names()
        tokens = (await register(stack, email, username)).tokens
        bad = auth_pb2.LoginRequest(identifier=username, password="wrong pass")
        codes = [(await rpc_error(stub(stack).Login(bad))).code() for _ in range(6)]
        assert codes[:5] == [grpc.StatusCode.UNAUTHENTICATED] * 5
        assert codes[5] == grpc.StatusCode.RESOURCE_EXHAUSTED
        await stub(stack).Logout(
            auth_pb2.LogoutRequest(refresh_token=tokens.refresh_token),
            metadata=bearer(tokens.access_token),
        )
        error = await rpc_error(
            stub(stack).GetMe(auth_pb2.GetMeRequest(), metadata=bearer(tokens.access_token))
        )
        assert detail(error, error_details_pb2.ErrorInfo).reason == "TOKEN_REVOKED"
