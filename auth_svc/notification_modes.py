"""How each kind of Discord DM reaches a user: on (with a push notification), silent
(delivered without one — Discord's suppress-notifications flag) or off. Stored per user
as a small JSON object of the kinds they changed; a kind never set is on."""

from __future__ import annotations

from collections.abc import Mapping

KINDS = ("signal", "take_profit_hit", "stop_loss_hit", "position_opened", "position_closed")
ON, SILENT, OFF = "on", "silent", "off"
MODES = (ON, SILENT, OFF)


def effective(stored: Mapping[str, str] | None) -> dict[str, str]:
    """Every kind's mode (those never set are on)."""
    stored = stored or {}
    return {kind: stored.get(kind, ON) for kind in KINDS}


def merged(stored: Mapping[str, str] | None, changes: Mapping[str, str | None]) -> dict[str, str]:
    """`stored` with the kinds in `changes` set; a None change keeps the stored mode."""
    result = effective(stored)
    result.update({kind: mode for kind, mode in changes.items() if mode is not None})
    return result
