"""Validation of what users send auth_svc. Each function records every bad field in a
ViolationCollector, so one answer names all of them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from email_validator import EmailNotValidError, validate_email

from auth_svc.passwords import MAX_PASSWORD_BYTES, MIN_PASSWORD_BYTES
from common.errors import ViolationCollector

USERNAME = re.compile(r"^[A-Za-z0-9_.\-]{3,32}$")
# Pairs a user may follow (preferences.pairs).
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
    for name, value in values.items():
        if not value:
            errors.add(name, "is required")
    errors.raise_if_any()


@dataclass(frozen=True)
class PreferencesInput:
    """Preference values as sent (timeframes as the contract's enum numbers); which ones
    apply is decided by the update mask, and only those are validated."""

    pairs: list[str]
    timeframes: list[int]
    min_confidence: float
    notify_discord: bool
    notify_browser: bool
    # Kind of Discord DM → "on" | "silent" | "off", or None to keep it; an unknown
    # enum number is passed on as its digits and refused.
    discord_modes: dict[str, str | None] = field(default_factory=dict)
