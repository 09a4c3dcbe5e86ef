"""Cross-replica fan-out: the `SignalPublisher` of signal_svc.

`RelayPublisher.publish(signal)` (called by the scheduler AFTER the signal is stored):

- hands the signal to this process's `Broadcaster` at once, so this replica's
  subscribers never depend on Redis being healthy (pub/sub delivers at most once: a
  relay that only fed its own subscribers from its Redis echo would silently drop their
  signals whenever its subscription connection blipped);
- with Redis configured, publishes it on the channel `<redis_prefix>signals` as JSON
  (the whole signal, see `signal_svc.signal_codec`, plus the publishing
  replica's origin tag). Every replica listens on that channel and feeds what other
  replicas published into its own Broadcaster; its own echo is skipped (already
  delivered). So a subscriber connected to replica B receives what replica A produced.

Losing Redis degrades to single-replica fan-out and never fails a publish:

- a failed Redis publish is logged, the signal kept in a bounded backlog (re-sent as soon
  as Redis answers again), and Redis is skipped for a cooldown instead of paying its
  timeout on every signal;
- the listener re-subscribes with exponential backoff (0.1 s doubling to 5 s) and, when
  it is back after having lost its subscription, catches up from the database (the
  `SignalReader`, when given) on everything stored after the newest id it had seen, so
  subscribers of this replica get, late but complete, what other replicas produced during
  the outage. A signal that arrives twice (backlog re-sent, catch-up) is dropped by the
  Broadcaster's recent-id check.

Without Redis the relay is local only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import deque
from typing import TYPE_CHECKING

import structlog

from common.kv import Cooldown, fail_fast_options, redis_errors
from common.settings import StorageSettings
from common.shutdown import stop_tasks
from signal_svc.fanout import Broadcaster
from signal_svc.ports import SignalFilter, SignalReader
from signal_svc.signal_codec import signal_from_json_fields, signal_to_json_fields
from signal_svc.signals import Signal

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from redis.asyncio.client import PubSub

log = structlog.get_logger(__name__)

CHANNEL = "signals"
# Signals kept for re-sending while Redis refuses publishes (each ~1 kB).
BACKLOG = 1000
# Most signals read from the database to catch up after an outage; a longer outage
# overflows subscribers anyway, and they resume from the database themselves.
CATCH_UP_MAX = 5000
CATCH_UP_PAGE = 500
BACKOFF_START = 0.1
BACKOFF_MAX = 5.0
# The subscription connection pings Redis after this much silence to notice a dead one.
HEALTH_CHECK_SECONDS = 5


def encode(signal: Signal, origin: str) -> str:
    return json.dumps(
        {"origin": origin, "signal": signal_to_json_fields(signal)},
        separators=(",", ":"),
        allow_nan=False,
    )


def decode(payload: str | bytes) -> tuple[str, Signal]:
    data = json.loads(payload)
    return str(data.get("origin", "")), signal_from_json_fields(data["signal"])


class RelayPublisher:
    """Publishes stored signals to every replica's subscribers (see the module docstring).

    Lifecycle: `await start()` inside the serving event loop, `await stop()` on shutdown.
    """

    def __init__(
        self,
        broadcaster: Broadcaster,
        redis_url: str = "",
        prefix: str = "aifx:",
        *,
        reader: SignalReader | None = None,
        cooldown_seconds: float = 5.0,
    ) -> None:
        self.broadcaster = broadcaster
        self.redis_url = redis_url
        self.channel = f"{prefix}{CHANNEL}"
        self.origin = uuid.uuid4().hex
        self._reader = reader
        self._cooldown_seconds = cooldown_seconds
        self._cooldown = Cooldown(cooldown_seconds)
        self._flush_lock = asyncio.Lock()
        self._client: aioredis.Redis | None = None
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._backlog: deque[Signal] = deque(maxlen=BACKLOG)
        self._high_water = 0  # newest signal id this replica has delivered
        self._catch_up_after: int | None = None
        self.relayed = 0
        self.received = 0

    @classmethod
    def from_settings(
        cls, broadcaster: Broadcaster, storage: StorageSettings, reader: SignalReader | None = None
    ) -> RelayPublisher:
        return cls(broadcaster, storage.redis_url, storage.redis_prefix, reader=reader)

    @property
    def uses_redis(self) -> bool:
        return bool(self.redis_url)

    @property
    def listening(self) -> bool:
        """Subscribed to the Redis channel right now."""
        return self._listening.is_set()

    async def start(self) -> None:
        """Connect to Redis (when configured) and start listening. Never fails: with
        Redis down the listener keeps retrying in the background."""
        if not self.redis_url or self._listener is not None:
            return
        import redis.asyncio as aioredis  # only with Redis configured (~5 MB resident)

        self._client = aioredis.Redis.from_url(self.redis_url, **fail_fast_options())  # type: ignore[arg-type]
        self._listener = asyncio.create_task(self._listen(), name="signal-relay-listener")

    async def wait_listening(self, seconds: float) -> bool:
        """Wait until subscribed to the channel; False after `seconds`."""
        try:
            async with asyncio.timeout(seconds):
                await self._listening.wait()
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        if self._backlog:
            log.warning(
                "stopping with signals not relayed to other replicas (they are stored)",
                count=len(self._backlog),
            )
        if self._listener is not None:
            # Cancelled until it ends: it waits on Redis all the time and so can lose a
            # cancellation on Python 3.11 (see common.shutdown).
            await stop_tasks(self._listener)
            self._listener = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self._listening.clear()

    async def publish(self, signal: Signal) -> None:
        """Deliver a stored signal to this replica's subscribers now, and to the other
        replicas' through Redis when it is reachable (later, from the backlog, when not)."""
        self._deliver(signal)
        if self._client is None:
            return
        if len(self._backlog) == BACKLOG:
            log.warning("relay backlog full; the oldest unrelayed signal is dropped")
        self._backlog.append(signal)
        await self._flush_backlog()

    def _deliver(self, signal: Signal) -> None:
        self._high_water = max(self._high_water, signal.id)
        self.broadcaster.publish(signal)

    async def _flush_backlog(self) -> None:
        if self._client is None or self._cooldown.active:
            return
        async with self._flush_lock:
            await self._flush_locked(self._client)

    async def _flush_locked(self, client: aioredis.Redis) -> None:
        while self._backlog and not self._cooldown.active:
            signal = self._backlog[0]
            try:
                await client.publish(self.channel, encode(signal, self.origin))
            except redis_errors() as exc:
                self._cooldown.trip("publish signal", exc)
                log.warning(
                    "signal not relayed to other replicas yet (Redis down); kept to retry",
                    signal_id=signal.id,
                    backlog=len(self._backlog),
                )
                return
            self._backlog.popleft()
            self.relayed += 1

    # --- listening ----------------------------------------------------------------------

    async def _listen(self) -> None:
        import redis.asyncio as aioredis

        backoff = BACKOFF_START
        while True:
            client: aioredis.Redis | None = None
            pubsub: PubSub | None = None
            try:
                client = aioredis.Redis.from_url(
                    self.redis_url,
                    **fail_fast_options(),  # type: ignore[arg-type]
                    health_check_interval=HEALTH_CHECK_SECONDS,
                )
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(self.channel)
                self._listening.set()
                log.info("signal relay listening", channel=self.channel)
                backoff = BACKOFF_START
                await self._recover()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._receive(message["data"])
                    if self._backlog:
                        await self._flush_backlog()  # unrelayed, and no publish since
            except redis_errors() as exc:
                if self._listening.is_set() or backoff == BACKOFF_START:
                    log.warning(
                        "signal relay lost Redis; fan-out is single-replica until it is back",
                        error=str(exc),
                        retry_in=backoff,
                    )
                self._lost()
            except Exception:
                log.exception("signal relay listener failed; restarting it", retry_in=backoff)
                self._lost()
            finally:
                if pubsub is not None:
                    with contextlib.suppress(*redis_errors()):
                        await pubsub.aclose()
                if client is not None:
                    with contextlib.suppress(*redis_errors()):
                        await client.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _lost(self) -> None:
        if self._listening.is_set():
            self._listening.clear()
            if self._catch_up_after is None and self._high_water:
                self._catch_up_after = self._high_water

    def _receive(self, payload: bytes | str) -> None:
        try:
            origin, signal = decode(payload)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("unreadable relayed signal skipped", error=str(exc))
            return
        if origin == self.origin:
            return  # our own, delivered when published
        self.received += 1
        self._deliver(signal)

    async def _recover(self) -> None:
        """Back after an outage: re-send what we could not relay, and fetch from the
        database what other replicas published while we were not listening."""
        self._cooldown = Cooldown(self._cooldown_seconds)  # Redis answers again
        await self._flush_backlog()
        after, self._catch_up_after = self._catch_up_after, None
        if after is None or self._reader is None:
            return
        try:
            caught_up = await self._catch_up(self._reader, after)
        except Exception:
            # The database is down too: subscribers that reconnect resume from it later.
            log.exception("signal relay could not catch up from the database")
            return
        if caught_up:
            log.info("signal relay caught up from the database", signals=caught_up)

    async def _catch_up(self, reader: SignalReader, after: int) -> int:
        caught_up = 0
        while caught_up < CATCH_UP_MAX:
            page = await reader.signals_after(after, SignalFilter(), CATCH_UP_PAGE)
            for signal in page:
                self._deliver(signal)
            caught_up += len(page)
            if len(page) < CATCH_UP_PAGE:
                break
            after = page[-1].id
        return caught_up
