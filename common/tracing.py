"""Tracing across services with OpenTelemetry, exported over OTLP when
AIFX_OTLP_ENDPOINT names a collector, and off otherwise.

Off (the default) nothing is installed: no tracer provider, no gRPC or database hooks,
not even an import of OpenTelemetry; what remains is one `is None` test per RPC (in
common.interceptors) and per engine made (common.db).

On (`configure_tracing` at start-up, before servers, channels and engines are made):

- a TracerProvider with `service.name` = the service, a parent-based ratio sampler
  (AIFX_OTLP_SAMPLE_RATIO of the traces started here are kept; a call follows its
  caller's choice), and a batch processor sending to the OTLP/gRPC exporter;
- a server span per RPC, made by the server interceptor (common.interceptors) with the
  caller's W3C `traceparent` as parent and the request id as `aifx.request_id`. Our own
  rather than OpenTelemetry's gRPC server interceptor, which runs every streaming
  handler as an async generator and so breaks the handlers that `context.write` their
  stream (signal_svc.stream_rpcs). Health and reflection RPCs get none;
- a client span per call on every grpc.aio channel opened afterwards (OpenTelemetry's
  aio client instrumentor), which sends `traceparent` on to the callee;
- a span per statement on every engine common.db makes (OpenTelemetry's SQLAlchemy
  engine tracer on the async engine's sync_engine).

`configure_tracing(..., exporter=...)` takes a span exporter instead of OTLP, and
`global_provider=False` leaves OpenTelemetry's process-wide provider alone (it can be set
once per process): how the tests trace; `shutdown_tracing` undoes it all.
"""

from __future__ import annotations

import atexit
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from common.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer
    from sqlalchemy.ext.asyncio import AsyncEngine

REQUEST_ID_ATTRIBUTE = "aifx.request_id"
# Server-side gRPC codes that make an RPC's span an error (OpenTelemetry's semantic
# conventions: the others are the caller's mistake, not the server's failure).
SERVER_ERROR_CODES = frozenset(
    {"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"}
)
# RPCs that get no span: probes and tooling, not requests.
UNTRACED_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")


@dataclass
class _Tracing:
    provider: TracerProvider
    rpc_tracer: Tracer
    db_tracer: Tracer
    db_connections: Any
    uninstrument: list[Any]


_ON: _Tracing | None = None


def enabled() -> bool:
    """Whether tracing is configured in this process."""
    return _ON is not None


def configure_tracing(
    service_name: str,
    settings: Settings,
    *,
    exporter: SpanExporter | None = None,
    global_provider: bool = True,
) -> TracerProvider | None:
    """Turn tracing on for this process when AIFX_OTLP_ENDPOINT is set (or `exporter` is
    given), and return its provider; otherwise do nothing and return None. Call before
    the servers, channels and engines to be traced are made."""
    endpoint = settings.general.otlp_endpoint.strip()
    if not endpoint and exporter is None:
        return None
    global _ON
    if _ON is not None:
        shutdown_tracing()

    from opentelemetry import metrics, trace
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    if exporter is None:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        # http:// (or no scheme) is a plaintext collector, https:// one with TLS.
        exporter = OTLPSpanExporter(endpoint=endpoint, insecure=not endpoint.startswith("https"))
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: service_name}),
        sampler=ParentBased(TraceIdRatioBased(settings.general.otlp_sample_ratio)),
        shutdown_on_exit=False,  # shutdown_tracing, at exit or when a test is done
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    client = GrpcAioInstrumentorClient()
    client.instrument(tracer_provider=provider)
    meter = metrics.get_meter("opentelemetry.instrumentation.sqlalchemy")
    _ON = _Tracing(
        provider=provider,
        rpc_tracer=provider.get_tracer("aifx.rpc"),
        db_tracer=provider.get_tracer("opentelemetry.instrumentation.sqlalchemy"),
        db_connections=meter.create_up_down_counter(
            "db.client.connections.usage", unit="connections"
        ),
        uninstrument=[client],
    )
    if global_provider:
        trace.set_tracer_provider(provider)
    atexit.unregister(shutdown_tracing)
    atexit.register(shutdown_tracing)
    return provider


def shutdown_tracing() -> None:
    """Export what is pending and remove every hook `configure_tracing` installed
    (engines already traced stop being traced). Nothing to do when tracing is off."""
    global _ON
    on, _ON = _ON, None
    if on is None:
        return
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

    for instrumentor in on.uninstrument:
        instrumentor.uninstrument()
    EngineTracer.remove_all_event_listeners()
    on.provider.shutdown()


def traced(engine: AsyncEngine) -> AsyncEngine:
    """`engine`, with a span per statement when tracing is on."""
    on = _ON
    if on is not None:
        from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

        EngineTracer(on.db_tracer, engine.sync_engine, on.db_connections)
    return engine


def start_rpc_span(method: str, context: Any, request_id: str, peer: str) -> Span | None:
    """The server span of an RPC of `method` (a child of the caller's `traceparent`, in
    the metadata of grpc's servicer `context`), made current for the rest of the RPC's
    task; None when tracing is off. The task is the RPC's own (grpc.aio runs each in
    one), so the span stops being current when the RPC ends, as the request id does
    (common.request_id)."""
    on = _ON
    if on is None or method.startswith(UNTRACED_PREFIXES):
        return None
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace

    metadata = context.invocation_metadata() or ()
    carrier = {key: value for key, value in metadata if isinstance(value, str)}
    parent = propagate.extract(carrier)
    service, _, name = method.lstrip("/").partition("/")
    span = on.rpc_tracer.start_span(
        method.lstrip("/"),
        context=parent,
        kind=trace.SpanKind.SERVER,
        attributes={
            "rpc.system": "grpc",
            "rpc.service": service,
            "rpc.method": name,
            "network.peer.address": peer,
            REQUEST_ID_ATTRIBUTE: request_id,
        },
    )
    otel_context.attach(trace.set_span_in_context(span, parent))
    return span


def end_rpc_span(span: Span, code: int, code_name: str) -> None:
    """End an RPC's server span with its gRPC status `code` (named `code_name`)."""
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("rpc.grpc.status_code", code)
    if code_name in SERVER_ERROR_CODES:
        span.set_status(Status(StatusCode.ERROR, code_name))
    span.end()
