"""A real Envoy for tests: start and stop it without blocking the event loop, its
settings on free ports, an HTTP client for it, and waiting until it has the JWKS.

Shared by every suite that goes through Envoy (auth, signals, positions).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from common.settings import Settings
from tests.infra import EnvoyProcess, eventually, free_port, start_envoy, stop_envoy

JWKS_READY_TIMEOUT = 20.0
PASSWORD = "correct horse battery"


def http_client(base_url: str) -> httpx.AsyncClient:
    """An async HTTP client (never a sync one: auth_svc shares the event loop) that
    ignores proxy settings from the environment."""
    return httpx.AsyncClient(base_url=base_url, timeout=10.0, trust_env=False)


def unique_account(prefix: str = "u") -> dict[str, str]:
    """Registration fields no other test uses (the stack is shared)."""
    tag = uuid.uuid4().hex[:12]
    return {
        "email": f"{prefix}-{tag}@example.com",
        "username": f"{prefix}_{tag}",
        "password": PASSWORD,
    }


async def wait_for_jwks(envoy: EnvoyProcess) -> None:
    """Until Envoy's jwt_authn has fetched the JWKS (asynchronously, through Envoy
    itself, retried every second): a valid token then reaches auth_svc and /me is 200
    instead of Envoy's 401 "Jwks remote fetch is failed"."""
    async with http_client(envoy.url) as http:
        response = await http.post("/api/v1/auth/register", json=unique_account("jwks"))
        if response.status_code != 200:
            raise RuntimeError(
                f"register through envoy failed: {response.status_code} {response.text}\n"
                + envoy.log()
            )
        headers = {"authorization": f"Bearer {response.json()['tokens']['accessToken']}"}

        async def authorized() -> bool:
            try:
                response = await http.get("/api/v1/auth/me", headers=headers)
            except httpx.TransportError:
                return False
            return response.status_code == 200

        await eventually(
            authorized,
            "Envoy to fetch the JWKS (its log: " + envoy.log_path.name + ")",
            within=JWKS_READY_TIMEOUT,
            interval=0.1,
        )


def _start_envoy(settings: Settings, workdir: Path) -> EnvoyProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    return start_envoy(settings, workdir)


@asynccontextmanager
async def running_envoy(settings: Settings, workdir: Path) -> AsyncIterator[EnvoyProcess]:
    """A real Envoy on `settings`, started and stopped in a worker thread (start_envoy
    waits for the admin port with blocking calls)."""
    envoy = await asyncio.to_thread(_start_envoy, settings, workdir)
    try:
        yield envoy
    finally:
        await asyncio.to_thread(stop_envoy, envoy)


def envoy_settings(settings: Settings, auth_port: int) -> Settings:
    """`settings` with free ports for Envoy and its auth_svc upstream at `auth_port`."""
    return settings.replace(
        **{
            "envoy_port": free_port(),
            "envoy_admin_port": free_port(),
            "auth_port": auth_port,
        }
    )
