"""Resuming from the last signal id a client saw: what it missed, in order, once; and
a plain "do not know" when the id is older than what the edge keeps."""

from __future__ import annotations

from edge.event_buffer import EventBuffer


def buffer_of(*ids: int, size: int = 10) -> EventBuffer:
    buffer = EventBuffer(size)
    for n in ids:
        buffer.add({"id": str(n)})
    return buffer


def test_the_events_after_the_last_seen_in_order():
    buffer = buffer_of(1, 2, 3, 4)
    assert [e["id"] for e in buffer.after("2")] == ["3", "4"]
    assert buffer.after("4") == [] and buffer.last_id == "4"


def test_an_id_older_than_what_is_kept_is_not_known():
    buffer = buffer_of(*range(1, 21), size=5)
    assert buffer.after("3") is None
    assert buffer.after("not-a-number") is None


def test_an_id_newer_than_what_is_kept_means_nothing_missed():
    assert buffer_of(1, 2).after("9") == []
