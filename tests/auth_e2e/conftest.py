"""End-to-end fixtures of auth_svc: a real Envoy in front of the in-process auth_svc of
the `auth` fixture (once per backend: the embedded SQLite default and PostgreSQL +
Redis).

auth_svc runs in this test process, in the same event loop as the tests, so everything
here talks to it asynchronously: Envoy is started and stopped in a worker thread, HTTP
goes through `httpx.AsyncClient`, grpcurl runs as an asyncio subprocess, and nothing
blocks the loop while the server must answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from common.settings import Settings
from tests.envoy import envoy_settings, http_client, running_envoy, wait_for_jwks
from tests.infra import AuthStack, EnvoyProcess


@dataclass
class EdgeStack:
    """A real Envoy routing to the in-process auth_svc of `auth`."""

    auth: AuthStack
    envoy: EnvoyProcess

    @property
    def settings(self) -> Settings:
        return self.auth.settings

    @property
    def url(self) -> str:
        return self.envoy.url


@pytest.fixture(scope="session")
async def edge(
    auth: AuthStack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[EdgeStack]:
    """Envoy in front of `auth` with the JWKS already fetched: one per backend."""
    settings = envoy_settings(auth.settings, auth.server.port)
    async with running_envoy(settings, tmp_path_factory.mktemp("envoy")) as envoy:
        await wait_for_jwks(envoy)
        yield EdgeStack(auth, envoy)


@pytest.fixture
async def http(edge: EdgeStack) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for Envoy's public listener."""
    async with http_client(edge.url) as client:
        yield client
