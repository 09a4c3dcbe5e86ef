"""Validation of what users send auth_svc. Each function records every bad field in a
ViolationCollector, so one answer names all of them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

from auth_svc.passwords import MAX_PASSWORD_BYTES, MIN_PASSWORD_BYTES
from common.errors import ViolationCollector
from common.market import Timeframe, normalize_pair

USERNAME = re.compile(r"^[A-Za-z0-9_.\-]{3,32}$")
MAX_PAIRS = 20


def check_email(raw: str, errors: ViolationCollector, field: str = "email") -> str:
    """The normalised email (domain lower-cased, trimmed), or '' after recording why not."""
    if not raw.strip():
        errors.add(field, "is required")
        return ""
    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        errors.add(field, str(exc))
        return ""


def check_username(raw: str, errors: ViolationCollector, field: str = "username") -> str:
    username = raw.strip()
    if not username:
        errors.add(field, "is required")
    elif not USERNAME.match(username):
        errors.add(field, "must be 3 to 32 characters of letters, digits, '_', '.' and '-'")
    elif "@" in username:
        errors.add(field, "must not contain '@'")
    return username


def check_new_password(raw: str, errors: ViolationCollector, field: str = "password") -> None:
    size = len(raw.encode())
    if size < MIN_PASSWORD_BYTES:
        errors.add(field, f"must be at least {MIN_PASSWORD_BYTES} bytes")
    elif size > MAX_PASSWORD_BYTES:
        errors.add(field, f"must be at most {MAX_PASSWORD_BYTES} bytes (bcrypt's limit)")


def require_fields(**values: str) -> None:
    """Refuse the request, naming each of `values` that is empty."""
    errors = ViolationCollector()
    for field, value in values.items():
        if not value:
            errors.add(field, "is required")
    errors.raise_if_any()


@dataclass(frozen=True)
class PreferencesInput:
    """Preference values as sent; which ones apply is decided by the update mask."""

    pairs: list[str]
    timeframes: list[Timeframe | None]
    min_confidence: float
    notify_discord: bool
    notify_browser: bool


def check_pairs(raw: list[str], errors: ViolationCollector, field: str) -> list[str]:
    """Normalised, de-duplicated pairs in the order given."""
    pairs: list[str] = []
    if len(raw) > MAX_PAIRS:
        errors.add(field, f"at most {MAX_PAIRS} pairs")
    for index, value in enumerate(raw):
        try:
            pair = normalize_pair(value)
        except ValueError as exc:
            errors.add(f"{field}[{index}]", str(exc))
            continue
        if pair not in pairs:
            pairs.append(pair)
    return pairs


def check_timeframes(
    raw: list[Timeframe | None], errors: ViolationCollector, field: str
) -> list[Timeframe]:
    timeframes: list[Timeframe] = []
    for index, value in enumerate(raw):
        if value is None:
            errors.add(f"{field}[{index}]", "must be one of 15m, 1h, 4h, 1d")
        elif value not in timeframes:
            timeframes.append(value)
    return timeframes


def check_min_confidence(value: float, errors: ViolationCollector, field: str) -> float:
    if not 0.0 <= value <= 1.0:
        errors.add(field, "must be between 0 and 1")
    return value
