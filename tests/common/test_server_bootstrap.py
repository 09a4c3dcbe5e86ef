"""The server bootstrap every service runs under: health, reflection, request ids,
metrics, and errors mapped to statuses (never a bare UNKNOWN)."""

import contextlib
import logging

import grpc
import pytest
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import REGISTRY

from aifx.auth.v1 import auth_pb2, auth_pb2_grpc
from common import interceptors
from common.errors import NotFound
from common.server import ServiceSpec, start_server
from tests.infra import eventually

SERVICE = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name


class Faulty(auth_pb2_grpc.AuthServiceServicer):
    async def GetJwks(self, request, context):  # noqa: N802
        raise RuntimeError("secret detail that must not leak")

    async def GetMe(self, request, context):  # noqa: N802
        raise NotFound("nobody here")

    async def GetPreferences(self, request, context):  # noqa: N802
        return auth_pb2.GetPreferencesResponse()


@pytest.fixture
async def faulty():
    spec = ServiceSpec(
        name="faulty",
        register=lambda server: auth_pb2_grpc.add_AuthServiceServicer_to_server(Faulty(), server),
        service_names=[SERVICE],
    )
    running = await start_server(spec, "127.0.0.1", 0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    yield running, channel
    await channel.close()
    await running.stop(grace=0.1)


async def test_unhandled_exception_is_internal_with_request_id_and_no_leak(faulty):
    _, channel = faulty
    call = auth_pb2_grpc.AuthServiceStub(channel).GetJwks(
        auth_pb2.GetJwksRequest(), metadata=(("x-request-id", "req-42"),)
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "req-42" in caught.value.details()
    assert "secret" not in caught.value.details()
    assert ("x-request-id", "req-42") in tuple(await call.trailing_metadata())


async def test_a_successful_call_echoes_its_request_id_in_the_trailers(faulty):
    _, channel = faulty
    call = auth_pb2_grpc.AuthServiceStub(channel).GetPreferences(
        auth_pb2.GetPreferencesRequest(), metadata=(("x-request-id", "req-7"),)
    )
    await call
    assert ("x-request-id", "req-7") in tuple(await call.trailing_metadata())


async def test_domain_error_maps_and_is_counted(faulty):
    _, channel = faulty
    method = f"/{SERVICE}/GetMe"
    before = (
        REGISTRY.get_sample_value(
            "aifx_grpc_requests_total", {"method": method, "code": "NOT_FOUND"}
        )
        or 0.0
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await auth_pb2_grpc.AuthServiceStub(channel).GetMe(auth_pb2.GetMeRequest())
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND

    def counted() -> float:
        return (
            REGISTRY.get_sample_value(
                "aifx_grpc_requests_total", {"method": method, "code": "NOT_FOUND"}
            )
            or 0.0
        )

    # The server counts a call as it finishes, which may be just after the client has
    # its status.
    assert await eventually(lambda: counted() >= before + 1, "the call counted")
    assert counted() == before + 1
    assert REGISTRY.get_sample_value("aifx_grpc_request_duration_seconds_count", {"method": method})


async def test_one_log_line_per_rpc_only_when_its_level_is_on(faulty, caplog):
    _, channel = faulty
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    method = f"/{SERVICE}/GetMe"

    def rpc_lines(events: list[dict]) -> list[dict]:
        # Only this method's: servers other tests left in this process may log too.
        return [e for e in events if e["event"] == "rpc" and e["method"] == method]

    def finished() -> float:
        return (
            REGISTRY.get_sample_value(
                "aifx_grpc_requests_total", {"method": method, "code": "NOT_FOUND"}
            )
            or 0.0
        )

    async def call_and_wait_until_finished() -> None:
        """The call, then until the server has finished it (counted, then logged, in
        one step): the client may have its status just before."""
        before = finished()
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.GetMe(auth_pb2.GetMeRequest())
        await eventually(lambda: finished() > before, "the call finished")

    caplog.set_level(logging.INFO, logger="rpc")
    with structlog.testing.capture_logs() as events:
        await call_and_wait_until_finished()
    lines = rpc_lines(events)
    assert len(lines) == 1
    assert lines[0]["code"] == "NOT_FOUND"
    assert lines[0]["log_level"] == "info"
    assert lines[0]["latency_ms"] >= 0

    caplog.set_level(logging.WARNING, logger="rpc")
    with structlog.testing.capture_logs() as events:
        await call_and_wait_until_finished()
    assert rpc_lines(events) == []


async def test_the_rpc_line_is_debug_when_fine_and_louder_when_worth_a_look(
    faulty, caplog, monkeypatch
):
    _, channel = faulty
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    caplog.set_level(logging.DEBUG, logger="rpc")

    async def level_of(call, method: str) -> str:
        with structlog.testing.capture_logs() as events:
            with contextlib.suppress(grpc.aio.AioRpcError):
                await call
            lines = await eventually(
                lambda: [e for e in events if e["event"] == "rpc" and e["method"] == method],
                f"the line of {method}",
            )
        return str(lines[0]["log_level"])

    preferences = f"/{SERVICE}/GetPreferences"
    request = auth_pb2.GetPreferencesRequest()
    assert await level_of(stub.GetPreferences(request), preferences) == "debug"  # fine
    assert await level_of(stub.GetMe(auth_pb2.GetMeRequest()), f"/{SERVICE}/GetMe") == "info"
    jwks = stub.GetJwks(auth_pb2.GetJwksRequest())
    assert await level_of(jwks, f"/{SERVICE}/GetJwks") == "warning"  # the server's fault
    monkeypatch.setattr(interceptors, "SLOW_RPC_SECONDS", 0.0)
    assert await level_of(stub.GetPreferences(request), preferences) == "info"  # slow


async def test_health_and_reflection_then_graceful_shutdown(faulty):
    running, channel = faulty
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", SERVICE):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def ask():
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    async for reply in reflection.ServerReflectionInfo(ask()):
        names = {s.name for s in reply.list_services_response.service}
        assert {SERVICE, "grpc.health.v1.Health"} <= names
        break

    await running.health.enter_graceful_shutdown()
    reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
    assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
