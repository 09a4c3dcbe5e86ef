"""Fan-out benchmark of the notifier: a signal DMed to --users linked traders against
the Discord stand-in enforcing Discord's global limit (50 requests per second).

Everything runs for real except Discord and signal_svc: auth_svc (in this process) with
--users traders registered and linked through the real link-code flow (bcrypt at
--bcrypt-rounds, 4 by default, the minimum: registering is setup, not what is measured),
the Discord stand-in (tests/discord_standin.py, in this process, 429 beyond
--global-limit requests in any sliding second), a protocol stand-in for the signal
stream (tests/notifier_e2e/stream_standin.py), and `python -m notifier` as a process of
its own on a fresh database (embedded SQLite, or --database-url on PostgreSQL, created
and dropped). Once the notifier follows the stream, --signals signals (2) that every
trader wants are published one after the other, each once the previous one is
delivered: the first DM to a user costs two requests (POST /users/@me/channels, then the
message), later ones one. --latency-ms puts the stand-in that far away (a round trip,
half each way; Discord is tens of milliseconds from a server, the loopback a fraction of
one), where one DM at a time (--concurrency 1) would be bound by the round trip.

Figures per signal: time from its publication to the last DM created; DMs per second;
requests per second (every request the stand-in took while sending, the DM channel
openings included) and their ratio to what the limit allows (target at least 90 %): a
sliding window lets through a full window's worth at once, so a span of T seconds may
hold limit * (T + 1 s) requests, which is what the ratio divides by. Then DMs lost and
doubled (target 0: each trader's DM channel holds exactly one message per signal),
invalid requests (401/403/429, which Discord bans bots for at 10,000 in 10 minutes),
and the notifier's peak resident memory, VmHWM (target under 120 MB).

Run:  .venv/bin/python bench/notifier_fanout.py [--users 1000] [--signals 2]
          [--latency-ms 0] [--concurrency N] [--global-limit 50] [--strict]
          [--database-url postgresql+asyncpg://postgres@127.0.0.1:5432/aifx_bench_notifier]
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from getme_load import create_database, drop_database, safe_url
from proc_stats import memory_mb
from report import table

from aifx.common.v1 import market_pb2
from common.db import create_engine, session_factory
from common.logging import configure_logging
from common.migrations import upgrade
from common.service_credentials import load_service_token
from notifier.ledger import Ledger
from tests.discord_standin import DiscordStandin, Handler, Recorded, running_standin_server
from tests.infra import auth_stack, make_settings
from tests.notifier_e2e.harness import NotifierProcess, link_traders, notifier_env
from tests.notifier_e2e.stream_standin import StreamStandin, signal_message

TARGET_RATIO = 0.90
TARGET_RSS_MB = 120.0
PAIR, TIMEFRAME = "EUR/AUD", "15m"
MESSAGES = "/messages"
OPEN_DM = "/users/@me/channels"


class DistantDiscord(DiscordStandin):
    """The stand-in as if `latency` seconds of round trip away (Discord is some tens of
    milliseconds from a server, the loopback a fraction of one): half of it before a REST
    request reaches the stand-in, half before its answer leaves."""

    def __init__(self, latency: float) -> None:
        super().__init__()
        self.latency = latency

    def app(self) -> web.Application:
        app = super().app()
        if self.latency:
            app.middlewares.insert(0, self._far)
        return app

    @web.middleware
    async def _far(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/gateway":
            return await handler(request)
        await asyncio.sleep(self.latency / 2)
        response = await handler(request)
        await asyncio.sleep(self.latency / 2)
        return response


@dataclass
class Fanout:
    """What the stand-in saw while one signal was DMed."""

    published: float
    requests: list[Recorded]

    @property
    def created(self) -> list[Recorded]:
        return [
            r
            for r in self.requests
            if r.method == "POST" and MESSAGES in r.path and r.status == 200
        ]

    @property
    def last(self) -> float:
        return max(r.at for r in self.created)

    @property
    def sending(self) -> float:
        """From the first request to the last DM created."""
        return self.last - min(r.at for r in self.requests)

    @property
    def answered(self) -> int:
        """Requests Discord took (its 429s are not), up to the last DM."""
        return sum(1 for r in self.requests if r.at <= self.last and r.status != 429)

    def count(self, route: str, status: int) -> int:
        return sum(1 for r in self.requests if route in r.path and r.status == status)


async def measure(args: argparse.Namespace, workdir: Path) -> int:
    for part in ("auth", "notifier"):
        (workdir / part).mkdir()
    settings = make_settings(
        workdir / "auth", bcrypt_rounds=args.bcrypt_rounds, log_level="WARNING"
    )
    configure_logging(settings, "notifier-fanout-bench")
    database_url = args.database_url or f"sqlite+aiosqlite:///{workdir / 'notifier.db'}"
    notifier_settings = make_settings(workdir / "notifier", database_url=database_url)
    await asyncio.to_thread(upgrade, "notifier", notifier_settings)
    engine = create_engine(notifier_settings)
    ledger = Ledger(session_factory(engine))

    async with auth_stack(settings) as auth:
        token = load_service_token(settings)
        started = time.monotonic()
        users = await link_traders(
            auth,
            args.users,
            pairs=[PAIR],
            timeframes=[market_pb2.TIMEFRAME_M15],
            min_confidence=0.1,
            notify_discord=True,
        )
        linking = time.monotonic() - started
        print(f"{args.users} traders registered and linked in {linking:.1f} s", flush=True)

        discord = DistantDiscord(args.latency_ms / 1000)
        discord.global_limit = args.global_limit
        streams = StreamStandin(token)
        await streams.start()
        notifier: NotifierProcess | None = None
        fanouts: list[Fanout] = []
        try:
            async with running_standin_server(discord):
                env = notifier_env(
                    api_base=discord.api_base,
                    auth_target=auth.address,
                    stream_target=streams.target,
                    service_token=token,
                    database_url=database_url,
                    var_dir=workdir / "notifier",
                    log_level=args.notifier_log_level,
                    **(
                        {"notifier_send_concurrency": str(args.concurrency)}
                        if args.concurrency
                        else {}
                    ),
                )
                notifier = NotifierProcess(env, workdir)
                notifier.start()
                await wait_for(lambda: streams.open_signal_streams > 0, 60, notifier)
                channels = [discord.dm_channel(u) for u in users]  # ids only; no request
                for number in range(1, args.signals + 1):
                    before, published = len(discord.requests), discord.clock()
                    await streams.publish(
                        signal_message(str(number), PAIR, TIMEFRAME, confidence=0.8, entry=1.65)
                    )
                    await wait_for(
                        lambda n=number: all(len(discord.messages_in(c)) >= n for c in channels),
                        args.timeout,
                        notifier,
                        poll=0.25,
                    )
                    # Every delivery marked sent: nothing more will be sent for it.
                    await wait_for(lambda: _all_sent(ledger), 60, notifier, poll=0.25)
                    fanouts.append(Fanout(published, discord.requests[before:]))
                peak = memory_mb(notifier.pid).get("VmHWM", 0.0)
                per_user = Counter(len(discord.messages_in(c)) for c in channels)
        finally:
            if notifier is not None:
                await asyncio.to_thread(notifier.stop)
            await streams.stop()
            await engine.dispose()

    limit = args.global_limit
    requests = [r for f in fanouts for r in f.requests]
    invalid = sum(1 for r in requests if r.status in (401, 403, 429))
    too_many = sum(1 for r in requests if r.status == 429)
    lost = sum(n for k, n in per_user.items() if k < args.signals)
    doubled = sum(n for k, n in per_user.items() if k > args.signals)

    def allowed(seconds: float) -> float:
        """The most requests the limit lets through in `seconds`: a sliding window
        allows a full window's worth at the start, so `limit` * (seconds + 1)."""
        return limit * (seconds + 1.0)

    def each(render: Callable[[Fanout], str]) -> list[str]:
        return [render(f) for f in fanouts]

    rows = [
        [
            "signal published → last DM created",
            *each(lambda f: f"{f.last - f.published:.2f} s"),
            "",
        ],
        ["first request → last DM created", *each(lambda f: f"{f.sending:.2f} s"), ""],
        [
            "DMs/s (published → last DM)",
            *each(lambda f: f"{args.users / (f.last - f.published):.1f}"),
            "",
        ],
        ["requests: DM channels opened", *each(lambda f: str(f.count(OPEN_DM, 200))), ""],
        ["requests: messages created", *each(lambda f: str(len(f.created))), ""],
        [
            "requests/s taken (first → last DM)",
            *each(lambda f: f"{f.answered / f.sending:.1f}"),
            "",
        ],
        [
            "  ratio to what the limit allows",
            *each(lambda f: f"{f.answered / allowed(f.sending):.0%}"),
            f"≥ {TARGET_RATIO:.0%}",
        ],
        [
            "  same, from the signal's publication",
            *each(lambda f: f"{f.answered / allowed(f.last - f.published):.0%}"),
            "",
        ],
        ["429s", *each(lambda f: str(f.count("/", 429))), "0"],
    ]
    rows += [
        [figure, value, *[""] * (len(fanouts) - 1), target]
        for figure, value, target in [
            ("DMs lost (all signals)", str(lost), "0"),
            ("DMs doubled (all signals)", str(doubled), "0"),
            ("invalid requests (401/403/429)", f"{invalid} (429: {too_many})", "0"),
            ("notifier peak RSS (VmHWM)", f"{peak:.0f} MB", f"< {TARGET_RSS_MB:.0f} MB"),
        ]
    ]
    backend = f"PostgreSQL ({safe_url(database_url)})" if args.database_url else "embedded SQLite"
    print(
        f"notifier fan-out: {args.users} traders, {args.signals} signal(s) one after the other, "
        f"global limit {limit}/s, round trip {args.latency_ms:.0f} ms, ledger on {backend}"
    )
    head = ["figure", *[f"signal {n}" for n in range(1, len(fanouts) + 1)], "target"]
    print(table(head, rows))
    met = (
        all(f.answered / allowed(f.sending) >= TARGET_RATIO for f in fanouts)
        and lost == doubled == invalid == 0
        and peak < TARGET_RSS_MB
    )
    print(f"targets: {'met' if met else 'MISSED'}")
    return 0 if met or not args.strict else 1


async def _all_sent(ledger: Ledger) -> bool:
    return "pending" not in await ledger.counts()


async def wait_for(
    condition: Callable[[], bool | Awaitable[bool]],
    within: float,
    notifier: NotifierProcess,
    *,
    poll: float = 0.05,
) -> None:
    """Until `condition()` holds; exit with the notifier's log when it dies or time is up."""
    deadline = time.monotonic() + within
    while not await _holds(condition):
        if not notifier.running():
            raise SystemExit(f"the notifier exited:\n{notifier.log()}")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {within:.0f} s:\n{notifier.log()}")
        await asyncio.sleep(poll)


async def _holds(condition: Callable[[], bool | Awaitable[bool]]) -> bool:
    result = condition()
    return bool(await result) if inspect.isawaitable(result) else bool(result)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--signals", type=int, default=2, help="each DMed to every trader")
    parser.add_argument("--global-limit", type=int, default=50, help="requests per second")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="round trip added to each REST request"
    )
    parser.add_argument(
        "--concurrency", type=int, default=0, help="AIFX_NOTIFIER_SEND_CONCURRENCY (0: default)"
    )
    parser.add_argument("--bcrypt-rounds", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for the DMs")
    parser.add_argument("--database-url", default="", help="PostgreSQL; created and dropped")
    parser.add_argument("--keep-workdir", action="store_true")
    parser.add_argument("--notifier-log-level", default="WARNING")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    if args.database_url and not args.database_url.startswith("postgresql"):
        parser.error("--database-url must be a PostgreSQL URL (default: embedded SQLite)")
    workdir = Path(tempfile.mkdtemp(prefix="aifx-notifier-fanout-"))
    try:
        if args.database_url:
            create_database(args.database_url)
        return asyncio.run(measure(args, workdir))
    finally:
        if args.database_url:
            drop_database(args.database_url)
        if args.keep_workdir:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
