"""Fails when the committed `gen/` differs from what `make gen` would write now, so a
contract change can never ship without its generated code (and vice versa)."""

from __future__ import annotations

import filecmp
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from protogen import REPO, generate


def stale_files(committed: Path = REPO / "gen") -> list[str]:
    """Paths under gen/ that are missing, extra or different from a fresh generation."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "gen"
        generate(fresh)
        return _differences(filecmp.dircmp(committed, fresh), "")


def _differences(cmp: filecmp.dircmp[str], prefix: str) -> list[str]:
    found = [f"{prefix}{name} (only in committed gen/)" for name in cmp.left_only]
    found += [f"{prefix}{name} (missing from gen/)" for name in cmp.right_only]
    _, mismatch, errors = filecmp.cmpfiles(cmp.left, cmp.right, cmp.common_files, shallow=False)
    found += [f"{prefix}{name} (differs)" for name in mismatch + errors]
    for name, sub in cmp.subdirs.items():
        if name != "__pycache__":
            found += _differences(sub, f"{prefix}{name}/")
    return found


def main() -> None:
    stale = stale_files()
    if stale:
        print("gen/ is stale against proto/; run `make gen` and commit:", *stale, sep="\n  ")
        raise SystemExit(1)
    print("gen/ is up to date")


if __name__ == "__main__":
    main()
