"""The equity curve of `/performance` as a PNG Discord shows inline: cumulative PnL
after each closed position, a zero line, and the first and last dates and the extremes
labelled. Drawn with Pillow (a few lines of drawing; a plotting library would add tens
of megabytes to a bot whose memory budget is 120 MB)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 800, 360
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 90, 20, 40, 40
BACKGROUND, AXIS, GRID, TEXT = (24, 26, 32), (140, 146, 160), (48, 52, 62), (220, 224, 232)
GAIN, LOSS = (46, 204, 113), (231, 76, 60)


def equity_png(points: Sequence[tuple[datetime, float]], currency: str, title: str) -> bytes:
    """PNG bytes of the curve through `points` (time, cumulative PnL), starting at 0."""
    image = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=14)
    # The default font has no dashes: a plain hyphen instead.
    draw.text((MARGIN_LEFT, 12), title.replace("—", "-"), fill=TEXT, font=font)
    values = [0.0, *(value for _, value in points)]
    low, high = min(values), max(values)
    if high == low:
        high, low = high + 1, low - 1
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM

    def y(value: float) -> float:
        return MARGIN_TOP + (high - value) / (high - low) * plot_h

    def x(index: int) -> float:
        return MARGIN_LEFT + index / max(len(values) - 1, 1) * plot_w

    labelled: list[float] = []
    for value in (0.0, high, low):
        draw.line([(MARGIN_LEFT, y(value)), (WIDTH - MARGIN_RIGHT, y(value))], fill=GRID)
        if all(abs(y(value) - y(other)) > 16 for other in labelled):  # never overprint
            draw.text((6, y(value) - 8), f"{value:,.2f} {currency}", fill=AXIS, font=font)
            labelled.append(value)
    draw.line([(MARGIN_LEFT, MARGIN_TOP), (MARGIN_LEFT, HEIGHT - MARGIN_BOTTOM)], fill=AXIS)
    line = [(x(i), y(v)) for i, v in enumerate(values)]
    draw.line(line, fill=GAIN if values[-1] >= 0 else LOSS, width=3)
    if points:
        bottom = HEIGHT - MARGIN_BOTTOM + 10
        draw.text((MARGIN_LEFT, bottom), f"{points[0][0]:%Y-%m-%d}", fill=AXIS, font=font)
        end = f"{points[-1][0]:%Y-%m-%d}"
        draw.text((WIDTH - MARGIN_RIGHT - 80, bottom), end, fill=AXIS, font=font)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()
