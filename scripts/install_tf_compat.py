"""Bring the TensorFlow protobuf modules in this virtualenv to the layout the official
`tensorflow_serving.apis` 2.21 stubs import, without installing TensorFlow.

tensorflow-serving-api 2.21 needs TensorFlow's generated protobuf modules; the runtime
gets them from tensorflow-protobuf 2.11 (TensorFlow itself is 1.3 GB and must not be a
runtime dependency). Everything PredictionService needs matches, but the error-code enum
behind ModelService.GetModelStatus moved between those versions: 2.21's stubs expect
`tensorflow/core/protobuf/error_codes` to re-export `xla/tsl/protobuf/error_codes`,
while 2.11's imports a `tensorflow.tsl` module it does not even ship. This compiles
AIFX's two-file declaration of that enum (scripts/tf_compat/, 2.21 layout) into
site-packages, replacing tensorflow-protobuf's broken `error_codes_pb2.py`. Run by
`make setup`; idempotent.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

from grpc_tools import protoc

COMPAT = Path(__file__).resolve().parent / "tf_compat"
PROTOS = ["xla/tsl/protobuf/error_codes.proto", "tensorflow/core/protobuf/error_codes.proto"]


def main() -> None:
    site = Path(sysconfig.get_paths()["purelib"])
    if not (site / "tensorflow" / "core").is_dir():
        raise SystemExit("tensorflow-protobuf is not installed in this environment")
    well_known = Path(protoc.__file__).resolve().parent / "_proto"
    args = ["protoc", f"-I{COMPAT}", f"-I{well_known}", f"--python_out={site}", *PROTOS]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {PROTOS}")
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    assert model_service_pb2_grpc and prediction_service_pb2_grpc
    print(f"tensorflow_serving stubs import cleanly (compat modules in {site})")


if __name__ == "__main__":
    main()
