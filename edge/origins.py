"""Which browser origins may open a Socket.IO connection: the page's own (whatever host
and port the stack is reached on, as Envoy forwards them) and the configured others.

python-socketio allows only the request's own origin by default, and only the listed
ones once a list is given; a stack reached on another port than the listed ones would
then refuse its own dashboard. Plain Python."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class AllowedOrigins:
    """A python-engineio `cors_allowed_origins` callable: `(origin, environ) -> bool`."""

    def __init__(self, configured: Iterable[str]) -> None:
        self._configured = {origin.rstrip("/") for origin in configured}

    def __call__(self, origin: str | None, environ: Mapping[str, Any]) -> bool:
        if not origin:
            return True  # not a browser (Node, Python clients send no Origin)
        return origin.rstrip("/") in self._configured or origin == _own_origin(environ)


def _own_origin(environ: Mapping[str, Any]) -> str | None:
    host = environ.get("HTTP_X_FORWARDED_HOST") or environ.get("HTTP_HOST")
    if not host:
        return None
    scheme = environ.get("HTTP_X_FORWARDED_PROTO") or environ.get("wsgi.url_scheme", "http")
    return f"{scheme.split(',')[0].strip()}://{host.split(',')[0].strip()}"
