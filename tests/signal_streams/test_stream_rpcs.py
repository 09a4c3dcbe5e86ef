"""SubscribeSignals and StreamAllSignals through the real servicers on a real grpc.aio
server (the server bootstrap with its interceptor), with a fixed-token gate."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from aifx.common.v1 import market_pb2
from aifx.signal.v1 import signal_pb2, signal_pb2_grpc
from common.market import Timeframe
from common.server import ServiceSpec, start_server
from common.settings import REPO_ROOT
from signal_svc.convert import ResponseCache, signal_message
from signal_svc.fanout import Broadcaster
from signal_svc.market_rpcs import MarketRpcs
from signal_svc.service import SignalInternalService, SignalService
from signal_svc.signal_rpcs import SignalRpcs
from signal_svc.signals import Action, Signal
from signal_svc.stream_rpcs import FilterPool, StreamRpcs, subscribe_request
from tests.infra import eventually, make_settings
from tests.servicer_parts import SERVICE, FixedGate, not_exercised
from tests.servicer_parts import USER as TOKEN
from tests.signal_streams.helpers import MemoryReader, make_signal

# Enough to fill a non-reading client's 64 kB window and transport buffers, then its
# buffer of 8.
SLOW_TEST_SIGNALS = 1000


def servicers(
    broadcaster: Broadcaster, reader: MemoryReader, heartbeat_seconds: float
) -> tuple[SignalService, SignalInternalService]:
    """The real servicers, with real stream handlers over `reader` and `broadcaster`."""
    gate = FixedGate()
    streams = StreamRpcs(broadcaster, reader, ResponseCache(), heartbeat_seconds=heartbeat_seconds)
    market = not_exercised(MarketRpcs)
    public = SignalService(gate, market, not_exercised(SignalRpcs), streams)
    return public, SignalInternalService(gate, market, streams)


@dataclass
class Stack:
    broadcaster: Broadcaster
    reader: MemoryReader
    address: str
    stub: signal_pb2_grpc.SignalServiceStub
    internal: signal_pb2_grpc.SignalInternalServiceStub

    async def produce(self, index: int, **fields: object) -> Signal:
        """Store, then publish: what the scheduler does."""
        stored = self.reader.store(make_signal(index, **fields))  # type: ignore[arg-type]
        self.broadcaster.publish(stored)
        return stored

    def channel(self, **options: object) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(self.address, options=list(options.items()))


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, **overrides: object) -> AsyncIterator[Stack]:
    settings = make_settings(tmp_path, **{"stream_heartbeat_seconds": 5.0, **overrides})
    broadcaster = Broadcaster(settings.streams.subscriber_buffer)
    reader = MemoryReader()
    public, internal = servicers(broadcaster, reader, settings.streams.stream_heartbeat_seconds)

    def register(server: grpc.aio.Server) -> None:
        signal_pb2_grpc.add_SignalServiceServicer_to_server(public, server)
        signal_pb2_grpc.add_SignalInternalServiceServicer_to_server(internal, server)

    names = [s.full_name for s in signal_pb2.DESCRIPTOR.services_by_name.values()]
    running = await start_server(ServiceSpec("streams-test", register, names), "127.0.0.1", 0)
    address = f"127.0.0.1:{running.port}"
    channel = grpc.aio.insecure_channel(address)
    try:
        yield Stack(
            broadcaster,
            reader,
            address,
            signal_pb2_grpc.SignalServiceStub(channel),
            signal_pb2_grpc.SignalInternalServiceStub(channel),
        )
    finally:
        broadcaster.close()
        await channel.close()
        await running.stop(grace=0.2)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with serving(tmp_path) as running:
        yield running


async def read(call, count: int, within: float = 5.0) -> list:  # type: ignore[no-untyped-def]
    messages = []
    async with asyncio.timeout(within):
        while len(messages) < count:
            message = await call.read()
            assert message is not grpc.aio.EOF
            messages.append(message)
    return messages


async def hang_up(*calls) -> None:  # type: ignore[no-untyped-def]
    """Cancel streams (also while a message is being sent to them: see the last test of
    this module)."""
    for call in calls:
        call.cancel()


async def gone(broadcaster: Broadcaster, remaining: int = 0) -> None:
    await eventually(
        lambda: len(broadcaster) <= remaining, f"{remaining} subscribers left", within=5
    )


def kinds(messages: list) -> str:  # type: ignore[type-arg]
    return "".join(m.WhichOneof("event")[0].upper() for m in messages)


def signal_ids(messages: list) -> list[int]:  # type: ignore[type-arg]
    return [int(m.signal.id) for m in messages if m.WhichOneof("event") == "signal"]


async def read_to_end(call, got: list[int] | None = None) -> None:  # type: ignore[no-untyped-def]
    """Read until the stream ends, noting the signal ids in `got`."""
    async with asyncio.timeout(10):
        while (message := await call.read()) is not grpc.aio.EOF:
            if got is not None:
                got += signal_ids([message])


async def status_of(call) -> grpc.aio.AioRpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await read_to_end(call)
    return caught.value


def violations(error: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)
    assert status is not None
    fields = []
    for packed in status.details:
        if packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            packed.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
    return fields


async def test_subscribe_delivers_matching_signals_live_in_wire_form(stack: Stack) -> None:
    call = stack.stub.SubscribeSignals(
        signal_pb2.SubscribeSignalsRequest(
            pairs=["eurusd"], timeframes=[market_pb2.TIMEFRAME_H1], min_confidence=0.6
        ),
        metadata=TOKEN,
    )
    assert kinds(await read(call, 1)) == "H"  # registered: live from here
    wanted = await stack.produce(1)
    await stack.produce(2, pair="GBP/USD")
    await stack.produce(3, timeframe=Timeframe.H4)
    await stack.produce(4, confidence=0.55)
    hold = await stack.produce(5, action=Action.HOLD)
    messages = await read(call, 2)
    assert [m.signal for m in messages] == [signal_message(wanted), signal_message(hold)]
    assert not messages[1].signal.HasField("stop_loss")
    await hang_up(call)


async def test_many_subscribers_over_grpc_each_get_every_signal_in_order(stack: Stack) -> None:
    calls = [
        stack.stub.SubscribeSignals(signal_pb2.SubscribeSignalsRequest(), metadata=TOKEN)
        for _ in range(50)
    ]
    for call in calls:
        await read(call, 1)
    assert len(stack.broadcaster) == 50
    produced = [(await stack.produce(index)).id for index in range(20)]
    for call in calls:
        assert signal_ids(await read(call, 20)) == produced
    await hang_up(*calls)
    await gone(stack.broadcaster)  # cancelled streams unsubscribe


async def test_resume_across_a_disconnect_over_grpc(stack: Stack) -> None:
    call = stack.stub.SubscribeSignals(signal_pb2.SubscribeSignalsRequest(), metadata=TOKEN)
    await read(call, 1)
    for index in range(3):
        await stack.produce(index)
    received = signal_ids(await read(call, 2))
    await hang_up(call)  # gone with the third unread
    await gone(stack.broadcaster)
    for index in range(3, 6):
        await stack.produce(index)
    resumed = stack.stub.SubscribeSignals(
        signal_pb2.SubscribeSignalsRequest(resume_after_id=str(received[-1])), metadata=TOKEN
    )
    messages = await read(resumed, 5)
    assert kinds(messages) == "SSSSH" and signal_ids(messages) == [3, 4, 5, 6]
    live = await stack.produce(6)
    assert signal_ids(await read(resumed, 1)) == [live.id]
    await hang_up(resumed)


async def test_heartbeats_keep_an_idle_stream_alive(tmp_path: Path) -> None:
    async with serving(tmp_path, stream_heartbeat_seconds=0.1) as stack:
        call = stack.stub.SubscribeSignals(signal_pb2.SubscribeSignalsRequest(), metadata=TOKEN)
        messages = await read(call, 4, within=3)
        assert kinds(messages) == "HHHH"
        assert all(m.heartbeat.time.seconds > 0 for m in messages)
        await hang_up(call)


async def test_a_subscriber_that_stops_reading_is_cut_off_and_the_others_are_not(
    tmp_path: Path,
) -> None:
    """A client that stops reading (flow-control window of 64 kB: no BDP probing) fills
    its transport, then its buffer of 8; it is disconnected with RESOURCE_EXHAUSTED
    telling the id to resume after, which is the last one it received. The three
    others receive all 1,000 signals, in order."""
    async with serving(tmp_path, subscriber_buffer=8) as stack:
        stuck_channel = stack.channel(**{"grpc.http2.bdp_probe": 0})
        stuck = signal_pb2_grpc.SignalServiceStub(stuck_channel).SubscribeSignals(
            signal_pb2.SubscribeSignalsRequest(), metadata=TOKEN
        )
        await read(stuck, 1)
        healthy = [
            stack.stub.SubscribeSignals(signal_pb2.SubscribeSignalsRequest(), metadata=TOKEN)
            for _ in range(3)
        ]
        for call in healthy:
            await read(call, 1)

        received = [0] * len(healthy)

        async def drain(slot: int, call) -> list[int]:  # type: ignore[no-untyped-def]
            got = []
            async with asyncio.timeout(20):
                while len(got) < SLOW_TEST_SIGNALS:
                    got += signal_ids([await call.read()])
                    received[slot] = len(got)
            return got

        readers = [asyncio.create_task(drain(i, call)) for i, call in enumerate(healthy)]
        for index in range(SLOW_TEST_SIGNALS):
            # The healthy clients read promptly: never more than 4 signals behind.
            await eventually(
                lambda index=index: min(received) >= index - 4,
                f"the healthy clients to read signal {index - 4}",
                within=20,  # the readers' own budget for all of them
                interval=0.0005,
            )
            await stack.produce(index)
        results = await asyncio.gather(*readers)
        assert all(got == list(range(1, SLOW_TEST_SIGNALS + 1)) for got in results)
        assert stack.broadcaster.disconnected == 1 and len(stack.broadcaster) == 3

        # The stuck client finally reads: what its transport held, then the status.
        got: list[int] = []
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await read_to_end(stuck, got)
        error = caught.value
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert got == list(range(1, len(got) + 1)) and 0 < len(got) < SLOW_TEST_SIGNALS
        named = re.search(r"resume_after_id=(\d+)", error.details() or "")
        assert named is not None and int(named.group(1)) == got[-1], error.details()

        resumed = stack.stub.SubscribeSignals(
            signal_pb2.SubscribeSignalsRequest(resume_after_id=named.group(1)), metadata=TOKEN
        )
        rest = await read(resumed, SLOW_TEST_SIGNALS - len(got) + 1)
        assert signal_ids(rest) == list(range(len(got) + 1, SLOW_TEST_SIGNALS + 1))
        await hang_up(resumed, *healthy)
        await stuck_channel.close()


def test_subscriptions_asking_the_same_share_one_filter() -> None:
    """A server holds one filter per distinct subscription, not one per stream."""
    pool = FilterPool()
    first, _ = subscribe_request(signal_pb2.SubscribeSignalsRequest(pairs=["EUR/USD"]))
    second, _ = subscribe_request(signal_pb2.SubscribeSignalsRequest(pairs=["eurusd"]))
    other, _ = subscribe_request(signal_pb2.SubscribeSignalsRequest(pairs=["GBP/USD"]))
    assert first is not second and first == second
    assert pool.shared(first) is pool.shared(second) is first
    assert pool.shared(other) is other != first


async def test_bad_filters_name_every_field(stack: Stack) -> None:
    call = stack.stub.SubscribeSignals(
        signal_pb2.SubscribeSignalsRequest(
            pairs=["EUR/USD", "XXXYYY", "banana"],
            timeframes=[market_pb2.TIMEFRAME_H4, market_pb2.TIMEFRAME_UNSPECIFIED],
            min_confidence=1.5,
            resume_after_id="abc",
        ),
        metadata=TOKEN,
    )
    error = await status_of(call)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(error) == [
        "pairs[1]",
        "pairs[2]",
        "timeframes[1]",
        "min_confidence",
        "resume_after_id",
    ]
    assert len(stack.broadcaster) == 0


@pytest.mark.parametrize("resume_after_id", ["999", "0", "-3", "2.5", " 12345678901234567890"])
async def test_an_id_the_server_never_issued_is_invalid(stack: Stack, resume_after_id) -> None:
    await stack.produce(1)
    for call in (
        stack.stub.SubscribeSignals(
            signal_pb2.SubscribeSignalsRequest(resume_after_id=resume_after_id), metadata=TOKEN
        ),
        stack.internal.StreamAllSignals(
            signal_pb2.StreamAllSignalsRequest(resume_after_id=resume_after_id),
            metadata=SERVICE,
        ),
    ):
        error = await status_of(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violations(error) == ["resume_after_id"]


async def test_a_token_is_required(stack: Stack) -> None:
    for metadata in ((), (("authorization", "Bearer forged"),)):
        call = stack.stub.SubscribeSignals(signal_pb2.SubscribeSignalsRequest(), metadata=metadata)
        assert (await status_of(call)).code() == grpc.StatusCode.UNAUTHENTICATED
    assert len(stack.broadcaster) == 0


async def test_stream_all_signals_needs_the_service_credential(stack: Stack) -> None:
    for metadata in ((), TOKEN):
        call = stack.internal.StreamAllSignals(
            signal_pb2.StreamAllSignalsRequest(), metadata=metadata
        )
        assert (await status_of(call)).code() == grpc.StatusCode.UNAUTHENTICATED

    first = await stack.produce(1)
    call = stack.internal.StreamAllSignals(
        signal_pb2.StreamAllSignalsRequest(resume_after_id=str(first.id)), metadata=SERVICE
    )
    missed = await stack.produce(2, pair="USD/JPY", timeframe=Timeframe.D1, confidence=0.1)
    messages = await read(call, 2)
    assert kinds(messages) == "SH" and messages[0].signal == signal_message(missed)
    live = await stack.produce(3, action=Action.SELL, timeframe=Timeframe.M15)
    assert signal_ids(await read(call, 1)) == [live.id]
    await hang_up(call)


async def test_shutdown_ends_streams_with_unavailable(stack: Stack) -> None:
    call = stack.stub.SubscribeSignals(signal_pb2.SubscribeSignalsRequest(), metadata=TOKEN)
    await read(call, 1)
    stack.broadcaster.close()
    error = await status_of(call)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "resume_after_id" in (error.details() or "")


def test_clients_leaving_while_a_signal_is_sent_do_not_crash_the_server() -> None:
    """A client cancelling its stream while a signal is on its way to it (every closed
    browser tab, eventually) must not take signal_svc down. The server bootstrap's
    interceptor used to read `context.peer()` after such an RPC had ended (a segfault in
    grpc's Cython layer) and to treat the closed response generator as an unhandled
    error. Run in a subprocess, so a crash fails this test instead of killing pytest."""
    script = Path(__file__).with_name("cancel_during_send.py")
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "AIFX_LOG_LEVEL": "WARNING"},
        check=False,
    )
    assert done.returncode == 0, f"server died ({done.returncode}):\n{done.stderr[-3000:]}"
    assert "unhandled error" not in done.stdout + done.stderr
