"""/plans: which plan is worth it?

The cost/time frontier on log axes: each plan at its median time and cost with whiskers to the
p90 of each, frontier plans joined, the budget and the deadline as lines (the planner requires a
plan's p90 to fit both). Below, the ranked plans with their whole instance type names, regions,
cost breakdown (when plans.json carries one), the planner's reason for the rank, and the
``d2c run --plan N`` command; and the inputs the plans were made from, with the catalog's age.
"""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from datetime import datetime, timezone
from html import escape
from pathlib import Path

from d2c.cli.ui.html import MISSING, duration, facts, notice, table, text, tick_duration, usd
from d2c.cli.ui.svg import Axis, Chart, padded, time_axis

BREAKDOWN_FIELDS = ("cost_breakdown", "breakdown")
"""Where a plan may carry its cost breakdown (a mapping or dataclass of item -> USD)."""


def _breakdown(plan) -> dict[str, float] | None:
    for name in BREAKDOWN_FIELDS:
        value = getattr(plan, name, None)
        if is_dataclass(value):
            value = asdict(value)
        if isinstance(value, dict) and value:
            return value
    return None


def _breakdown_html(plan) -> str:
    items = _breakdown(plan)
    if items is None:
        return MISSING
    parts = []
    for key, value in items.items():
        amount = value.get("p50") if isinstance(value, dict) else value
        if amount == 0:
            continue  # an item the plan is not billed for
        shown = usd(float(amount)) if isinstance(amount, (int, float)) else text(amount)
        parts.append(f"{escape(str(key).replace('_usd', '').replace('_', ' '))} {shown}")
    return '<span class="small">' + "<br>".join(parts) + "</span>"


def _extrapolation_html(plan) -> str:
    """How far the plan's prediction reaches beyond the measured runs, where plans.json says."""
    reach = getattr(plan, "extrapolation", None)
    if isinstance(reach, (int, float)):
        return f'<br><span class="muted small">extrapolates {reach:.1f}× beyond the profile</span>'
    if isinstance(reach, str) and reach:
        return f'<br><span class="muted small">{escape(reach)}</span>'
    return ""


def run_command(rank: int, plans_path: Path, default_path: Path) -> str:
    """The command that carries out plan ``rank``."""
    extra = "" if Path(plans_path).resolve() == Path(default_path).resolve() else f" --plans {plans_path}"
    return f"d2c run --plan {rank}{extra}"


def command_html(command: str) -> str:
    """A command with a copy button (dashboard.js copies ``data-copy``)."""
    return f'<span class="cmd"><code>{escape(command)}</code><button type="button" class="copy" data-copy="{escape(command)}">copy</button></span>'


def frontier_chart(planset) -> Chart:
    """Every plan at (p50 time, p50 cost) with p90 whiskers, the frontier, budget and deadline."""
    plans = planset.plans
    times = [p.time_s.p50 for p in plans] + [p.time_s.p90 for p in plans]
    costs = [p.cost_usd.p50 for p in plans] + [p.cost_usd.p90 for p in plans]
    x = time_axis(*padded(times, log=True, include=[planset.deadline_s] if planset.deadline_s else []), "predicted time (median, whisker to p90)", tick_duration, log=True)
    y = Axis(*padded(costs, log=True, include=[planset.budget_usd]), "predicted cost, USD (median, whisker to p90)", log=True, ticks=lambda v: usd(v, 2 if v >= 1 else 3))
    chart = Chart(x, y, "cost against time of the ranked plans, with the budget and the deadline", css_id="frontier-chart")
    chart.hline(planset.budget_usd, "budget", f"budget {usd(planset.budget_usd)}", anchor_right=False)
    chart.legend.append(("budget-key", "budget"))
    if planset.deadline_s:
        chart.vline(planset.deadline_s, "deadline", f"deadline {duration(planset.deadline_s)}")
        chart.legend.append(("deadline-key", "deadline"))
    frontier = sorted((p for p in plans if p.on_frontier), key=lambda p: p.time_s.p50)
    chart.line([(p.time_s.p50, p.cost_usd.p50) for p in frontier], "frontier s0", legend="cost/time frontier (no plan is both cheaper and faster)")
    for plan in plans:
        css = "s0" if plan.on_frontier else "s6"
        chart.whisker((plan.time_s.p50, plan.cost_usd.p50), (plan.time_s.p90, plan.cost_usd.p50), css)
        chart.whisker((plan.time_s.p50, plan.cost_usd.p50), (plan.time_s.p50, plan.cost_usd.p90), css)
    clusters: list[tuple[tuple[float, float], list[int]]] = []
    for plan in sorted(plans, key=lambda p: -p.rank):  # the best-ranked drawn last, on top
        where = (plan.time_s.p50, plan.cost_usd.p50)
        tip = f"#{plan.rank}: " + " + ".join(f"{a.count}x {a.instance_type}" for a in plan.roles) + f" in {plan.region}, {duration(plan.time_s.p50)}, {usd(plan.cost_usd.p50)}"
        chart.points([where], "s0" if plan.on_frontier else "s6", titles=[tip], hollow=not plan.on_frontier)
        cluster = next((c for c in clusters if chart.near(c[0], where)), None)
        if cluster is None:
            clusters.append((where, [plan.rank]))
        else:
            cluster[1].append(plan.rank)
    for where, ranks in clusters:
        chart.label_at(where, rank_label(sorted(ranks)))
    chart.legend.append(("s6", "other ranked plans (hollow)"))
    return chart


def rank_label(ranks: list[int]) -> str:
    """``#3``, ``#1-5`` or ``#1,4,7`` for plans drawn on top of one another."""
    if len(ranks) == 1:
        return f"#{ranks[0]}"
    if ranks == list(range(ranks[0], ranks[-1] + 1)):
        return f"#{ranks[0]}-{ranks[-1]}"
    return "#" + ",".join(str(r) for r in ranks)


def _age(fetched_at: str) -> str:
    try:
        moment = datetime.fromisoformat(fetched_at.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return MISSING
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    days = (datetime.now(timezone.utc) - moment).total_seconds() / 86400
    return f"{days:.0f} days old" if days >= 1 else f"{days * 24:.0f} hours old"


def inputs_html(planset, profile) -> str:
    """What the plans were made from."""
    digest = planset.profile_digest
    if profile is None:
        match = ""
    elif profile.digest == digest:
        match = ' <span class="badge succeeded">matches profile.json</span>'
    else:
        match = ' <span class="badge failed">profile.json changed since; run \'d2c recommend\' again</span>'
    return facts(
        [
            ("budget", f'<strong id="input-budget">{usd(planset.budget_usd)}</strong> (each plan\'s p90 cost fits)'),
            ("deadline", f'<strong id="input-deadline">{duration(planset.deadline_s) if planset.deadline_s else "none"}</strong>' + (" (each plan's p90 time fits)" if planset.deadline_s else "")),
            ("scale", f"{planset.scale:g}"),
            ("market", text(planset.market)),
            ("regions", text(", ".join(planset.regions) or "every region in the catalog")),
            ("catalog", f'{text(planset.catalog_source)}, prices from {text(planset.catalog_fetched_at[:10])} (<span id="catalog-age">{_age(planset.catalog_fetched_at)}</span>)'),
            ("outputs brought back", f"{planset.output_gb:g} GB (priced as egress)"),
            ("profile", f"<code>{text(digest[:19])}</code>{match}"),
            ("made", text(planset.created_at)),
        ]
    )


def rehearse_form(rank: int, token: str) -> str:
    """A button that asks the dashboard to rehearse plan ``rank`` here (a POST with the start token)."""
    return (
        f'<form method="post" action="/actions/rehearse" class="rehearse"><input type="hidden" name="token" value="{escape(token)}">'
        f'<input type="hidden" name="plan" value="{rank}"><button type="submit" class="copy" id="rehearse-{rank}">rehearse here</button></form>'
    )


def _slots(workers_per_instance: int) -> str:
    """What each host of an allocation runs: its worker ranks, or none for a service role's hosts."""
    return f"{workers_per_instance} worker(s) each" if workers_per_instance else "service, no ranks"


def _zone_html(plan) -> str:
    """The one zone a spot plan priced per zone launches in, under its region (as the terminal table shows it)."""
    return f'<br><span class="nowrap muted small">zone {escape(plan.zone)}</span>' if plan.zone else ""


def plans_table(planset, plans_path: Path, default_path: Path, rehearse_token: str | None = None) -> str:
    """The ranked plans (with a rehearse button each when the dashboard allows it)."""
    rows = []
    for plan in sorted(planset.plans, key=lambda p: p.rank):
        roles = "<br>".join(
            f'{escape(a.role)}: <span class="nowrap">{a.count}× <span class="type">{escape(a.instance_type)}</span></span> <span class="muted small">{escape(a.market)}, '
            f"{_slots(a.workers_per_instance)}</span>"
            for a in plan.roles
        )
        rows.append(
            [
                f"<strong>#{plan.rank}</strong>" + (' <span class="badge">frontier</span>' if plan.on_frontier else ""),
                roles,
                f'<span class="nowrap">{escape(plan.region)}</span>' + _zone_html(plan),
                f"{duration(plan.time_s.p50)}<br><span class=\"muted small\">p90 {duration(plan.time_s.p90)}</span>",
                f"{usd(plan.cost_usd.p50)}<br><span class=\"muted small\">p90 {usd(plan.cost_usd.p90)}</span>",
                f"{usd(plan.hourly_usd, 3)}/h",
                _breakdown_html(plan),
                escape(plan.why) + _extrapolation_html(plan),
                command_html(run_command(plan.rank, plans_path, default_path)) + (rehearse_form(plan.rank, rehearse_token) if rehearse_token else ""),
            ]
        )
    return table(["rank", "instances per role", "region", "time", "cost", "price", "cost breakdown", "why this rank", "to run it"], rows, numeric=(3, 4, 5), css_id="plans", cards=True)


def render(project, rehearse_token: str | None = None) -> tuple[str, str]:
    """The page's title and body; ``rehearse_token`` adds the rehearse buttons."""
    loaded = project.plans()
    if loaded.value is None:
        return "Plans", "<h1>Plans</h1>" + notice(loaded.problem or "no plans")
    planset = loaded.value
    if not planset.plans:
        return "Plans", "<h1>Plans</h1>" + notice(f"{project.plans_path}: holds no plans; run 'd2c recommend' with a larger budget or a later deadline")
    body = [
        f"<h1>Plans for {escape(planset.descriptor)}</h1>",
        f'<section class="card" id="inputs">{inputs_html(planset, project.profile().value)}</section>',
        '<section class="card"><h2>Cost against time</h2>',
        '<p class="muted small">Log axes. A plan must finish before the deadline and stay under the budget at its p90; filled dots are on the frontier.</p>',
        frontier_chart(planset).render(),
        "</section>",
        '<section class="card"><h2>Ranked plans</h2>',
        plans_table(planset, project.plans_path, project.root / "plans.json", rehearse_token),
        "</section>",
    ]
    return "Plans", "".join(body)
