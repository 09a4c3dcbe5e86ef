"""Conversions between the shared contract types (aifx.common.v1, Timestamps) and the
domain's, used by every servicer so a timeframe or a time means the same everywhere."""

from __future__ import annotations

from datetime import datetime

from google.protobuf import timestamp_pb2

from aifx.common.v1 import market_pb2
from common.market import Timeframe
from common.time import as_utc

TIMEFRAME_TO_PROTO = {
    Timeframe.M15: market_pb2.TIMEFRAME_M15,
    Timeframe.H1: market_pb2.TIMEFRAME_H1,
    Timeframe.H4: market_pb2.TIMEFRAME_H4,
    Timeframe.D1: market_pb2.TIMEFRAME_D1,
}
# TIMEFRAME_UNSPECIFIED and unknown numbers map to nothing: callers treat that as missing.
TIMEFRAME_FROM_PROTO = {value: key for key, value in TIMEFRAME_TO_PROTO.items()}


def timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    """A Timestamp of a datetime (naive means UTC)."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(as_utc(moment))
    return stamp


def timestamp_from_epoch(seconds: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=int(seconds))
