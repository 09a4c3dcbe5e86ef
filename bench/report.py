"""How the benchmarks print their figures: aligned text tables."""

from __future__ import annotations


def table(head: list[str], rows: list[list[str]]) -> str:
    """An aligned text table."""
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = "  ".join("-" * w for w in widths)

    def render(row: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    return "\n".join([line, render(head), line, *map(render, rows), line])
