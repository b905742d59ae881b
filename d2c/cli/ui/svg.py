"""Charts as SVG text, drawn on the server: axes, lines, bands, points, whiskers and marker lines.

A :class:`Chart` maps data to a fixed drawing area (``viewBox``) with linear or base-10 log axes;
the browser scales the whole picture to the page width. Every mark carries a CSS class (and
where useful a ``data-*`` attribute) so the page's style colours it and tests can find it.
Tick positions are the "nice numbers" 1, 2, 5 × 10^k (linear) or the decades and their 2 and 5
multiples (log); a time axis (``time_axis``) ticks at whole seconds, minutes and hours instead.
Marker labels that would overlap an earlier one are moved down a line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape
from typing import Callable, Iterable, Sequence

Point = tuple[float, float]

WIDTH = 720
HEIGHT = 380
MARGIN = (24, 24, 54, 74)
"""Top, right, bottom, left, in drawing units."""
LABEL_LINE = 15
"""Height of a marker label's line, in drawing units."""
CHAR_WIDTH = 7.2
"""Rough width of one character of a 12-unit bold label (for moving overlapping labels apart)."""
TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 4 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400)
"""Seconds at which a time axis may tick: whole seconds, minutes, hours, days."""


@dataclass(frozen=True)
class Axis:
    """One axis: its data range, whether it is logarithmic, its title and how ticks are written."""

    low: float
    high: float
    title: str
    log: bool = False
    ticks: Callable[[float], str] = lambda v: f"{v:g}"
    steps: tuple[float, ...] = ()
    """Tick values to choose from instead of 1-2-5 multiples (e.g. TIME_STEPS)."""

    def fraction(self, value: float) -> float:
        """Where ``value`` falls between low (0) and high (1)."""
        if self.log:
            value = max(value, self.low * 1e-3)
            return (math.log10(value) - math.log10(self.low)) / (math.log10(self.high) - math.log10(self.low))
        return (value - self.low) / (self.high - self.low)

    def tick_values(self, count: int = 6) -> list[float]:
        """Readable tick values inside the range."""
        if self.steps:
            return self._stepped(count)
        if self.log:
            values = []
            for exponent in range(math.floor(math.log10(self.low)), math.ceil(math.log10(self.high)) + 1):
                for mantissa in (1, 2, 5):
                    value = mantissa * 10.0**exponent
                    if self.low <= value <= self.high:
                        values.append(value)
            if len(values) > 9:
                values = [v for v in values if f"{v:e}".startswith("1")]
            return values
        raw = (self.high - self.low) / max(count - 1, 1)
        magnitude = 10.0 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
        step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
        first = math.ceil(self.low / step) * step
        return [first + i * step for i in range(int((self.high - first) / step + 1e-9) + 1)]

    def _stepped(self, count: int) -> list[float]:
        if self.log:
            values = [v for v in self.steps if self.low <= v <= self.high]
            while len(values) > count + 2:
                values = values[::2]
            return values
        step = next((v for v in self.steps if (self.high - self.low) / v <= count), self.steps[-1])
        first = math.ceil(self.low / step) * step
        return [first + i * step for i in range(int((self.high - first) / step + 1e-9) + 1)]


def time_axis(low: float, high: float, title: str, ticks: Callable[[float], str], *, log: bool = False) -> Axis:
    """An axis of seconds ticking at whole seconds, minutes or hours."""
    return Axis(low, high, title, log=log, ticks=ticks, steps=TIME_STEPS)


def padded(values: Iterable[float], *, log: bool = False, include: Sequence[float] = (), pad: float = 0.08, zero: bool = False) -> tuple[float, float]:
    """A data range covering ``values`` and ``include`` with some room around it (from 0 with ``zero``)."""
    numbers = [v for v in (*values, *include) if v is not None and math.isfinite(v) and (v > 0 or not log)]
    if not numbers:
        return (1.0, 10.0) if log else (0.0, 1.0)
    low, high = min(numbers), max(numbers)
    if log:
        return low / (1 + 3 * pad), high * (1 + 3 * pad)
    if zero:
        low = min(low, 0.0)
    if high == low:
        high = low + (abs(low) or 1.0)
    span = high - low
    return (low if zero else low - pad * span), high + pad * span


@dataclass
class Chart:
    """One chart in a fixed drawing area; marks are appended in drawing order."""

    x: Axis
    y: Axis
    label: str
    """What the chart shows, for screen readers (``aria-label``)."""
    css_id: str = ""
    width: int = WIDTH
    height: int = HEIGHT
    marks: list[str] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)
    labels: list[tuple[float, float, float]] = field(default_factory=list)
    """Placed marker labels as (left, right, baseline), to keep new ones clear of them."""

    def _place(self, x: float, y: float, text: str, anchor: str) -> float:
        """A baseline for a label at ``x`` that overlaps no earlier label, starting from ``y``."""
        width = len(text) * CHAR_WIDTH
        left = x - width if anchor == "end" else x - width / 2 if anchor == "middle" else x
        while any(left < r and l < left + width and abs(y - b) < LABEL_LINE for l, r, b in self.labels):
            y += LABEL_LINE
        self.labels.append((left, left + width, y))
        return y

    def px(self, value: float) -> float:
        top, right, bottom, left = MARGIN
        return left + self.x.fraction(value) * (self.width - left - right)

    def py(self, value: float) -> float:
        top, right, bottom, left = MARGIN
        return self.height - bottom - self.y.fraction(value) * (self.height - top - bottom)

    def _path(self, points: Sequence[Point]) -> str:
        return " ".join(f"{'M' if i == 0 else 'L'}{self.px(x):.1f},{self.py(y):.1f}" for i, (x, y) in enumerate(points))

    def line(self, points: Sequence[Point], css: str, *, legend: str | None = None, data: str = "") -> None:
        """A polyline through ``points``."""
        if len(points) >= 2:
            self.marks.append(f'<path class="line {css}" d="{self._path(points)}" fill="none"{data}/>')
        if legend:
            self.legend.append((css, legend))

    def band(self, lower: Sequence[Point], upper: Sequence[Point], css: str, *, legend: str | None = None, data: str = "") -> None:
        """The area between two curves over the same x values."""
        if len(lower) >= 2:
            outline = list(lower) + list(reversed(upper))
            self.marks.append(f'<path class="band {css}" d="{self._path(outline)} Z"{data}/>')
        if legend:
            self.legend.append((f"band {css}", legend))

    def points(self, points: Sequence[Point], css: str, *, titles: Sequence[str] = (), hollow: bool = False, radius: float = 4.5) -> None:
        """Dots at ``points`` (a title each for a hover tip)."""
        fill = ' fill="none"' if hollow else ""
        for i, (x, y) in enumerate(points):
            tip = f"<title>{escape(titles[i])}</title>" if i < len(titles) else ""
            self.marks.append(f'<circle class="point {css}" cx="{self.px(x):.1f}" cy="{self.py(y):.1f}" r="{radius}"{fill}>{tip}</circle>')

    def whisker(self, start: Point, end: Point, css: str) -> None:
        """A line from ``start`` to ``end`` with short caps (a p50-p90 range)."""
        x1, y1, x2, y2 = self.px(start[0]), self.py(start[1]), self.px(end[0]), self.py(end[1])
        self.marks.append(f'<line class="whisker {css}" x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}"/>')
        vertical = abs(x2 - x1) < abs(y2 - y1)
        for cx, cy in ((x1, y1), (x2, y2)):
            if vertical:
                self.marks.append(f'<line class="whisker {css}" x1="{cx - 4:.1f}" y1="{cy:.1f}" x2="{cx + 4:.1f}" y2="{cy:.1f}"/>')
            else:
                self.marks.append(f'<line class="whisker {css}" x1="{cx:.1f}" y1="{cy - 4:.1f}" x2="{cx:.1f}" y2="{cy + 4:.1f}"/>')

    def hline(self, y: float, css: str, text: str, *, anchor_right: bool = True) -> None:
        """A horizontal marker line across the plot with its label."""
        top, right, bottom, left = MARGIN
        py = self.py(y)
        x_text = self.width - right - 4 if anchor_right else left + 4
        anchor = "end" if anchor_right else "start"
        baseline = self._place(x_text, py - 5 if py - top > LABEL_LINE + 2 else py + 14, text, anchor)
        self.marks.append(
            f'<g class="marker {css}"><line x1="{left}" y1="{py:.1f}" x2="{self.width - right}" y2="{py:.1f}"/>'
            f'<text x="{x_text}" y="{baseline:.1f}" text-anchor="{anchor}">{escape(text)}</text></g>'
        )

    def vline(self, x: float, css: str, text: str) -> None:
        """A vertical marker line across the plot with its label at the top."""
        top, right, bottom, left = MARGIN
        px = self.px(x)
        anchor = "end" if px > self.width * 0.6 else "start"
        offset = -5 if anchor == "end" else 5
        baseline = self._place(px + offset, top + 14, text, anchor)
        self.marks.append(
            f'<g class="marker {css}"><line x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{self.height - bottom}"/>'
            f'<text x="{px + offset:.1f}" y="{baseline:.1f}" text-anchor="{anchor}">{escape(text)}</text></g>'
        )

    def vspan(self, x0: float, x1: float, css: str, text: str) -> None:
        """A shaded vertical strip from ``x0`` to ``x1`` with a label at its foot."""
        top, right, bottom, left = MARGIN
        a, b = self.px(x0), self.px(x1)
        self.marks.append(
            f'<g class="span {css}"><rect x="{a:.1f}" y="{top}" width="{max(b - a, 1):.1f}" height="{self.height - top - bottom}"/>'
            f'<text x="{(a + b) / 2:.1f}" y="{self.height - bottom - 6}" text-anchor="middle">{escape(text)}</text></g>'
        )

    def label_at(self, point: Point, text: str, css: str = "") -> None:
        """A small text label just above and right of ``point``."""
        self.marks.append(f'<text class="tag {css}" x="{self.px(point[0]) + 6:.1f}" y="{self.py(point[1]) - 6:.1f}">{escape(text)}</text>')

    def near(self, a: Point, b: Point, distance: float = 14.0) -> bool:
        """True when two data points are drawn within ``distance`` units of each other."""
        return math.hypot(self.px(a[0]) - self.px(b[0]), self.py(a[1]) - self.py(b[1])) < distance

    def _axes(self) -> str:
        top, right, bottom, left = MARGIN
        parts = [f'<rect class="frame" x="{left}" y="{top}" width="{self.width - left - right}" height="{self.height - top - bottom}"/>']
        for value in self.x.tick_values():
            px = self.px(value)
            parts.append(f'<line class="grid" x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{self.height - bottom}"/>')
            parts.append(f'<text class="tick" x="{px:.1f}" y="{self.height - bottom + 18}" text-anchor="middle">{escape(self.x.ticks(value))}</text>')
        for value in self.y.tick_values():
            py = self.py(value)
            parts.append(f'<line class="grid" x1="{left}" y1="{py:.1f}" x2="{self.width - right}" y2="{py:.1f}"/>')
            parts.append(f'<text class="tick" x="{left - 8}" y="{py + 4:.1f}" text-anchor="end">{escape(self.y.ticks(value))}</text>')
        parts.append(f'<text class="axis-title" x="{(left + self.width - right) / 2:.1f}" y="{self.height - 10}" text-anchor="middle">{escape(self.x.title)}</text>')
        parts.append(
            f'<text class="axis-title" transform="translate(18 {(top + self.height - bottom) / 2:.1f}) rotate(-90)" text-anchor="middle">{escape(self.y.title)}</text>'
        )
        return "".join(parts)

    def legend_html(self) -> str:
        """The legend as an HTML list under the chart (wraps on narrow screens)."""
        if not self.legend:
            return ""
        items = "".join(f'<li><svg width="22" height="12" aria-hidden="true"><rect class="key {css}" width="22" height="12"/></svg>{escape(text)}</li>' for css, text in self.legend)
        return f'<ul class="legend">{items}</ul>'

    def render(self) -> str:
        """The chart as an SVG element followed by its legend."""
        top, right, bottom, left = MARGIN
        clip = f"clip-{self.css_id or id(self)}"
        ident = f' id="{self.css_id}"' if self.css_id else ""
        return (
            f'<figure class="chart"><svg{ident} viewBox="0 0 {self.width} {self.height}" role="img" aria-label="{escape(self.label)}"'
            f' xmlns="http://www.w3.org/2000/svg"><defs><clipPath id="{clip}"><rect x="{left}" y="{top}" width="{self.width - left - right}"'
            f' height="{self.height - top - bottom}"/></clipPath></defs>{self._axes()}<g clip-path="url(#{clip})">{"".join(self.marks)}</g></svg>'
            f"{self.legend_html()}</figure>"
        )
