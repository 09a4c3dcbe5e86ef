"""The credential service-to-service (…Internal) calls carry.

Set AIFX_SERVICE_TOKEN in production (the same value for every service). The embedded
default generates one into var/ on first run, which every process of `make run` reads.
"""

from __future__ import annotations

import secrets

from common.secret_files import create_once
from common.settings import Settings


def load_service_token(settings: Settings) -> str:
    configured = settings.tokens.service_token.get_secret_value()
    if configured:
        return configured
    path = settings.general.ensure_var_dir() / "service-token"
    return create_once(path, lambda: secrets.token_urlsafe(32).encode()).decode().strip()
