"""Who is calling a service: a signed-in user (access token) or another AIFX service
(the service credential)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import grpc

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


async def authenticate(
    context: grpc.aio.ServicerContext,
    jwks: RemoteJwks,
    service_token: str,
    trusted_proxies: list[str],
) -> Caller:
    """The caller, or Unauthenticated / Unavailable (auth_svc unreachable with no keys)."""
    if metadata_value(context, SERVICE_TOKEN_HEADER):
        require_service_token(context, service_token)
        return Caller(user_id=None)
    token = bearer_token(context) or query_token(context, trusted_proxies)
    verifier = await jwks.verifier()
    claims = await verifier.verify(token)
    return Caller(user_id=claims.subject)
