"""The notifier's adapters: recipients and reachability through a real auth_svc (both
backends, with the service credential, across pages), and a signal proto as the bot
shows it."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from google.protobuf import timestamp_pb2

from aifx.common.v1 import market_pb2
from aifx.signal.v1 import signal_pb2
from common.grpc_client import GrpcClient
from common.service_credentials import load_service_token
from notifier import clients
from notifier.convert import signal_view
from tests.auth.test_discord_links import linked_trader
from tests.notifier.test_fanout import signal


async def test_recipients_across_pages_and_closed_dms_through_auth(auth, monkeypatch):
    monkeypatch.setattr(clients, "RECIPIENTS_PAGE", 2)
    h1 = market_pb2.TIMEFRAME_H1
    made = sorted(
        [
            await linked_trader(
                auth, pairs=["NZD/USD"], timeframes=[h1], min_confidence=0.2, notify_discord=True
            )
            for _ in range(3)
        ]
    )
    client = GrpcClient(
        "auth_svc", f"127.0.0.1:{auth.server.port}", service_token=load_service_token(auth.settings)
    )
    try:
        people = clients.AuthClient(client, client)
        wanted = dataclasses.replace(signal(), pair="NZD/USD", confidence=0.5)
        assert [(r.user_id, r.discord_user_id) for r in await people.for_signal(wanted)] == made
        await people.dms_closed(made[0][1])
        found = await people.for_signal(wanted)
        assert [(r.user_id, r.discord_user_id) for r in found] == made[1:]
    finally:
        await client.close()


def test_a_signal_proto_becomes_the_view_the_bot_shows():
    message = signal_pb2.Signal(
        id="42",
        pair="GBP/JPY",
        timeframe=market_pb2.TIMEFRAME_D1,
        action=market_pb2.TRADE_ACTION_SELL,
        confidence=0.64,
        strength=signal_pb2.SIGNAL_STRENGTH_STRONG,
        entry_price=141.234,
        stop_loss=143.1,
        source=signal_pb2.SIGNAL_SOURCE_TECHNICAL_FALLBACK,
        model_name="technical",
        model_version="1",
        candle_time=timestamp_pb2.Timestamp(seconds=1497585600),
    )
    view = signal_view(message)
    assert (view.pair, view.timeframe, view.action, view.strength) == (
        "GBP/JPY",
        "1d",
        "sell",
        "strong",
    )
    assert view.stop_loss == 143.1 and view.take_profit is None and view.risk_reward is None
    assert not view.from_model and view.model == "technical v1"
    assert view.candle_time == datetime(2017, 6, 16, 4, tzinfo=UTC)
