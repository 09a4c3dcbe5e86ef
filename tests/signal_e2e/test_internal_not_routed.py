"""Internal methods are not reachable through Envoy: every method of every service that
browsers and traders have no business calling — the `…InternalService`s (service
credential), the inference service, the TF Serving API, health and reflection — probed
as gRPC through Envoy's public listener, with the service credential and a user's
token both sent, is refused with UNIMPLEMENTED (Envoy's 404: no route), never served.

The list comes from the descriptor set `make gen` writes, so a method added to an
internal service later is probed too. A public method on the same channel reaches its
service (the control: the probe would see a service that was routed)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2

from tests.signal_e2e.conftest import SignalEdge

pytestmark = pytest.mark.e2e

DESCRIPTOR_SET = Path(__file__).resolve().parents[2] / "gen" / "aifx_descriptor.pb"
PUBLIC_SERVICES = {
    "aifx.auth.v1.AuthService",
    "aifx.signal.v1.SignalService",
    "aifx.position.v1.PositionService",
}
# Served by every process (grpc_health, reflection) or by the model server, whose
# contracts are not in AIFX's descriptor set.
OTHER_INTERNAL_METHODS = [
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/tensorflow.serving.PredictionService/Predict",
    "/tensorflow.serving.ModelService/GetModelStatus",
]


def internal_methods() -> list[str]:
    """`/package.Service/Method` of every AIFX service that is not a public one."""
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())
    methods = []
    for file in files.file:
        if not file.package.startswith("aifx."):
            continue
        for service in file.service:
            name = f"{file.package}.{service.name}"
            if name not in PUBLIC_SERVICES:
                methods += [f"/{name}/{method.name}" for method in service.method]
    return methods


def test_the_descriptor_set_names_the_internal_services() -> None:
    services = {m.split("/")[1] for m in internal_methods()}
    assert {
        "aifx.auth.v1.AuthInternalService",
        "aifx.signal.v1.SignalInternalService",
        "aifx.position.v1.PositionInternalService",
        "aifx.inference.v1.InferenceService",
    } <= services


@pytest.mark.parametrize("method", internal_methods() + OTHER_INTERNAL_METHODS)
async def test_an_internal_method_is_not_routed_by_envoy(
    signal_edge: SignalEdge, method: str
) -> None:
    address = signal_edge.url.removeprefix("http://")
    metadata = signal_edge.service_credential + signal_edge.bearer
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(method)  # raw bytes: an empty request message
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(b"", metadata=metadata, timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED, caught.value


async def test_a_public_method_on_the_same_path_is_served(signal_edge: SignalEdge) -> None:
    """The control: the same probe reaches signal_svc for a routed method."""
    address = signal_edge.url.removeprefix("http://")
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary("/aifx.signal.v1.SignalService/ListPairs")
        answer = await call(b"", metadata=signal_edge.bearer, timeout=10)
    assert isinstance(answer, bytes) and answer
