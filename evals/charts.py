"""Small inline SVG charts for the HTML report: grouped bars, histograms, lines.

Pure functions from numbers to an `<svg>` string; no scripts, no fonts or styles
fetched from anywhere, so the report stays one self-contained file. Colours come
from CSS classes the page defines (`.s0`, `.s1`, ... for series, `.mark` for markers).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 640
HEIGHT = 240
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 28, 44

Format = Callable[[float], str]


@dataclass(slots=True, frozen=True)
class Bin:
    low: float
    high: float
    count: int


@dataclass(slots=True, frozen=True)
class Plot:
    """The drawing area inside the axes, and the y range it maps."""

    y_min: float
    y_max: float
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def inner_width(self) -> float:
        return self.width - LEFT - RIGHT

    @property
    def inner_height(self) -> float:
        return self.height - TOP - BOTTOM

    def y(self, value: float) -> float:
        span = (self.y_max - self.y_min) or 1.0
        return TOP + self.inner_height * (1 - (value - self.y_min) / span)


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _svg(title: str, body: list[str], plot: Plot) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {plot.width} {plot.height}" role="img" '
        f'aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>"
        f'<text class="title" x="{LEFT}" y="16">{escape(title)}</text>' + "".join(body) + "</svg>"
    )


def _y_axis(plot: Plot, ticks: Sequence[float], fmt: Format) -> list[str]:
    parts = []
    for tick in ticks:
        y = plot.y(tick)
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{plot.width - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(fmt(tick))}</text>'
        )
    return parts


def _nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    if high <= low:
        return [low]
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def empty_chart(title: str, message: str = "no data") -> str:
    plot = Plot(0, 1, height=80)
    body = [f'<text class="empty" x="{WIDTH / 2}" y="52" text-anchor="middle">{escape(message)}</text>']
    return _svg(title, body, plot)


def bar_chart(
    title: str,
    groups: Sequence[tuple[str, Sequence[float]]],
    series: Sequence[str],
    *,
    y_max: float = 1.0,
    fmt: Format = lambda v: f"{v:.0%}",
) -> str:
    """Grouped vertical bars: one group per label, one bar per series, value printed on top."""
    if not groups:
        return empty_chart(title)
    plot = Plot(0.0, y_max * 1.1)  # headroom for the values printed over the bars
    body = _y_axis(plot, _nice_ticks(0.0, y_max), fmt)
    slot = plot.inner_width / len(groups)
    bar = min(36.0, slot * 0.8 / max(1, len(series)))
    for index, (label, values) in enumerate(groups):
        start = LEFT + slot * index + (slot - bar * len(values)) / 2
        for position, value in enumerate(values):
            x = start + bar * position
            y = plot.y(value)
            name = series[position] if position < len(series) else ""
            body.append(
                f'<rect class="s{position}" x="{x:.1f}" y="{y:.1f}" width="{bar - 2:.1f}" '
                f'height="{plot.y(0) - y:.1f}"><title>{escape(f"{label} {name}: {fmt(value)}")}</title>'
                "</rect>"
                f'<text class="value" x="{x + bar / 2 - 1:.1f}" y="{y - 3:.1f}" '
                f'text-anchor="middle">{escape(fmt(value))}</text>'
            )
        body.append(
            f'<text class="tick" x="{LEFT + slot * (index + 0.5):.1f}" y="{plot.height - BOTTOM + 16}" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    body.extend(_legend(series, plot))
    return _svg(title, body, plot)


def _legend(series: Sequence[str], plot: Plot) -> list[str]:
    parts = []
    for index, name in enumerate(series):
        x = plot.width - RIGHT - 80 * (len(series) - index)
        parts.append(
            f'<rect class="s{index}" x="{x}" y="6" width="10" height="10"/>'
            f'<text class="tick" x="{x + 14}" y="15">{escape(name)}</text>'
        )
    return parts


def bins_of(
    values: Sequence[float], *, count: int = 12, low: float | None = None, high: float | None = None
) -> list[Bin]:
    """Equal-width bins over [low, high] (default: the values' range); the last bin is closed."""
    if not values:
        return []
    low = min(values) if low is None else low
    high = max(values) if high is None else high
    if high <= low:
        high = low + 1.0
    width = (high - low) / count
    counts = [0] * count
    for value in values:
        counts[min(count - 1, max(0, int((value - low) / width)))] += 1
    return [Bin(low + i * width, low + (i + 1) * width, n) for i, n in enumerate(counts)]


def histogram(
    title: str,
    values: Sequence[float],
    *,
    unit: str = "",
    markers: Sequence[tuple[str, float]] = (),
    bins: int = 12,
    low: float | None = None,
    high: float | None = None,
    fmt: Format = _fmt,
) -> str:
    """A histogram of `values` with labelled vertical markers (p50, p95, mean, ...)."""
    buckets = bins_of(values, count=bins, low=low, high=high)
    if not buckets:
        return empty_chart(title)
    top = max(b.count for b in buckets)
    plot = Plot(0.0, float(top))
    body = _y_axis(plot, [t for t in _nice_ticks(0.0, float(top)) if t == int(t)], lambda v: str(int(v)))
    start, end = buckets[0].low, buckets[-1].high

    def x_of(value: float) -> float:
        return LEFT + plot.inner_width * (value - start) / (end - start)

    for bucket in buckets:
        x0, x1 = x_of(bucket.low), x_of(bucket.high)
        y = plot.y(bucket.count)
        label = f"{fmt(bucket.low)} to {fmt(bucket.high)}{unit}: {bucket.count}"
        body.append(
            f'<rect class="s0" x="{x0 + 0.5:.1f}" y="{y:.1f}" width="{max(0.5, x1 - x0 - 1):.1f}" '
            f'height="{plot.y(0) - y:.1f}"><title>{escape(label)}</title></rect>'
        )
    for tick, anchor in ((start, "start"), ((start + end) / 2, "middle"), (end, "end")):
        body.append(
            f'<text class="tick" x="{x_of(tick):.1f}" y="{plot.height - BOTTOM + 16}" '
            f'text-anchor="{anchor}">{escape(fmt(tick) + unit)}</text>'
        )
    for index, (name, value) in enumerate(markers):
        x = x_of(min(max(value, start), end))
        # Labels near the right edge go on the marker's left so they stay inside the chart.
        right = x > LEFT + plot.inner_width * 0.7
        body.append(
            f'<line class="mark" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{plot.y(0):.1f}"/>'
            f'<text class="mark-label" x="{x - 4 if right else x + 4:.1f}" y="{TOP + 10 + 12 * index}" '
            f'text-anchor="{"end" if right else "start"}">{escape(f"{name} {fmt(value)}{unit}")}</text>'
        )
    return _svg(title, body, plot)


def line_chart(
    title: str,
    lines: Sequence[Sequence[float]],
    *,
    highlight: Sequence[float] = (),
    y_min: float = -1.0,
    y_max: float = 1.0,
    x_label: str = "turn",
    fmt: Format = lambda v: f"{v:+.1f}" if v else "0",
) -> str:
    """Faint lines (one per series) plus an optional highlighted line (e.g. the mean), over index."""
    longest = max([len(line) for line in lines] + [len(highlight)])
    if longest == 0:
        return empty_chart(title)
    plot = Plot(y_min, y_max)
    body = _y_axis(plot, _nice_ticks(y_min, y_max), fmt)
    steps = max(1, longest - 1)

    def points(line: Sequence[float]) -> str:
        return " ".join(
            f"{LEFT + plot.inner_width * i / steps:.1f},{plot.y(min(max(v, y_min), y_max)):.1f}"
            for i, v in enumerate(line)
        )

    for line in lines:
        if line:
            body.append(f'<polyline class="faint" points="{points(line)}"/>')
    if highlight:
        body.append(f'<polyline class="main" points="{points(highlight)}"><title>mean</title></polyline>')
        for i, value in enumerate(highlight):
            x = LEFT + plot.inner_width * i / steps
            body.append(
                f'<circle class="main-dot" cx="{x:.1f}" cy="{plot.y(value):.1f}" r="3">'
                f"<title>{escape(f'{x_label} {i + 1}: {fmt(value)}')}</title></circle>"
            )
    for i in range(longest):
        if longest <= 12 or i % math.ceil(longest / 12) == 0:
            body.append(
                f'<text class="tick" x="{LEFT + plot.inner_width * i / steps:.1f}" '
                f'y="{plot.height - BOTTOM + 16}" text-anchor="middle">{i + 1}</text>'
            )
    body.append(
        f'<text class="tick" x="{LEFT + plot.inner_width / 2:.1f}" y="{plot.height - 8}" '
        f'text-anchor="middle">{escape(x_label)}</text>'
    )
    return _svg(title, body, plot)
