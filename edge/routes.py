"""The edge's HTTP routes beside Socket.IO, translating HTTP to the clients' calls the way
a servicer translates RPCs:

- `/session/*`: the dashboard's sign-up, sign-in, refresh and sign-out. The refresh
  token lives in an HttpOnly, SameSite=Strict cookie scoped to /session, so no script —
  ours or another origin's — can read it; the page keeps only the short-lived access
  token, in memory. Every call must carry `X-AIFX-Session: 1`, a header a cross-site
  form cannot send and a cross-origin script cannot send without a CORS preflight this
  server never grants.
- `/model/info`: the model page (GetModelInfo with the card), for a signed-in user.
- everything else: the dashboard's files, with `index.html` for the app's own routes.

Errors are JSON `{code, message}` (plus `fieldViolations`) with the status code REST
uses for the same gRPC code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from common.access_tokens import AccessClaims
from common.errors import (
    DomainError,
    FieldViolation,
    InvalidArgument,
    Unauthenticated,
)
from common.market import Timeframe
from edge.clients import AuthSessions, ModelCards
from edge.convert import SessionTokens

log = structlog.get_logger(__name__)

COOKIE = "aifx_session"
COOKIE_PATH = "/session"
SESSION_HEADER = "X-AIFX-Session"
_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "RATE_LIMITED": 429,
    "UNAVAILABLE": 503,
}
# The dashboard is ours alone: no framing, no sniffing, no foreign scripts or sockets.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self' ws: wss:; font-src 'self'; "
        "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
Verify = Callable[[str], Awaitable[AccessClaims]]


def error_response(error: DomainError) -> web.Response:
    """`error` as the JSON body and status code a REST client expects."""
    code = type(error).reason if type(error).reason != "ERROR" else "INTERNAL"
    body: dict[str, Any] = {"code": code, "message": error.message, "reason": error.reason}
    headers = {}
    if isinstance(error, InvalidArgument):
        body["fieldViolations"] = [
            {"field": v.field, "description": v.description} for v in error.violations
        ]
    if error.retry_after_seconds is not None:  # a 429, or a 503 of a dependency
        headers["Retry-After"] = str(max(1, round(error.retry_after_seconds)))
    return web.json_response(body, status=_STATUS.get(code, 500), headers=headers)


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Domain errors of /session and /model as JSON; anything else is a bug, logged,
    answered 500 with no stack trace."""
    try:
        return await handler(request)
    except DomainError as error:
        return error_response(error)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("request failed", path=request.path)
        return web.json_response(
            {"code": "INTERNAL", "message": "the edge failed to answer; try again"}, status=500
        )


def _invalid(field: str, description: str) -> InvalidArgument:
    return InvalidArgument([FieldViolation(field, description)])


async def _json_fields(request: web.Request, *names: str) -> list[str]:
    """The named string fields of a JSON object body, each required; a name written
    "a|b" takes field a, or b when a is absent (login's `identifier`, or `email`)."""
    try:
        body = await request.json()
    except ValueError:
        raise _invalid("body", "must be a JSON object") from None
    if not isinstance(body, dict):
        raise _invalid("body", "must be a JSON object")
    values: list[str] = []
    missing: list[str] = []
    for name in names:
        value = next((body[n] for n in name.split("|") if body.get(n)), None)
        if isinstance(value, str):
            values.append(value)
        else:
            missing.append(name.split("|")[0])
    if missing:
        raise InvalidArgument([FieldViolation(n, "is required (a string)") for n in missing])
    return values


class SessionRoutes:
    """/session/register, /session/login, /session/refresh, /session/logout."""

    def __init__(self, sessions: AuthSessions) -> None:
        self._sessions = sessions

    def add_to(self, app: web.Application) -> None:
        app.router.add_post("/session/register", self.register)
        app.router.add_post("/session/login", self.login)
        app.router.add_post("/session/refresh", self.refresh)
        app.router.add_post("/session/logout", self.logout)

    async def register(self, request: web.Request) -> web.Response:
        _require_session_header(request)
        email, username, password = await _json_fields(request, "email", "username", "password")
        forwarded = request.headers.get("X-Forwarded-For")
        return _signed_in(
            request, await self._sessions.register(email, username, password, forwarded)
        )

    async def login(self, request: web.Request) -> web.Response:
        _require_session_header(request)
        identifier, password = await _json_fields(request, "identifier|email", "password")
        forwarded = request.headers.get("X-Forwarded-For")
        return _signed_in(request, await self._sessions.login(identifier, password, forwarded))

    async def refresh(self, request: web.Request) -> web.Response:
        _require_session_header(request)
        token = request.cookies.get(COOKIE)
        if not token:
            raise Unauthenticated("no session: sign in")
        try:
            session = await self._sessions.refresh(token)
        except Unauthenticated:
            response = error_response(Unauthenticated("the session has ended: sign in again"))
            _clear_cookie(response)
            return response
        return _signed_in(request, session)

    async def logout(self, request: web.Request) -> web.Response:
        _require_session_header(request)
        token = request.cookies.get(COOKIE)
        if token:
            with contextlib.suppress(Unauthenticated):  # already ended: that is done
                await self._sessions.logout(token)
        response = web.Response(status=204)
        _clear_cookie(response)
        return response


def _require_session_header(request: web.Request) -> None:
    if request.headers.get(SESSION_HEADER) != "1":
        raise _invalid("X-AIFX-Session", "send the header X-AIFX-Session: 1 with session calls")


def _signed_in(request: web.Request, session: SessionTokens) -> web.Response:
    response = web.json_response(session.public)
    max_age = int((session.refresh_expires - datetime.now(UTC)).total_seconds())
    response.set_cookie(
        COOKIE,
        session.refresh_token,
        max_age=max(max_age, 0),
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=request.headers.get("X-Forwarded-Proto", request.scheme) == "https",
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _clear_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path=COOKIE_PATH)


class ModelRoutes:
    """GET /model/info?timeframe=1h|1d for a signed-in user."""

    def __init__(self, cards: ModelCards, verify: Verify) -> None:
        self._cards = cards
        self._verify = verify

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/model/info", self.info)

    async def info(self, request: web.Request) -> web.Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("send your access token: Authorization: Bearer <token>")
        await self._verify(token)
        raw = request.query.get("timeframe", "1h")
        try:
            timeframe = Timeframe(raw.lower())
        except ValueError:
            accepted = ", ".join(t.value for t in Timeframe)
            raise _invalid(
                "timeframe", f"{raw!r} is not a timeframe; use one of {accepted}"
            ) from None
        return web.json_response(await self._cards.describe(timeframe))


class ApiReference:
    """The REST API's OpenAPI document (gen/openapi.json, written by `make gen` from the
    contracts) at /api/openapi.json, and its explorer at /api/docs: the dashboard
    build's docs.html (Swagger UI, bundled, under the dashboard's CSP)."""

    def __init__(self, document: Path, dashboard: Path) -> None:
        self._document = document
        self._page = dashboard / "docs.html"

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/api/openapi.json", self.document)
        app.router.add_get("/api/docs", self.page)

    async def document(self, request: web.Request) -> web.StreamResponse:
        headers = {"Cache-Control": "no-cache", **SECURITY_HEADERS}
        return web.FileResponse(self._document, headers=headers)

    async def page(self, request: web.Request) -> web.StreamResponse:
        if not self._page.is_file():
            return web.Response(
                status=503,
                content_type="text/html",
                text=(
                    "<!doctype html><title>AIFX API</title><h1>The API explorer is not "
                    "built</h1><p>Run <code>make setup</code>; the document itself is at "
                    '<a href="/api/openapi.json">/api/openapi.json</a>.'
                ),
            )
        headers = {"Cache-Control": "no-cache", **SECURITY_HEADERS}
        return web.FileResponse(self._page, headers=headers)


class DashboardFiles:
    """The built single-page app: hashed assets cached for good, `index.html` (never
    cached, so a new build is picked up) for every other path the app routes itself."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/{path:.*}", self.serve)

    async def serve(self, request: web.Request) -> web.StreamResponse:
        index = self._root / "index.html"
        if not index.is_file():
            return web.Response(
                status=503,
                content_type="text/html",
                text=(
                    "<!doctype html><title>AIFX</title><h1>The dashboard is not built</h1>"
                    "<p>Run <code>make setup</code> (it runs <code>npm ci</code> and "
                    "<code>npm run build</code> in <code>edge/dashboard</code>), then reload."
                ),
            )
        relative = request.match_info["path"]
        wanted = (self._root / relative).resolve()
        inside = wanted.is_relative_to(self._root.resolve())
        if relative and inside and wanted.is_file():
            immutable = relative.startswith("assets/")
            cache = "public, max-age=31536000, immutable" if immutable else "no-cache"
            return web.FileResponse(wanted, headers={"Cache-Control": cache, **SECURITY_HEADERS})
        if relative.startswith("assets/") or not inside:
            raise web.HTTPNotFound(text="no such file")
        return web.FileResponse(index, headers={"Cache-Control": "no-cache", **SECURITY_HEADERS})
