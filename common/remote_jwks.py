"""Access-token verification for services other than auth_svc: the public keys come
from auth_svc's GetJwks over gRPC, fetched on first use and refreshed periodically (so a
key rotation reaches every service), never a shared secret."""

from __future__ import annotations

import asyncio
import time

from google.protobuf.json_format import MessageToDict

from aifx.auth.v1 import auth_pb2, auth_pb2_grpc
from common.access_tokens import AccessTokenVerifier, RevocationCheck
from common.errors import DomainError, Unavailable
from common.grpc_client import GrpcClient

REFRESH_SECONDS = 300.0


class RemoteJwks:
    def __init__(
        self,
        target: str,
        *,
        issuer: str,
        audience: str,
        is_revoked: RevocationCheck | None = None,
        timeout_seconds: float = 2.0,
    ) -> None:
        self._client = GrpcClient("auth_svc", target, timeout_seconds=timeout_seconds)
        self._issuer = issuer
        self._audience = audience
        self._is_revoked = is_revoked
        self._verifier: AccessTokenVerifier | None = None
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def verifier(self) -> AccessTokenVerifier:
        """A verifier with current keys. If auth_svc cannot be reached, the keys already
        held keep working; with none yet, token checks are UNAVAILABLE."""
        if self._verifier is None or time.monotonic() - self._fetched_at > REFRESH_SECONDS:
            async with self._lock:
                if self._verifier is None or time.monotonic() - self._fetched_at > REFRESH_SECONDS:
                    await self._refresh()
        assert self._verifier is not None
        return self._verifier

    async def _refresh(self) -> None:
        stub = self._client.stub(auth_pb2_grpc.AuthServiceStub)
        try:
            reply = await self._client.unary(stub.GetJwks, auth_pb2.GetJwksRequest())
        except DomainError as error:
            if self._verifier is not None:
                self._fetched_at = time.monotonic() - REFRESH_SECONDS + 10  # retry soon
                return
            raise Unavailable(
                f"cannot verify access tokens: auth_svc at {self._client.target} did not "
                f"answer ({error.message})",
                reason="AUTH_UNAVAILABLE",
            ) from error
        jwks = MessageToDict(reply, preserving_proto_field_name=True)
        if self._verifier is None:
            self._verifier = AccessTokenVerifier(
                jwks, issuer=self._issuer, audience=self._audience, is_revoked=self._is_revoked
            )
        else:
            self._verifier.replace_keys(jwks)
        self._fetched_at = time.monotonic()

    async def close(self) -> None:
        await self._client.close()
