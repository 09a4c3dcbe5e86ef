"""Who is calling a service, decided in one place: a signed-in user (access token) or
another AIFX service (the service credential).

Every servicer asks its `Gate` first thing in each RPC, with the kind of caller the RPC
admits:

- `user(context)`: a user's access token (positions belong to a user; the service
  credential is refused) → the user id;
- `user_or_service(context)`: either (signals and market data) → a Caller;
- `service(context)`: the service credential only (…Internal services).

`TokenGate` is the real one: tokens verified with auth_svc's public keys (RemoteJwks,
revocation included), the credential compared in constant time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

import grpc

from common.errors import Unauthenticated
from common.grpc_metadata import (
    SERVICE_TOKEN_HEADER,
    bearer_token,
    metadata_value,
    peer_is_trusted,
    require_service_token,
)
from common.remote_jwks import RemoteJwks

ORIGINAL_PATH_HEADER = "x-envoy-original-path"
QUERY_TOKEN = "access_token"  # noqa: S105 (a query parameter name)


@dataclass(frozen=True)
class Caller:
    """`user_id` for a user; None for a service."""

    user_id: str | None

    @property
    def is_service(self) -> bool:
        return self.user_id is None


class Gate(Protocol):
    """Admits the caller of an RPC or raises Unauthenticated (Unavailable when tokens
    cannot be checked at all)."""

    async def user_or_service(self, context: grpc.aio.ServicerContext) -> Caller: ...

    async def user(self, context: grpc.aio.ServicerContext) -> str: ...

    def service(self, context: grpc.aio.ServicerContext) -> None: ...


def query_token(context: grpc.aio.ServicerContext, trusted_proxies: list[str]) -> str:
    """An `access_token` query parameter of the REST request Envoy transcoded. Browsers'
    EventSource cannot send headers, so Server-Sent Event streams carry the token there;
    Envoy verified it (jwt_authn `from_params`) and the service verifies it again. Read
    only from our own proxy, which is the one that sets x-envoy-original-path."""
    if not peer_is_trusted(context, trusted_proxies):
        return ""
    path = metadata_value(context, ORIGINAL_PATH_HEADER)
    values = parse_qs(urlsplit(path).query).get(QUERY_TOKEN, [])
    return values[0] if values else ""


class TokenGate:
    """The Gate of every service but auth_svc (which checks its own tokens)."""

    def __init__(self, jwks: RemoteJwks, service_token: str, trusted_proxies: list[str]) -> None:
        self._jwks = jwks
        self._service_token = service_token
        self._trusted_proxies = trusted_proxies

    async def user_or_service(self, context: grpc.aio.ServicerContext) -> Caller:
        if metadata_value(context, SERVICE_TOKEN_HEADER):
            self.service(context)
            return Caller(user_id=None)
        return Caller(user_id=await self._user_id(context))

    async def user(self, context: grpc.aio.ServicerContext) -> str:
        if metadata_value(context, SERVICE_TOKEN_HEADER):
            raise Unauthenticated(
                "this RPC acts for a user: send the user's access token, not the service "
                "credential",
                reason="USER_TOKEN_REQUIRED",
            )
        return await self._user_id(context)

    def service(self, context: grpc.aio.ServicerContext) -> None:
        require_service_token(context, self._service_token)

    async def _user_id(self, context: grpc.aio.ServicerContext) -> str:
        token = bearer_token(context) or query_token(context, self._trusted_proxies)
        verifier = await self._jwks.verifier()
        claims = await verifier.verify(token)
        return claims.subject
