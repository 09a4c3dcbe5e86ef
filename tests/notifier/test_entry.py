"""Without a Discord token the bot is off, and says so plainly: `python -m notifier`
exits with the reason, and `make run` leaves it out of the processes it starts."""

from __future__ import annotations

import os
import subprocess
import sys

from common.settings import REPO_ROOT


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


def test_make_run_starts_the_notifier_only_with_a_token(tmp_path):
    def processes(**env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(REPO_ROOT / "scripts" / "run_processes.py")],
            env=without_token(**env),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    off = processes()
    assert "notifier" not in off.stdout.split() and "envoy" in off.stdout.split()
    assert "notifier: off — AIFX_DISCORD_TOKEN is not set" in off.stderr
    on = processes(AIFX_DISCORD_TOKEN="a-token")
    assert "notifier" in on.stdout.split()
