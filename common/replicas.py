"""Several replicas of each stateless service on one machine (`AIFX_REPLICAS=N`).

Replica n (1-based) of a service listens on the configured ports + 100·(n-1): with the
defaults, signal_svc replica 2 serves gRPC on 50152 and metrics on 9202. Callers reach
every replica of a service through one gRPC target naming all of them
(`ipv4:127.0.0.1:50052,127.0.0.1:50152`), which the shared client balances round-robin
over the replicas that report SERVING; Envoy gets one endpoint per replica.

More than one replica needs the state they share outside any one process: PostgreSQL
(one database, where SQLite's single writer would serialise them) and Redis (the
cross-replica fan-out of signals and prices, revocations and login limits).
"""

from __future__ import annotations

from dataclasses import dataclass

from common.settings import Settings

PORT_STEP = 100


@dataclass(frozen=True)
class Replicated:
    """A service `make run` can run several of, and the settings naming its ports."""

    name: str
    port_setting: str
    metrics_port_setting: str
    target_setting: str | None  # how callers name it (None: nobody calls it over gRPC)


SERVICES = (
    Replicated("auth", "auth_port", "auth_metrics_port", "auth_target"),
    Replicated("signal", "signal_port", "signal_metrics_port", "signal_target"),
    Replicated("position", "position_port", "position_metrics_port", "position_target"),
    Replicated("edge", "edge_port", "edge_metrics_port", None),
    Replicated("notifier", "notifier_port", "notifier_metrics_port", None),
)
BY_NAME = {service.name: service for service in SERVICES}


def _setting(settings: Settings, name: str) -> int:
    for group in (settings.network, settings.discord):
        if name in type(group).model_fields:
            return int(getattr(group, name))
    raise KeyError(name)


def shifted(port: int, replica: int) -> int:
    """Replica `replica`'s port for a port setting (0, "off", stays off)."""
    return port + PORT_STEP * (replica - 1) if port else 0


def ports(settings: Settings, service: str) -> list[int]:
    """The gRPC (or HTTP, for the edge) port of each replica of `service`."""
    base = _setting(settings, BY_NAME[service].port_setting)
    return [shifted(base, n) for n in range(1, settings.general.replicas + 1)]


def metrics_ports(settings: Settings, service: str) -> list[int]:
    """The metrics port of each replica of `service` (empty when its metrics are off)."""
    base = _setting(settings, BY_NAME[service].metrics_port_setting)
    return [shifted(base, n) for n in range(1, settings.general.replicas + 1)] if base else []


def replica_environment(settings: Settings, service: str, replica: int) -> dict[str, str]:
    """The AIFX_* variables that make a process replica `replica` of `service`."""
    spec = BY_NAME[service]
    environment = {
        f"AIFX_{name.upper()}": str(shifted(_setting(settings, name), replica))
        for name in (spec.port_setting, spec.metrics_port_setting)
    }
    if service == "notifier":
        environment["AIFX_DISCORD_SHARD_ID"] = str(replica - 1)
        environment["AIFX_DISCORD_SHARD_COUNT"] = str(settings.general.replicas)
    return environment


def caller_targets(settings: Settings) -> dict[str, str]:
    """Targets naming every replica, for each service callers reach over gRPC, unless
    the operator set the target (a load balancer, a DNS name) themselves."""
    if settings.general.replicas == 1:
        return {}
    targets = {}
    for spec in SERVICES:
        if spec.target_setting is None or getattr(settings.network, spec.target_setting):
            continue
        addresses = ",".join(f"127.0.0.1:{port}" for port in ports(settings, spec.name))
        targets[f"AIFX_{spec.target_setting.upper()}"] = f"ipv4:{addresses}"
    return targets


def missing_requirements(settings: Settings) -> list[str]:
    """Why `settings` cannot run its replicas (empty: it can)."""
    if settings.general.replicas == 1:
        return []
    missing = []
    if settings.general.compact:
        missing.append("AIFX_COMPACT off: the compact core is one process, never replicated")
    if not settings.storage.redis_url:
        missing.append(
            "AIFX_REDIS_URL: replicas share signals, prices, revocations and login limits "
            "through Redis (e.g. AIFX_REDIS_URL=redis://127.0.0.1:6379/0)"
        )
    if not settings.storage.database_url:
        missing.append(
            "AIFX_DATABASE_URL: replicas write one database at once, which the embedded "
            "SQLite cannot take (e.g. "
            "AIFX_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/aifx)"
        )
    return missing
