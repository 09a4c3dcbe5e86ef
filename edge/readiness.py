"""The `ready` line of `make run`: waits until every component (every replica of each)
answers its health check, prints where to reach the stack, and exits (supervisord runs
it once)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
import time
import urllib.request
from pathlib import Path

from grpc_health.v1 import health_pb2, health_pb2_grpc

from common import replicas
from common.errors import DomainError
from common.grpc_client import GrpcClient
from common.settings import DISCORD_API, Settings, get_settings

TIMEOUT_SECONDS = 60.0


async def grpc_serving(address: str) -> bool:
    """Whether the gRPC server at `address` reports SERVING (waiting up to a second)."""
    client = GrpcClient("health check", address, timeout_seconds=1.0)
    try:
        reply = await client.unary(
            client.stub(health_pb2_grpc.HealthStub).Check, health_pb2.HealthCheckRequest()
        )
    except DomainError:
        return False
    finally:
        await client.close()
    return reply.status == health_pb2.HealthCheckResponse.SERVING


# Envoy's HTTPS listener (AIFX_TLS_CERT_FILE) may have a self-signed or internal-CA
# certificate: a probe of our own loopback port only asks whether it answers, so the
# certificate is not verified.
_LOOPBACK_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
_LOOPBACK_TLS.check_hostname = False
_LOOPBACK_TLS.verify_mode = ssl.CERT_NONE


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0, context=_LOOPBACK_TLS) as response:  # noqa: S310
            return response.status == 200
    except OSError:
        return False


async def wait_until(name: str, probe, deadline: float) -> None:  # type: ignore[no-untyped-def]
    while time.monotonic() < deadline:
        if await probe():
            print(f"ready: {name}", flush=True)
            return
        await asyncio.sleep(0.2)
    raise SystemExit(f"{name} did not become healthy within {TIMEOUT_SECONDS:.0f} s")


async def wait_for_stack(settings: Settings) -> None:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    host = settings.general.bind_host
    services = {
        "model server (TF Serving API)": [settings.network.model_server_port],
        "inference": [settings.network.inference_port],
        "auth_svc": replicas.ports(settings, "auth"),
        "signal_svc": replicas.ports(settings, "signal"),
        "position_svc": replicas.ports(settings, "position"),
    }
    bot_on = bool(settings.discord.discord_token.get_secret_value())
    if bot_on:
        services["notifier (Discord bot)"] = replicas.ports(settings, "notifier")
    for name, ports in services.items():
        for port in ports:
            await wait_until(
                f"{name} (gRPC {host}:{port})",
                lambda port=port: grpc_serving(f"{host}:{port}"),
                deadline,
            )
    for port in replicas.ports(settings, "edge"):
        edge = f"http://{host}:{port}"
        await wait_until(
            f"edge ({edge})",
            lambda edge=edge: asyncio.to_thread(http_ok, f"{edge}/healthz"),
            deadline,
        )
    scheme = "https" if settings.edge.tls_enabled else "http"
    public = f"{scheme}://127.0.0.1:{settings.network.envoy_port}"
    await wait_until(
        f"envoy ({public})",
        lambda: asyncio.to_thread(http_ok, f"{public}/api/v1/auth/jwks"),
        deadline,
    )
    print(
        "\nAIFX is up.\n"
        f"  Dashboard         {public}/   <- open this in a browser and sign up\n"
        f"  REST (Envoy)      {public}/api/v1/...   e.g. curl {public}/api/v1/auth/jwks\n"
        f"  gRPC auth_svc     {host}:{settings.network.auth_port}   "
        f"e.g. grpcurl -plaintext {host}:{settings.network.auth_port} list\n"
        f"  gRPC signal_svc   {host}:{settings.network.signal_port}   ({_market(settings)})\n"
        f"  Signals (SSE)     {public}/api/v1/trading/signals:stream?access_token=...\n"
        f"  Socket.IO         {public}/socket.io/   (io(url, {{auth: {{token}}}}), "
        "then emit subscribe:signals)\n"
        f"  gRPC position_svc {host}:{settings.network.position_port}   "
        f"positions: {public}/api/v1/positions\n"
        f"  gRPC inference    {host}:{settings.network.inference_port}   (service credential: "
        f"var/service-token)\n"
        f"  Model server      {host}:{settings.network.model_server_port}   "
        f"(TensorFlow Serving API, {_models(settings)})\n"
        f"  Envoy admin       http://127.0.0.1:{settings.network.envoy_admin_port}\n"
        f"  Metrics           {metrics_line(settings, host, bot_on)}\n"
        f"  Discord bot       {_bot(settings) if bot_on else 'off: set AIFX_DISCORD_TOKEN'}\n"
        f"  Processes         {processes_line(settings)}\n"
        "Press Ctrl-C to stop everything.\n",
        flush=True,
    )


def main() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(wait_for_stack(get_settings()))


def _market(settings: Settings) -> str:
    """Where signal_svc's prices come from, in the banner's words."""
    market = settings.market
    if market.market_data_mode == "live":
        return f"polling Yahoo Finance every {market.market_data_poll_seconds:g} s"
    if market.market_data_csv:
        return f"replaying {market.market_data_csv} at {market.replay_speed:g}x"
    return f"replaying real EUR/USD hours and the ECB's daily fixings at {market.replay_speed:g}x"


def _bot(settings: Settings) -> str:
    """Where the Discord bot is connected, in the banner's words."""
    api = settings.discord.discord_api_base
    where = "Discord" if api.rstrip("/") == DISCORD_API else api
    return f"on, talking to {where}; health {settings.discord.notifier_port}"


def metrics_line(settings: Settings, host: str, bot_on: bool) -> str:
    """Where each process's Prometheus metrics are (the compact core's all on one port)."""
    network = settings.network
    ports: list[tuple[int, str]] = (
        [(network.signal_metrics_port, "core: signal, inference, auth, position")]
        if settings.general.compact
        else [
            (network.auth_metrics_port, "auth"),
            (network.signal_metrics_port, "signal"),
            (network.position_metrics_port, "position"),
            (network.inference_metrics_port, "inference"),
        ]
    )
    ports += [
        (network.edge_metrics_port, "edge"),
        (network.model_server_metrics_port, "model server"),
    ]
    if bot_on:
        ports.append((settings.discord.notifier_metrics_port, "notifier"))
    (first, label), *rest = ports
    return ", ".join(
        [f"http://{host}:{first}/metrics ({label})", *(f":{p} ({name})" for p, name in rest)]
    )


def processes_line(settings: Settings) -> str:
    """How many of each replicated service run, and how to see and steer them."""
    count = settings.general.replicas
    each = "one of each service" if count == 1 else f"{count} replicas of each service"
    if settings.general.compact:
        each = "signal, inference, auth and position in one core process (AIFX_COMPACT)"
    control = settings.general.var_dir / "supervisord.conf"
    return (
        f"{each}, restarted if they die; "
        f"{Path(sys.executable).parent / 'supervisorctl'} -c {control} status"
    )


def _models(settings: Settings) -> str:
    model = settings.model
    if model.model_config_file is not None:
        return f"every model of {model.model_config_file.name}"
    return f"model {model.model_name}"


if __name__ == "__main__":
    main()
