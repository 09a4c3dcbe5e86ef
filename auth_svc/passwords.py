"""Password hashing with bcrypt, off the event loop.

bcrypt at cost 12 takes about 0.2 s of CPU. It runs in a small dedicated thread pool
(bcrypt releases the GIL), so a burst of logins queues there instead of stalling every
other RPC on the event loop.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import bcrypt

MIN_PASSWORD_BYTES = 8
# bcrypt ignores everything after 72 bytes; refusing longer passwords keeps users from
# believing a long passphrase protects them more than it does.
MAX_PASSWORD_BYTES = 72


class PasswordHasher:
    def __init__(self, rounds: int, workers: int) -> None:
        self._rounds = rounds
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bcrypt")
        # Checked against when the user does not exist, so "unknown user" costs the
        # same as "wrong password" and response time does not reveal accounts.
        self._decoy_hash = bcrypt.hashpw(b"decoy-password", bcrypt.gensalt(rounds))

    async def hash(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        salt = bcrypt.gensalt(self._rounds)
        hashed = await loop.run_in_executor(self._pool, bcrypt.hashpw, password.encode(), salt)
        return hashed.decode()

    async def verify(self, password: str, hashed: str | None) -> bool:
        """True when `password` matches `hashed`. With no hash, or a password longer than
        any we accept at registration, it spends the same time on a decoy and returns
        False (bcrypt would otherwise compare only the first 72 bytes)."""
        loop = asyncio.get_running_loop()
        candidate = password.encode()
        acceptable = hashed is not None and len(candidate) <= MAX_PASSWORD_BYTES
        target = hashed.encode() if acceptable and hashed else self._decoy_hash
        matches = await loop.run_in_executor(
            self._pool, bcrypt.checkpw, candidate[:MAX_PASSWORD_BYTES], target
        )
        return matches and acceptable

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
