"""The model server down under `make run` itself (supervisord, the notifier included,
pointed at the Discord stand-in): a trader who wants every EUR/USD 1h signal by DM gets
them on, each marked with where it came from — the model, then, while the model server
is stopped, the technical fallback (said in the DM's Source field), then the model again
once it is started, nothing else restarted. Each signal is DMed once.

(The browser's side: tests/browser/test_service_outage.py; REST and SSE:
test_model_outage.py.)
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.discord_standin import TOKEN, DiscordStandin, running_standin_server
from tests.infra import eventually
from tests.notifier_e2e.harness import link_through_rest
from tests.supervised_stack import SupervisedStack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

TRADER = "340000000000000001"
WANTS = {"pairs": ["EUR/USD"], "timeframes": ["1h"], "minConfidence": 0, "notifyDiscord": True}
FALLBACK = "technical fallback"
WITHIN = 60.0


def dm_sources(standin: DiscordStandin) -> list[tuple[str, str]]:
    """(footer, Source field) of every DM the trader received, in order."""
    found = []
    for message in standin.dms_to(TRADER):
        for embed in message.get("embeds", []):
            fields = {f["name"]: f["value"] for f in embed.get("fields", [])}
            found.append((embed.get("footer", {}).get("text", ""), fields.get("Source", "")))
    return found


@pytest.fixture
async def standin() -> AsyncIterator[DiscordStandin]:
    discord = DiscordStandin()
    discord.message_limit = None  # ten signals a second at this replay speed
    async with running_standin_server(discord):
        yield discord


@pytest.fixture
async def stack(tmp_path: Path, standin: DiscordStandin) -> AsyncIterator[SupervisedStack]:
    supervised = SupervisedStack(
        tmp_path,
        replay_speed=36_000,
        bcrypt_rounds=4,
        inference_recovery_seconds=3,  # a recovered model noticed within 3 s, not 30
        discord_token=TOKEN,
        discord_api_base=standin.api_base,
    )
    await asyncio.to_thread(supervised.__enter__)
    try:
        yield supervised
    finally:
        await asyncio.to_thread(supervised.__exit__, None, None, None)


async def test_signal_dms_say_technical_fallback_while_the_model_is_down(
    stack: SupervisedStack, standin: DiscordStandin
) -> None:
    await standin.wait_until(lambda: bool(standin.commands), WITHIN, "the bot's commands")
    async with httpx.AsyncClient(base_url=stack.url, timeout=15) as http:
        await link_through_rest(http, standin, TRADER, WANTS)

    def sources_after(count: int) -> list[str]:
        return [source for _, source in dm_sources(standin)[count:]]

    await eventually(
        lambda: any(s.startswith("model") for s in sources_after(0)), "a model DM", within=WITHIN
    )
    pids = {name: stack.pid(name) for name in ("signal", "notifier", "inference", "edge")}
    await asyncio.to_thread(stack.ctl, "stop", "model_server")
    stopped_at = len(dm_sources(standin))
    await eventually(
        lambda: FALLBACK in " ".join(sources_after(stopped_at)), "a fallback DM", within=WITHIN
    )
    await asyncio.to_thread(stack.ctl, "start", "model_server")
    started_at = len(dm_sources(standin))
    await eventually(
        lambda: any(s.startswith("model") for s in sources_after(started_at)),
        "model DMs again",
        within=WITHIN,
    )
    assert {name: stack.pid(name) for name in pids} == pids  # nothing else restarted
    footers = Counter(footer for footer, _ in dm_sources(standin))
    assert all(n == 1 for n in footers.values()), [f for f, n in footers.items() if n > 1]
