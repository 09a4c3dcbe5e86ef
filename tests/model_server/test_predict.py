"""Predict over gRPC with the official tensorflow_serving stubs: results equal
onnxruntime run directly, both tensor encodings, and every error code."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from tensorflow.core.framework import types_pb2

from inference.model_format import OUTPUT_NAME, SIGNATURE
from inference.tensor_proto import make_ndarray
from tests.model_server.conftest import candles, direct, predict_request


@pytest.fixture
async def served(serve, base_path):
    return await serve(base_path)


@pytest.mark.parametrize("batch", [1, 32])
async def test_predict_equals_onnxruntime_run_directly(served, base_path, batch):
    inputs = candles(batch, seed=batch)
    response = await served.predict.Predict(predict_request(inputs))
    output = response.outputs[OUTPUT_NAME]
    assert output.dtype == types_pb2.DT_FLOAT
    assert [d.size for d in output.tensor_shape.dim] == [batch, 3]
    assert len(output.float_val) == batch * 3  # float_val, as tensorflow_model_server
    np.testing.assert_array_equal(make_ndarray(output), direct(base_path / "2", inputs))
    assert response.model_spec.name == "lstm"
    assert response.model_spec.version.value == 2
    assert response.model_spec.signature_name == SIGNATURE


async def test_float_val_and_tensor_content_inputs_give_the_same_answer(served, base_path):
    inputs = candles(4, seed=7)
    by_content = await served.predict.Predict(predict_request(inputs, as_content=True))
    by_values = await served.predict.Predict(predict_request(inputs, as_content=False))
    assert by_content.outputs[OUTPUT_NAME] == by_values.outputs[OUTPUT_NAME]
    np.testing.assert_array_equal(
        make_ndarray(by_values.outputs[OUTPUT_NAME]), direct(base_path / "2", inputs)
    )


async def test_explicit_signature_and_output_filter(served):
    request = predict_request(candles(2), signature=SIGNATURE)
    request.output_filter.append(OUTPUT_NAME)
    response = await served.predict.Predict(request)
    assert list(response.outputs) == [OUTPUT_NAME]


# --- errors ----------------------------------------------------------------------------


async def _error(served, request) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served.predict.Predict(request)
    return caught.value


def _violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)
    found = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.update({v.field: v.description for v in bad.field_violations})
    return found


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((1, 59, 14), "dimension 1 must be 60"),
        ((1, 60, 13), "dimension 2 must be 14"),
        ((60, 14), "rank 3"),
        ((0, 60, 14), "batch dimension must be at least 1"),
    ],
)
async def test_wrong_shape_is_invalid_argument(served, shape, expected):
    error = await _error(served, predict_request(np.zeros(shape, np.float32)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in error.details()
    assert "candles" in error.details()
    assert expected in _violations(error)["inputs[candles]"]


async def test_wrong_dtype_is_invalid_argument(served):
    error = await _error(served, predict_request(candles(1).astype(np.float64)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "expected dtype DT_FLOAT, got DT_DOUBLE" in error.details()


async def test_values_not_matching_the_shape_are_invalid_argument(served):
    request = predict_request(candles(1))
    request.inputs["candles"].tensor_content = request.inputs["candles"].tensor_content[:-4]
    error = await _error(served, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tensor_content holds 3356 bytes" in error.details()

    request = predict_request(candles(1), as_content=False)
    del request.inputs["candles"].float_val[-1]
    error = await _error(served, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "float_val holds 839 values" in error.details()


async def test_missing_input_is_invalid_argument(served):
    error = await _error(served, predict_request(None))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "missing: the signature needs input candles, DT_FLOAT [N, 60, 14]" in error.details()


async def test_unknown_input_name_is_invalid_argument(served):
    error = await _error(served, predict_request(candles(1), alias="prices"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = _violations(error)
    assert "input tensor alias not found in signature: prices" in violations["inputs[prices]"]
    assert "{candles}" in violations["inputs[prices]"]
    assert "missing" in violations["inputs[candles]"]  # every problem at once


async def test_extra_input_next_to_a_good_one_is_invalid_argument(served):
    request = predict_request(candles(1))
    request.inputs["extra"].CopyFrom(request.inputs["candles"])
    error = await _error(served, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(_violations(error)) == ["inputs[extra]"]


async def test_unknown_output_filter_is_invalid_argument(served):
    request = predict_request(candles(1))
    request.output_filter.append("probabilities")
    error = await _error(served, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "output tensor alias not found in signature: probabilities" in error.details()


async def test_unknown_model_is_not_found(served):
    error = await _error(served, predict_request(candles(1), name="gru"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "'gru' is not served" in error.details()


async def test_unknown_version_is_not_found(served):
    error = await _error(served, predict_request(candles(1), version=9))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "Servable not found for request: Specific(lstm, 9)" in error.details()
    assert "serves versions: 2" in error.details()


async def test_unknown_label_is_invalid_argument_as_in_tf_serving(served):
    error = await _error(served, predict_request(candles(1), label="nightly"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Unrecognized servable version label: nightly" in error.details()


async def test_bad_signature_is_failed_precondition_as_in_tf_serving(served):
    error = await _error(served, predict_request(candles(1), signature="predict"))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert 'Serving signature key "predict" not found' in error.details()


async def test_missing_model_spec_is_invalid_argument(served):
    request = predict_request(candles(1))
    request.ClearField("model_spec")
    error = await _error(served, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Missing ModelSpec" in error.details()


async def test_other_prediction_apis_are_unimplemented(served):
    from tensorflow_serving.apis import classification_pb2

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served.predict.Classify(classification_pb2.ClassificationRequest())
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
