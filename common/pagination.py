"""AIP-158 pagination shared by every list RPC: page sizes and opaque page tokens.

A page token is URL-safe base64 of JSON carrying where the previous page ended (the
`cursor`, e.g. the last id) and a fingerprint of the filters it was issued for, so a
token replayed with other filters is refused instead of silently paging through a
different result.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from common.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
_TOKEN_VERSION = 1


def effective_page_size(page_size: int) -> int:
    """0 → 50; above 500 → 500; negative → InvalidArgument (field page_size)."""
    if page_size < 0:
        raise InvalidArgument([FieldViolation("page_size", "must not be negative")])
    if page_size == 0:
        return DEFAULT_PAGE_SIZE
    return min(page_size, MAX_PAGE_SIZE)


def fingerprint(filters: dict[str, Any]) -> str:
    """A short digest of JSON-able filters, stable across processes."""
    canonical = json.dumps(filters, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode_page_token(cursor: Any, filters_fingerprint: str) -> str:
    payload = json.dumps(
        {"v": _TOKEN_VERSION, "c": cursor, "f": filters_fingerprint}, separators=(",", ":")
    )
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_page_token(token: str, filters_fingerprint: str, filter_names: str) -> Any:
    """The cursor of the previous page. InvalidArgument (field page_token) when the token
    is malformed or was issued for other filters; `filter_names` ("pair and status")
    tells the caller what to send again."""
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(data, dict) or data.get("v") != _TOKEN_VERSION or "c" not in data:
            raise ValueError("bad token")
        cursor, issued_for = data["c"], data["f"]
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeError):
        raise InvalidArgument(
            [FieldViolation("page_token", "is not a token this service issued")]
        ) from None
    if issued_for != filters_fingerprint:
        raise InvalidArgument(
            [
                FieldViolation(
                    "page_token",
                    f"was issued for other filters; send the same {filter_names} as on the "
                    "call that returned it, or start again without a page_token",
                )
            ]
        )
    return cursor
