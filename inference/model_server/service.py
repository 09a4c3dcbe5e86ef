"""gRPC servicers of the model server: TF Serving's PredictionService (Predict,
GetModelMetadata) and ModelService (GetModelStatus). Proto ⇄ domain, nothing more.

Status codes and messages follow tensorflow_model_server's, so a client cannot tell the
two apart: unknown model or version NOT_FOUND ("Servable not found for request: ..."),
unknown version label INVALID_ARGUMENT ("Unrecognized servable version label: ..."),
unknown signature FAILED_PRECONDITION ("Serving signature key ... not found."), inputs
that are missing, unknown, of the wrong dtype or shape INVALID_ARGUMENT naming the input.
"""

from __future__ import annotations

import grpc
import numpy as np
from google.protobuf import wrappers_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    status_pb2,
)

from common.errors import FailedPrecondition, FieldViolation, InvalidArgument, ViolationCollector
from inference.model_format import SIGNATURE
from inference.model_server.core import ModelServer
from inference.model_server.registry import ModelRegistry, VersionState
from inference.model_server.servable import PREDICT_METHOD, Servable, TensorSpec
from inference.tensor_proto import (
    TensorProtoError,
    dtype_name,
    make_ndarray,
    make_tensor_proto,
    shape_proto,
    tf_dtype,
)

SIGNATURE_DEF_FIELD = "signature_def"
_STATES = {
    VersionState.START: get_model_status_pb2.ModelVersionStatus.START,
    VersionState.LOADING: get_model_status_pb2.ModelVersionStatus.LOADING,
    VersionState.AVAILABLE: get_model_status_pb2.ModelVersionStatus.AVAILABLE,
    VersionState.UNLOADING: get_model_status_pb2.ModelVersionStatus.UNLOADING,
    VersionState.END: get_model_status_pb2.ModelVersionStatus.END,
}
_ERROR_UNKNOWN = 2  # tensorflow.error.Code.UNKNOWN


def _require_model_spec(request: object) -> model_pb2.ModelSpec:
    if not request.HasField("model_spec"):  # type: ignore[attr-defined]
        raise InvalidArgument([FieldViolation("model_spec", "Missing ModelSpec")])
    return request.model_spec  # type: ignore[attr-defined]


def _version_choice(spec: model_pb2.ModelSpec) -> tuple[int | None, str | None]:
    which = spec.WhichOneof("version_choice")
    if which == "version":
        return spec.version.value, None
    if which == "version_label":
        return None, spec.version_label
    return None, None


def _resolve(core: ModelServer, spec: model_pb2.ModelSpec) -> tuple[ModelRegistry, Servable]:
    registry = core.registry(spec.name)
    version, label = _version_choice(spec)
    return registry, registry.resolve(version, label)


def _signature(
    servable: Servable, name: str
) -> tuple[dict[str, TensorSpec], dict[str, TensorSpec]]:
    try:
        return servable.signatures[name]
    except KeyError:
        known = ", ".join(sorted(servable.signatures))
        raise FailedPrecondition(
            f'Serving signature key "{name}" not found. '
            f"Model {servable.model_name} v{servable.version} has: {known}"
        ) from None


def _describe(spec: TensorSpec) -> str:
    dims = ", ".join("N" if i == 0 and d < 0 else str(d) for i, d in enumerate(spec.shape))
    return f"{dtype_name(tf_dtype(spec.dtype))} [{dims}]"


def decode_inputs(
    tensors: object, signature_inputs: dict[str, TensorSpec]
) -> dict[str, np.ndarray]:
    """The request's input tensors as arrays, checked against the signature; every
    problem at once as INVALID_ARGUMENT with one violation per input."""
    errors = ViolationCollector()
    expected = "{" + ",".join(sorted(signature_inputs)) + "}"
    for alias in tensors:  # type: ignore[attr-defined]
        if alias not in signature_inputs:
            errors.add(
                f"inputs[{alias}]",
                f"input tensor alias not found in signature: {alias}. "
                f"Inputs expected to be in the set {expected}.",
            )
    arrays: dict[str, np.ndarray] = {}
    for alias, spec in signature_inputs.items():
        where = f"inputs[{alias}]"
        if alias not in tensors:  # type: ignore[operator]
            errors.add(where, f"missing: the signature needs input {alias}, {_describe(spec)}")
            continue
        proto = tensors[alias]  # type: ignore[index]
        wanted = tf_dtype(spec.dtype)
        if proto.dtype != wanted:
            errors.add(where, f"expected dtype {dtype_name(wanted)}, got {dtype_name(proto.dtype)}")
            continue
        try:
            array = make_ndarray(proto)
        except TensorProtoError as exc:
            errors.add(where, str(exc))
            continue
        problem = spec.check(array)
        if problem:
            errors.add(where, problem)
            continue
        arrays[alias] = array
    batch_sizes = {array.shape[0] for array in arrays.values()}
    if len(batch_sizes) > 1:
        errors.add("inputs", f"every input needs the same batch size, got {sorted(batch_sizes)}")
    errors.raise_if_any()
    return arrays


def _output_aliases(
    request: predict_pb2.PredictRequest, outputs: dict[str, TensorSpec]
) -> list[str]:
    if not request.output_filter:
        return list(outputs)
    errors = ViolationCollector()
    expected = "{" + ",".join(sorted(outputs)) + "}"
    seen: list[str] = []
    for index, alias in enumerate(request.output_filter):
        if alias not in outputs:
            errors.add(
                f"output_filter[{index}]",
                f"output tensor alias not found in signature: {alias}. "
                f"Outputs expected to be in the set {expected}.",
            )
        elif alias in seen:
            errors.add(f"output_filter[{index}]", f"duplicate output tensor alias: {alias}")
        else:
            seen.append(alias)
    errors.raise_if_any()
    return seen


def _model_spec(servable: Servable, signature_name: str = "") -> model_pb2.ModelSpec:
    return model_pb2.ModelSpec(
        name=servable.model_name,
        version=wrappers_pb2.Int64Value(value=servable.version),
        signature_name=signature_name,
    )


def _tensor_info(spec: TensorSpec) -> meta_graph_pb2.TensorInfo:
    return meta_graph_pb2.TensorInfo(
        name=spec.name, dtype=tf_dtype(spec.dtype), tensor_shape=shape_proto(spec.shape)
    )


async def _unimplemented(context: grpc.aio.ServicerContext, what: str) -> None:
    await context.abort(grpc.StatusCode.UNIMPLEMENTED, what)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, core: ModelServer) -> None:
        self._core = core

    async def Predict(  # noqa: N802
        self, request: predict_pb2.PredictRequest, context: grpc.aio.ServicerContext
    ) -> predict_pb2.PredictResponse:
        spec = _require_model_spec(request)
        _, servable = _resolve(self._core, spec)
        signature_name = spec.signature_name or SIGNATURE
        signature_inputs, signature_outputs = _signature(servable, signature_name)
        inputs = decode_inputs(request.inputs, signature_inputs)
        aliases = _output_aliases(request, signature_outputs)
        outputs = await self._core.run(servable, inputs)
        response = predict_pb2.PredictResponse(model_spec=_model_spec(servable, signature_name))
        for alias in aliases:
            # float_val, as tensorflow_model_server answers by default.
            response.outputs[alias].CopyFrom(make_tensor_proto(outputs[alias], as_content=False))
        return response

    async def GetModelMetadata(  # noqa: N802
        self,
        request: get_model_metadata_pb2.GetModelMetadataRequest,
        context: grpc.aio.ServicerContext,
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        spec = _require_model_spec(request)
        if not request.metadata_field:
            raise InvalidArgument(
                [
                    FieldViolation(
                        "metadata_field",
                        "GetModelMetadataRequest must specify at least one metadata_field "
                        f"(supported: {SIGNATURE_DEF_FIELD})",
                    )
                ]
            )
        errors = ViolationCollector()
        for index, name in enumerate(request.metadata_field):
            if name != SIGNATURE_DEF_FIELD:
                errors.add(
                    f"metadata_field[{index}]",
                    f"Metadata field {name} is not supported (supported: {SIGNATURE_DEF_FIELD})",
                )
        errors.raise_if_any()
        _, servable = _resolve(self._core, spec)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        for name, (inputs, outputs) in servable.signatures.items():
            signature = signatures.signature_def[name]
            signature.method_name = PREDICT_METHOD
            for alias, tensor in inputs.items():
                signature.inputs[alias].CopyFrom(_tensor_info(tensor))
            for alias, tensor in outputs.items():
                signature.outputs[alias].CopyFrom(_tensor_info(tensor))
        response = get_model_metadata_pb2.GetModelMetadataResponse(model_spec=_model_spec(servable))
        response.metadata[SIGNATURE_DEF_FIELD].Pack(signatures)
        return response

    async def Classify(self, request: object, context: grpc.aio.ServicerContext) -> None:  # noqa: N802
        await _unimplemented(context, "Classify is not served: use Predict")

    async def Regress(self, request: object, context: grpc.aio.ServicerContext) -> None:  # noqa: N802
        await _unimplemented(context, "Regress is not served: use Predict")

    async def MultiInference(  # noqa: N802
        self, request: object, context: grpc.aio.ServicerContext
    ) -> None:
        await _unimplemented(context, "MultiInference is not served: use Predict")


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, core: ModelServer) -> None:
        self._core = core

    async def GetModelStatus(  # noqa: N802
        self,
        request: get_model_status_pb2.GetModelStatusRequest,
        context: grpc.aio.ServicerContext,
    ) -> get_model_status_pb2.GetModelStatusResponse:
        spec = _require_model_spec(request)
        registry = self._core.registry(spec.name)
        version, label = _version_choice(spec)
        response = get_model_status_pb2.GetModelStatusResponse()
        for status in registry.statuses(version, label):
            response.model_version_status.append(
                get_model_status_pb2.ModelVersionStatus(
                    version=status.version,
                    state=_STATES[status.state],
                    status=status_pb2.StatusProto(
                        error_code=_ERROR_UNKNOWN if status.error else 0,
                        error_message=status.error,
                    ),
                )
            )
        return response

    async def HandleReloadConfigRequest(  # noqa: N802
        self, request: object, context: grpc.aio.ServicerContext
    ) -> None:
        await _unimplemented(
            context,
            "HandleReloadConfigRequest is not supported: new version folders are picked up "
            "by polling; restart the server to change models, policies or labels",
        )
