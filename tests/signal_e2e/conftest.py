"""The whole signal chain in this process, behind a real Envoy (once per backend: the
embedded SQLite default and PostgreSQL + Redis):

    httpx ──▶ Envoy ──▶ signal_svc ──▶ inference ──▶ model server (the committed model)
                 └────▶ auth_svc ◀── (JWKS over gRPC) ──┘

auth_svc is the `auth` fixture; the model server and the inference service are the
fixtures of tests/inference; signal_svc is `signal_svc.server.build` on the auth stack's
settings (same database and Redis), replaying the real bundled EUR/USD hours fast
(REPLAY_SPEED market seconds per real second: an hour bar closes every 10 ms, a weekend
gap lasts half a second), so live signals arrive while the tests run.

Everything shares the tests' event loop: HTTP goes through `httpx.AsyncClient`, Envoy
is started and stopped in a worker thread, nothing blocks the loop.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
from pydantic import SecretStr

from aifx.common.v1 import market_pb2
from aifx.signal.v1 import signal_pb2, signal_pb2_grpc
from common.grpc_metadata import SERVICE_TOKEN_HEADER
from common.migrations import upgrade
from common.server import RunningServer, start_server
from common.settings import Settings
from tests.envoy import (
    envoy_settings,
    http_client,
    running_envoy,
    unique_account,
    wait_for_jwks,
)
from tests.inference.conftest import (  # noqa: F401 (fixtures used by this directory)
    InferenceStack,
    inference,
    model_config_file,
    model_server,
    served_version_dir,
)
from tests.infra import (
    AuthStack,
    EnvoyProcess,
    create_postgres_database,
    delete_redis_prefix,
    drop_postgres_database,
    eventually,
    run_sync,
)

# Market seconds per real second: 100 hour bars a second.
REPLAY_SPEED = 360_000.0
# Idle streams get a heartbeat this often (the product default is 15 s).
HEARTBEAT_SECONDS = 1.0
FIRST_SIGNAL_TIMEOUT = 20.0


@dataclass
class SignalEdge:
    """signal_svc (in process) and auth_svc behind a real Envoy, with a signed-in user."""

    auth: AuthStack
    signal: RunningServer
    envoy: EnvoyProcess
    settings: Settings
    access_token: str
    service_token: str
    channel: grpc.aio.Channel

    @property
    def url(self) -> str:
        return self.envoy.url

    @property
    def stub(self) -> signal_pb2_grpc.SignalServiceStub:
        """signal_svc directly over gRPC (not through Envoy)."""
        return signal_pb2_grpc.SignalServiceStub(self.channel)

    @property
    def internal_stub(self) -> signal_pb2_grpc.SignalInternalServiceStub:
        return signal_pb2_grpc.SignalInternalServiceStub(self.channel)

    @property
    def bearer(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.access_token}"),)

    @property
    def service_credential(self) -> tuple[tuple[str, str], ...]:
        return ((SERVICE_TOKEN_HEADER, self.service_token),)


def signal_settings(
    auth: AuthStack, inference_stack: InferenceStack, database_url: str
) -> Settings:
    """The auth stack's settings for signal_svc, with a database and Redis prefix of its
    own (this replay keeps storing candles and signals for the whole session, which must
    not leak into other tests' tables), its upstreams, a fast replay and short
    heartbeats. The service credential is the one the inference service was started
    with, so model predictions (not the fallback) are served."""
    service_token = dict(inference_stack.credential)[SERVICE_TOKEN_HEADER]
    return auth.settings.replace(
        **{
            "database_url": database_url,
            "redis_prefix": f"{auth.settings.storage.redis_prefix}signal-e2e:",
            "revocation_redis_prefix": auth.settings.storage.effective_revocation_prefix,
            "auth_target": auth.address,
            "inference_target": f"127.0.0.1:{inference_stack.server.port}",
            "replay_speed": REPLAY_SPEED,
            "stream_heartbeat_seconds": HEARTBEAT_SECONDS,
            # EUR/USD hourly and two daily fixings: enough to see both kinds, few
            # enough that the fast replay's signals keep pace on a slow machine.
            "signal_pairs": ["EUR/USD", "GBP/USD"],
            # The fast replay hands inference batches of up to 64 series at once; on a
            # busy 2-core machine those may take longer than the product's 0.5 s, and
            # these tests are about the chain, not the fallback (tests/signal_engine).
            "inference_timeout_seconds": 5.0,
            "signal_timeframes": ["1h", "1d"],
            "signal_metrics_port": 0,
            "service_token": SecretStr(service_token),
        }
    )


async def wait_for_first_signal(channel: grpc.aio.Channel, token: str) -> None:
    """Until GetSignal(EUR/USD, 1h) stops answering NOT_FOUND."""
    stub = signal_pb2_grpc.SignalServiceStub(channel)
    request = signal_pb2.GetSignalRequest(pair="EUR/USD", timeframe=market_pb2.TIMEFRAME_H1)

    async def answered() -> bool:
        try:
            await stub.GetSignal(request, metadata=(("authorization", f"Bearer {token}"),))
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:
                raise
            return False
        return True

    await eventually(answered, "the first EUR/USD 1h signal", within=FIRST_SIGNAL_TIMEOUT)


async def stored_signals(edge: SignalEdge, count: int, within: float = 10.0) -> list[Any]:
    """The newest `count` stored signals (newest first), once there are that many."""
    request = signal_pb2.ListSignalsRequest(page_size=count)

    async def stored() -> list[Any] | None:
        page = await edge.stub.ListSignals(request, metadata=edge.bearer)
        return list(page.signals) if len(page.signals) == count else None

    return await eventually(stored, f"{count} stored signals", within=within)  # type: ignore[no-any-return]


async def sign_up(base_url: str) -> str:
    """A new user's access token, through Envoy."""
    async with http_client(base_url) as http:
        response = await http.post("/api/v1/auth/register", json=unique_account("sig"))
    assert response.status_code == 200, response.text
    return str(response.json()["tokens"]["accessToken"])


STOP_TIMEOUT = 15.0


def await_chain(task: asyncio.Task[Any]) -> str:
    """Where a task is suspended: its coroutine and everything it awaits, innermost last
    (Task.print_stack shows only the outermost frame of a coroutine)."""
    lines = [repr(task)]
    awaited: Any = task.get_coro()
    while awaited is not None and len(lines) < 40:
        frame = next(
            (
                getattr(awaited, a)
                for a in ("cr_frame", "ag_frame", "gi_frame")
                if hasattr(awaited, a)
            ),
            None,
        )
        if frame is None:
            lines.append(f"    {type(awaited).__name__}")
            break
        lines.append(f"    {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        awaited = next(
            (
                getattr(awaited, a)
                for a in ("cr_await", "ag_await", "gi_yieldfrom")
                if hasattr(awaited, a)
            ),
            None,
        )
    return "\n".join(lines)


async def stop_or_explain(running: RunningServer) -> None:
    """Stop signal_svc; if that hangs, fail with where every task of the loop is
    suspended (what shutdown waits for) instead of a bare pytest timeout. The stop runs
    as its own task and is waited for with asyncio.wait, which needs no cancellation to
    reach it (a hang may be a cancellation that got lost)."""
    stopping = asyncio.create_task(running.stop(grace=0.5), name="stop signal_svc")
    await asyncio.wait({stopping}, timeout=STOP_TIMEOUT)
    if stopping.done():
        stopping.result()
        return
    chains = "\n".join(await_chain(t) for t in asyncio.all_tasks() if not t.done())
    raise RuntimeError(f"signal_svc did not stop within {STOP_TIMEOUT:.0f} s; tasks:\n{chains}")


# Package scope: the stack replays and predicts all the time, so it stops when this
# directory's tests are done instead of loading the event loop of every later test.
@pytest.fixture(scope="package")
async def signal_edge(
    auth: AuthStack,
    inference: InferenceStack,  # noqa: F811 (the fixture imported above)
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[SignalEdge]:
    """The chain of the module docstring, with the first signal stored."""
    from signal_svc.server import build

    own_database = ""
    if auth.settings.storage.database_url:
        own_database, database_url = await asyncio.to_thread(run_sync, create_postgres_database())
    else:
        database_url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('signal-db')}/signal.db"
    settings = signal_settings(auth, inference, database_url)
    await asyncio.to_thread(upgrade, "signal_svc", settings)
    running = await start_server(build(settings), "127.0.0.1", 0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        edge_settings = envoy_settings(settings, auth.server.port).replace(
            **{"signal_port": running.port}
        )
        async with running_envoy(edge_settings, tmp_path_factory.mktemp("envoy")) as envoy:
            await wait_for_jwks(envoy)
            token = await sign_up(envoy.url)
            await wait_for_first_signal(channel, token)
            yield SignalEdge(
                auth=auth,
                signal=running,
                envoy=envoy,
                settings=settings,
                access_token=token,
                service_token=settings.tokens.service_token.get_secret_value(),
                channel=channel,
            )
    finally:
        await channel.close()
        try:
            await stop_or_explain(running)  # its market and scheduler write until here
        finally:
            # Only after the stop: a writer still running would recreate keys after the
            # cleanup (the session's prefix cleanup runs later still, and would do too).
            if settings.storage.redis_url:
                await delete_redis_prefix(settings.storage.redis_prefix)
            if own_database:
                await asyncio.to_thread(run_sync, drop_postgres_database(own_database))


@pytest.fixture
async def http(signal_edge: SignalEdge) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for Envoy's public listener."""
    async with http_client(signal_edge.url) as client:
        yield client


# --- helpers of the tests here ----------------------------------------------------------

BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def error_body(response: httpx.Response, status: int, code: int) -> dict[str, Any]:
    """The JSON google.rpc.Status body of an error response, after checking the HTTP
    status, the content type and the gRPC code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert body["code"] == code, body
    assert body["message"], body
    return dict(body)


def violations(body: dict[str, Any]) -> dict[str, str]:
    """BadRequest field violations of an error body, field → description."""
    found = [d for d in body.get("details", []) if d["@type"] == BAD_REQUEST]
    assert len(found) == 1, body
    return {v["field"]: v["description"] for v in found[0]["fieldViolations"]}


def reason(body: dict[str, Any]) -> str:
    found = [d for d in body.get("details", []) if d["@type"] == ERROR_INFO]
    assert len(found) == 1, body
    return str(found[0]["reason"])


class SseReader:
    """Server-Sent Events of a streaming httpx response: every event must be exactly one
    `data: <JSON>` line (one proto message per event)."""

    def __init__(self, response: httpx.Response) -> None:
        self._chunks = response.aiter_raw()
        self._buffer = b""
        self.raw_events: list[bytes] = []

    async def next(self, within: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while b"\n\n" not in self._buffer:
                self._buffer += await anext(self._chunks)
        event, self._buffer = self._buffer.split(b"\n\n", 1)
        self.raw_events.append(event)
        assert event.startswith(b"data: "), event
        assert b"\n" not in event, f"more than one line in one event: {event!r}"
        message = json.loads(event.removeprefix(b"data: "))
        assert isinstance(message, dict) and len(message) == 1, message
        return dict(message)

    async def until(
        self, done: Callable[[list[dict[str, Any]]], bool], within: float = 10.0
    ) -> list[dict[str, Any]]:
        """Events until `done(events so far)`."""
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + within
        while not done(events):
            events.append(await self.next(max(0.1, deadline - time.monotonic())))
        return events


def signal_ids(events: list[dict[str, Any]]) -> list[int]:
    return [int(e["signal"]["id"]) for e in events if "signal" in e]
