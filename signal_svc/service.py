"""The gRPC servicers of signal_svc, composed from the RPC mixins of each part (market
data, signal history, streams). Each mixin translates proto ⇄ domain for its RPCs; this
module only supplies what they share: who the caller is, and the parts they read."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from aifx.signal.v1 import signal_pb2_grpc
from common.callers import Caller, authenticate
from common.grpc_metadata import require_service_token
from common.remote_jwks import RemoteJwks
from common.settings import Settings
from signal_svc.fanout import Broadcaster
from signal_svc.market import Market
from signal_svc.market_rpcs import MarketInternalRpcs, MarketRpcs
from signal_svc.repository import SignalRepository
from signal_svc.signal_cache import SignalCache
from signal_svc.signal_rpcs import SignalRpcs
from signal_svc.stream_rpcs import StreamInternalRpcs, StreamRpcs


@dataclass
class SignalParts:
    """What the servicers read; built by server.py."""

    settings: Settings
    market: Market
    signals: SignalRepository
    signal_cache: SignalCache
    broadcaster: Broadcaster
    jwks: RemoteJwks
    service_token: str


class _Parts:
    """Exposes the parts under the attribute names the mixins read."""

    def __init__(self, parts: SignalParts) -> None:
        self.settings = parts.settings
        self.market = parts.market
        self.signals = parts.signals
        self.signal_reader = parts.signals
        self.signal_cache = parts.signal_cache
        self.broadcaster = parts.broadcaster
        self._jwks = parts.jwks
        self._service_token = parts.service_token


class SignalService(
    _Parts, MarketRpcs, SignalRpcs, StreamRpcs, signal_pb2_grpc.SignalServiceServicer
):
    """Public: a user's access token (header, or ?access_token= through Envoy for
    Server-Sent Events) or the service credential."""

    async def authenticate(self, context: grpc.aio.ServicerContext) -> Caller:
        return await authenticate(
            context, self._jwks, self._service_token, self.settings.trusted_proxies
        )


class SignalInternalService(
    _Parts, MarketInternalRpcs, StreamInternalRpcs, signal_pb2_grpc.SignalInternalServiceServicer
):
    """Service-to-service only: the service credential."""

    async def authenticate(self, context: grpc.aio.ServicerContext) -> Caller:
        require_service_token(context, self._service_token)
        return Caller(user_id=None)
