"""The notifier's Prometheus metrics (scraped on AIFX_NOTIFIER_METRICS_PORT, 9107):
what it delivered and how its commands went — the RPC metrics every service has say
nothing about a process that serves no RPCs."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

DELIVERIES = Counter(
    "aifx_notifier_deliveries_total",
    "DMs and channel posts by outcome: sent, unreachable (given up: DMs closed or "
    "channel refused), retry (a transient failure; still owed)",
    ["outcome"],
)
COMMANDS = Counter(
    "aifx_notifier_commands_total",
    "Slash commands by outcome: ok, refused (an error embed: bad input, unlinked, a "
    "service down) or failed (a bug, logged)",
    ["command", "outcome"],
)
PENDING = Gauge(
    "aifx_notifier_deliveries_pending",
    "DMs and channel posts owed and not yet sent (every replica's; as of this replica's last pass)",
)
