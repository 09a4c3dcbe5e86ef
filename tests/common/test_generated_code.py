"""gen/ must match proto/: a contract change cannot ship without regenerating."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gen_is_fresh():
    """In a fresh process: protoc forks its plugins, and forking this test process, which
    earlier tests left with gRPC's threads running, can crash the child (SIGSEGV in
    gRPC's fork handlers) — a failure of the test, not of gen/."""
    check = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "check_gen_fresh.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, f"run `make gen` and commit gen/:\n{check.stdout}{check.stderr}"
    assert check.stdout.strip().endswith("gen/ is up to date")
