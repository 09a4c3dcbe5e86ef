"""Tracing (common.tracing): a span per RPC on both sides of a call, in one trace, the
request id on the server's; a span per database statement; export over OTLP to a
collector; and nothing at all when no endpoint is set."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import grpc.aio._channel
import grpc.aio._server
import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import ValidationError
from sqlalchemy import text

from aifx.auth.v1 import auth_pb2, auth_pb2_grpc
from common import tracing
from common.db import create_engine
from common.grpc_client import GrpcClient
from common.server import RunningServer, ServiceSpec, start_server
from common.settings import Settings
from tests.infra import eventually, free_port, heavy_imports_after, make_settings

AUTH = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name
PREFERENCES = f"{AUTH}/GetPreferences"
# A server-streaming method in each of grpc's two handler styles (common.interceptors).
YIELDED = "/test.Tracing/Yielded"
WRITTEN = "/test.Tracing/Written"


class Preferences(auth_pb2_grpc.AuthServiceServicer):
    async def GetPreferences(self, request, context):  # noqa: N802
        return auth_pb2.GetPreferencesResponse()


async def _yielded(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    for _ in range(3):
        yield request


async def _written(request: bytes, context: grpc.aio.ServicerContext) -> None:
    for _ in range(3):
        await context.write(request)


def _register(server: grpc.aio.Server) -> None:
    auth_pb2_grpc.add_AuthServiceServicer_to_server(Preferences(), server)
    streams = grpc.method_handlers_generic_handler(
        "test.Tracing",
        {
            "Yielded": grpc.unary_stream_rpc_method_handler(_yielded),
            "Written": grpc.unary_stream_rpc_method_handler(_written),
        },
    )
    server.add_generic_rpc_handlers((streams,))


async def _start() -> RunningServer:
    spec = ServiceSpec(name="traced", register=_register, service_names=[AUTH])
    return await start_server(spec, "127.0.0.1", 0)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, otlp_endpoint="")


@pytest.fixture
def traced(settings: Settings) -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """Tracing on, into memory, without touching OpenTelemetry's process-wide provider;
    every hook removed afterwards, so the other tests of this process are untraced."""
    exporter = InMemorySpanExporter()
    provider = tracing.configure_tracing(
        "test_svc", settings, exporter=exporter, global_provider=False
    )
    assert provider is not None
    yield provider, exporter
    tracing.shutdown_tracing()
    assert not tracing.enabled()


def _finished(
    provider: TracerProvider, exporter: InMemorySpanExporter, name: str, kind: trace.SpanKind
) -> list[ReadableSpan]:
    provider.force_flush()
    return [s for s in exporter.get_finished_spans() if s.name == name and s.kind == kind]


async def test_a_call_makes_a_client_and_a_server_span_in_one_trace_with_the_request_id(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = traced
    running = await _start()
    client = GrpcClient("auth_svc", f"127.0.0.1:{running.port}")
    try:
        stub = client.stub(auth_pb2_grpc.AuthServiceStub)
        await client.unary(
            stub.GetPreferences,
            auth_pb2.GetPreferencesRequest(),
            metadata=(("x-request-id", "req-trace-1"),),
        )
        (server,) = await eventually(
            lambda: _finished(provider, exporter, PREFERENCES, trace.SpanKind.SERVER),
            "the server span",
        )
        (caller,) = await eventually(
            lambda: _finished(provider, exporter, f"/{PREFERENCES}", trace.SpanKind.CLIENT),
            "the client span",
        )
    finally:
        await client.close()
        await running.stop(grace=0.1)

    assert server.context is not None and caller.context is not None
    assert server.context.trace_id == caller.context.trace_id
    assert server.parent is not None and server.parent.span_id == caller.context.span_id
    assert server.attributes is not None
    assert server.attributes["aifx.request_id"] == "req-trace-1"
    assert server.attributes["rpc.grpc.status_code"] == grpc.StatusCode.OK.value[0]
    assert server.resource.attributes["service.name"] == "test_svc"
    assert server.status.status_code != trace.StatusCode.ERROR


async def test_streams_of_both_handler_styles_are_traced_and_still_work(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = traced
    running = await _start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        for method in (YIELDED, WRITTEN):
            replies = [reply async for reply in channel.unary_stream(method)(b"hi")]
            assert replies == [b"hi"] * 3
            await eventually(
                lambda m=method: _finished(provider, exporter, m[1:], trace.SpanKind.SERVER),
                f"the server span of {method}",
            )
        # Probes are not traced.
        await channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=lambda _: b"",
            response_deserializer=lambda raw: raw,
        )(None)
        provider.force_flush()
        assert not [s for s in exporter.get_finished_spans() if s.name.startswith("grpc.health")]
    finally:
        await channel.close()
        await running.stop(grace=0.1)


async def test_new_traces_are_sampled_by_ratio_and_a_call_follows_its_caller(
    settings: Settings,
) -> None:
    running = await _start()
    # Opened before tracing is on: no client span, so the caller's choice is the test's.
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    exporter = InMemorySpanExporter()
    provider = tracing.configure_tracing(
        "test_svc",
        settings.replace(otlp_sample_ratio=0.0),
        exporter=exporter,
        global_provider=False,
    )
    assert provider is not None
    sampled_parent = f"00-{'ab' * 16}-{'cd' * 8}-01"
    try:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        await stub.GetPreferences(auth_pb2.GetPreferencesRequest())  # new trace: dropped
        await stub.GetPreferences(
            auth_pb2.GetPreferencesRequest(), metadata=(("traceparent", sampled_parent),)
        )
        (server,) = await eventually(
            lambda: _finished(provider, exporter, PREFERENCES, trace.SpanKind.SERVER),
            "the server span of the sampled caller",
        )
        assert server.context is not None
        assert server.context.trace_id == int("ab" * 16, 16)
    finally:
        tracing.shutdown_tracing()
        await channel.close()
        await running.stop(grace=0.1)


async def test_a_database_statement_makes_a_span_under_the_current_one(
    traced: tuple[TracerProvider, InMemorySpanExporter], settings: Settings
) -> None:
    provider, exporter = traced
    engine = create_engine(
        settings, "sqlite+aiosqlite:///" + str(settings.general.var_dir / "t.db")
    )
    try:
        with provider.get_tracer("test").start_as_current_span("outer") as outer:
            async with engine.connect() as connection:
                assert (await connection.execute(text("SELECT 41 + 1"))).scalar() == 42
    finally:
        await engine.dispose()
    provider.force_flush()
    statements = [
        s
        for s in exporter.get_finished_spans()
        if s.kind == trace.SpanKind.CLIENT and "SELECT 41 + 1" in str(s.attributes)
    ]
    assert len(statements) == 1
    (statement,) = statements
    assert statement.parent is not None
    assert statement.parent.span_id == outer.get_span_context().span_id


async def test_off_by_default_installs_nothing(settings: Settings) -> None:
    assert settings.general.otlp_endpoint == ""
    assert tracing.configure_tracing("test_svc", settings) is None
    assert not tracing.enabled()
    # No provider: OpenTelemetry's global one is still the placeholder proxy.
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    # No interceptor: grpc's server and channel factories are grpc's own.
    assert grpc.aio.server is grpc.aio._server.server
    assert grpc.aio.insecure_channel is grpc.aio._channel.insecure_channel
    running = await _start()
    try:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
        await auth_pb2_grpc.AuthServiceStub(channel).GetPreferences(
            auth_pb2.GetPreferencesRequest()
        )
        await channel.close()
    finally:
        await running.stop(grace=0.1)
    assert tracing.start_rpc_span(f"/{PREFERENCES}", None, "req", "peer") is None


def test_off_a_service_process_never_even_imports_opentelemetry() -> None:
    code = (
        "from common.settings import Settings\n"
        "from common.tracing import configure_tracing\n"
        "import common.server, common.db, common.grpc_client, common.interceptors\n"
        "assert configure_tracing('x', Settings.load(None, otlp_endpoint='')) is None\n"
    )
    assert heavy_imports_after(code, ("opentelemetry",)) == []


def test_a_sample_ratio_outside_0_to_1_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIFX_OTLP_SAMPLE_RATIO", "2")
    with pytest.raises(ValidationError, match=r"otlp_sample_ratio\s+Input should be less than"):
        Settings.load(None)
    monkeypatch.setenv("AIFX_OTLP_SAMPLE_RATIO", "-0.1")
    with pytest.raises(ValidationError, match="otlp_sample_ratio"):
        Settings.load(None)
    monkeypatch.setenv("AIFX_OTLP_SAMPLE_RATIO", "0.25")
    assert Settings.load(None).general.otlp_sample_ratio == 0.25


class _Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """A stand-in for an OpenTelemetry collector: keeps what it is sent."""

    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []

    def Export(self, request, context):  # noqa: N802
        self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def collector() -> Iterator[tuple[_Collector, int]]:
    # A thread-pool server: the exporter's (blocking) calls never wait on the test's loop.
    port = free_port()
    collector = _Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    assert server.add_insecure_port(f"127.0.0.1:{port}") == port
    server.start()
    yield collector, port
    server.stop(grace=None)


async def test_spans_are_exported_over_otlp_to_the_configured_endpoint(
    collector: tuple[_Collector, int], tmp_path: Path
) -> None:
    received, port = collector
    settings = make_settings(tmp_path, otlp_endpoint=f"http://127.0.0.1:{port}")
    provider = tracing.configure_tracing("otlp_svc", settings, global_provider=False)
    assert provider is not None
    try:
        running = await _start()
        client = GrpcClient("auth_svc", f"127.0.0.1:{running.port}")
        try:
            stub = client.stub(auth_pb2_grpc.AuthServiceStub)
            await client.unary(stub.GetPreferences, auth_pb2.GetPreferencesRequest())
        finally:
            await client.close()
            await running.stop(grace=0.1)

        def exported() -> dict[str, set[str]]:
            provider.force_flush(timeout_millis=1000)
            names: dict[str, set[str]] = {}
            for request in received.requests:
                for resource_spans in request.resource_spans:
                    attributes = {
                        a.key: a.value.string_value for a in resource_spans.resource.attributes
                    }
                    names.setdefault(attributes.get("service.name", ""), set()).update(
                        span.name for scope in resource_spans.scope_spans for span in scope.spans
                    )
            return names if PREFERENCES in names.get("otlp_svc", set()) else {}

        # force_flush blocks: run it off the loop that serves the RPCs.
        names = await eventually(lambda: asyncio.to_thread(exported), "spans at the collector")
        assert {PREFERENCES, f"/{PREFERENCES}"} <= names["otlp_svc"]
    finally:
        tracing.shutdown_tracing()
