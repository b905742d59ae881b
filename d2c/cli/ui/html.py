"""The page shell (navigation, style) and the small formatting helpers every page uses.

A value a file does not carry is shown as "—" (``MISSING``), never as a guess.
"""

from __future__ import annotations

import math
from html import escape
from typing import Iterable, Sequence

from d2c.durations import format_duration

MISSING = "—"
HERE = ' class="here"'
NUMERIC = ' class="num"'

STYLE = """
:root { --ink:#1d2433; --muted:#5b6577; --line:#d9dee7; --bg:#f6f7f9; --card:#fff; --accent:#1f5fbf;
        --p50:#1f5fbf; --band:#1f5fbf; --budget:#c0392b; --deadline:#8e44ad; --stop:#e67e22; --ok:#1e8449; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:var(--ink); background:var(--bg); }
header.top { background:#1d2433; color:#fff; padding:10px 20px; display:flex; flex-wrap:wrap; gap:6px 24px; align-items:baseline; }
header.top .brand { font-weight:700; font-size:17px; }
header.top .project { color:#b8c2d6; }
header.top nav a { color:#dfe6f3; text-decoration:none; margin-right:16px; padding-bottom:2px; }
header.top nav a.here { color:#fff; border-bottom:2px solid #7fb0ff; }
main { max-width:1180px; margin:0 auto; padding:16px 20px 40px; }
h1 { font-size:22px; margin:8px 0 12px; } h2 { font-size:17px; margin:22px 0 8px; }
section.card > h2:first-child { margin-top:2px; } h2 a { color:var(--accent); text-decoration:none; } h2 a:hover { text-decoration:underline; }
section.card { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:14px 16px; margin:14px 0; }
.notice { background:#fff7e0; border:1px solid #f0d58a; border-radius:8px; padding:10px 14px; margin:12px 0; }
.muted { color:var(--muted); } .small { font-size:13px; }
dl.facts { display:grid; grid-template-columns:max-content 1fr; gap:4px 16px; margin:0; }
dl.facts dt { color:var(--muted); } dl.facts dd { margin:0; font-variant-numeric:tabular-nums; }
.scroll { overflow-x:auto; -webkit-overflow-scrolling:touch; }
table { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; }
th, td { text-align:left; padding:6px 8px; border-bottom:1px solid var(--line); vertical-align:top; }
th { font-weight:600; color:var(--muted); font-size:13px; white-space:nowrap; }
td.num, th.num { text-align:right; white-space:nowrap; }
tr.chosen td { background:#eef5ff; }
.type { font-family:ui-monospace, SFMono-Regular, Menlo, monospace; white-space:nowrap; }
code, pre { font-family:ui-monospace, SFMono-Regular, Menlo, monospace; font-size:13px; }
.cmd { display:inline-flex; align-items:center; gap:6px; white-space:nowrap; }
.cmd code { background:#eef1f6; padding:2px 6px; border-radius:4px; }
form.rehearse { display:inline; margin:0; } form.rehearse button { margin-top:4px; }
button.copy { font-size:12px; padding:2px 8px; border:1px solid var(--line); background:#fff; border-radius:4px; cursor:pointer; }
pre.log { background:#10151f; color:#d7e0ee; padding:10px 12px; border-radius:6px; max-height:340px; overflow:auto; white-space:pre-wrap; word-break:break-all; }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; font-weight:600; background:#e7ebf2; }
.badge.running, .badge.live { background:#dff3e6; color:#145a32; } .badge.finished { background:#e7ebf2; }
.badge.failed, .badge.stopped { background:#fde2e0; color:#922b21; } .badge.succeeded { background:#dff3e6; color:#145a32; }
.meter { height:10px; background:#e7ebf2; border-radius:5px; overflow:hidden; margin:4px 0 2px; }
.meter span { display:block; height:100%; background:var(--accent); }
.meter span.warn { background:var(--stop); } .meter span.over { background:var(--budget); }
.grid2 { display:grid; grid-template-columns:repeat(auto-fit, minmax(260px, 1fr)); gap:12px 24px; }
.big { font-size:24px; font-weight:700; font-variant-numeric:tabular-nums; }
figure.chart { margin:8px 0; }
figure.chart > svg { width:100%; height:auto; display:block; } figure.chart > svg.narrow { display:none; }
svg .frame { fill:#fff; stroke:#aab3c2; } svg .grid { stroke:#edf0f5; } svg .tick { font-size:12px; fill:#5b6577; }
svg .axis-title { font-size:13px; fill:#3b4456; }
svg .line { stroke-width:2.2; } svg path.band { opacity:.22; stroke:none; }
svg .point { stroke-width:1.5; } svg .whisker { stroke-width:1.6; }
svg .marker line { stroke-width:1.6; stroke-dasharray:6 4; } svg .marker text { font-size:12px; font-weight:600; }
svg .span rect { fill:#1e8449; opacity:.07; } svg .span text { font-size:12px; fill:#1e8449; }
svg .tag { font-size:11px; fill:#3b4456; }
svg .budget line { stroke:var(--budget); } svg .budget text { fill:var(--budget); }
svg .deadline line { stroke:var(--deadline); } svg .deadline text { fill:var(--deadline); }
svg .stop line { stroke:var(--stop); } svg .stop text { fill:var(--stop); }
svg .full-scale line { stroke:#3b4456; } svg .full-scale text { fill:#3b4456; }
svg .instance-mem line { stroke:#7f8c8d; } svg .instance-mem text { fill:#5b6577; }
svg .now line { stroke:#1d2433; } svg .now text { fill:#1d2433; }
svg .p50 line { stroke:var(--p50); } svg .p50 text { fill:var(--p50); }
svg .p90 line { stroke:#5d8fd8; } svg .p90 text { fill:#5d8fd8; }
svg .marker text { stroke:none; }
svg rect.key { stroke:none; fill:#aab3c2; }
svg rect.key.budget-key { fill:var(--budget); } svg rect.key.deadline-key { fill:var(--deadline); }
svg rect.key.stop-key { fill:var(--stop); } svg rect.key.p50-key { fill:var(--p50); } svg rect.key.p90-key { fill:#5d8fd8; } svg rect.key.measured-range { fill:#1e8449; opacity:.25; }
.nowrap { white-space:nowrap; }
svg rect.band { opacity:.3; }
ul.legend { list-style:none; padding:0; margin:4px 0 0; display:flex; flex-wrap:wrap; gap:4px 16px; font-size:13px; color:var(--muted); }
ul.legend li { display:flex; align-items:center; gap:6px; }
@media (max-width: 640px) {
  main { padding:10px 10px 30px; } header.top { padding:8px 12px; }
  section.card { padding:10px; } h1 { font-size:19px; }
  figure.chart > svg.wide { display:none; } figure.chart > svg.narrow { display:block; }
  th, td { padding:5px 6px; }
  table.cards thead { display:none; }
  table.cards tr { display:block; border:1px solid var(--line); border-radius:6px; margin:0 0 10px; padding:4px 0; }
  table.cards td { display:grid; grid-template-columns:7.5em 1fr; gap:8px; border:none; text-align:left; white-space:normal; padding:3px 8px; }
  table.cards td::before { content:attr(data-label); color:var(--muted); font-size:13px; }
  table.cards td.num { text-align:left; }
}
"""

PALETTE = ("#1f5fbf", "#d35400", "#1e8449", "#8e44ad", "#c0392b", "#16a085", "#7f8c8d", "#2c3e50")
"""Series colours, in order (a line per worker count, per plan role, ...)."""


def series_style() -> str:
    """CSS classes ``s0``..``s7`` colouring lines, bands, points and legend keys."""
    rules = []
    for i, colour in enumerate(PALETTE):
        rules.append(f"svg .line.s{i}, svg .whisker.s{i} {{ stroke:{colour}; }} svg .band.s{i}, svg .key.s{i} {{ fill:{colour}; }}")
        rules.append(f"svg .point.s{i} {{ stroke:{colour}; fill:{colour}; }} svg .point.s{i}[fill=none] {{ fill:#fff; }}")
    return "\n".join(rules)


def page(title: str, body: str, *, here: str, project: str, scripts: Sequence[str] = (), action_token: str = "") -> str:
    """A whole HTML document with the navigation bar; ``here`` is the current section's path."""
    links = "".join(
        f'<a href="{path}"{HERE if path == here else ""}>{name}</a>' for path, name in (("/", "Overview"), ("/profile", "Profile"), ("/plans", "Plans"), ("/runs", "Runs"))
    )
    script_tags = "".join(f'<script src="{escape(src)}" defer></script>' for src in scripts)
    token = f'<meta name="d2c-action-token" content="{escape(action_token)}">' if action_token else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{token}<title>{escape(title)} · d2c</title><style>{STYLE}{series_style()}</style>{script_tags}</head>"
        f'<body><header class="top"><span class="brand">d2c</span><span class="project">{escape(project)}</span>'
        f"<nav>{links}</nav></header><main>{body}</main></body></html>"
    )


def notice(text: str) -> str:
    """A highlighted one-line message (a missing or unreadable file, what to run)."""
    return f'<p class="notice">{escape(text)}</p>'


def table(
    headings: Sequence[str], rows: Iterable[Sequence[str]], *, numeric: Sequence[int] = (), row_classes: Sequence[str] = (), css_id: str = "", cards: bool = False
) -> str:
    """An HTML table in a horizontally scrolling box; cells are already HTML. With ``cards`` each
    row becomes a card of labelled lines on a narrow screen."""
    head = "".join(f'<th{NUMERIC if i in numeric else ""}>{escape(h)}</th>' for i, h in enumerate(headings))
    body = []
    for index, row in enumerate(rows):
        css = row_classes[index] if index < len(row_classes) else ""
        cells = "".join(
            f'<td{NUMERIC if i in numeric else ""} data-label="{escape(headings[i]) if i < len(headings) else ""}">{f"<div>{cell}</div>" if cards else cell}</td>'
            for i, cell in enumerate(row)
        )
        body.append(f'<tr class="{css}">{cells}</tr>' if css else f"<tr>{cells}</tr>")
    ident = f' id="{css_id}"' if css_id else ""
    if cards:
        ident += ' class="cards"'
    return f'<div class="scroll"><table{ident}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def facts(items: Iterable[tuple[str, str]]) -> str:
    """A definition list of label/value pairs (values are already HTML)."""
    return '<dl class="facts">' + "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def usd(value: float | None, digits: int | None = None) -> str:
    """Dollars with enough digits to tell small amounts apart."""
    if value is None or not math.isfinite(value):
        return MISSING
    if digits is None:
        digits = 2 if abs(value) >= 1 else 4
    return f"${value:,.{digits}f}"


def duration(seconds: float | None) -> str:
    """A duration the way the command line writes it (``4h10m``, ``45m``, ``12.5s``)."""
    if seconds is None or not math.isfinite(seconds):
        return MISSING
    return format_duration(seconds)


def tick_duration(seconds: float) -> str:
    """A time-axis tick: ``0``, ``30s``, ``5m``, ``1h30m``."""
    if seconds <= 0:
        return "0"
    if seconds < 60:
        return f"{seconds:g}s"
    if seconds < 3600:
        return f"{seconds / 60:g}m"
    hours, minutes = divmod(int(round(seconds / 60)), 60)
    return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"


def percent(fraction: float | None) -> str:
    """A fraction as a percentage."""
    if fraction is None or not math.isfinite(fraction):
        return MISSING
    return f"{fraction * 100:.1f} %"


def text(value: object) -> str:
    """Any value as escaped text, MISSING for None or an empty string."""
    if value is None or value == "":
        return MISSING
    return escape(str(value))


def meter(fraction: float, css_id: str = "") -> str:
    """A horizontal bar filled to ``fraction`` (orange past 80 %, red past 100 %)."""
    state = "over" if fraction >= 1 else "warn" if fraction >= 0.8 else ""
    ident = f' id="{css_id}"' if css_id else ""
    width = max(0.0, min(fraction, 1.0)) * 100
    return f'<div class="meter"{ident}><span class="{state}" style="width:{width:.1f}%"></span></div>'
