"""/: where the project is in its journey (descriptor, profile, plans, runs) and what to do next."""

from __future__ import annotations

from html import escape

from d2c.cli.ui.html import duration, notice, usd


def _card(title: str, href: str, lines: list[str]) -> str:
    return f'<section class="card"><h2><a href="{href}">{escape(title)}</a></h2>' + "".join(f"<p>{line}</p>" for line in lines) + "</section>"


def render(project) -> tuple[str, str]:
    """The page's title and body."""
    cards = []
    descriptor = project.descriptor()
    if descriptor.value is None:
        cards.append(notice(descriptor.problem or "no descriptor"))
    else:
        d = descriptor.value
        roles = ", ".join(f"{escape(r.name)}" for r in d.roles)
        cards.append(f'<section class="card"><h2>{escape(d.name)}</h2><p>roles: {roles}; project folder <code>{escape(str(d.project_dir))}</code></p></section>')
    profile = project.profile()
    if profile.value is None:
        cards.append(_card("1. Profile", "/profile", [escape(profile.problem or "")]))
    else:
        p = profile.value
        cards.append(_card("1. Profile", "/profile", [f"model <strong>{escape(p.model.name)}</strong> fitted to {len(p.runs)} runs; full scale {p.full_scale:g}"]))
    plans = project.plans()
    if plans.value is None:
        cards.append(_card("2. Plans", "/plans", [escape(plans.problem or "")]))
    elif plans.value.plans:
        first = min(plans.value.plans, key=lambda plan: plan.rank)
        mix = " + ".join(f'{a.count}× <span class="type">{escape(a.instance_type)}</span>' for a in first.roles)
        cards.append(
            _card(
                "2. Plans",
                "/plans",
                [f"{len(plans.value.plans)} plans within {usd(plans.value.budget_usd)}; #1: {mix} in {escape(first.region)}, {duration(first.time_s.p50)}, {usd(first.cost_usd.p50)}"],
            )
        )
    journal = project.journal()
    runs = journal.runs() if journal is not None else []
    active = [r for r in runs if r.active]
    line = f"{len(runs)} run(s), {len(active)} active" if runs else "no runs yet"
    links = "".join(f'<br><a href="/runs/{escape(r.run_id)}">{escape(r.run_id)}</a> ({escape(r.state)})' for r in active)
    cards.append(_card("3. Runs", "/runs", [line + links]))
    return "Overview", "<h1>Overview</h1>" + "".join(cards)
