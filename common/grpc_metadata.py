"""Reading who is calling from gRPC metadata: bearer tokens, the service credential,
and the client's address (trusting X-Forwarded-For only from our own proxy)."""

from __future__ import annotations

import hmac
import ipaddress

import grpc

from common.errors import Unauthenticated

SERVICE_TOKEN_HEADER = "x-aifx-service-token"  # noqa: S105 (a header name)


def metadata_value(context: grpc.aio.ServicerContext, key: str) -> str:
    """The first value of metadata `key` (lower-case), or ''."""
    for name, value in context.invocation_metadata() or ():
        if name == key and isinstance(value, str):
            return value
    return ""


def bearer_token(context: grpc.aio.ServicerContext) -> str:
    """The token of an `authorization: Bearer …` header, or '' when there is none."""
    scheme, _, token = metadata_value(context, "authorization").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def require_service_token(context: grpc.aio.ServicerContext, expected: str) -> None:
    """Refuse a service-to-service call without the right credential."""
    presented = metadata_value(context, SERVICE_TOKEN_HEADER)
    if not presented or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise Unauthenticated("service credential missing or wrong", reason="SERVICE_TOKEN")


def _peer_host(peer: str) -> str:
    """'ipv4:127.0.0.1:5000' / 'ipv6:[::1]:5000' → the address; anything else as is."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    return peer


def peer_is_trusted(context: grpc.aio.ServicerContext, trusted_proxies: list[str]) -> bool:
    """Whether the peer is our own proxy (Envoy), whose forwarded headers we believe."""
    return _peer_host(context.peer() or "") in trusted_proxies


def client_address(context: grpc.aio.ServicerContext, trusted_proxies: list[str]) -> str:
    """The address of the human's client. Behind our Envoy (a trusted peer) that is the
    last X-Forwarded-For hop Envoy appended; from anyone else, the peer itself, so a
    direct caller cannot pick its own rate-limit bucket."""
    peer = _peer_host(context.peer() or "")
    if peer_is_trusted(context, trusted_proxies):
        forwarded = metadata_value(context, "x-forwarded-for")
        if forwarded:
            candidate = forwarded.split(",")[-1].strip()
            try:
                return str(ipaddress.ip_address(candidate))
            except ValueError:
                pass
    return peer
