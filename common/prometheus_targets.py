"""Prometheus file-based service discovery for the processes `make run` starts.

`deploy/prometheus/prometheus.yml` scrapes one job per component from
`var/prometheus/services/<job>.json` (file_sd_configs; Prometheus re-reads the files
when they change, so a restart of `make run` with another `AIFX_REPLICAS` is picked up
without restarting Prometheus). Ports are settings and replicas move them
(common/replicas.py: replica n listens on the port + 100·(n-1)), so the targets are
written from the settings by the process that knows them — `make run` calls
`write_targets` — instead of being hard-coded in the Prometheus configuration.

Each file holds one target group: a target per replica with the labels `service` and
`replica`. A component whose metrics are off (its metrics port is 0), or that `make run`
does not start (the notifier without a Discord token), gets an empty list: Prometheus
then scrapes nothing for it rather than reporting it down.

`envoy.json` is Envoy's admin port, scraped by the separate job `envoy` with
`metrics_path: /stats/prometheus` (file_sd can set labels but not the path).

    python -m common.prometheus_targets [DIRECTORY]   # default: var/prometheus/services
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from common.replicas import shifted
from common.settings import COMPACT_CORE, Settings


@dataclass(frozen=True)
class Scraped:
    """One Prometheus job: its name (also its file's), the settings group and field of
    its metrics port, and whether `make run` runs several of it."""

    job: str
    group: str
    port_setting: str
    replicated: bool


# The job names are the Kubernetes Deployments' (deploy/k8s), so rules and dashboards
# read the same everywhere.
SCRAPED = (
    Scraped("auth", "network", "auth_metrics_port", True),
    Scraped("signal", "network", "signal_metrics_port", True),
    Scraped("position", "network", "position_metrics_port", True),
    Scraped("inference", "network", "inference_metrics_port", False),
    Scraped("edge", "network", "edge_metrics_port", True),
    Scraped("model-server", "network", "model_server_metrics_port", False),
    Scraped("notifier", "discord", "notifier_metrics_port", True),
)
ENVOY_JOB = "envoy"


def scrape_host(settings: Settings) -> str:
    """Where the processes' metrics are reached: their bind address, or loopback when
    they listen on every interface."""
    host = settings.general.bind_host
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def _port(settings: Settings, scraped: Scraped) -> int:
    return int(getattr(getattr(settings, scraped.group), scraped.port_setting))


def _runs(settings: Settings, scraped: Scraped) -> bool:
    """Whether its metrics port is served: the notifier only with a Discord token, and
    with AIFX_COMPACT the core's metrics only on its first component's port."""
    if scraped.job == "notifier":
        return bool(settings.discord.discord_token.get_secret_value())
    return not (settings.general.compact and scraped.job in COMPACT_CORE[1:])


def target_groups(settings: Settings, replicas: int = 1) -> dict[str, list[dict[str, object]]]:
    """Each job's file_sd content: job name → target groups."""
    host = scrape_host(settings)
    groups: dict[str, list[dict[str, object]]] = {}
    for scraped in SCRAPED:
        port = _port(settings, scraped)
        if not port or not _runs(settings, scraped):
            groups[scraped.job] = []
            continue
        count = replicas if scraped.replicated else 1
        groups[scraped.job] = [
            {
                "targets": [f"{host}:{shifted(port, n)}"],
                "labels": {"service": scraped.job, "replica": str(n)},
            }
            for n in range(1, count + 1)
        ]
    admin = settings.network.envoy_admin_port
    groups[ENVOY_JOB] = (
        [{"targets": [f"127.0.0.1:{admin}"], "labels": {"service": ENVOY_JOB, "replica": "1"}}]
        if admin
        else []
    )
    return groups


def write_targets(settings: Settings, directory: Path, replicas: int = 1) -> list[Path]:
    """Write one `<job>.json` per job into `directory` (created if missing) and return
    the paths. Each file is replaced atomically (written aside, then renamed): Prometheus
    watches the directory and must never read half a file."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for job, groups in target_groups(settings, replicas).items():
        path = directory / f"{job}.json"
        temporary = directory / f".{job}.json.tmp"
        temporary.write_text(json.dumps(groups, indent=2) + "\n")
        os.replace(temporary, path)
        written.append(path)
    return written


def main(argv: list[str]) -> None:
    settings = Settings.load()
    directory = Path(argv[0]) if argv else settings.general.var_dir / "prometheus" / "services"
    for path in write_targets(settings, directory, settings.general.replicas):
        print(path)


if __name__ == "__main__":
    main(sys.argv[1:])
