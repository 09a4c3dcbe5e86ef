"""Secrets made on first run are made once: processes starting together on a fresh
var/ all end up with the first complete secret, never a half-written or a second one."""

from __future__ import annotations

import stat
import subprocess
import sys
import threading
from pathlib import Path

from common.secret_files import create_once
from common.settings import REPO_ROOT


def test_the_first_complete_secret_wins_and_later_callers_read_it(tmp_path: Path):
    path = tmp_path / "keys" / "secret"
    assert create_once(path, lambda: b"first") == b"first"
    assert create_once(path, lambda: b"second") == b"first"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["secret"]  # no draft left


def test_a_racer_never_reads_a_half_written_secret_nor_replaces_it(tmp_path: Path):
    """Made deterministic: the second caller starts and finishes while the first is
    still inside make() — which, with a check-then-write, would read an empty file or
    be overwritten by the first."""
    path = tmp_path / "secret"
    inside, release = threading.Event(), threading.Event()
    results: dict[str, bytes] = {}

    def slow() -> bytes:
        inside.set()
        release.wait(10)
        return b"slow"

    first = threading.Thread(target=lambda: results.setdefault("first", create_once(path, slow)))
    first.start()
    assert inside.wait(10)
    results["second"] = create_once(path, lambda: b"fast")
    release.set()
    first.join(10)
    assert results == {"first": b"fast", "second": b"fast"}
    assert path.read_bytes() == b"fast"


def test_replicas_starting_together_share_one_signing_key_and_credential(tmp_path: Path):
    script = (
        "from common.settings import Settings\n"
        "from auth_svc.signing_keys import load_signing_key\n"
        "from common.service_credentials import load_service_token\n"
        f"s = Settings.load(env_file=None, var_dir={str(tmp_path)!r})\n"
        "print(load_signing_key(s).kid, load_service_token(s))\n"
    )
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", script], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    answers = {racer.communicate(timeout=60)[0].strip() for racer in racers}
    assert all(racer.returncode == 0 for racer in racers)
    assert len(answers) == 1, answers
