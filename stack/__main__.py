"""`make run`: the whole stack under supervisord, in the foreground (Ctrl-C stops it).

Refuses, naming what is missing, when the settings cannot run (several replicas without
Redis or PostgreSQL); otherwise writes var/supervisord.conf and becomes supervisord.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from common import replicas
from common.prometheus_targets import write_targets
from common.settings import REPO_ROOT, get_settings
from stack import supervisor_config
from stack.programs import NOTIFIER_OFF, components, programs


def supervisord_binary() -> str:
    """The supervisord the venv installs next to this interpreter."""
    path = Path(sys.executable).parent / "supervisord"
    if not path.exists():
        raise SystemExit("supervisord not found: run `make setup` (installs supervisor)")
    return str(path)


def main() -> None:
    settings = get_settings()
    missing = replicas.missing_requirements(settings)
    if missing:
        reasons = "\n".join(f"  - {reason}" for reason in missing)
        raise SystemExit(
            f"AIFX_REPLICAS={settings.general.replicas} needs settings that are not set:\n{reasons}"
        )
    if "notifier" not in components(settings):
        print(NOTIFIER_OFF, file=sys.stderr, flush=True)
    var_dir = settings.general.ensure_var_dir()
    # Where Prometheus (deploy/prometheus/prometheus.yml) finds every replica's metrics.
    write_targets(settings, var_dir / "prometheus" / "services", settings.general.replicas)
    config = supervisor_config.write(programs(settings), var_dir, REPO_ROOT)
    binary = supervisord_binary()
    os.execv(binary, [binary, "--configuration", str(config)])  # noqa: S606 (become supervisord)


if __name__ == "__main__":
    main()
