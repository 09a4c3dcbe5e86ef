"""Abuse through the public door: a real Envoy in front of an in-process auth_svc.

- Registration is rate limited per client address (the address Envoy saw), 429 with a
  JSON google.rpc.Status and Retry-After, and other addresses are unaffected.
- A request body over 1 MiB is refused by Envoy with 413 and a JSON body, before any
  service reads it.
- Slow-loris: a connection that sends half a request line, or nothing at all, is closed
  by Envoy within its bounds (here shortened to 1 s and 2 s by settings).
- Per-user caps (the whole stack, caps set to 2): a user's third stream, Server-Sent
  Events through Envoy or native gRPC, is refused 429 / RESOURCE_EXHAUSTED with
  Retry-After; a third Socket.IO connection gets a connect_error saying why; another
  user is unaffected, and closing one frees its slot.

Link-code guessing is limited per Discord user, and even the right code is refused
while the limit holds: tests/auth/test_discord_links.py
(test_guessing_codes_is_rate_limited_per_discord_user).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import grpc
import httpx
import pytest
import socketio

from aifx.signal.v1 import signal_pb2, signal_pb2_grpc
from tests.envoy import envoy_settings, http_client, running_envoy, unique_account, wait_for_jwks
from tests.full_stack import FullStack
from tests.infra import EnvoyProcess, auth_stack, eventually, make_settings

pytestmark = pytest.mark.e2e

REGISTRATIONS_PER_ADDRESS = 4
HEADERS_TIMEOUT = 1.0
IDLE_TIMEOUT = 2.0
# How long a test waits for Envoy to close a stalled connection: the bound plus a wide
# margin for a busy machine (this is a deadline, not a timing assertion).
CLOSE_DEADLINE = 30.0


@pytest.fixture(scope="module")
async def envoy(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EnvoyProcess]:
    """Envoy with short slow-loris bounds in front of auth_svc allowing
    REGISTRATIONS_PER_ADDRESS registrations per address (embedded storage)."""
    workdir: Path = tmp_path_factory.mktemp("abuse")
    settings = make_settings(
        workdir,
        registration_limit_per_address=f"{REGISTRATIONS_PER_ADDRESS}/hour",
        envoy_request_headers_timeout_seconds=HEADERS_TIMEOUT,
        envoy_idle_timeout_seconds=IDLE_TIMEOUT,
    )
    async with auth_stack(settings) as auth:
        proxied = envoy_settings(settings, auth.server.port)
        async with running_envoy(proxied, workdir / "envoy") as running:
            await wait_for_jwks(running)  # spends one registration of 127.0.0.1
            yield running


async def test_registration_is_rate_limited_per_client_address(envoy: EnvoyProcess) -> None:
    async with http_client(envoy.url) as http:
        # wait_for_jwks registered once from this address already.
        for _ in range(REGISTRATIONS_PER_ADDRESS - 1):
            response = await http.post("/api/v1/auth/register", json=unique_account("ab"))
            assert response.status_code == 200, response.text
        refused = await http.post("/api/v1/auth/register", json=unique_account("ab"))
    assert refused.status_code == 429, refused.text
    body = refused.json()
    assert body["code"] == 8 and "too many registrations" in body["message"]
    retry = [d for d in body["details"] if d["@type"].endswith("google.rpc.RetryInfo")]
    assert retry and float(retry[0]["retryDelay"].rstrip("s")) > 0
    assert int(refused.headers["retry-after"]) > 0


async def test_a_body_over_the_cap_is_refused_at_envoy_with_json(envoy: EnvoyProcess) -> None:
    huge = {**unique_account("big"), "username": "x" * (2 * 1024 * 1024)}
    async with http_client(envoy.url) as http:
        response = await http.post("/api/v1/auth/login", json=huge)
        small = await http.post(
            "/api/v1/auth/login", json={"identifier": "nobody", "password": "wrong pass"}
        )
    assert response.status_code == 413, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["code"] == 3 and "too large" in response.json()["message"]
    assert small.status_code == 401  # an ordinary body still reaches auth_svc


async def _closed_after(envoy: EnvoyProcess, first_bytes: bytes) -> tuple[float, bytes]:
    """Open a raw connection, send `first_bytes` (maybe nothing) and never finish the
    request: how long until Envoy closed it, and what it sent before closing."""
    reader, writer = await asyncio.open_connection("127.0.0.1", envoy.port)
    started = time.monotonic()
    try:
        if first_bytes:
            writer.write(first_bytes)
            await writer.drain()
        received = await asyncio.wait_for(reader.read(), CLOSE_DEADLINE)  # until EOF
    finally:
        writer.close()
    return time.monotonic() - started, received


async def test_slow_request_headers_are_cut_off(envoy: EnvoyProcess) -> None:
    elapsed, received = await _closed_after(envoy, b"GET /api/v1/auth/jwks HTTP/1.1\r\nHost: a")
    assert elapsed >= HEADERS_TIMEOUT * 0.9
    assert received.startswith(b"HTTP/1.1 408"), received[:200]


async def test_a_silent_connection_is_closed(envoy: EnvoyProcess) -> None:
    elapsed, received = await _closed_after(envoy, b"")
    assert elapsed >= IDLE_TIMEOUT * 0.9
    assert received == b""


async def test_a_kept_alive_connection_serves_requests_until_idle(envoy: EnvoyProcess) -> None:
    """The idle bound closes only connections with nothing in flight: a request on a
    fresh connection is answered normally."""
    reader, writer = await asyncio.open_connection("127.0.0.1", envoy.port)
    try:
        writer.write(b"GET /api/v1/auth/jwks HTTP/1.1\r\nHost: a\r\n\r\n")
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), CLOSE_DEADLINE)
        assert status.startswith(b"HTTP/1.1 200"), status
    finally:
        writer.close()


# --- per-user caps on streams and sockets ----------------------------------------------

CAP = 2
SIGNALS_SSE = "/api/v1/trading/signals:stream"
POSITIONS_SSE = "/api/v1/positions/events:stream"


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FullStack]:
    """The whole stack with each user allowed CAP streams per service and CAP sockets."""
    with FullStack(
        tmp_path_factory.mktemp("caps"),
        max_streams_per_user=CAP,
        max_sockets_per_user=CAP,
        stream_heartbeat_seconds=1,
        bcrypt_rounds=4,
    ) as stack:
        yield stack


async def new_user(http: httpx.AsyncClient) -> str:
    response = await http.post("/api/v1/auth/register", json=unique_account("cap"))
    assert response.status_code == 200, response.text
    return str(response.json()["tokens"]["accessToken"])


async def open_sse(
    streams: AsyncExitStack, http: httpx.AsyncClient, token: str, path: str = SIGNALS_SSE
) -> httpx.Response:
    """An EventSource-style stream, open until `streams` closes; when accepted, its
    first frame (a heartbeat) has arrived, so the service holds its slot."""
    response = await streams.enter_async_context(
        http.stream("GET", path, params={"access_token": token})
    )
    if response.status_code == 200:
        lines = response.aiter_lines()
        # Dropping the line iterator would close the stream: it lives as long as `streams`.
        streams.push_async_callback(lines.aclose)
        while not (await asyncio.wait_for(anext(lines), CLOSE_DEADLINE)).startswith("data:"):
            pass
    else:
        await response.aread()
    return response


async def test_a_users_streams_are_capped_and_a_closed_one_frees_its_slot(
    capped: FullStack,
) -> None:
    async with http_client(capped.url) as http:
        http.timeout = httpx.Timeout(CLOSE_DEADLINE)
        token, other = await new_user(http), await new_user(http)
        async with AsyncExitStack() as first:
            held = [await open_sse(first, http, token) for _ in range(CAP - 1)]
            async with AsyncExitStack() as last:
                held.append(await open_sse(last, http, token))
                assert [r.status_code for r in held] == [200] * CAP
                async with AsyncExitStack() as extra:
                    refused = await open_sse(extra, http, token)
                assert refused.status_code == 429, refused.text
                assert refused.json()["code"] == 8
                assert "too many open streams" in refused.json()["message"]
                assert int(refused.headers["retry-after"]) > 0
                # Native gRPC counts against the same cap.
                target = f"127.0.0.1:{capped.ports['signal_port']}"
                async with grpc.aio.insecure_channel(target) as channel:
                    stream = signal_pb2_grpc.SignalServiceStub(channel).SubscribeSignals(
                        signal_pb2.SubscribeSignalsRequest(),
                        metadata=(("authorization", f"Bearer {token}"),),
                    )
                    with pytest.raises(grpc.aio.AioRpcError) as grpc_refusal:
                        await asyncio.wait_for(stream.read(), CLOSE_DEADLINE)
                assert grpc_refusal.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                # Another user is not held back.
                async with AsyncExitStack() as theirs:
                    assert (await open_sse(theirs, http, other)).status_code == 200
            # One stream closed: its slot comes back (once the service sees it go).

            async def reopened() -> bool:
                async with AsyncExitStack() as again:
                    return (await open_sse(again, http, token)).status_code == 200

            await eventually(reopened, "a closed stream's slot to be freed", within=30)


async def test_position_event_streams_are_capped_too(capped: FullStack) -> None:
    async with http_client(capped.url) as http:
        http.timeout = httpx.Timeout(CLOSE_DEADLINE)
        token = await new_user(http)
        async with AsyncExitStack() as streams:
            for _ in range(CAP):
                assert (await open_sse(streams, http, token, POSITIONS_SSE)).status_code == 200
            refused = await open_sse(streams, http, token, POSITIONS_SSE)
        assert refused.status_code == 429, refused.text
        assert "too many open streams" in refused.json()["message"]


class Socket:
    """A Socket.IO client through Envoy that records why it was refused."""

    def __init__(self) -> None:
        self.io = socketio.AsyncClient(reconnection=False)
        self.refusals: list[object] = []
        self.io.on("connect_error", self.refusals.append)

    async def connect(self, url: str, token: str) -> bool:
        try:
            await self.io.connect(
                url, auth={"token": token}, transports=["websocket"], wait_timeout=20
            )
        except socketio.exceptions.ConnectionError:
            return False
        return True


async def test_a_users_sockets_are_capped_and_a_closed_one_frees_its_slot(
    capped: FullStack,
) -> None:
    async with http_client(capped.url) as http:
        token, other = await new_user(http), await new_user(http)
    sockets = [Socket() for _ in range(CAP)]
    try:
        for socket in sockets:
            assert await socket.connect(capped.url, token)
        refused = Socket()
        assert not await refused.connect(capped.url, token)
        assert refused.refusals, "no connect_error"
        reason = refused.refusals[0]
        assert isinstance(reason, dict), reason
        assert "too many open sockets" in str(reason.get("message")), reason
        assert reason.get("data") == {"code": "RESOURCE_EXHAUSTED"}, reason
        theirs = Socket()
        assert await theirs.connect(capped.url, other)
        await theirs.io.disconnect()

        await sockets.pop().io.disconnect()

        async def reconnected() -> bool:
            again = Socket()
            if await again.connect(capped.url, token):
                sockets.append(again)
                return True
            return False

        await eventually(reconnected, "a closed socket's slot to be freed", within=30)
    finally:
        for socket in sockets:
            await socket.io.disconnect()
