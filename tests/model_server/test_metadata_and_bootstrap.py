"""GetModelMetadata in TF Serving's format, ModelService extras, and the common
bootstrap's health and reflection on the model server."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, model_management_pb2

from inference.model_format import INPUT_NAME, OUTPUT_NAME, SIGNATURE
from inference.model_server.config import VersionPolicy
from inference.model_server.server import SERVICE_NAMES
from tests.model_server.conftest import model_spec


def _metadata_request(fields=("signature_def",), **choice):
    return get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=model_spec(**choice), metadata_field=list(fields)
    )


async def test_signature_def_metadata(serve, base_path):
    served = await serve(base_path, policy=VersionPolicy("all"))
    response = await served.predict.GetModelMetadata(_metadata_request())
    assert response.model_spec.name == "lstm"
    assert response.model_spec.version.value == 2
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    assert list(signatures.signature_def) == [SIGNATURE]
    signature = signatures.signature_def[SIGNATURE]
    assert signature.method_name == "tensorflow/serving/predict"
    [(in_alias, tensor_in)] = signature.inputs.items()
    [(out_alias, tensor_out)] = signature.outputs.items()
    assert (in_alias, out_alias) == (INPUT_NAME, OUTPUT_NAME)
    assert tensor_in.dtype == tensor_out.dtype == types_pb2.DT_FLOAT
    assert [d.size for d in tensor_in.tensor_shape.dim] == [-1, 60, 14]
    assert [d.size for d in tensor_out.tensor_shape.dim] == [-1, 3]
    assert tensor_in.name == INPUT_NAME

    older = await served.predict.GetModelMetadata(_metadata_request(version=1))
    assert older.model_spec.version.value == 1


@pytest.mark.parametrize(
    ("request_kwargs", "code", "text"),
    [
        ({"fields": ()}, grpc.StatusCode.INVALID_ARGUMENT, "at least one metadata_field"),
        ({"fields": ("graph",)}, grpc.StatusCode.INVALID_ARGUMENT, "graph is not supported"),
        ({"name": "gru"}, grpc.StatusCode.NOT_FOUND, "'gru' is not served"),
        ({"version": 5}, grpc.StatusCode.NOT_FOUND, "Specific(lstm, 5)"),
    ],
)
async def test_metadata_errors(serve, base_path, request_kwargs, code, text):
    served = await serve(base_path)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served.predict.GetModelMetadata(_metadata_request(**request_kwargs))
    assert caught.value.code() == code
    assert text in caught.value.details()


async def test_reload_config_is_unimplemented(serve, base_path):
    served = await serve(base_path)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served.models.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest())
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_health_and_reflection(serve, base_path):
    served = await serve(base_path)
    health = health_pb2_grpc.HealthStub(served.channel)
    for service in ("", *SERVICE_NAMES):
        answer = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(served.channel)
    responses = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    async for response in responses:
        names = {s.name for s in response.list_services_response.service}
        break
    assert {"tensorflow.serving.PredictionService", "tensorflow.serving.ModelService"} <= names
