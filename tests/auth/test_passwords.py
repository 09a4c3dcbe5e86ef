import asyncio
import threading

import pytest

import auth_svc.passwords as passwords
from auth_svc.passwords import PasswordHasher
from tests.infra import make_settings


@pytest.fixture(scope="module")
def hasher():
    hasher = PasswordHasher(rounds=4, workers=1)
    yield hasher
    hasher.close()


async def test_hash_then_verify(hasher):
    hashed = await hasher.hash("correct horse")
    assert hashed.startswith("$2b$04$")
    assert await hasher.verify("correct horse", hashed)
    assert not await hasher.verify("wrong horse", hashed)


async def test_unknown_user_spends_a_decoy_check_and_fails(hasher):
    assert not await hasher.verify("decoy-password", None)


async def test_overlong_login_password_is_checked_without_crashing(hasher):
    """bcrypt 5 raises on more than 72 bytes; a login with a long password must just
    fail or succeed, never error."""
    hashed = await hasher.hash("y" * 72)
    assert await hasher.verify("y" * 72, hashed)
    assert not await hasher.verify("z" * 100, hashed)
    # Same first 72 bytes: bcrypt alone would accept it.
    assert not await hasher.verify("y" * 73, hashed)


def test_default_cost_is_12(tmp_path):
    assert make_settings(tmp_path, bcrypt_rounds=12).logins.bcrypt_rounds == 12
    from common.settings import LoginSettings

    assert LoginSettings.model_fields["bcrypt_rounds"].default == 12


async def test_cost_12_hash_is_produced_and_runs_off_the_event_loop(monkeypatch):
    """The hash runs while the event loop keeps serving. The real bcrypt call is gated on
    an event that only the loop can set once the hashing task has started: had hashing run on the
    loop thread, the gate could never open (no timing assumptions, so a busy machine
    cannot make this flaky)."""
    real_hashpw = passwords.bcrypt.hashpw
    loop_ran_during_hash = threading.Event()

    def gated_hashpw(password: bytes, salt: bytes) -> bytes:
        assert loop_ran_during_hash.wait(timeout=10), "the event loop was blocked while hashing"
        return real_hashpw(password, salt)

    hasher = PasswordHasher(rounds=12, workers=1)
    monkeypatch.setattr(passwords.bcrypt, "hashpw", gated_hashpw)
    try:
        hashing = asyncio.create_task(hasher.hash("correct horse battery"))
        await asyncio.sleep(0.01)  # the task starts; on-loop hashing would block here
        loop_ran_during_hash.set()
        hashed = await hashing
    finally:
        hasher.close()
    assert hashed.startswith("$2b$12$")
