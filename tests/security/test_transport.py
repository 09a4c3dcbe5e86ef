"""Headers and transport, through Envoy.

- With a certificate configured (AIFX_TLS_CERT_FILE / AIFX_TLS_KEY_FILE; here a
  self-signed one made by the test), the whole stack (`make run`'s processes) is served
  over HTTPS: the dashboard page, its assets, the /session/ routes and the API all
  answer over a verified TLS connection, each with Strict-Transport-Security and the
  browser protections (a strict Content-Security-Policy, nosniff, Referrer-Policy, frame
  denial), and the session cookie is Secure (and HttpOnly, SameSite=Strict).
- Without a certificate Envoy speaks plain HTTP and sends no HSTS (a browser must not
  be told to insist on HTTPS that does not exist), while the other protections stay.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from common.settings import get_settings
from tests.envoy import envoy_settings, http_client, running_envoy, unique_account
from tests.full_stack import FullStack
from tests.infra import EnvoyProcess, auth_stack, make_settings

pytestmark = pytest.mark.e2e

SESSION = {"X-AIFX-Session": "1"}


def write_self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def csp_directives(response: httpx.Response) -> dict[str, str]:
    policy = response.headers.get("content-security-policy", "")
    pairs = (part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    return {pair[0]: pair[1] if len(pair) > 1 else "" for pair in pairs}


def assert_browser_protections(response: httpx.Response, *, page: bool) -> None:
    """Strict CSP (the dashboard's own for pages, deny-all for anything else), no
    sniffing, no referrer leaking off-site, no framing."""
    where = f"{response.request.method} {response.request.url.path}"
    csp = csp_directives(response)
    assert csp.get("frame-ancestors") == "'none'", (where, csp)
    assert not any("unsafe-eval" in value for value in csp.values()), (where, csp)
    if page:
        assert csp.get("default-src") == "'self'", (where, csp)
        assert csp.get("script-src") == "'self'", (where, csp)
        assert csp.get("object-src") == "'none'", (where, csp)
    else:
        assert csp.get("default-src") in ("'none'", "'self'"), (where, csp)
    assert response.headers.get("x-content-type-options") == "nosniff", where
    assert response.headers.get("referrer-policy") == "same-origin", where
    assert response.headers.get("x-frame-options") == "DENY", where


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_stack(
    tmp_path_factory: pytest.TempPathFactory, certificate: tuple[Path, Path]
) -> Iterator[FullStack]:
    cert, key = certificate
    with FullStack(
        tmp_path_factory.mktemp("tls-stack"),
        tls_cert_file=cert,
        tls_key_file=key,
        bcrypt_rounds=4,
    ) as stack:
        yield stack


@pytest.fixture
async def https(
    tls_stack: FullStack, certificate: tuple[Path, Path]
) -> AsyncIterator[httpx.AsyncClient]:
    """A client that trusts only the test's certificate (so the TLS it speaks is the
    one configured, verified), on Envoy's HTTPS URL."""
    trust = ssl.create_default_context(cafile=str(certificate[0]))
    url = tls_stack.url.replace("http://", "https://")
    async with httpx.AsyncClient(
        base_url=url, verify=trust, timeout=15.0, trust_env=False
    ) as client:
        yield client


def dashboard_files() -> list[str]:
    """The built dashboard's files, as URL paths (index.html is served as /)."""
    dist = get_settings().edge.dashboard_dir
    files = [
        "/" + str(path.relative_to(dist))
        for path in sorted(dist.rglob("*"))
        if path.is_file() and path.suffix != ".gz" and path.name != "index.html"
    ]
    assert files, f"no built dashboard in {dist} (make setup builds it)"
    return files


async def test_every_dashboard_response_over_https_is_protected(
    https: httpx.AsyncClient,
) -> None:
    responses = [
        await https.get("/"),
        await https.get("/positions"),  # an app route: the page again
        *[await https.get(path) for path in dashboard_files()],
    ]
    for response in responses:
        assert response.status_code == 200, (response.request.url, response.text[:200])
        assert response.url.scheme == "https"
        assert response.headers["strict-transport-security"].startswith("max-age=")
        assert_browser_protections(response, page=True)


async def test_session_routes_over_https_are_protected_and_the_cookie_is_secure(
    https: httpx.AsyncClient,
) -> None:
    account = unique_account("tls")
    registered = await https.post("/session/register", json=account, headers=SESSION)
    assert registered.status_code == 200, registered.text
    cookie = registered.headers["set-cookie"]
    assert "aifx_session=" in cookie
    for flag in ("Secure", "HttpOnly", "SameSite=Strict"):
        assert flag.lower() in cookie.lower(), cookie
    refreshed = await https.post("/session/refresh", headers=SESSION)
    assert refreshed.status_code == 200, refreshed.text
    refused = await https.post(
        "/session/login",
        json={"identifier": account["email"], "password": "not the password"},
        headers=SESSION,
    )
    assert refused.status_code == 401
    jwks = await https.get("/api/v1/auth/jwks")
    assert jwks.status_code == 200
    for response in (registered, refreshed, refused, jwks):
        assert response.headers["strict-transport-security"].startswith("max-age=")
        assert_browser_protections(response, page=False)


async def test_an_api_call_with_a_token_works_over_https(https: httpx.AsyncClient) -> None:
    """jwt_authn fetches the JWKS through the listener itself: over TLS too."""
    registered = await https.post("/api/v1/auth/register", json=unique_account("tls"))
    assert registered.status_code == 200, registered.text
    token = registered.json()["tokens"]["accessToken"]
    me = await https.get("/api/v1/auth/me", headers={"authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.text


@pytest.fixture(scope="module")
async def plain_envoy(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EnvoyProcess]:
    workdir = tmp_path_factory.mktemp("plain")
    settings = make_settings(workdir)
    async with (
        auth_stack(settings) as auth,
        running_envoy(envoy_settings(settings, auth.server.port), workdir) as envoy,
    ):
        yield envoy


async def test_plain_http_has_no_hsts_but_keeps_the_other_protections(
    plain_envoy: EnvoyProcess,
) -> None:
    async with http_client(plain_envoy.url) as http:
        response = await http.get("/api/v1/auth/jwks")
    assert response.status_code == 200
    assert "strict-transport-security" not in response.headers
    assert_browser_protections(response, page=False)
