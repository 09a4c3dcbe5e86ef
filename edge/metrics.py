"""The edge's Prometheus metrics (on AIFX_EDGE_METRICS_PORT): who is connected and what
is pushed to them."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SOCKETS = Gauge("aifx_edge_sockets_connected", "Socket.IO clients connected now")
REFUSED = Counter(
    "aifx_edge_sockets_refused_total",
    "Socket.IO connections refused, by reason (no_token, bad_token, too_many)",
    ["reason"],
)
EVENTS = Counter(
    "aifx_edge_events_relayed_total",
    "Events relayed into Socket.IO rooms, by event (trading:signal, price, notification, "
    "market:update); one per event, however many sockets receive it",
    ["event"],
)
EXPIRED = Counter(
    "aifx_edge_sockets_expired_total", "Sockets disconnected because their token expired"
)
DELIVERY = Histogram(
    "aifx_edge_signal_delivery_seconds",
    "From a signal stored (its timestamp) to the edge having written it to every subscribed socket",
    buckets=(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0),
)
