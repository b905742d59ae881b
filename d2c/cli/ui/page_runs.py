"""/runs and /runs/RUN: is the run on track against the budget and the deadline?

A live run's page polls ``/runs/RUN/live.json`` (dashboard.js) and replaces the parts marked
``id="live-…"``: spend against the budget and the watchdog's stop line, spend over time, elapsed
time against the plan's p50/p90 and the deadline, each host's state, the master log's tail and the
run's events. A finished run shows what its report.json measured against what was predicted.
"""

from __future__ import annotations

import math
import time
from html import escape
from pathlib import Path
from typing import Any

from d2c.cli.ui.html import MISSING, duration, facts, meter, notice, table, text, tick_duration, usd
from d2c.cli.ui.run_view import RunView, run_view
from d2c.cli.ui.svg import Axis, Chart, padded, time_axis

LOG_TAIL_LINES = 60
LOG_TAIL_BYTES = 64 * 1024
EVENTS_SHOWN = 40


def _when(epoch: float | None) -> str:
    if epoch is None:
        return MISSING
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _badge(value: str | None) -> str:
    if not value:
        return ""
    css = "running" if value not in ("finished", "succeeded", "failed", "stopped") else value
    return f'<span class="badge {escape(css)}">{escape(value)}</span>'


def log_tail(run_dir: Path) -> str:
    """The last lines of the master's log as streamed to this machine."""
    path = Path(run_dir) / "logs" / "master.log"
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(size - LOG_TAIL_BYTES, 0))
            chunk = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(chunk.splitlines()[-LOG_TAIL_LINES:])


def spend_html(view: RunView) -> str:
    """Spent so far against the budget and the stop line."""
    budget = view.record.budget_usd
    label = " (simulated)" if view.simulated else ""
    stop = f"; the watchdog stops the run at {usd(view.stop_line_usd)} (keeping {usd(view.reserve_usd)} to fetch outputs and tear down)" if view.record.active else ""
    warning = ""
    if view.record.active and view.spent_usd >= view.stop_line_usd:
        warning = '<p class="notice small" id="past-stop-line">spend has reached the watchdog\'s stop line: the controller stops the run at its next look</p>'
    return (
        f'<div class="big"><span id="spent">{usd(view.spent_usd)}</span>{label}</div>'
        f'<div class="muted small">of the <span id="budget">{usd(budget)}</span> budget{stop}</div>'
        + meter(view.spent_usd / budget if budget else 0.0, "spend-meter")
        + warning
    )


def time_html(view: RunView) -> str:
    """Elapsed time against the plan's p50 and p90 and the deadline."""
    p50, p90 = view.predicted_end("p50"), view.predicted_end("p90")
    created = view.record.created_at
    deadline = view.deadline_at
    limit = deadline or p90
    parts = [
        f'<div class="big"><span id="elapsed">{duration(view.elapsed_s)}</span></div>',
        '<div class="muted small">elapsed since the run was created; the plan expects '
        f"{duration(None if p50 is None else p50 - created)} (p90 {duration(None if p90 is None else p90 - created)})"
        f"{'; deadline ' + duration(deadline - created) if deadline else '; no deadline'}</div>",
    ]
    if limit:
        parts.append(meter(view.elapsed_s / (limit - created) if limit > created else 1.0, "time-meter"))
    if view.record.active and p90 is not None and view.now > p90:
        parts.append(f'<p class="notice small" id="past-p90">running {duration(view.now - p90)} past the plan\'s p90 time</p>')
    return "".join(parts)


def dollar_ticks(span: float):
    """A tick formatter with enough decimals for an axis ``span`` dollars long (about five ticks)."""
    step = max(span, 1e-9) / 5
    digits = max(2, min(6, math.ceil(-math.log10(step) - 1e-9)))
    return lambda v: usd(v, digits)


def spend_chart(view: RunView) -> Chart:
    """Spend over time with the budget, the stop line, the plan's p50/p90 and the deadline."""
    record = view.record
    created = record.created_at
    marks = {"p50": view.predicted_end("p50"), "p90": view.predicted_end("p90"), "deadline": view.deadline_at}
    ends = [at - created for at in marks.values() if at is not None]
    spent = [usd_ for _, usd_ in view.series]
    if record.active:
        x_high = max([view.elapsed_s, *ends, 60.0]) * 1.04
        y_values = spent + [record.budget_usd]
    else:
        # A finished run is drawn over its own life; the plan's times are shown only if they fall in it.
        x_high = max(view.elapsed_s, 10.0) * 1.04
        y_values = spent + ([record.budget_usd] if max(spent, default=0.0) >= 0.25 * record.budget_usd else [])
    x = time_axis(0.0, x_high, "time since the run was created", tick_duration)
    low, high = padded(y_values, zero=True)
    y = Axis(low, high, "spent, USD", ticks=dollar_ticks(high - low))
    chart = Chart(x, y, f"spend over time for run {record.run_id} against its budget", css_id="spend-chart", height=320)
    chart.line(list(view.series), "spend s0", legend="spent (as the watchdog counts it)")
    if y.low <= record.budget_usd <= y.high:
        chart.hline(record.budget_usd, "budget", f"budget {usd(record.budget_usd)}", anchor_right=False)
        chart.legend.append(("budget-key", "budget"))
    if record.active:
        chart.hline(view.stop_line_usd, "stop", f"watchdog stops at {usd(view.stop_line_usd)}", anchor_right=False)
        chart.legend.append(("stop-key", "the watchdog's stop line"))
    for name, at in marks.items():
        if at is not None and at - created <= x_high:
            chart.vline(at - created, "deadline" if name == "deadline" else name, f"{name} {duration(at - created)}")
            chart.legend.append(("deadline-key" if name == "deadline" else f"{name}-key", "deadline" if name == "deadline" else f"the plan's {name} time"))
    if view.series:
        chart.points([view.series[-1]], "s0 now-point")
    return chart


def hosts_html(view: RunView) -> str:
    """Each host with its type, price, life and state."""
    if not view.hosts:
        return '<p class="muted">no host launched yet</p>'
    rows = [
        [
            escape(h.name),
            escape(h.role),
            f'<span class="type">{escape(h.instance_type)}</span>',
            escape(h.market),
            f"{usd(h.price_usd_h, 4)}/h",
            _when(h.launched_at),
            _when(h.ended_at),
            _badge(h.state) if h.state != "—" else MISSING,
            usd(h.cost_usd),
        ]
        for h in view.hosts
    ]
    return table(["host", "role", "type", "market", "price", "launched", "ended", "state", "cost"], rows, numeric=(4, 8), css_id="hosts", cards=True)


def events_html(journal, run_id: str) -> str:
    """The run's history, newest last."""
    events = journal.events(run_id)[-EVENTS_SHOWN:]
    if not events:
        return '<p class="muted">no events yet</p>'
    rows = [[time.strftime("%H:%M:%S", time.localtime(e.at)), escape(e.kind), escape(e.message)] for e in events]
    return table(["time", "event", "what happened"], rows, css_id="events")


def live_fragments(project, journal, record) -> dict[str, Any]:
    """The parts of a run's page that change while it runs, as HTML, for live.json."""
    report = project.report(record.run_dir).value if not record.active else None
    view = run_view(record, journal, report)
    tail = log_tail(record.run_dir)
    return {
        "state": record.state,
        "active": record.active,
        "spent_usd": round(view.spent_usd, 6),
        "controller": view.controller,
        "fragments": {
            "live-spend": spend_html(view),
            "live-time": time_html(view),
            "live-chart": spend_chart(view).render(),
            "live-hosts": hosts_html(view),
            "live-log": f'<pre class="log" id="log">{escape(tail)}</pre>' if tail else '<p class="muted">no log lines yet</p>',
            "live-events": events_html(journal, record.run_id),
        },
    }


def _range_chart(name: str, p50: float | None, p90: float | None, actual: float | None, css_id: str, *, seconds: bool) -> str:
    values = [v for v in (p50, p90, actual) if v is not None]
    if not values:
        return ""
    low, high = padded(values, zero=True)
    x = time_axis(low, high, name, tick_duration) if seconds else Axis(low, high, name, ticks=dollar_ticks(high - low))
    ticks = duration if seconds else usd
    chart = Chart(x, Axis(0.0, 1.0, ""), f"{name}: predicted p50 to p90 against actual", css_id=css_id, height=130, y_ticks=False)
    if p50 is not None and p90 is not None:
        chart.vspan(p50, max(p90, p50 + (x.high - x.low) * 0.004), "predicted", "predicted p50–p90")
    if actual is not None:
        chart.vline(actual, "now", f"actual {ticks(actual)}")
    return chart.render()


def _breakdown_table(breakdown: Any) -> str:
    """Cost by billed item, predicted against actual, where the report has a breakdown."""
    if not isinstance(breakdown, dict):
        return ""
    actual, predicted = breakdown.get("actual") or {}, breakdown.get("predicted") or {}
    items = [k for k in dict.fromkeys([*predicted, *actual]) if (actual.get(k) or predicted.get(k))]
    if not items:
        return ""
    rows = [[escape(k.replace("_", " ")), usd(predicted.get(k)), usd(actual.get(k))] for k in items]
    return "<h2>Cost by item</h2>" + table(["item", "predicted (p50)", "actual"], rows, numeric=(1, 2), css_id="cost-items")


def report_html(report: dict[str, Any]) -> str:
    """Predicted against actual, from report.json."""
    predicted = report.get("predicted") or {}
    time_p = predicted.get("time_s") or {}
    cost_p = predicted.get("cost_usd") or {}
    boot = predicted.get("boot_setup_s")
    label = " (simulated)" if report.get("simulated") else ""
    app_p50 = None if time_p.get("p50") is None or boot is None else max(time_p["p50"] - boot, 0.0)
    app_p90 = None if time_p.get("p90") is None or boot is None else max(time_p["p90"] - boot, 0.0)
    rows = [
        ["launch to teardown", duration(time_p.get("p50")), duration(time_p.get("p90")), f"<strong>{duration(report.get('total_s'))}</strong>"],
        ["the app alone (plan less boot and setup)", duration(app_p50), duration(app_p90), f"<strong>{duration(report.get('wall_s'))}</strong>"],
        [f"cost{label}", usd(cost_p.get("p50")), usd(cost_p.get("p90")), f"<strong>{usd(report.get('cost_usd'))}</strong>"],
    ]
    parts = [
        table(["", "predicted p50", "predicted p90", "actual"], rows, numeric=(1, 2, 3), css_id="predicted-actual"),
        _range_chart("launch to teardown", time_p.get("p50"), time_p.get("p90"), report.get("total_s"), "time-vs-plan", seconds=True),
        _range_chart(f"cost, USD{label}", cost_p.get("p50"), cost_p.get("p90"), report.get("cost_usd"), "cost-vs-plan", seconds=False),
    ]
    parts.append(_breakdown_table(report.get("cost_breakdown")))
    outputs = report.get("outputs") or []
    if outputs:
        parts.append(
            "<h2>Outputs</h2>"
            + table(["remote", "local", "fetched"], [[text(o.get("remote")), text(o.get("local")), "yes" if o.get("fetched") else "no"] for o in outputs])
        )
    return "".join(parts)


def render_list(project) -> tuple[str, str]:
    """/runs: every run with its state, spend and budget."""
    journal = project.journal()
    runs = journal.runs() if journal is not None else []
    if not runs:
        return "Runs", "<h1>Runs</h1>" + notice("no runs yet; rehearse one with 'd2c run --provider local', or start one with 'd2c run --plan 1'")
    rows = []
    for record in reversed(runs):
        report = project.report(record.run_dir).value if not record.active else None
        view = run_view(record, journal, report)
        rows.append(
            [
                f'<a href="/runs/{escape(record.run_id)}">{escape(record.run_id)}</a>',
                escape(record.provider) + (' <span class="muted small">rehearsal</span>' if view.simulated else ""),
                _badge(record.state) + " " + _badge(record.outcome),
                f"plan {record.plan_rank}, {escape(record.region)}",
                usd(view.spent_usd),
                usd(record.budget_usd),
                _when(record.created_at),
                text(view.controller),
            ]
        )
    return "Runs", "<h1>Runs</h1>" + table(["run", "provider", "state", "plan", "spent", "budget", "created", "controller"], rows, numeric=(4, 5), css_id="runs", cards=True)


def render_run(project, run_id: str) -> tuple[str, str] | None:
    """/runs/RUN; None when there is no such run."""
    journal = project.journal()
    known = {r.run_id: r for r in journal.runs()} if journal is not None else {}
    record = known.get(run_id)
    if record is None:
        return None
    live = live_fragments(project, journal, record)
    fragments = live["fragments"]
    controller = live["controller"]
    head = facts(
        [
            ("state", _badge(record.state) + " " + _badge(record.outcome) + (f" {escape(record.message)}" if record.message else "")),
            ("provider", escape(record.provider) + (" — a rehearsal on this machine; costs are what the plan's prices would charge" if record.provider == "local" else "")),
            ("plan", f"#{record.plan_rank} in {escape(record.region)}, from <code>{escape(record.plans_file)}</code>"),
            ("created", _when(record.created_at)),
            ("master started", _when(record.started_at)),
            ("finished", _when(record.finished_at)),
            ("controller", text(controller)),
        ]
    )
    gone = ""
    if controller == "gone":
        gone = notice(f"the controller of this run is gone: 'd2c run --resume {run_id}' follows it again, 'd2c down {run_id}' stops it")
    attrs = f' data-live-url="/runs/{escape(run_id)}/live.json"' if record.active else ""
    body = [
        f'<h1 id="run-title"{attrs}>Run <span class="type">{escape(run_id)}</span> {_badge(record.state)}</h1>',
        gone,
        f'<section class="card">{head}</section>',
        f'<section class="card grid2"><div id="live-spend">{fragments["live-spend"]}</div><div id="live-time">{fragments["live-time"]}</div></section>',
        f'<section class="card"><h2>Spend over time</h2><div id="live-chart">{fragments["live-chart"]}</div></section>',
    ]
    if not record.active:
        report = project.report(record.run_dir)
        body.append('<section class="card" id="report"><h2>Predicted against actual</h2>' + (report_html(report.value) if report.value is not None else notice(report.problem or "no report")) + "</section>")
    body.extend(
        [
            f'<section class="card"><h2>Hosts</h2><div id="live-hosts">{fragments["live-hosts"]}</div></section>',
            f'<section class="card"><h2>Master log (last {LOG_TAIL_LINES} lines)</h2><div id="live-log">{fragments["live-log"]}</div></section>',
            f'<section class="card"><h2>Events</h2><div id="live-events">{fragments["live-events"]}</div></section>',
        ]
    )
    return f"Run {run_id}", "".join(body)
