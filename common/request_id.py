"""The request id of the RPC being served, so it travels on to every service the RPC
calls.

The server interceptor (common.interceptors) sets it for the life of each RPC; the
client helper (common.grpc_client) sends it on every call made while it is set. Work
that no RPC started (the scheduler, the watcher) has none, and the service it calls
makes one up. A context variable rather than an argument: it must reach a call made
deep inside domain code without every function in between carrying it.
"""

from __future__ import annotations

from contextvars import ContextVar

HEADER = "x-request-id"
# Longer ids are cut: the id goes into every log line of the request.
MAX_LENGTH = 128

_CURRENT: ContextVar[str] = ContextVar("aifx_request_id", default="")


def current() -> str:
    """The id of the RPC this code runs for, or '' outside any RPC."""
    return _CURRENT.get()


def bind(request_id: str) -> None:
    """Make `request_id` current for this task and the tasks it starts."""
    _CURRENT.set(request_id)
