"""gen/ must match proto/: a contract change cannot ship without regenerating."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from check_gen_fresh import stale_files


def test_gen_is_fresh():
    assert stale_files() == [], "run `make gen` and commit gen/"
