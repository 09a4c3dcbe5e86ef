"""`aifx_signal_subscribers` counts the gRPC signal streams open now: up when a
SubscribeSignals or StreamAllSignals stream starts, down when the client hangs up."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import REGISTRY

from aifx.signal.v1 import signal_pb2
from tests.infra import eventually
from tests.servicer_parts import SERVICE
from tests.servicer_parts import USER as TOKEN
from tests.signal_streams.test_stream_rpcs import gone, hang_up, read, serving


def subscribers() -> float:
    return REGISTRY.get_sample_value("aifx_signal_subscribers") or 0.0


async def test_the_gauge_counts_open_streams(tmp_path: Path) -> None:
    before = subscribers()
    async with serving(tmp_path) as stack:
        public = stack.stub.SubscribeSignals(signal_pb2.SubscribeSignalsRequest(), metadata=TOKEN)
        internal = stack.internal.StreamAllSignals(
            signal_pb2.StreamAllSignalsRequest(), metadata=SERVICE
        )
        await read(public, 1)  # the heartbeat: the stream is in place
        await read(internal, 1)
        assert subscribers() == before + 2

        await hang_up(public)
        await gone(stack.broadcaster, 1)
        await eventually(lambda: subscribers() == before + 1, "one stream left")

        await hang_up(internal)
        await eventually(lambda: subscribers() == before, "no stream left")
