"""The plain words of the model page: a model card's bottom line (the paragraph training
writes under "## Bottom line", inference.training.report) and whether it claims an
edge. Plain Python."""

from __future__ import annotations

from typing import Any

_HEADING = "## Bottom line"
_NO_EDGE = "**No demonstrated edge"


def bottom_line(card: str) -> dict[str, Any]:
    """`{demonstrated, summary}`: summary is the bottom line's first paragraph (Markdown),
    or None when the card has none — then nothing is claimed."""
    _, found, rest = card.partition(_HEADING)
    paragraphs = [part.strip() for part in rest.split("\n\n") if part.strip()] if found else []
    summary = paragraphs[0] if paragraphs and not paragraphs[0].startswith("#") else None
    return {
        "demonstrated": summary is not None and not summary.startswith(_NO_EDGE),
        "summary": summary,
    }
