"""Structured logging: JSON lines in production, aligned readable lines in a terminal.

The standard library's loggers (grpc, sqlalchemy, alembic) go through the same
renderer, so `make run` shows one consistent stream.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog

from common.settings import Settings

# Set by `make run` (stack/programs.py) to the process's name, e.g. "signal-2".
PROCESS_NAME_VARIABLE = "AIFX_PROCESS_NAME"


def console_renderer(*, colors: bool) -> structlog.dev.ConsoleRenderer:
    """Readable lines for a terminal, with plain tracebacks: `rich` (which a lint tool
    installs next to us) would otherwise render each traceback as a framed panel,
    taking longer than the failure it reports."""
    return structlog.dev.ConsoleRenderer(
        colors=colors, exception_formatter=structlog.dev.plain_traceback
    )


def _named(
    renderer: structlog.types.Processor, name: str, *, json: bool
) -> structlog.types.Processor:
    """`renderer`, with every line saying which process wrote it: `make run` merges all
    of them into one stream (`signal-2   | …`, or a `process` key in JSON)."""

    def render(logger: Any, method: str, event: structlog.types.EventDict) -> Any:
        if json:
            return renderer(logger, method, {"process": name, **event})
        line = renderer(logger, method, event)
        assert isinstance(line, str)  # the console renderer's lines are text
        return f"{name:<11}| {line}"

    return render


def configure_logging(settings: Settings, component: str) -> structlog.stdlib.BoundLogger:
    """Set up structlog and the stdlib root logger once per process; return the
    component's logger."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if settings.general.log_format == "json"
        else console_renderer(colors=sys.stderr.isatty())
    )
    name = os.environ.get(PROCESS_NAME_VARIABLE, "")
    if name:
        renderer = _named(renderer, name, json=settings.general.log_format == "json")
    structlog.configure(
        # Drop below-level events first, before any timestamp or rendering work: the
        # per-RPC line must cost nothing when the level is WARNING.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
        foreign_pre_chain=shared,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.general.log_level.upper())
    return structlog.get_logger(component).bind(component=component)
