"""Secrets generated on first run into var/ (the service credential, the JWT signing
key), created once however many processes start at the same moment.

With `AIFX_REPLICAS=2` both auth replicas (and every service reading the credential)
start together on a fresh var/. Checking for the file and then writing it lets two of
them generate different secrets — one replica then signs tokens the other's JWKS does
not list — or lets one read the other's file half-written. Here each process writes its
candidate in full to a draft of its own, then hard-links the draft to the real name:
linking fails if the name exists, so the first complete file wins and every process
reads that one.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path


def create_once(path: Path, make: Callable[[], bytes]) -> bytes:
    """The contents of `path`, owner-only, made by `make()` if no process made it yet."""
    if path.exists():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{uuid.uuid4().hex}.draft")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(make())
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process won: use theirs
            os.link(draft, path)
    finally:
        draft.unlink(missing_ok=True)
    return path.read_bytes()
