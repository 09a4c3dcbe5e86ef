"""Every script's `if __name__ == "__main__":` guard is its last statement: code below it
is not defined yet when the script runs (make run's banner once died of a NameError
that importing the module, as its tests do, never showed)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from common.settings import REPO_ROOT

PACKAGES = ("auth_svc", "signal_svc", "position_svc", "inference", "notifier", "edge",
            "common", "scripts", "backtest", "bench")  # fmt: skip


def _is_main_guard(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Compare)
        and isinstance(node.test.left, ast.Name)
        and node.test.left.id == "__name__"
    )


def scripts() -> list[Path]:
    found = []
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            if "__name__" in path.read_text() and ".venv" not in path.parts:
                found.append(path)
    return found


@pytest.mark.parametrize("path", scripts(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_the_main_guard_comes_last(path: Path):
    body = ast.parse(path.read_text()).body
    guards = [i for i, node in enumerate(body) if _is_main_guard(node)]
    assert not guards or guards == [len(body) - 1], f"{path}: code after the __main__ guard"
