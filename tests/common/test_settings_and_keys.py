"""Settings parsing, key loading and the Envoy config renderer."""

import stat

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auth_svc.signing_keys import load_signing_key
from common.service_credentials import load_service_token
from edge.envoy_proxy import render
from tests.infra import make_settings


def test_comma_separated_lists_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("AIFX_CORS_ALLOWED_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("AIFX_TRUSTED_PROXIES", "10.0.0.1")
    settings = make_settings(tmp_path)
    assert settings.edge.cors_allowed_origins == ["https://a.example", "https://b.example"]
    assert settings.network.trusted_proxies == ["10.0.0.1"]


def test_embedded_database_is_sqlite_in_var_dir(tmp_path):
    assert make_settings(tmp_path).database_url == (f"sqlite+aiosqlite:///{tmp_path / 'aifx.db'}")
    url = "postgresql+asyncpg://u@h/db"
    assert make_settings(tmp_path, database_url=url).database_url == url


def test_signing_key_generated_once_owner_only_and_reused(tmp_path):
    settings = make_settings(tmp_path)
    first = load_signing_key(settings)
    path = tmp_path / "keys" / "jwt-ed25519.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_signing_key(settings).kid == first.kid


def test_signing_key_from_settings(tmp_path):
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    loaded = load_signing_key(make_settings(tmp_path, jwt_private_key=pem))
    assert loaded.private_key.public_key().public_bytes_raw() == key.public_key().public_bytes_raw()
    assert not (tmp_path / "keys").exists()


def test_a_non_ed25519_key_is_refused_clearly(tmp_path):
    pem = generate_private_key(SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValueError, match="Ed25519"):
        load_signing_key(make_settings(tmp_path, jwt_private_key=pem.decode()))


def test_service_token_generated_once(tmp_path):
    settings = make_settings(tmp_path)
    token = load_service_token(settings)
    assert len(token) >= 32 and load_service_token(settings) == token
    assert load_service_token(make_settings(tmp_path, service_token="configured")) == "configured"


def test_envoy_config_takes_ports_upstreams_and_origins_from_settings(tmp_path):
    settings = make_settings(
        tmp_path,
        envoy_port=18080,
        envoy_admin_port=19901,
        auth_port=15051,
        cors_allowed_origins=["https://app.example"],
    )
    config = render(settings)
    text = yaml.safe_dump(config)
    assert config["admin"]["address"]["socket_address"]["port_value"] == 19901
    listener = config["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"]["port_value"] == 18080
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    auth = clusters["auth_svc"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert auth["endpoint"]["address"]["socket_address"]["port_value"] == 15051
    assert "http://127.0.0.1:18080/api/v1/auth/jwks" in text
    assert "https://app.example" in text and "http://localhost:8080" not in text
