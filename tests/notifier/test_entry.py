"""Without a Discord token the bot is off, and says so plainly: `python -m notifier`
exits with the reason, and `make run` leaves it out of the processes it starts."""

from __future__ import annotations

import os
import subprocess
import sys

from common.settings import Settings
from stack.programs import components, programs


def without_token(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "AIFX_DISCORD_TOKEN"}
    return {**env, "AIFX_DISCORD_TOKEN": "", **extra}


def test_the_notifier_without_a_token_exits_saying_why(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "notifier"],
        env=without_token(AIFX_VAR_DIR=str(tmp_path)),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "AIFX_DISCORD_TOKEN is not set: the Discord bot is off" in done.stdout + done.stderr


def test_make_run_starts_the_notifier_only_with_a_token():
    off = Settings.load(env_file=None, discord_token="")
    on = Settings.load(env_file=None, discord_token="a-token")
    assert "notifier" not in components(off) and "envoy" in components(off)
    assert "notifier" in components(on)
    assert "notifier" in {program.name for program in programs(on)}
