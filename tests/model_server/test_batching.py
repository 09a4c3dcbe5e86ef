"""Server-side batching: concurrent callers merged into shared onnxruntime runs, each
getting exactly its own rows back."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from inference.model_format import OUTPUT_NAME
from inference.model_server.batching import Batcher
from inference.model_server.config import BatchingConfig
from inference.tensor_proto import make_ndarray
from tests.model_server.conftest import candles, direct, predict_request


async def test_64_concurrent_callers_each_get_their_own_rows(serve, base_path):
    batching = BatchingConfig(
        enabled=True, max_batch_size=64, batch_timeout_micros=20_000, num_batch_threads=2
    )
    served = await serve(base_path, batching=batching)
    # Callers send 1, 2 or 3 rows each, all distinct, so a mix-up cannot go unnoticed.
    inputs = [candles(1 + i % 3, seed=100 + i) for i in range(64)]
    responses = await asyncio.gather(*(served.predict.Predict(predict_request(x)) for x in inputs))
    session_reference = [direct(base_path / "2", x) for x in inputs]
    outputs = [make_ndarray(r.outputs[OUTPUT_NAME]) for r in responses]
    for x, output, expected in zip(inputs, outputs, session_reference, strict=True):
        assert output.shape == (x.shape[0], 3)
        # A row's result does not depend on its neighbours in the batch; allow for a
        # different kernel path at another batch size all the same.
        np.testing.assert_allclose(output, expected, rtol=1e-6, atol=1e-7)
    rows = np.concatenate(outputs)
    assert len({row.tobytes() for row in rows}) == len(rows)  # distinct inputs, distinct rows
    stats = served.core.batcher.stats
    assert stats.rows == sum(x.shape[0] for x in inputs)
    assert stats.runs < 64  # merged
    assert 1 < stats.largest <= 64


async def test_batching_off_runs_each_request_alone(serve, base_path):
    served = await serve(base_path)
    assert served.core.batcher is None
    inputs = [candles(1, seed=i) for i in range(8)]
    responses = await asyncio.gather(*(served.predict.Predict(predict_request(x)) for x in inputs))
    for x, response in zip(inputs, responses, strict=True):
        np.testing.assert_array_equal(
            make_ndarray(response.outputs[OUTPUT_NAME]), direct(base_path / "2", x)
        )


class _Recorder:
    """A stand-in servable that records the batch sizes it runs."""

    def __init__(self) -> None:
        self.runs: list[int] = []

    def run(self, inputs):
        x = inputs["x"]
        self.runs.append(x.shape[0])
        return {"y": x * 2}


@pytest.fixture
async def pool():
    executor = ThreadPoolExecutor(max_workers=1)
    yield executor
    executor.shutdown()


async def test_batch_is_dispatched_when_full_or_on_timeout(pool):
    batcher = Batcher(pool, max_batch_size=4, batch_timeout_micros=200_000, num_batch_threads=1)
    batcher.start()
    servable = _Recorder()
    try:
        xs = [np.full((1, 2), i, np.float32) for i in range(4)]
        started = asyncio.get_running_loop().time()
        results = await asyncio.gather(*(batcher.run(servable, {"x": x}) for x in xs))
        assert asyncio.get_running_loop().time() - started < 0.15  # full: no timeout wait
        assert servable.runs == [4]
        for x, result in zip(xs, results, strict=True):
            np.testing.assert_array_equal(result["y"], x * 2)

        started = asyncio.get_running_loop().time()
        await batcher.run(servable, {"x": xs[0]})  # alone: waits for the timeout
        assert asyncio.get_running_loop().time() - started >= 0.19
        assert servable.runs == [4, 1]
    finally:
        await batcher.close()


async def test_oversized_request_runs_alone_and_others_are_not_mixed_in(pool):
    batcher = Batcher(pool, max_batch_size=4, batch_timeout_micros=0, num_batch_threads=1)
    batcher.start()
    servable = _Recorder()
    try:
        big = np.arange(12, dtype=np.float32).reshape(6, 2)
        small = np.ones((1, 2), np.float32)
        other_shape = np.ones((1, 3), np.float32)
        big_out, small_out, other_out = await asyncio.gather(
            batcher.run(servable, {"x": big}),
            batcher.run(servable, {"x": small}),
            batcher.run(servable, {"x": other_shape}),
        )
        np.testing.assert_array_equal(big_out["y"], big * 2)
        np.testing.assert_array_equal(small_out["y"], small * 2)
        np.testing.assert_array_equal(other_out["y"], other_shape * 2)
        assert sorted(servable.runs) == [1, 1, 6]
    finally:
        await batcher.close()


async def test_cancelled_caller_is_skipped(pool):
    batcher = Batcher(pool, max_batch_size=8, batch_timeout_micros=50_000, num_batch_threads=1)
    batcher.start()
    servable = _Recorder()
    try:
        gone = asyncio.create_task(batcher.run(servable, {"x": np.ones((3, 2), np.float32)}))
        await asyncio.sleep(0)
        gone.cancel()
        kept = await batcher.run(servable, {"x": np.zeros((1, 2), np.float32)})
        assert kept["y"].shape == (1, 2)
        assert servable.runs == [1]
    finally:
        await batcher.close()
