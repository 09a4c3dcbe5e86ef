"""Clients that go away while a signal is being sent to them must not take the server
down. Run as a script (a crash must fail a test, not kill pytest): serves SubscribeSignals
with the real server bootstrap in this process, and 200 times opens a stream, publishes
a few signals and cancels the stream at once. Exits 0 when the server survived."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import grpc

from aifx.signal.v1 import signal_pb2, signal_pb2_grpc
from common.server import ServiceSpec, start_server
from tests.servicer_parts import USER as TOKEN
from tests.signal_streams.helpers import MemoryReader, make_signal
from tests.signal_streams.test_stream_rpcs import servicers

ROUNDS = 200


async def main() -> int:
    from signal_svc.fanout import Broadcaster
    from tests.infra import make_settings

    settings = make_settings(Path(tempfile.mkdtemp()), log_level="WARNING")
    broadcaster, reader = Broadcaster(), MemoryReader()
    service, _ = servicers(broadcaster, reader, settings.streams.stream_heartbeat_seconds)
    spec = ServiceSpec(
        "cancel-test",
        lambda server: signal_pb2_grpc.add_SignalServiceServicer_to_server(service, server),
        ["aifx.signal.v1.SignalService"],
    )
    running = await start_server(spec, "127.0.0.1", 0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    stub = signal_pb2_grpc.SignalServiceStub(channel)
    for index in range(ROUNDS):
        call = stub.SubscribeSignals(signal_pb2.SubscribeSignalsRequest(), metadata=TOKEN)
        await call.read()
        broadcaster.publish(reader.store(make_signal(index)))
        await asyncio.sleep(0.002)
        call.cancel()
        for _ in range(3):
            broadcaster.publish(reader.store(make_signal(index)))
            await asyncio.sleep(0)
        await asyncio.sleep(0.002)
    await asyncio.sleep(0.2)
    await channel.close()
    await running.stop(0.1)
    print("server survived", ROUNDS, "cancelled streams")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
