"""The Procfile processes `make run` starts: all of them, except the notifier when no
Discord token is configured (environment or .env), which it says plainly on stderr —
honcho stops the whole stack when one process exits, so a bot without a token is not
started at all rather than started to fail."""

from __future__ import annotations

import sys
from pathlib import Path

from common.settings import REPO_ROOT, get_settings

NOTIFIER = "notifier"


def processes(procfile: Path) -> list[str]:
    names = [
        line.split(":", 1)[0].strip()
        for line in procfile.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    if get_settings().discord.discord_token.get_secret_value():
        return names
    print(
        "notifier: off — AIFX_DISCORD_TOKEN is not set, so the Discord bot is not started "
        "(README: Discord; or try it against the local stand-in).",
        file=sys.stderr,
    )
    return [name for name in names if name != NOTIFIER]


if __name__ == "__main__":
    print(" ".join(processes(REPO_ROOT / "Procfile")))
