"""Conversions between the shared contract types (aifx.common.v1, Timestamps) and the
domain's, used by every servicer so a timeframe or a time means the same everywhere."""

from __future__ import annotations

from datetime import datetime

from google.protobuf import timestamp_pb2

from aifx.common.v1 import market_pb2
from common.market import TIMEFRAME_NUMBERS, Timeframe, timeframe_enum_name
from common.time import as_utc

TIMEFRAME_TO_PROTO: dict[Timeframe, market_pb2.Timeframe.ValueType] = {
    timeframe: market_pb2.Timeframe.Value(timeframe_enum_name(timeframe)) for timeframe in Timeframe
}
if TIMEFRAME_TO_PROTO != TIMEFRAME_NUMBERS:
    raise ImportError(
        "common.market.TIMEFRAME_NUMBERS no longer matches aifx.common.v1.Timeframe: "
        f"{TIMEFRAME_NUMBERS} != {TIMEFRAME_TO_PROTO}"
    )
# How messages to people write a trade action (a Discord embed, a Socket.IO event).
TRADE_ACTION_NAMES: dict[int, str] = {
    market_pb2.TRADE_ACTION_BUY: "buy",
    market_pb2.TRADE_ACTION_SELL: "sell",
    market_pb2.TRADE_ACTION_HOLD: "hold",
}
# TIMEFRAME_UNSPECIFIED and unknown numbers map to nothing: common.request_fields reads
# requests with the rule for what that means.
TIMEFRAME_FROM_PROTO = {value: key for key, value in TIMEFRAME_TO_PROTO.items()}


def timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    """A Timestamp of a datetime (naive means UTC)."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(as_utc(moment))
    return stamp


def timestamp_from_epoch(seconds: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=int(seconds))
