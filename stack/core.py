"""The compact core (`make run` with AIFX_COMPACT=true): signal_svc, the inference
service, auth_svc and position_svc in one Python process, each still a gRPC server on
its own port, so nothing that calls them changes.

Why: each Python service costs about 50 MB of its own (its interpreter and imported
modules), and on a small machine four of them are most of the stack's memory. What it
costs: their isolation — one crash stops all four (supervisord restarts them together),
and one event loop serves them. The default keeps one process each.

    python -m stack.core
"""

from __future__ import annotations

from auth_svc.server import SERVICE as AUTH
from common.server import run_services
from inference.server import SERVICE as INFERENCE
from position_svc.server import SERVICE as POSITION
from signal_svc.server import SERVICE as SIGNAL

# In common.settings.COMPACT_CORE's order: the first one's metrics port serves all of
# them, and they stop in the reverse order (callers before what they call).
CORE = (SIGNAL, INFERENCE, AUTH, POSITION)


def main() -> None:
    run_services("core", CORE)


if __name__ == "__main__":
    main()
