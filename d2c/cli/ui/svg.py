"""Charts as SVG text, drawn on the server: axes, lines, bands, points, whiskers and marker lines.

A :class:`Chart` maps data to a fixed drawing area (``viewBox``) with linear or base-10 log axes;
the browser scales the whole picture to the page width. Every mark carries a CSS class (and
where useful a ``data-*`` attribute) so the page's style colours it and tests can find it.
Tick positions are the "nice numbers" 1, 2, 5 × 10^k (linear) or the decades and their 2 and 5
multiples (log); a time axis (``time_axis``) ticks at whole seconds, minutes and hours instead.
Marker labels that would overlap an earlier one are moved down a line. Each chart is drawn twice,
wide and narrow, and the page's style shows the one that fits the screen: text in a wide drawing
squeezed onto a phone would be too small to read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape
from typing import Callable, Iterable, Sequence

Point = tuple[float, float]

WIDTH = 720
HEIGHT = 380
MARGIN = (30, 24, 54, 74)
"""Top, right, bottom, left, in drawing units."""
NARROW = (420, 340, (28, 14, 50, 64))
"""Width, height and margins of the copy drawn for phone screens (shown by CSS below 640 px)."""
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
            if len(values) > count + 3:
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
    """One chart; drawing calls are recorded and carried out for each size it is rendered at."""

    x: Axis
    y: Axis
    label: str
    """What the chart shows, for screen readers (``aria-label``)."""
    css_id: str = ""
    width: int = WIDTH
    height: int = HEIGHT
    legend: list[tuple[str, str]] = field(default_factory=list)
    ops: list[tuple[Callable[..., str], tuple]] = field(default_factory=list)
    margin: tuple[int, int, int, int] = MARGIN
    y_ticks: bool = True
    """False for a chart whose vertical position means nothing (a single range bar)."""
    labels: list[tuple[float, float, float]] = field(default_factory=list)
    """Marker labels placed in the drawing being made, as (left, right, baseline)."""

    def _place(self, x: float, y: float, text: str, anchor: str) -> float:
        """A baseline for a label at ``x`` that overlaps no earlier label, starting from ``y``."""
        width = len(text) * CHAR_WIDTH
        left = x - width if anchor == "end" else x - width / 2 if anchor == "middle" else x
        while any(left < r and l < left + width and abs(y - b) < LABEL_LINE for l, r, b in self.labels):
            y += LABEL_LINE
        self.labels.append((left, left + width, y))
        return y

    def px(self, value: float) -> float:
        top, right, bottom, left = self.margin
        return left + self.x.fraction(value) * (self.width - left - right)

    def py(self, value: float) -> float:
        top, right, bottom, left = self.margin
        return self.height - bottom - self.y.fraction(value) * (self.height - top - bottom)

    def _path(self, points: Sequence[Point]) -> str:
        return " ".join(f"{'M' if i == 0 else 'L'}{self.px(x):.1f},{self.py(y):.1f}" for i, (x, y) in enumerate(points))

    # -- what can be drawn (recorded now, drawn at render) --------------------------------------

    def line(self, points: Sequence[Point], css: str, *, legend: str | None = None, data: str = "") -> None:
        """A polyline through ``points``."""
        if len(points) >= 2:
            self.ops.append((self._line, (list(points), css, data)))
        if legend:
            self.legend.append((css, legend))

    def band(self, lower: Sequence[Point], upper: Sequence[Point], css: str, *, legend: str | None = None, data: str = "") -> None:
        """The area between two curves over the same x values."""
        if len(lower) >= 2:
            self.ops.append((self._band, (list(lower) + list(reversed(upper)), css, data)))
        if legend:
            self.legend.append((f"band {css}", legend))

    def points(self, points: Sequence[Point], css: str, *, titles: Sequence[str] = (), hollow: bool = False, radius: float = 4.5) -> None:
        """Dots at ``points`` (a title each for a hover tip)."""
        self.ops.append((self._points, (list(points), css, list(titles), hollow, radius)))

    def whisker(self, start: Point, end: Point, css: str) -> None:
        """A line from ``start`` to ``end`` with short caps (a p50-p90 range)."""
        self.ops.append((self._whisker, (start, end, css)))

    def hline(self, y: float, css: str, text: str, *, anchor_right: bool = True) -> None:
        """A horizontal marker line across the plot with its label."""
        self.ops.append((self._hline, (y, css, text, anchor_right)))

    def vline(self, x: float, css: str, text: str) -> None:
        """A vertical marker line across the plot with its label at the top."""
        self.ops.append((self._vline, (x, css, text)))

    def vspan(self, x0: float, x1: float, css: str, text: str) -> None:
        """A shaded vertical strip from ``x0`` to ``x1`` with a label at its foot."""
        self.ops.append((self._vspan, (x0, x1, css, text)))

    def label_at(self, point: Point, text: str, css: str = "") -> None:
        """A small text label just above and right of ``point``."""
        self.ops.append((self._label_at, (point, text, css)))

    def near(self, a: Point, b: Point, distance: float = 14.0) -> bool:
        """True when two data points are drawn within ``distance`` units of each other (wide drawing)."""
        return math.hypot(self.px(a[0]) - self.px(b[0]), self.py(a[1]) - self.py(b[1])) < distance

    # -- drawing --------------------------------------------------------------------------------

    def _line(self, points, css, data) -> str:
        return f'<path class="line {css}" d="{self._path(points)}" fill="none"{data}/>'

    def _band(self, outline, css, data) -> str:
        return f'<path class="band {css}" d="{self._path(outline)} Z"{data}/>'

    def _points(self, points, css, titles, hollow, radius) -> str:
        fill = ' fill="none"' if hollow else ""
        marks = []
        for i, (x, y) in enumerate(points):
            tip = f"<title>{escape(titles[i])}</title>" if i < len(titles) else ""
            marks.append(f'<circle class="point {css}" cx="{self.px(x):.1f}" cy="{self.py(y):.1f}" r="{radius}"{fill}>{tip}</circle>')
        return "".join(marks)

    def _whisker(self, start, end, css) -> str:
        x1, y1, x2, y2 = self.px(start[0]), self.py(start[1]), self.px(end[0]), self.py(end[1])
        marks = [f'<line class="whisker {css}" x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}"/>']
        vertical = abs(x2 - x1) < abs(y2 - y1)
        for cx, cy in ((x1, y1), (x2, y2)):
            if vertical:
                marks.append(f'<line class="whisker {css}" x1="{cx - 4:.1f}" y1="{cy:.1f}" x2="{cx + 4:.1f}" y2="{cy:.1f}"/>')
            else:
                marks.append(f'<line class="whisker {css}" x1="{cx:.1f}" y1="{cy - 4:.1f}" x2="{cx:.1f}" y2="{cy + 4:.1f}"/>')
        return "".join(marks)

    def _hline(self, y, css, text, anchor_right) -> str:
        top, right, bottom, left = self.margin
        py = self.py(y)
        x_text = self.width - right - 4 if anchor_right else left + 4
        anchor = "end" if anchor_right else "start"
        baseline = self._place(x_text, py - 5 if py - top > LABEL_LINE + 2 else py + 14, text, anchor)
        return (
            f'<g class="marker {css}"><line x1="{left}" y1="{py:.1f}" x2="{self.width - right}" y2="{py:.1f}"/>'
            f'<text x="{x_text}" y="{baseline:.1f}" text-anchor="{anchor}">{escape(text)}</text></g>'
        )

    def _vline(self, x, css, text) -> str:
        top, right, bottom, left = self.margin
        px = self.px(x)
        anchor = "end" if px > self.width * 0.6 else "start"
        offset = -5 if anchor == "end" else 5
        baseline = self._place(px + offset, top + 14, text, anchor)
        return (
            f'<g class="marker {css}"><line x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{self.height - bottom}"/>'
            f'<text x="{px + offset:.1f}" y="{baseline:.1f}" text-anchor="{anchor}">{escape(text)}</text></g>'
        )

    def _vspan(self, x0, x1, css, text) -> str:
        top, right, bottom, left = self.margin
        a, b = self.px(x0), self.px(x1)
        middle = (a + b) / 2
        x_text, anchor = (b, "end") if middle > self.width * 0.7 else (a, "start") if middle < self.width * 0.3 else (middle, "middle")
        return (
            f'<g class="span {css}"><rect x="{a:.1f}" y="{top}" width="{max(b - a, 1):.1f}" height="{self.height - top - bottom}"/>'
            f'<text x="{x_text:.1f}" y="{self.height - bottom - 6}" text-anchor="{anchor}">{escape(text)}</text></g>'
        )

    def _label_at(self, point, text, css) -> str:
        return f'<text class="tag {css}" x="{self.px(point[0]) + 6:.1f}" y="{self.py(point[1]) - 6:.1f}">{escape(text)}</text>'

    def _axes(self, tick_count: int) -> str:
        top, right, bottom, left = self.margin
        parts = [f'<rect class="frame" x="{left}" y="{top}" width="{self.width - left - right}" height="{self.height - top - bottom}"/>']
        for value in self.x.tick_values(tick_count):
            px = self.px(value)
            parts.append(f'<line class="grid" x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{self.height - bottom}"/>')
            parts.append(f'<text class="tick" x="{px:.1f}" y="{self.height - bottom + 18}" text-anchor="middle">{escape(self.x.ticks(value))}</text>')
        for value in self.y.tick_values(tick_count) if self.y_ticks else ():
            py = self.py(value)
            parts.append(f'<line class="grid" x1="{left}" y1="{py:.1f}" x2="{self.width - right}" y2="{py:.1f}"/>')
            parts.append(f'<text class="tick" x="{left - 8}" y="{py + 4:.1f}" text-anchor="end">{escape(self.y.ticks(value))}</text>')
        parts.append(f'<text class="axis-title" x="{(left + self.width - right) / 2:.1f}" y="{self.height - 10}" text-anchor="middle">{escape(self.x.title)}</text>')
        if self.y.title:
            # Above the plot rather than turned along its side, where wide tick labels would cover it.
            parts.append(f'<text class="axis-title" x="8" y="{top - 8}" text-anchor="start">{escape(self.y.title)}</text>')
        return "".join(parts)

    def legend_html(self) -> str:
        """The legend as an HTML list under the chart (wraps on narrow screens)."""
        if not self.legend:
            return ""
        items = "".join(f'<li><svg width="22" height="12" aria-hidden="true"><rect class="key {css}" width="22" height="12"/></svg>{escape(text)}</li>' for css, text in self.legend)
        return f'<ul class="legend">{items}</ul>'

    def _svg(self, size: tuple[int, int, tuple[int, int, int, int]], variant: str, tick_count: int) -> str:
        wide = (self.width, self.height, self.margin)
        self.width, self.height, self.margin = size
        self.labels = []
        try:
            top, right, bottom, left = self.margin
            name = self.css_id or f"chart{id(self)}"
            ident = f"{name}{'-' + variant if variant != 'wide' else ''}"
            marks = "".join(draw(*args) for draw, args in self.ops)
            return (
                f'<svg id="{ident}" class="{variant}" viewBox="0 0 {self.width} {self.height}" role="img" aria-label="{escape(self.label)}"'
                f' xmlns="http://www.w3.org/2000/svg"><defs><clipPath id="clip-{ident}"><rect x="{left}" y="{top}" width="{self.width - left - right}"'
                f' height="{self.height - top - bottom}"/></clipPath></defs>{self._axes(tick_count)}<g clip-path="url(#clip-{ident})">{marks}</g></svg>'
            )
        finally:
            self.width, self.height, self.margin = wide

    def render(self) -> str:
        """The chart as a wide and a narrow SVG drawing, followed by its legend."""
        narrow_height = max(int(NARROW[1] * self.height / HEIGHT), 150)
        return (
            '<figure class="chart">'
            + self._svg((self.width, self.height, self.margin), "wide", 6)
            + self._svg((NARROW[0], narrow_height, NARROW[2]), "narrow", 4)
            + f"{self.legend_html()}</figure>"
        )
