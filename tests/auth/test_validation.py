"""Validation of registration input and preferences: every bad field is named."""

import pytest

from auth_svc.validation import (
    check_email,
    check_new_password,
    check_username,
)
from common.errors import InvalidArgument, ViolationCollector
from common.market import normalize_pair


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("Ann@Example.COM", "Ann@example.com"), ("  bob@x.io ", "bob@x.io")],
)
def test_email_is_normalised(raw, expected):
    errors = ViolationCollector()
    assert check_email(raw, errors) == expected
    assert not errors.violations


@pytest.mark.parametrize("raw", ["", "no-at-sign", "a@", "@b.io", "a b@c.io"])
def test_bad_emails_are_named(raw):
    errors = ViolationCollector()
    check_email(raw, errors)
    assert [v.field for v in errors.violations] == ["email"]


@pytest.mark.parametrize("raw", ["ann", "Ann_1", "a.b-c", "x" * 32])
def test_good_usernames(raw):
    errors = ViolationCollector()
    check_username(raw, errors)
    assert not errors.violations


@pytest.mark.parametrize("raw", ["", "ab", "x" * 33, "ann smith", "ann@x", "émile"])
def test_bad_usernames(raw):
    errors = ViolationCollector()
    check_username(raw, errors)
    assert [v.field for v in errors.violations] == ["username"]


@pytest.mark.parametrize(
    ("password", "ok"),
    [
        ("1234567", False),
        ("12345678", True),
        ("x" * 72, True),
        ("x" * 73, False),
        ("é" * 36, True),  # 72 bytes
        ("é" * 37, False),  # 74 bytes: the limit is bytes, not characters
    ],
)
def test_password_length_is_counted_in_bytes(password, ok):
    errors = ViolationCollector()
    check_new_password(password, errors)
    assert (not errors.violations) == ok


def test_all_violations_are_reported_together():
    errors = ViolationCollector()
    check_email("bad", errors)
    check_username("x", errors)
    check_new_password("short", errors)
    with pytest.raises(InvalidArgument) as caught:
        errors.raise_if_any()
    assert [v.field for v in caught.value.violations] == ["email", "username", "password"]


@pytest.mark.parametrize(
    ("raw", "pair"),
    [("EUR/USD", "EUR/USD"), ("eurusd", "EUR/USD"), ("eur/usd", "EUR/USD"), ("GBP-JPY", "GBP/JPY")],
)
def test_pairs_are_normalised(raw, pair):
    assert normalize_pair(raw) == pair


@pytest.mark.parametrize("raw", ["", "EUR", "EURUSDX", "XXX/YYY", "EUR/EUR"])
def test_unknown_pairs_are_refused(raw):
    with pytest.raises(ValueError, match="pair"):
        normalize_pair(raw)
