"""numpy arrays ⇄ TensorFlow `TensorProto`s, without TensorFlow.

The TF Serving protocol carries tensors as `tensorflow.TensorProto` (from the
protobuf-only `tensorflow-protobuf` package, never the TensorFlow runtime). The model
server and its clients (the inference service, tests, benchmarks) share these helpers:

    proto = make_tensor_proto(np.zeros((1, 60, 14), np.float32))   # tensor_content bytes
    array = make_ndarray(response.outputs["output_0"])              # float_val or content

`make_tensor_proto`/`make_ndarray` are named after TensorFlow's `tf.make_tensor_proto`
and `tf.make_ndarray`, but `make_ndarray` is stricter: the number of values must equal
the number of elements the shape implies (TensorFlow repeats a lone or last value to fill
the shape; a server should not guess), and only numeric and bool dtypes are supported.
"""

from __future__ import annotations

import math

import numpy as np
from tensorflow.core.framework import tensor_shape_pb2, types_pb2
from tensorflow.core.framework.tensor_pb2 import TensorProto

# DataType -> (numpy dtype, name of the repeated value field). Little-endian, as
# TensorFlow writes tensor_content.
_TYPES: dict[int, tuple[np.dtype, str]] = {
    types_pb2.DT_FLOAT: (np.dtype("<f4"), "float_val"),
    types_pb2.DT_DOUBLE: (np.dtype("<f8"), "double_val"),
    types_pb2.DT_INT32: (np.dtype("<i4"), "int_val"),
    types_pb2.DT_INT64: (np.dtype("<i8"), "int64_val"),
    types_pb2.DT_BOOL: (np.dtype("?"), "bool_val"),
}
_FROM_NUMPY: dict[np.dtype, int] = {dt: code for code, (dt, _) in _TYPES.items()}


class TensorProtoError(ValueError):
    """A TensorProto that cannot be turned into an array (the message says why)."""


def dtype_name(dtype: int) -> str:
    """`DT_FLOAT` for types_pb2.DT_FLOAT, and so on; `DataType(<n>)` if unknown."""
    try:
        return types_pb2.DataType.Name(dtype)
    except ValueError:
        return f"DataType({dtype})"


def numpy_dtype(dtype: int) -> np.dtype:
    """The numpy dtype of a TensorFlow DataType (TensorProtoError if unsupported)."""
    try:
        return _TYPES[dtype][0]
    except KeyError:
        raise TensorProtoError(f"dtype {dtype_name(dtype)} is not supported") from None


def tf_dtype(dtype: np.dtype | type) -> int:
    """The TensorFlow DataType of a numpy dtype (TensorProtoError if unsupported)."""
    try:
        return _FROM_NUMPY[np.dtype(dtype)]
    except KeyError:
        raise TensorProtoError(f"numpy dtype {np.dtype(dtype)} is not supported") from None


def shape_proto(shape: tuple[int, ...] | list[int]) -> tensor_shape_pb2.TensorShapeProto:
    """A TensorShapeProto; -1 stands for an unknown dimension."""
    return tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(size)) for size in shape]
    )


def proto_shape(proto: TensorProto) -> tuple[int, ...]:
    """The dimensions of a TensorProto (as sent: may hold negative sizes)."""
    return tuple(dim.size for dim in proto.tensor_shape.dim)


def make_tensor_proto(array: np.ndarray, *, as_content: bool = True) -> TensorProto:
    """A TensorProto of `array`: raw little-endian `tensor_content` bytes by default
    (the compact form), or the typed repeated field (`float_val`, ...) with
    `as_content=False` (what TF Serving itself answers with)."""
    array = np.asarray(array)
    code = tf_dtype(array.dtype)
    proto = TensorProto(dtype=code, tensor_shape=shape_proto(array.shape))
    dtype, field = _TYPES[code]
    if as_content:
        proto.tensor_content = np.ascontiguousarray(array, dtype=dtype).tobytes()
    else:
        getattr(proto, field).extend(array.ravel().tolist())
    return proto


def make_ndarray(proto: TensorProto) -> np.ndarray:
    """The array a TensorProto holds, from `tensor_content` or the typed value field.

    Raises TensorProtoError for an unsupported dtype, an unknown rank or negative
    dimension, or a value count (or byte length) that does not match the shape. The
    array returned from `tensor_content` is read-only (it views the request's bytes).
    """
    dtype = numpy_dtype(proto.dtype)
    if proto.tensor_shape.unknown_rank:
        raise TensorProtoError("tensor_shape has an unknown rank")
    shape = proto_shape(proto)
    if any(size < 0 for size in shape):
        raise TensorProtoError(f"tensor_shape {list(shape)} has a negative dimension")
    count = math.prod(shape)
    if proto.tensor_content:
        content = proto.tensor_content
        if len(content) != count * dtype.itemsize:
            raise TensorProtoError(
                f"tensor_content holds {len(content)} bytes, but shape {list(shape)} of "
                f"{dtype_name(proto.dtype)} needs {count * dtype.itemsize}"
            )
        return np.frombuffer(content, dtype=dtype).reshape(shape)
    values = getattr(proto, _TYPES[proto.dtype][1])
    if len(values) != count:
        raise TensorProtoError(
            f"{_TYPES[proto.dtype][1]} holds {len(values)} values, but shape {list(shape)} "
            f"has {count} elements"
        )
    return np.array(values, dtype=dtype).reshape(shape)
