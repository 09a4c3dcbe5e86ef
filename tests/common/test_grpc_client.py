"""common.grpc_client against real grpc.aio servers under the AIFX bootstrap: what every
call carries (service credential, the request id of the RPC being served), waiting for
a dependency that is still starting, and failures as domain errors with their details."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import pytest

from aifx.signal.v1 import signal_pb2, signal_pb2_grpc
from common.errors import (
    DomainError,
    FieldViolation,
    InvalidArgument,
    NotFound,
    RateLimited,
    Unavailable,
)
from common.grpc_client import GrpcClient
from common.grpc_metadata import SERVICE_TOKEN_HEADER, metadata_value
from common.server import RunningServer, ServiceSpec, start_server
from tests.infra import free_port

CREDENTIAL = "client-test-credential"
NAMES = [signal_pb2.DESCRIPTOR.services_by_name["SignalInternalService"].full_name]


class Recorder(signal_pb2_grpc.SignalInternalServiceServicer):
    """Answers GetPriceInternal and StreamPricesInternal, recording what each call
    carried; `fail` makes the next calls raise that domain error (the bootstrap's
    interceptor turns it into a rich status)."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        self.fail: DomainError | None = None

    def _record(self, context: grpc.aio.ServicerContext) -> None:
        self.seen.append(
            {
                "credential": metadata_value(context, SERVICE_TOKEN_HEADER),
                "request_id": metadata_value(context, "x-request-id"),
            }
        )
        if self.fail is not None:
            raise self.fail

    async def GetPriceInternal(self, request, context):  # noqa: N802
        self._record(context)
        return signal_pb2.GetPriceInternalResponse(
            price=signal_pb2.Price(pair=request.pair, price=1.0845)
        )

    async def StreamPricesInternal(self, request, context):  # noqa: N802
        self._record(context)
        for price in (1.1, 1.2):
            yield signal_pb2.StreamPricesInternalResponse(
                update=signal_pb2.PriceUpdate(price=signal_pb2.Price(pair="EUR/USD", price=price))
            )


async def serve(servicer: signal_pb2_grpc.SignalInternalServiceServicer, port: int = 0):
    def register(server: grpc.aio.Server) -> None:
        signal_pb2_grpc.add_SignalInternalServiceServicer_to_server(servicer, server)

    return await start_server(ServiceSpec("client-test", register, NAMES), "127.0.0.1", port)


@asynccontextmanager
async def serving(servicer) -> AsyncIterator[RunningServer]:  # type: ignore[no-untyped-def]
    running = await serve(servicer)
    try:
        yield running
    finally:
        await running.stop(grace=0.1)


@asynccontextmanager
async def client_of(port: int, **options: object) -> AsyncIterator[GrpcClient]:
    client = GrpcClient("signal_svc", f"127.0.0.1:{port}", **options)  # type: ignore[arg-type]
    try:
        yield client
    finally:
        await client.close()


def stub(client: GrpcClient) -> signal_pb2_grpc.SignalInternalServiceStub:
    return client.stub(signal_pb2_grpc.SignalInternalServiceStub)


REQUEST = signal_pb2.GetPriceInternalRequest(pair="EUR/USD")


async def test_unary_and_streaming_calls_carry_the_service_credential() -> None:
    recorder = Recorder()
    async with (
        serving(recorder) as running,
        client_of(running.port, service_token=CREDENTIAL) as client,
    ):
        reply = await client.unary(stub(client).GetPriceInternal, REQUEST)
        updates = [
            message.update.price.price
            async for message in client.stream(
                stub(client).StreamPricesInternal, signal_pb2.StreamPricesInternalRequest()
            )
        ]
    assert reply.price.price == 1.0845 and updates == [1.1, 1.2]
    assert [seen["credential"] for seen in recorder.seen] == [CREDENTIAL, CREDENTIAL]
    # Outside any RPC there is no request id to pass on: the callee makes its own.
    assert [seen["request_id"] for seen in recorder.seen] == ["", ""]


async def test_without_a_credential_none_is_sent() -> None:
    recorder = Recorder()
    async with serving(recorder) as running, client_of(running.port) as client:
        await client.unary(stub(client).GetPriceInternal, REQUEST)
    assert recorder.seen[0]["credential"] == ""


class Front(signal_pb2_grpc.SignalInternalServiceServicer):
    """A service whose RPC calls another one through the client helper."""

    def __init__(self, back: GrpcClient) -> None:
        self._back = back

    async def GetPriceInternal(self, request, context):  # noqa: N802
        return await self._back.unary(stub(self._back).GetPriceInternal, request)

    async def StreamPricesInternal(self, request, context):  # noqa: N802
        async for message in self._back.stream(stub(self._back).StreamPricesInternal, request):
            yield message


async def test_the_request_id_of_the_rpc_being_served_travels_on() -> None:
    recorder = Recorder()
    async with (
        serving(recorder) as back,
        client_of(back.port) as to_back,
        serving(Front(to_back)) as front,
    ):
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{front.port}")
        front_stub = signal_pb2_grpc.SignalInternalServiceStub(channel)
        try:
            await front_stub.GetPriceInternal(REQUEST, metadata=(("x-request-id", "req-42"),))
            call = front_stub.StreamPricesInternal(
                signal_pb2.StreamPricesInternalRequest(), metadata=(("x-request-id", "req-43"),)
            )
            assert len([message async for message in call]) == 2
            # No id from the client: the front makes one, and the back sees that one.
            unnamed = front_stub.GetPriceInternal(REQUEST)
            await unnamed
            made = dict(await unnamed.trailing_metadata())["x-request-id"]
        finally:
            await channel.close()
    assert [seen["request_id"] for seen in recorder.seen] == ["req-42", "req-43", made]
    assert made


async def test_a_dependency_that_is_still_starting_is_waited_for() -> None:
    """The channel is in reconnect backoff when the server comes up: the call waits for
    it within its deadline instead of failing at once with UNAVAILABLE."""
    port = free_port()
    async with client_of(port, timeout_seconds=10.0) as client:
        call = asyncio.create_task(client.unary(stub(client).GetPriceInternal, REQUEST))
        await asyncio.sleep(0)  # the call is out, with nobody listening yet
        assert not call.done()
        running = await serve(Recorder(), port)
        try:
            reply = await asyncio.wait_for(call, 10)
        finally:
            await running.stop(grace=0.1)
    assert reply.price.pair == "EUR/USD"


async def test_a_dependency_that_stays_down_is_unavailable_within_the_deadline() -> None:
    async with client_of(free_port(), timeout_seconds=0.3) as client:
        started = asyncio.get_running_loop().time()
        with pytest.raises(Unavailable) as caught:
            await client.unary(stub(client).GetPriceInternal, REQUEST)
        elapsed = asyncio.get_running_loop().time() - started
    assert caught.value.reason == "SIGNAL_SVC_UNAVAILABLE"
    assert "DEADLINE_EXCEEDED" in caught.value.message
    assert elapsed < 5


@pytest.mark.parametrize(
    ("raised", "kind"),
    [
        (
            InvalidArgument(
                [FieldViolation("pair", "is no pair"), FieldViolation("pairs[1]", "neither")]
            ),
            InvalidArgument,
        ),
        (NotFound("no price for GBP/USD", reason="NO_PRICE"), NotFound),
        (RateLimited("slow down", retry_after_seconds=2.5), RateLimited),
        (Unavailable("market data down", reason="MARKET_DATA_UNAVAILABLE"), Unavailable),
    ],
)
async def test_failures_arrive_as_the_callees_domain_errors(raised, kind) -> None:
    recorder = Recorder()
    recorder.fail = raised
    async with serving(recorder) as running, client_of(running.port) as client:
        with pytest.raises(kind) as caught:
            await client.unary(stub(client).GetPriceInternal, REQUEST)
        with pytest.raises(kind):
            async for _ in client.stream(
                stub(client).StreamPricesInternal, signal_pb2.StreamPricesInternalRequest()
            ):
                pass
    error = caught.value
    # An UNAVAILABLE callee's message is kept inside one naming the dependency.
    assert raised.message in error.message and error.reason == raised.reason
    if isinstance(raised, InvalidArgument):
        assert error.violations == raised.violations  # type: ignore[attr-defined]
    if isinstance(raised, RateLimited):
        assert error.retry_after_seconds == pytest.approx(2.5)  # type: ignore[attr-defined]


async def test_a_bug_in_the_callee_is_unavailable_with_its_request_id() -> None:
    """INTERNAL (the callee's bug) is not the caller's to fix: the dependency could not
    answer. The callee's message, which quotes its request id, is kept."""
    recorder = Recorder()
    recorder.fail = RuntimeError("boom")  # type: ignore[assignment]
    async with serving(recorder) as running, client_of(running.port) as client:
        with pytest.raises(Unavailable) as caught:
            await client.unary(stub(client).GetPriceInternal, REQUEST)
    assert "INTERNAL" in caught.value.message and "request id" in caught.value.message
    assert caught.value.reason == "INTERNAL"


async def test_a_stream_to_a_dependency_that_is_down_fails_at_once() -> None:
    """Streams have no deadline to wait within: their owners reconnect with backoff of
    their own (and catch up), so a stream to a dead dependency fails straight away."""
    async with client_of(free_port(), timeout_seconds=30.0) as client:
        stream = client.stream(
            stub(client).StreamPricesInternal, signal_pb2.StreamPricesInternalRequest()
        )
        with pytest.raises(Unavailable):
            await asyncio.wait_for(anext(stream), 5)
