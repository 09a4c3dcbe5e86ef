"""Which version answers: newest by default, a specific version or a label on request;
versions appearing and disappearing under the base path without a restart; and what
GetModelStatus reports meanwhile."""

from __future__ import annotations

import shutil

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import get_model_status_pb2

from inference.model_format import OUTPUT_NAME
from inference.model_server.config import VersionPolicy
from inference.tensor_proto import make_ndarray
from tests.infra import eventually
from tests.model_server.conftest import candles, direct, model_spec, predict_request
from tests.model_server.onnx_models import write_version

State = get_model_status_pb2.ModelVersionStatus.State


async def _answer(served, **choice) -> tuple[int, np.ndarray]:
    inputs = candles(3, seed=11)
    response = await served.predict.Predict(predict_request(inputs, **choice))
    return response.model_spec.version.value, make_ndarray(response.outputs[OUTPUT_NAME])


async def _status(served, **choice) -> get_model_status_pb2.GetModelStatusResponse:
    return await served.models.GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec=model_spec(**choice))
    )


async def test_default_policy_serves_only_the_newest_version(serve, base_path):
    served = await serve(base_path)
    version, output = await _answer(served)
    assert version == 2
    np.testing.assert_array_equal(output, direct(base_path / "2", candles(3, seed=11)))
    assert await served.states() == {2: "AVAILABLE"}  # 1 was never aspired
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _answer(served, version=1)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_specific_version_and_labels(serve, base_path):
    served = await serve(base_path, policy=VersionPolicy("all"), labels={"stable": 1, "canary": 2})
    inputs = candles(3, seed=11)
    expected = {v: direct(base_path / str(v), inputs) for v in (1, 2)}
    assert not np.array_equal(expected[1], expected[2])

    for choice, version in [
        ({}, 2),
        ({"version": 1}, 1),
        ({"version": 2}, 2),
        ({"label": "stable"}, 1),
        ({"label": "canary"}, 2),
    ]:
        answered, output = await _answer(served, **choice)
        assert answered == version, choice
        np.testing.assert_array_equal(output, expected[version])
    assert await served.states() == {1: "AVAILABLE", 2: "AVAILABLE"}


async def test_label_pointing_at_an_unloaded_version_is_not_found(serve, base_path):
    served = await serve(base_path, labels={"stable": 1})  # latest policy: 1 not loaded
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _answer(served, label="stable")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "Specific(lstm, 1)" in caught.value.details()


async def test_latest_n_and_specific_policies(serve, base_path):
    write_version(base_path, 3)
    served = await serve(base_path, policy=VersionPolicy.parse("latest:2"))
    assert await served.states() == {2: "AVAILABLE", 3: "AVAILABLE"}
    served = await serve(base_path, policy=VersionPolicy.parse("specific:1,3"))
    assert await served.states() == {1: "AVAILABLE", 3: "AVAILABLE"}
    assert (await _answer(served))[0] == 3


async def test_new_version_is_loaded_without_restart_and_removed_one_unloaded(serve, base_path):
    served = await serve(base_path)
    assert (await _answer(served))[0] == 2

    # Training writes model.onnx first and aifx_metadata.json last: an incomplete
    # folder is not a version yet.
    write_version(base_path, 3, complete=False)
    await served.core.poll()
    assert (await _answer(served))[0] == 2

    write_version(base_path, 3)

    async def serving_3() -> bool:
        return (await _answer(served))[0] == 3

    await eventually(serving_3, "version 3 to serve")
    _, output = await _answer(served)
    np.testing.assert_array_equal(output, direct(base_path / "3", candles(3, seed=11)))
    assert await served.states() == {2: "END", 3: "AVAILABLE"}

    shutil.rmtree(base_path / "3")

    async def back_to_2() -> bool:
        return (await served.states()).get(3) == "END" and (await _answer(served))[0] == 2

    await eventually(back_to_2, "version 2 to serve again")
    assert await served.states() == {2: "AVAILABLE", 3: "END"}


async def test_broken_new_version_keeps_the_old_one_serving(serve, base_path):
    served = await serve(base_path)
    broken = base_path / "3"
    broken.mkdir()
    (broken / "model.onnx").write_bytes(b"not an onnx model")
    (broken / "aifx_metadata.json").write_text("{}")

    async def failed() -> bool:
        return (await served.states()).get(3) == "END"

    await eventually(failed, "the broken version to be reported failed")
    assert (await _answer(served))[0] == 2
    response = await _status(served, version=3)
    [status] = response.model_version_status
    assert status.state == State.Value("END")
    assert status.status.error_code != 0
    assert "model.onnx" in status.status.error_message
    ok = (await _status(served, version=2)).model_version_status[0]
    assert ok.state == State.Value("AVAILABLE")
    assert ok.status.error_code == 0 and ok.status.error_message == ""


async def test_every_version_removed_unloads_the_model(serve, base_path):
    served = await serve(base_path)
    shutil.rmtree(base_path / "1")
    shutil.rmtree(base_path / "2")

    async def unloaded() -> bool:
        return await served.states() == {2: "END"}

    await eventually(unloaded, "the version to be unloaded")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _answer(served)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "Latest(lstm)" in caught.value.details()


async def test_server_starts_on_an_empty_base_path_and_picks_up_the_first_version(serve, tmp_path):
    base_path = tmp_path / "models" / "lstm"
    served = await serve(base_path)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _status(served)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "Could not find any versions of model lstm" in caught.value.details()
    write_version(base_path, 1)

    async def available() -> bool:
        try:
            return await served.states() == {1: "AVAILABLE"}
        except grpc.aio.AioRpcError:
            return False

    await eventually(available, "the version to become available")
    assert (await _answer(served))[0] == 1


async def test_get_model_status_by_version_and_label_and_errors(serve, base_path):
    served = await serve(base_path, policy=VersionPolicy("all"), labels={"stable": 1})
    [one] = (await _status(served, version=1)).model_version_status
    assert (one.version, one.state) == (1, State.Value("AVAILABLE"))
    [labelled] = (await _status(served, label="stable")).model_version_status
    assert labelled.version == 1
    for choice, code, text in [
        ({"version": 7}, grpc.StatusCode.NOT_FOUND, "Could not find version 7 of model lstm"),
        ({"name": "gru"}, grpc.StatusCode.NOT_FOUND, "'gru' is not served"),
        ({"label": "nope"}, grpc.StatusCode.INVALID_ARGUMENT, "Unrecognized servable version"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _status(served, **choice)
        assert caught.value.code() == code
        assert text in caught.value.details()
