"""A tiny real `make train` run for the smoke tests: the pipeline in the training
environment (.train-venv, TensorFlow), on its own SQLite database and var dir.

Needs `.train-venv` (`make train-setup`): skipped without it on a laptop, a failure
under CI, which builds it.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from common.settings import REPO_ROOT, Settings

TRAIN_PYTHON = REPO_ROOT / ".train-venv" / "bin" / "python"


def train_tiny(root: Path, arguments: list[str]) -> tuple[Path, Settings, str]:
    """Run `python -m inference.training ARGUMENTS` into root/models; the base path, the
    run's settings and its output. Fails the test when the run fails."""
    if not TRAIN_PYTHON.exists():
        message = f"{TRAIN_PYTHON} missing: run `make train-setup`"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set: the training smoke run must run)")
        pytest.skip(message)
    settings = Settings.load(
        var_dir=root / "var", database_url=f"sqlite+aiosqlite:///{root}/aifx.db"
    )
    env = {
        **os.environ,
        "AIFX_VAR_DIR": str(settings.general.var_dir),
        "AIFX_DATABASE_URL": settings.storage.database_url,
    }
    started = time.monotonic()
    result = subprocess.run(
        [
            str(TRAIN_PYTHON),
            "-m",
            "inference.training",
            *arguments,
            "--model-base-path",
            str(root / "models"),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    print(f"training smoke run: {time.monotonic() - started:.1f} s")
    return root / "models", settings, output
