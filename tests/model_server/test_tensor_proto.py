"""inference.tensor_proto: arrays to TensorProtos and back, strictly."""

from __future__ import annotations

import numpy as np
import pytest
from tensorflow.core.framework import tensor_pb2, types_pb2

from inference.tensor_proto import (
    TensorProtoError,
    dtype_name,
    make_ndarray,
    make_tensor_proto,
    proto_shape,
)


@pytest.mark.parametrize("as_content", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64, np.bool_])
def test_round_trip(dtype, as_content):
    array = (np.arange(24).reshape(2, 3, 4) % 5).astype(dtype)
    proto = make_tensor_proto(array, as_content=as_content)
    assert proto_shape(proto) == (2, 3, 4)
    assert bool(proto.tensor_content) == as_content
    back = make_ndarray(proto)
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back, array)


def test_float32_wire_format_is_tensorflows():
    proto = make_tensor_proto(np.array([[1.5, -2.0]], np.float32))
    assert proto.dtype == types_pb2.DT_FLOAT
    assert proto.tensor_content == np.array([1.5, -2.0], "<f4").tobytes()
    values = make_tensor_proto(np.array([[1.5, -2.0]], np.float32), as_content=False)
    assert list(values.float_val) == [1.5, -2.0]


def test_scalar_and_empty():
    assert make_ndarray(make_tensor_proto(np.float32(3.0))).shape == ()
    assert make_ndarray(make_tensor_proto(np.zeros((0, 3), np.float32))).shape == (0, 3)


@pytest.mark.parametrize(
    ("proto", "message"),
    [
        (
            tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING),
            "dtype DT_STRING is not supported",
        ),
        (
            tensor_pb2.TensorProto(
                dtype=types_pb2.DT_FLOAT, float_val=[1.0], tensor_shape={"dim": [{"size": 2}]}
            ),
            "float_val holds 1 values, but shape [2] has 2 elements",
        ),
        (
            tensor_pb2.TensorProto(
                dtype=types_pb2.DT_FLOAT,
                tensor_content=b"\0" * 6,
                tensor_shape={"dim": [{"size": 2}]},
            ),
            "tensor_content holds 6 bytes, but shape [2] of DT_FLOAT needs 8",
        ),
        (
            tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape={"dim": [{"size": -1}]}),
            "negative dimension",
        ),
        (
            tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape={"unknown_rank": True}),
            "unknown rank",
        ),
    ],
)
def test_malformed_protos_are_refused(proto, message):
    with pytest.raises(TensorProtoError, match=message.replace("[", r"\[").replace("]", r"\]")):
        make_ndarray(proto)


def test_unsupported_numpy_dtype():
    with pytest.raises(TensorProtoError, match="not supported"):
        make_tensor_proto(np.array(["a"]))
    assert dtype_name(9999) == "DataType(9999)"
