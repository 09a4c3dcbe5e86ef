"""One loaded model version: its onnxruntime session and its `serving_default`
signature (TF Serving vocabulary: a *servable*). Plain Python, no gRPC.

The signature is read from the ONNX graph: one input and one output alias per graph
input and output, with its dtype and shape (-1 for a dynamic dimension). When the graph
has one input (output) whose name differs from the `input_name` (`output_name`) recorded
in aifx_metadata.json, the recorded name is the alias clients use, so a converter's
naming (e.g. a `:0` suffix) never leaks into the protocol.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from inference.model_format import METADATA_FILE, ONNX_FILE, SIGNATURE

PREDICT_METHOD = "tensorflow/serving/predict"

# onnxruntime's tensor element types -> numpy dtypes the protocol can carry.
_ORT_TYPES: dict[str, np.dtype] = {
    "tensor(float)": np.dtype("<f4"),
    "tensor(double)": np.dtype("<f8"),
    "tensor(int32)": np.dtype("<i4"),
    "tensor(int64)": np.dtype("<i8"),
    "tensor(bool)": np.dtype("?"),
}


class LoadError(Exception):
    """A version folder that cannot be served (the message says why)."""


@dataclass(frozen=True)
class TensorSpec:
    """One signature input or output: the alias clients use, the graph's tensor name,
    dtype, and shape with -1 for a dimension of any size."""

    alias: str
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]

    def check(self, array: np.ndarray) -> str | None:
        """Why `array`'s shape does not fit this input, or None (dtypes are checked on
        the wire, before decoding)."""
        if array.ndim != len(self.shape):
            return (
                f"expected shape {_shape_text(self.shape)} (rank {len(self.shape)}), "
                f"got {list(array.shape)} (rank {array.ndim})"
            )
        for axis, (want, got) in enumerate(zip(self.shape, array.shape, strict=True)):
            if want >= 0 and want != got:
                return (
                    f"expected shape {_shape_text(self.shape)}, got {list(array.shape)}: "
                    f"dimension {axis} must be {want}"
                )
        if array.ndim and array.shape[0] == 0:
            return f"got {list(array.shape)}: the batch dimension must be at least 1"
        return None


def _shape_text(shape: tuple[int, ...]) -> str:
    return (
        "["
        + ", ".join("N" if axis == 0 and d < 0 else str(d) for axis, d in enumerate(shape))
        + "]"
    )


def _spec(alias: str, arg: ort.NodeArg) -> TensorSpec:
    if arg.type not in _ORT_TYPES:
        raise LoadError(f"tensor {arg.name} has unsupported type {arg.type}")
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in arg.shape)
    return TensorSpec(alias=alias, name=arg.name, dtype=_ORT_TYPES[arg.type], shape=shape)


def session_options(intra_op_threads: int, inter_op_threads: int) -> ort.SessionOptions:
    """Options for a small recurrent model on a small machine: sequential execution, few
    threads, no busy-waiting thread pools (spinning would steal the core that serves
    gRPC), full graph optimisation."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only
    return options


class Servable:
    """A loaded version. `run` is thread-safe (onnxruntime sessions are) and releases
    the GIL while the graph executes."""

    def __init__(
        self,
        model_name: str,
        version: int,
        path: Path,
        session: ort.InferenceSession,
        metadata: dict[str, object],
    ) -> None:
        self.model_name = model_name
        self.version = version
        self.path = path
        self.metadata = metadata
        self._session = session
        inputs, outputs = session.get_inputs(), session.get_outputs()
        input_alias = str(metadata.get("input_name") or "") if len(inputs) == 1 else ""
        output_alias = str(metadata.get("output_name") or "") if len(outputs) == 1 else ""
        self.inputs = {
            spec.alias: spec for spec in (_spec(input_alias or a.name, a) for a in inputs)
        }
        self.outputs = {
            spec.alias: spec for spec in (_spec(output_alias or a.name, a) for a in outputs)
        }
        self.signatures = {SIGNATURE: (self.inputs, self.outputs)}
        self._output_names = [spec.name for spec in self.outputs.values()]
        self._output_aliases = list(self.outputs)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output, by alias, for inputs by alias (already validated)."""
        feed = {self.inputs[alias].name: array for alias, array in inputs.items()}
        results = self._session.run(self._output_names, feed)
        return dict(zip(self._output_aliases, results, strict=True))

    def warm_up(self) -> None:
        """One run on zeros (batch 1), so the first real request does not pay for
        allocations and kernel selection."""
        feed = {
            alias: np.zeros(tuple(1 if d < 0 else d for d in spec.shape), spec.dtype)
            for alias, spec in self.inputs.items()
        }
        self.run(feed)


def load_servable(
    model_name: str,
    version: int,
    path: Path,
    options: ort.SessionOptions,
) -> Servable:
    """Load `path` (a complete version folder) into an onnxruntime session and warm it up.
    Raises LoadError if the folder cannot be served."""
    model_file = path / ONNX_FILE
    try:
        metadata = json.loads((path / METADATA_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise LoadError(f"{path / METADATA_FILE}: {exc}") from exc
    if not isinstance(metadata, dict):
        raise LoadError(f"{path / METADATA_FILE}: not a JSON object")
    if not model_file.is_file():
        raise LoadError(f"{model_file} is missing")
    try:
        session = ort.InferenceSession(
            str(model_file), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own exception types
        raise LoadError(f"{model_file}: {exc}") from exc
    servable = Servable(model_name, version, path, session, metadata)
    try:
        servable.warm_up()
    except Exception as exc:
        raise LoadError(f"{model_file}: warm-up run failed: {exc}") from exc
    return servable
