"""Wiring of auth_svc: build its parts from settings and serve them. No logic here."""

from __future__ import annotations

import grpc

from aifx.auth.v1 import auth_pb2, auth_pb2_grpc
from auth_svc.accounts import Accounts
from auth_svc.discord_links import FAILED_CODES_LIMIT, DiscordLinks
from auth_svc.login_limiter import FailureLimiter, LoginLimiter
from auth_svc.passwords import PasswordHasher
from auth_svc.service import AuthInternalService, AuthService
from auth_svc.signing_keys import load_signing_key
from auth_svc.tokens import TokenIssuer
from common.access_tokens import AccessTokenVerifier
from common.db import create_engine, session_factory
from common.kv import create_store
from common.revocation import RevocationList
from common.server import HostedService, ServiceSpec, run_service
from common.service_credentials import load_service_token
from common.settings import Settings

SERVICE_NAMES = [
    auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
    auth_pb2.DESCRIPTOR.services_by_name["AuthInternalService"].full_name,
]


def build(settings: Settings) -> ServiceSpec:
    """auth_svc's servicers and the resources they hold, ready to serve."""
    engine = create_engine(settings)
    signing_key = load_signing_key(settings)
    store = create_store(settings.storage, settings.storage.effective_revocation_prefix)
    revocations = RevocationList(store)
    hasher = PasswordHasher(settings.logins.bcrypt_rounds, settings.logins.password_hash_workers)
    accounts = Accounts(
        sessions=session_factory(engine),
        hasher=hasher,
        issuer=TokenIssuer(
            signing_key,
            issuer=settings.tokens.jwt_issuer,
            audience=settings.tokens.jwt_audience,
            access_ttl=settings.tokens.access_token_ttl_seconds,
            refresh_ttl=settings.tokens.refresh_token_ttl_seconds,
        ),
        verifier=AccessTokenVerifier(
            signing_key.jwks(),
            issuer=settings.tokens.jwt_issuer,
            audience=settings.tokens.jwt_audience,
            is_revoked=revocations.is_revoked,
        ),
        limiter=LoginLimiter(settings.logins, settings.storage),
        revocations=revocations,
    )
    links = DiscordLinks(
        session_factory(engine),
        FailureLimiter(
            {"discord": FAILED_CODES_LIMIT},
            "failed link codes",
            settings.storage,
            "discord-link",
        ),
    )
    service_token = load_service_token(settings)

    def register(server: grpc.aio.Server) -> None:
        auth_pb2_grpc.add_AuthServiceServicer_to_server(
            AuthService(accounts, links, signing_key, settings.network.trusted_proxies), server
        )
        auth_pb2_grpc.add_AuthInternalServiceServicer_to_server(
            AuthInternalService(accounts, links, service_token), server
        )

    async def release() -> None:
        hasher.close()
        await store.close()
        await engine.dispose()

    return ServiceSpec(
        name="auth_svc", register=register, service_names=SERVICE_NAMES, on_stop=[release]
    )


SERVICE = HostedService(
    "auth_svc", build, lambda s: (s.network.auth_port, s.network.auth_metrics_port)
)


def main() -> None:
    run_service(SERVICE)


if __name__ == "__main__":
    main()
