"""Charts as inline SVG strings: bars, lines over runs, and one employee's journey.

Plain string building, no plotting library: the output is small, deterministic (golden
tests compare it) and works with no script and no network. Every text is escaped; each
mark carries ``data-*`` attributes with its numbers so a browser test can read them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from html import escape

PALETTE = (
    "#2563eb",
    "#dc2626",
    "#16a34a",
    "#d97706",
    "#7c3aed",
    "#0891b2",
    "#db2777",
    "#65a30d",
    "#ea580c",
    "#4f46e5",
    "#0d9488",
    "#a21caf",
)
MUTED = "#9ca3af"
WIDTH = 760


def colours(names: Iterable[str]) -> dict[str, str]:
    """A stable colour per persona; placeholders such as '(empty)' are grey."""
    result: dict[str, str] = {}
    index = 0
    for name in sorted(set(names)):
        if name.startswith("("):
            result[name] = MUTED
        else:
            result[name] = PALETTE[index % len(PALETTE)]
            index += 1
    return result


def _a(value: object) -> str:
    return escape(str(value), quote=True)


def _short(text: str, limit: int = 30) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _share(count: int, total: int) -> str:
    return f"{100.0 * count / total:.1f}%" if total else "0.0%"


def bar_chart(
    counts: Sequence[tuple[str, int]], total: int, palette: Mapping[str, str], label: str
) -> str:
    """Horizontal bars, largest first: persona, bar, 'count (share)'."""
    row, left, bar_width = 26, 210, 400
    peak = max((n for _, n in counts), default=0)
    height = max(row * len(counts) + 8, row)
    parts = [
        f'<svg class="chart bar-chart" role="img" aria-label="{_a(label)}" '
        f'width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{_a(label)}</title>",
    ]
    for i, (name, count) in enumerate(counts):
        y = 4 + i * row
        width = 0.0 if not peak else max(bar_width * count / peak, 1.0 if count else 0.0)
        share = _share(count, total)
        parts.append(
            f'<g class="bar" data-persona="{_a(name)}" data-count="{count}" data-share="{share}">'
            f"<title>{_a(name)}: {count:,} ({share})</title>"
            f'<text x="{left - 8}" y="{y + 17}" text-anchor="end">{_a(_short(name))}</text>'
            f'<rect x="{left}" y="{y + 3}" width="{width:.1f}" height="{row - 8}" '
            f'fill="{palette.get(name, MUTED)}" rx="2"/>'
            f'<text x="{left + width + 6:.1f}" y="{y + 17}" class="value">'
            f"{count:,} ({share})</text>"
            "</g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _nice_step(span: float, ticks: int = 5) -> float:
    raw = span / ticks if span > 0 else 1.0
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * power:
            return float(factor * power)
    return float(10 * power)


def _label(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def line_chart(
    x_labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[int]]],
    palette: Mapping[str, str],
    label: str,
) -> str:
    """One line per series over evenly spaced points (runs), with a legend on the right."""
    left, right, top, bottom = 64, 190, 12, 46
    height = 320
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    values = [v for _, vs in series for v in vs] or [0]
    low, high = float(min(0, min(values))), float(max(0, max(values)))
    step = max(_nice_step(high - low), 1.0)  # counts are whole numbers
    low = math.floor(low / step) * step
    high = max(math.ceil(high / step) * step, low + step)
    count = len(x_labels)

    def x(i: int) -> float:
        return left + (plot_w / 2 if count < 2 else plot_w * i / (count - 1))

    def y(v: float) -> float:
        return top + plot_h * (high - v) / (high - low)

    parts = [
        f'<svg class="chart line-chart" role="img" aria-label="{_a(label)}" '
        f'width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{_a(label)}</title>",
    ]
    tick: float = low
    while tick <= high + step / 2:
        ty = y(tick)
        parts.append(
            f'<line class="grid" x1="{left}" x2="{left + plot_w}" y1="{ty:.1f}" '
            f'y2="{ty:.1f}"/><text x="{left - 6}" y="{ty + 4:.1f}" '
            f'text-anchor="end">{_label(tick)}</text>'
        )
        tick += step
    every = max(1, math.ceil(count / max(2, plot_w // 84)))  # labels ~84 px apart
    for i, text in enumerate(x_labels):
        if i % every == 0 or i == count - 1:
            parts.append(
                f'<text class="x-label" x="{x(i):.1f}" y="{height - bottom + 18}" '
                f'text-anchor="middle">{_a(_short(text, 16))}</text>'
            )
    markers = count <= 60
    for n, (name, points) in enumerate(series):
        colour = palette.get(name, MUTED)
        coords = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(points))
        parts.append(
            f'<g class="series" data-value="{_a(name)}" '
            f'data-counts="{",".join(str(v) for v in points)}">'
            f'<polyline points="{coords}" fill="none" stroke="{colour}" '
            f'stroke-width="2"/>'
        )
        if markers:
            for i, v in enumerate(points):
                parts.append(
                    f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}">'
                    f"<title>{_a(name)} after {_a(x_labels[i])}: {v}</title></circle>"
                )
        ly = top + 14 + n * 20
        parts.append(
            f'<rect x="{WIDTH - right + 14}" y="{ly - 10}" width="12" height="12" '
            f'fill="{colour}"/><text x="{WIDTH - right + 32}" y="{ly}">'
            f"{_a(_short(name, 22))}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def journey_chart(
    steps: Sequence[tuple[str, str, str]], start: str, palette: Mapping[str, str], label: str
) -> str:
    """A strip of segments, one per value held: ``steps`` are (time, run, new value)."""
    left, right, height = 10, 10, 74
    usable = WIDTH - left - right
    segments = [("", "", start), *steps]
    width = usable / len(segments)
    fits = max(2, int((width - 10) / 7))  # characters that fit in a segment
    parts = [
        f'<svg class="chart journey" role="img" aria-label="{_a(label)}" '
        f'width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{_a(label)}</title>",
    ]
    for i, (time, run, value) in enumerate(segments):
        x0 = left + i * width
        when = time[:10] if time else "before"
        parts.append(
            f'<g class="segment" data-value="{_a(value)}" data-run="{_a(run)}">'
            f"<title>{_a(value)}{' from ' + _a(time) + ' (run ' + _a(run) + ')' if run else ''}"
            f'</title><rect x="{x0:.1f}" y="8" width="{width - 2:.1f}" height="30" '
            f'fill="{palette.get(value, MUTED)}" rx="3"/>'
            f'<text class="on-colour" x="{x0 + 6:.1f}" y="28">{_a(_short(value, fits))}</text>'
            f'<text x="{x0 + 2:.1f}" y="58">{_a(_short(when, fits))}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)
