"""The committed trained model (models/lstm/<latest>/), served for real. Skipped until
training has committed a complete version. AIFX_TEST_MODEL_BASE_PATH points it at
another trained model folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from common.settings import REPO_ROOT
from inference.model_format import OUTPUT_NAME, ModelMetadata, complete_versions
from inference.tensor_proto import make_ndarray
from tests.model_server.conftest import direct, predict_request

MODELS = Path(os.environ.get("AIFX_TEST_MODEL_BASE_PATH", REPO_ROOT / "models" / "lstm"))


@pytest.mark.skipif(not complete_versions(MODELS), reason=f"no complete version in {MODELS}")
async def test_committed_model_is_served(serve):
    latest = complete_versions(MODELS)[-1]
    metadata = ModelMetadata.read(MODELS / str(latest))
    served = await serve(MODELS, poll_seconds=0)
    inputs = (
        np.random.default_rng(5)
        .standard_normal((4, metadata.lookback, len(metadata.feature_names)))
        .astype(np.float32)
    )
    response = await served.predict.Predict(predict_request(inputs, alias=metadata.input_name))
    assert response.model_spec.version.value == latest
    output = make_ndarray(response.outputs[metadata.output_name or OUTPUT_NAME])
    assert output.shape == (4, len(metadata.classes))
    np.testing.assert_array_equal(output, direct(MODELS / str(latest), inputs))
    assert np.isfinite(output).all()
