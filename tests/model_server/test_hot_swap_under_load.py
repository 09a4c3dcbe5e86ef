"""A model version hot-swapped while Predict runs flat out: a new version appears under
the base path, then is removed again, while eight callers send Predict back to back.
Not one prediction may fail, and every answer must be the exact output of the version
it names — no half-loaded or already-unloaded session ever answers."""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter

import numpy as np

from inference.model_format import OUTPUT_NAME
from inference.tensor_proto import make_ndarray
from tests.infra import eventually
from tests.model_server.conftest import candles, direct, predict_request
from tests.model_server.onnx_models import write_version

CALLERS = 8


async def test_versions_swapped_under_flat_out_predict_fail_no_prediction(serve, base_path):
    served = await serve(base_path)
    inputs = candles(3, seed=11)
    request = predict_request(inputs)
    answered: Counter[int] = Counter()
    failures: list[BaseException] = []
    mismatched: list[int] = []
    running = True

    async def caller() -> None:
        while running:
            try:
                response = await served.predict.Predict(request)
            except Exception as error:  # every failure is the finding
                failures.append(error)
                continue
            version = response.model_spec.version.value
            answered[version] += 1
            output = make_ndarray(response.outputs[OUTPUT_NAME])
            if not np.array_equal(output, expected[version]):
                mismatched.append(version)

    expected = {2: direct(base_path / "2", inputs)}
    write_version(base_path, 3, complete=False)  # staged; a version only once complete
    callers = [asyncio.create_task(caller()) for _ in range(CALLERS)]
    try:
        await eventually(lambda: answered[2] >= 50, "predictions from version 2")
        write_version(base_path, 3)
        expected[3] = direct(base_path / "3", inputs)
        await eventually(lambda: answered[3] >= 50, "version 3 to serve under load")
        serving_3 = answered[2]
        shutil.rmtree(base_path / "3")
        await eventually(lambda: answered[2] >= serving_3 + 50, "version 2 to serve again")
    finally:
        running = False
        await asyncio.gather(*callers)

    assert failures == [], failures[:3]
    assert mismatched == []
    assert await served.states() == {2: "AVAILABLE", 3: "END"}
    print(f"predictions: {dict(answered)}, failed: 0")
