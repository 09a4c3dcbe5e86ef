"""The processes `make run` supervises, and how each is started.

One process per component; with `AIFX_REPLICAS=N`, N of each replicated service
(common/replicas.py), named `signal-1` … `signal-N`. Every process gets the targets
naming every replica of the services it calls, and its own name for its log lines.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from common import replicas
from common.settings import COMPACT_CORE, Settings

# Component → the module that runs it, in start order: dependencies before callers,
# Envoy after what it routes to, the `ready` banner last.
MODULES = {
    "model_server": "inference.model_server",
    "inference": "inference",
    "auth": "auth_svc",
    "signal": "signal_svc",
    "position": "position_svc",
    "notifier": "notifier",
    "edge": "edge",
    "envoy": "edge.envoy_proxy",
    "ready": "edge.readiness",
    "core": "stack.core",  # AIFX_COMPACT: the COMPACT_CORE components in one process
}
NOTIFIER_OFF = (
    "notifier: off — AIFX_DISCORD_TOKEN is not set, so the Discord bot is not started "
    "(README: Discord; or try it against the local stand-in)."
)


@dataclass(frozen=True)
class Program:
    """One supervised process."""

    name: str
    command: list[str]
    environment: dict[str, str] = field(default_factory=dict)
    # A one-shot (the readiness banner) runs once; everything else is kept running.
    keep_running: bool = True


def command(component: str) -> list[str]:
    """How `component` is started: this interpreter, so the venv's packages are used."""
    return [sys.executable, "-m", MODULES[component]]


def components(settings: Settings) -> list[str]:
    """What runs: every component, but the notifier only with a Discord token, and with
    AIFX_COMPACT one `core` process in place of the COMPACT_CORE components."""
    bot_on = bool(settings.discord.discord_token.get_secret_value())
    compact = settings.general.compact
    found = []
    for name in MODULES:
        if name == "core" or (name == "notifier" and not bot_on):
            continue
        if compact and name in COMPACT_CORE:
            if "core" not in found:  # where the first of them starts: before their callers
                found.append("core")
            continue
        found.append(name)
    return found


def programs(settings: Settings) -> list[Program]:
    """Every process of the stack `settings` describe."""
    shared = replicas.caller_targets(settings)
    count = settings.general.replicas
    found = []
    for component in components(settings):
        if component in replicas.BY_NAME and count > 1:
            for n in range(1, count + 1):
                name = f"{component}-{n}"
                own = replicas.replica_environment(settings, component, n)
                found.append(_program(name, component, shared | own))
        else:
            found.append(_program(component, component, shared))
    return found


def _program(name: str, component: str, environment: dict[str, str]) -> Program:
    return Program(
        name=name,
        command=command(component),
        environment=environment | {"AIFX_PROCESS_NAME": name},
        keep_running=component != "ready",
    )
