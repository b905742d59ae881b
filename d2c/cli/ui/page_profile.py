"""/profile: is the extrapolation believable?

Runtime against scale on log-log axes, one colour per desktop worker count: the measured runs
(the fit uses each run's wall time less its time waiting for other work, ``own_wall_s``), the
chosen model's median (p50) from the smallest measured scale to the full scale, and its p50-p90
band (the residual bootstrap of :mod:`profiler.model`); the measured range is shaded so the
extrapolation is plain to see. Then the candidate models with their errors and the rule that
picked one, and peak memory against scale with the memory of the instance types the plans use.
"""

from __future__ import annotations

import math
from html import escape

from d2c.cli.ui.html import MISSING, duration, facts, notice, percent, table, text, tick_duration
from d2c.cli.ui.svg import Axis, Chart, padded, time_axis
from profiler.model import MIN_SCALES_FOR_CURVATURE, PARSIMONY

CURVE_POINTS = 48
MB_PER_GIB = 1024**3 / 1e6


def _scales(low: float, high: float) -> list[float]:
    """Scales spaced evenly on a log axis from ``low`` to ``high``."""
    if high <= low:
        return [low]
    step = (math.log(high) - math.log(low)) / (CURVE_POINTS - 1)
    return [math.exp(math.log(low) + i * step) for i in range(CURVE_POINTS)]


def _workers(count: float) -> str:
    return f"{count:g} worker" + ("" if count == 1 else "s")


def runtime_chart(profile) -> Chart:
    """Measured runs, the model to full scale and its p50-p90 band, a line per worker count."""
    model = profile.model
    desktop = [r for r in profile.runs if r.instance_type is None]
    fitted = [r for r in desktop if r.fitted]
    measured = fitted or desktop
    low = min((r.scale for r in measured), default=profile.full_scale)
    high_measured = max((r.scale for r in measured), default=profile.full_scale)
    full = profile.full_scale
    scales = _scales(low, max(full, high_measured))
    worker_counts = sorted({r.workers for r in desktop})
    curves = {w: [model.runtime(s, w) for s in scales] for w in worker_counts}
    times = [r.own_wall_s for r in profile.runs] + [e.p90 for c in curves.values() for e in c] + [e.p50 for c in curves.values() for e in c]
    x = Axis(*padded(scales, log=True, pad=0.03), "scale (problem size; 1 = the descriptor's full_scale)" if full == 1 else f"scale (full scale {full:g})", log=True)
    y = time_axis(*padded(times, log=True), "wall time", tick_duration, log=True)
    chart = Chart(x, y, f"runtime against scale for {profile.app}: measured runs and model {model.name}", css_id="runtime-chart")
    chart.vspan(low, high_measured, "measured-range", "measured")
    chart.vline(full, "full-scale", f"full scale {full:g}")
    for i, workers in enumerate(worker_counts):
        css = f"s{i % 8}"
        curve = curves[workers]
        data = f' data-workers="{workers:g}"'
        chart.band([(s, e.p50) for s, e in zip(scales, curve)], [(s, e.p90) for s, e in zip(scales, curve)], css, data=data)
        chart.line([(s, e.p50) for s, e in zip(scales, curve)], f"model {css}", legend=f"{_workers(workers)}: model p50 (band to p90)", data=data)
        ok = [r for r in desktop if r.workers == workers and r.fitted]
        partial = [r for r in desktop if r.workers == workers and not r.fitted]
        chart.points([(r.scale, r.own_wall_s) for r in ok], f"measured {css}", titles=[f"scale {r.scale:g}, {workers:g} workers: {r.own_wall_s:.2f} s" for r in ok])
        chart.points([(r.scale, r.wall_s) for r in partial], f"partial {css}", hollow=True, titles=[f"stopped at the time box after {r.wall_s:.1f} s" for r in partial])
    cloud = [r for r in profile.runs if r.instance_type is not None]
    if cloud:
        chart.points([(r.scale, r.own_wall_s) for r in cloud], "cloud s7", titles=[f"{r.count or 1}x {r.instance_type} ({r.source}): {r.wall_s:.1f} s" for r in cloud], radius=5.5)
        chart.legend.append(("s7", "runs on EC2 (imported or calibration)"))
    chart.legend.append(("measured-range", "the measured range of scales"))
    return chart


def why_chosen(model) -> str:
    """In words: why the chosen candidate won (profiler.model's rule: the simplest within ``margin``)."""
    best = min(model.candidates, key=lambda c: c.score)
    chosen = next(c for c in model.candidates if (c.family, c.scale_form) == (model.family, model.scale_form))
    if chosen is best:
        return f"{chosen.name} has the lowest error ({percent(chosen.score)}, the mean of the cross-validated and the extrapolation error)."
    if model.noise > 0:
        margin = f"{percent(model.margin)}, half the {percent(model.noise)} noise measured between repeats of a point"
    else:
        margin = f"{percent(model.margin)}, {PARSIMONY * 100:.0f} % of the best score, as no point was repeated to measure the noise"
    return (
        f"{best.name} scores lowest ({percent(best.score)}), but {chosen.name} ({percent(chosen.score)}) has fewer "
        f"coefficients and is within the margin ({margin}); the simplest model that close wins, since a richer model "
        f"must beat a simpler one by more than the noise it could be fitting. An 's log s' form needs at least "
        f"{MIN_SCALES_FOR_CURVATURE} measured scales."
    )


def candidates_table(model) -> str:
    """Every candidate with its errors, the chosen one highlighted."""
    rows, classes = [], []
    for c in sorted(model.candidates, key=lambda c: c.score):
        chosen = (c.family, c.scale_form) == (model.family, model.scale_form)
        rows.append(
            [
                escape(c.name) + (' <span class="badge succeeded">chosen</span>' if chosen else ""),
                str(len(c.coefficients)),
                percent(c.cv_error),
                percent(c.extrapolation_error),
                percent(c.score),
            ]
        )
        classes.append("chosen" if chosen else "")
    return table(["model", "terms", "CV error", "extrapolation", "score"], rows, numeric=(1, 2, 3, 4), row_classes=classes, css_id="candidates")


def memory_chart(profile, plans) -> Chart | None:
    """Peak memory against scale, per worker and per host of each plan's layout, with instance memories."""
    model = profile.model
    memory = model.memory_model
    runs = [r for r in profile.runs if r.peak_rss_mb is not None or r.master_rss_mb is not None]
    if not runs and memory.per_worker == (0.0, 0.0) and memory.master == (0.0, 0.0):
        return None
    low = min((r.scale for r in profile.runs), default=profile.full_scale)
    scales = _scales(low, max(profile.full_scale, low))
    layouts: dict[int, None] = {}
    instances: dict[str, float] = {}
    for plan in plans.plans if plans is not None else ():
        for allocation in plan.roles:
            layouts.setdefault(int(allocation.workers_per_instance), None)
            instances.setdefault(allocation.instance_type, allocation.memory_gib)
    per_host = {w: [memory.estimate(s).per_worker_mb * w + memory.estimate(s).master_mb for s in scales] for w in sorted(layouts)[:4]}
    shown = sorted(instances.items(), key=lambda item: item[1])[:6]
    values = [memory.estimate(s).per_worker_mb for s in scales] + [v for curve in per_host.values() for v in curve]
    values += [r.peak_rss_mb for r in runs if r.peak_rss_mb] + [r.master_rss_mb for r in runs if r.master_rss_mb]
    values += [gib * MB_PER_GIB for _, gib in shown]
    x = Axis(*padded(scales, log=True, pad=0.03), "scale", log=True)
    y = Axis(*padded(values, log=True), "peak resident memory (MB)", log=True, ticks=lambda v: f"{v:,.0f}" if v >= 1 else f"{v:g}")
    chart = Chart(x, y, "peak memory against scale, with the memory of the plans' instance types", css_id="memory-chart")
    chart.vline(profile.full_scale, "full-scale", "full scale")
    chart.line([(s, memory.estimate(s).per_worker_mb) for s in scales], "s0", legend="per worker (model)")
    chart.points([(r.scale, r.peak_rss_mb) for r in runs if r.peak_rss_mb], "s0", titles=[f"scale {r.scale:g}: {r.peak_rss_mb:.0f} MB per worker" for r in runs if r.peak_rss_mb])
    masters = [r for r in runs if r.master_rss_mb]
    if masters or memory.master != (0.0, 0.0):
        chart.line([(s, memory.estimate(s).master_mb) for s in scales], "s1", legend="master (model)")
        chart.points([(r.scale, r.master_rss_mb) for r in masters], "s1")
    for i, (workers, curve) in enumerate(per_host.items()):
        if workers == 1 and memory.master == (0.0, 0.0):
            continue  # the same line as one worker's
        css = f"s{(i + 2) % 8}"
        chart.line(list(zip(scales, curve)), css, legend=f"a host with {_workers(workers)} and the master")
    for name, gib in shown:
        chart.hline(gib * MB_PER_GIB, "instance-mem", f"{name}: {gib:g} GiB", anchor_right=False)
    return chart


def render(project) -> tuple[str, str]:
    """The page's title and body."""
    loaded = project.profile()
    if loaded.value is None:
        return "Profile", "<h1>Profile</h1>" + notice(loaded.problem or "no profile")
    profile = loaded.value
    model = profile.model
    plans = project.plans().value
    desktop = [r for r in profile.runs if r.fitted and r.instance_type is None]
    largest = max((r.scale for r in desktop), default=None)
    reach = f"{profile.full_scale / largest:.1f}× the largest measured scale ({largest:g})" if largest else MISSING
    host = profile.host
    summary = facts(
        [
            ("app", text(profile.app)),
            ("model", f"<strong>{escape(model.name)}</strong>"),
            ("full scale", f"{profile.full_scale:g} — {escape(reach)}"),
            ("predicted at full scale", ", ".join(f"{_workers(w)}: {duration(model.runtime(profile.full_scale, w).p50)} (p90 {duration(model.runtime(profile.full_scale, w).p90)})" for w in sorted({r.workers for r in desktop})) or MISSING),
            ("runs", f"{len(profile.runs)} ({sum(1 for r in profile.runs if not r.fitted)} partial)"),
            ("host", f"{text(host.name)}: {text(host.cpu_model)}, {host.logical_cores} logical cores, {host.memory_mb / 1000:.1f} GB, speed {host.speed:.2f} × a c5 core"),
            ("written", text(profile.created)),
            ("digest", f"<code>{text(profile.digest[:19])}</code>"),
        ]
    )
    body = [
        "<h1>Profile</h1>",
        f'<section class="card">{summary}</section>',
        '<section class="card"><h2>Runtime against scale</h2>',
        '<p class="muted small">Dots: measured runs (hollow: stopped at the time box). Lines: the model\'s median; shaded: its p50-p90 band. The green strip is what was measured; everything right of it is extrapolation.</p>',
        runtime_chart(profile).render(),
        "</section>",
        '<section class="card"><h2>Candidate models</h2>',
        '<p class="muted small">Ranked by score: the mean of the cross-validated (CV, leave one point out) error and the error of predicting the largest measured scale from the smaller ones.</p>',
        candidates_table(model),
        f'<p id="why-model">{escape(why_chosen(model))}</p></section>',
    ]
    chart = memory_chart(profile, plans)
    body.append('<section class="card"><h2>Memory against scale</h2>')
    if chart is None:
        body.append(notice("no memory was measured: the runs carry no peak RSS (profile with 'd2c profile', or add peak_rss_mb to the runs CSV)"))
    else:
        if plans is None:
            body.append('<p class="muted small">No plans.json yet: the instance types\' memory appears here once \'d2c recommend -o plans.json\' has run.</p>')
        body.append(chart.render())
    body.append("</section>")
    rows = [
        [f"{r.scale:g}", f"{r.workers:g}", f"{r.wall_s:.2f}", f"{r.own_wall_s:.2f}", str(r.repeat), escape(r.source), escape(r.status), text(r.instance_type), MISSING if r.peak_rss_mb is None else f"{r.peak_rss_mb:.0f}"]
        for r in profile.runs
    ]
    body.append(
        '<section class="card"><details><summary>Measured runs</summary>'
        + table(["scale", "workers", "wall s", "own wall s", "repeat", "source", "status", "instance", "peak RSS MB"], rows, numeric=(0, 1, 2, 3, 4, 8))
        + "</details></section>"
    )
    return "Profile", "".join(body)
