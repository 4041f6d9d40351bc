"""Small line charts rendered by the node as SVG (the dashboard shows them as images).

An SVG shown through `<img>` runs no script, and every text here is XML-escaped, so chart labels
taken from the chain cannot become markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 560, 240
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 56, 110, 28, 28
# Series this short also get a dot per point (a single epoch is otherwise invisible).
MAX_MARKED_POINTS = 64
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
MAX_SERIES = 16

Series = tuple[str, Sequence[tuple[float, float]]]


def _fmt(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def line_chart(title: str, series: Sequence[Series], *, x_label: str = "", y_label: str = "") -> str:
    """An SVG document: one polyline (with a legend entry) per series, axes scaled to the data."""
    shown = [(name, list(points)) for name, points in series[:MAX_SERIES] if points]
    xs = [x for _, points in shown for x, _ in points]
    ys = [y for _, points in shown for _, y in points]
    x_min, x_max = (min(xs), max(xs)) if xs else (0.0, 1.0)
    y_min, y_max = (min(0.0, min(ys)), max(ys)) if ys else (0.0, 1.0)
    if x_max == x_min:
        x_max = x_min + 1
    if y_max == y_min:
        y_max = y_min + 1
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM

    def sx(x: float) -> float:
        return MARGIN_LEFT + (x - x_min) / (x_max - x_min) * plot_w

    def sy(y: float) -> float:
        return MARGIN_TOP + plot_h - (y - y_min) / (y_max - y_min) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>',
        f'<text x="{MARGIN_LEFT}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>',
        f'<line x1="{MARGIN_LEFT}" y1="{MARGIN_TOP + plot_h}" x2="{MARGIN_LEFT + plot_w}" y2="{MARGIN_TOP + plot_h}" stroke="#444"/>',
        f'<line x1="{MARGIN_LEFT}" y1="{MARGIN_TOP}" x2="{MARGIN_LEFT}" y2="{MARGIN_TOP + plot_h}" stroke="#444"/>',
        f'<text x="{MARGIN_LEFT - 4}" y="{MARGIN_TOP + 4}" text-anchor="end">{_fmt(y_max)}</text>',
        f'<text x="{MARGIN_LEFT - 4}" y="{MARGIN_TOP + plot_h}" text-anchor="end">{_fmt(y_min)}</text>',
        f'<text x="{MARGIN_LEFT}" y="{HEIGHT - 8}">{_fmt(x_min)}</text>',
        f'<text x="{MARGIN_LEFT + plot_w}" y="{HEIGHT - 8}" text-anchor="end">{_fmt(x_max)}</text>',
        f'<text x="{MARGIN_LEFT + plot_w / 2}" y="{HEIGHT - 8}" text-anchor="middle">{escape(x_label)}</text>',
        f'<text x="12" y="{MARGIN_TOP + plot_h / 2}" transform="rotate(-90 12 {MARGIN_TOP + plot_h / 2})" '
        f'text-anchor="middle">{escape(y_label)}</text>',
    ]
    if not shown:
        parts.append(f'<text x="{MARGIN_LEFT + plot_w / 2}" y="{MARGIN_TOP + plot_h / 2}" text-anchor="middle" '
                     f'fill="#888">no data yet</text>')
    for index, (name, points) in enumerate(shown):
        colour = PALETTE[index % len(PALETTE)]
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
        parts.append(f'<polyline class="series" data-name="{escape(name, {chr(34): "&quot;"})}" fill="none" '
                     f'stroke="{colour}" stroke-width="1.5" points="{coords}"/>')
        if len(points) <= MAX_MARKED_POINTS:
            parts.extend(f'<circle class="point" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}"/>'
                         for x, y in points)
        legend_y = MARGIN_TOP + 12 + 14 * index
        parts.append(f'<rect x="{WIDTH - MARGIN_RIGHT + 10}" y="{legend_y - 8}" width="10" height="3" fill="{colour}"/>')
        parts.append(f'<text x="{WIDTH - MARGIN_RIGHT + 24}" y="{legend_y - 4}">{escape(name[:16])}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
