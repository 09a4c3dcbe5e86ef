"""No secret, token or password in any log line.

The whole stack (`make run`'s processes) runs at DEBUG with JSON logs; a user goes
through everything that carries a secret, the way clients do, through Envoy: REST
register, login (with the password), refresh, GetMe, preferences, an SSE stream
authorised by `?access_token=` (EventSource cannot send headers), a Socket.IO
connection with the token in its handshake, the dashboard's cookie session, a position
opened and closed, a Discord link code created and spent (and a wrong one tried) over
the internal API with the service credential, logout, a failed login. Then every
process's whole log, Envoy's access log included, is searched for each secret: the
passwords, the access and refresh tokens (and each access token's signature alone),
the service credential, the signing key, the link code.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
import socketio

from aifx.auth.v1 import auth_pb2, auth_pb2_grpc
from tests.envoy import unique_account
from tests.full_stack import FullStack
from tests.infra import eventually

pytestmark = pytest.mark.e2e

SESSION = {"X-AIFX-Session": "1"}
DEADLINE = 30.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FullStack]:
    with FullStack(
        tmp_path_factory.mktemp("log-secrets"),
        log_level="DEBUG",
        bcrypt_rounds=4,
        stream_heartbeat_seconds=1,
    ) as running:
        yield running


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def ok(response: httpx.Response) -> dict:
    assert response.status_code == 200, (response.request.url.path, response.text)
    return response.json() if response.content else {}


class Secrets:
    """Every secret the flow handles, by what it is."""

    def __init__(self) -> None:
        self.found: dict[str, str] = {}

    def add(self, what: str, value: str) -> None:
        assert value, what
        self.found[f"{what} #{len(self.found)}"] = value

    def token(self, what: str, token: str) -> None:
        self.add(what, token)
        self.add(f"{what} signature", token.rsplit(".", 1)[-1])


async def first_sse_frame(http: httpx.AsyncClient, path: str, token: str) -> str:
    """Open an EventSource-style stream (token in the query) and read its first frame."""
    async with http.stream("GET", path, params={"access_token": token}) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                return line
    raise AssertionError("the stream ended without a frame")


async def socket_round_trip(url: str, token: str) -> None:
    """Connect to Socket.IO with the token in the handshake, subscribe, disconnect."""
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=20)
    try:
        await client.emit("subscribe:signals", {})
    finally:
        await client.disconnect()


async def link_discord(stack: FullStack, service_token: str, code: str) -> None:
    """What the notifier does for `/link CODE`: a wrong code first, then the right one."""
    credential = (("x-aifx-service-token", service_token),)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.ports['auth_port']}") as channel:
        internal = auth_pb2_grpc.AuthInternalServiceStub(channel)
        discord_id = str(uuid.uuid4().int % 10**17 + 10**17)
        with pytest.raises(grpc.aio.AioRpcError):
            await internal.LinkDiscordAccount(
                auth_pb2.LinkDiscordAccountRequest(
                    code="ZZZZZZZZ", discord_user_id=discord_id, discord_username="t#1"
                ),
                metadata=credential,
            )
        await internal.LinkDiscordAccount(
            auth_pb2.LinkDiscordAccountRequest(
                code=code, discord_user_id=discord_id, discord_username="t#1"
            ),
            metadata=credential,
        )


async def run_flow(stack: FullStack, secrets: Secrets) -> None:
    account = unique_account("logs")
    wrong_password = f"not-the-password-{uuid.uuid4().hex[:8]}"
    secrets.add("password", account["password"])
    secrets.add("wrong password", wrong_password)
    var = stack.workdir / "var"
    service_token = (var / "service-token").read_text().strip()
    secrets.add("service token", service_token)
    pem = (var / "keys" / "jwt-ed25519.pem").read_text()
    key_body = "".join(line for line in pem.splitlines() if "-----" not in line)
    secrets.add("signing key", key_body)

    async with httpx.AsyncClient(base_url=stack.url, timeout=DEADLINE, trust_env=False) as http:
        registered = ok(await http.post("/api/v1/auth/register", json=account))
        secrets.token("access token (register)", registered["tokens"]["accessToken"])
        secrets.add("refresh token (register)", registered["tokens"]["refreshToken"])
        login = {"identifier": account["username"], "password": account["password"]}
        signed_in = ok(await http.post("/api/v1/auth/login", json=login))
        access = signed_in["tokens"]["accessToken"]
        secrets.token("access token (login)", access)
        secrets.add("refresh token (login)", signed_in["tokens"]["refreshToken"])
        refreshed = ok(
            await http.post(
                "/api/v1/auth/refresh", json={"refreshToken": signed_in["tokens"]["refreshToken"]}
            )
        )
        access = refreshed["tokens"]["accessToken"]
        refresh = refreshed["tokens"]["refreshToken"]
        secrets.token("access token (refresh)", access)
        secrets.add("refresh token (refresh)", refresh)
        ok(await http.get("/api/v1/auth/me", headers=bearer(access)))
        ok(await http.get("/api/v1/auth/preferences", headers=bearer(access)))

        for path in ("/api/v1/trading/signals:stream", "/api/v1/positions/events:stream"):
            await asyncio.wait_for(first_sse_frame(http, path, access), DEADLINE)
        await asyncio.wait_for(socket_round_trip(stack.url, access), DEADLINE)

        opened = ok(
            await http.post(
                "/api/v1/positions",
                json={"pair": "EUR/USD", "side": "buy", "lotSize": "0.10", "entryPrice": "1.1"},
                headers=bearer(access),
            )
        )
        position_id = opened["position"]["id"]
        ok(
            await http.post(
                f"/api/v1/positions/{position_id}:close",
                json={"exitPrice": "1.1005"},
                headers=bearer(access),
            )
        )

        code = ok(
            await http.post("/api/v1/auth/discord/link-code", json={}, headers=bearer(access))
        )
        secrets.add("link code", code["code"])
        await link_discord(stack, service_token, code["code"])

        # The dashboard's cookie session: password in, refresh token in a cookie.
        dashboard = ok(
            await http.post(
                "/session/login",
                json={"identifier": account["email"], "password": account["password"]},
                headers=SESSION,
            )
        )
        secrets.token("access token (session)", dashboard["accessToken"])
        cookie = http.cookies.get("aifx_session", path="/session")
        assert cookie, "no session cookie"
        secrets.add("refresh token (session cookie)", cookie)
        ok(await http.post("/session/refresh", headers=SESSION))
        secrets.add("refresh token (session cookie, rotated)", http.cookies["aifx_session"])
        assert (await http.post("/session/logout", headers=SESSION)).status_code == 204

        ok(
            await http.post(
                "/api/v1/auth/logout", json={"refreshToken": refresh}, headers=bearer(access)
            )
        )
        failed = await http.post(
            "/api/v1/auth/login",
            json={"identifier": account["username"], "password": wrong_password},
        )
        assert failed.status_code == 401, failed.text


def every_log(stack: FullStack) -> dict[str, str]:
    """Each process's whole log (Envoy's holds its access log)."""
    logs = {path.name: path.read_text(errors="replace") for path in stack.workdir.glob("*.log")}
    assert "envoy.log" in logs and len(logs) >= 6, sorted(logs)
    return logs


async def test_no_secret_reaches_any_log_line(stack: FullStack) -> None:
    secrets = Secrets()
    await run_flow(stack, secrets)
    # Let the processes flush the lines of the last requests: Envoy writes an access
    # log line when a request ends, so wait for the last one (the failed login).
    await eventually(
        lambda: "/api/v1/auth/login 401" in stack.log("envoy", tail=100_000),
        "the failed login in Envoy's access log",
        within=DEADLINE,
    )

    logs = every_log(stack)
    # The runs were verbose and the access log saw the token-bearing requests.
    assert any('"level": "debug"' in text for text in logs.values()), "no DEBUG lines"
    # (the method logged is the one after transcoding: POST for gRPC.)
    assert re.search(r" /api/v1/trading/signals:stream\S* 200 ", logs["envoy.log"])
    assert "envoy GET /socket.io/" in logs["envoy.log"]
    leaks = [
        f"{what} in {name}: {line[:300]}"
        for what, value in secrets.found.items()
        for name, text in logs.items()
        for line in text.splitlines()
        if value in line
    ]
    assert not leaks, "\n".join(leaks)


def test_every_process_logs_json_lines(stack: FullStack) -> None:
    """The search above reads real log lines: the services' logs are JSON objects."""
    for name in ("auth", "signal", "position", "edge"):
        lines = [
            line for line in stack.log(name, tail=100_000).splitlines() if line.startswith("{")
        ]
        assert lines, name
        assert all(isinstance(json.loads(line), dict) for line in lines[:50])


def test_the_log_files_are_where_the_search_looks(stack: FullStack) -> None:
    assert {Path(p).stem for p in stack.commands} <= {p.stem for p in stack.workdir.glob("*.log")}
