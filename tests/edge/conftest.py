"""Fixtures of the edge's tests: the inference service (the model page) as
tests/inference starts it."""

from tests.inference.conftest import (  # noqa: F401 (fixtures for this directory)
    inference,
    model_config_file,
    model_server,
    served_version_dir,
)
