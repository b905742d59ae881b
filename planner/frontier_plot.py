"""``d2c recommend --plot``: what each ranked plan costs and takes, against the budget and deadline.

The ranked plans are drawn at their p50 time and p50 cost with whiskers to their p90 time and
p90 cost, since the limits are kept at p90: a plan fits the budget when its p90 cost (the top of
its whisker) stays under the budget line (planner.ilp: ``cost90 <= budget``), and the deadline
when its p90 time (the right end) stays left of the deadline line. Plans that land on the same
spot (the same mix in another region or market, or a master of another type at the same price)
are drawn once and labelled together (``#1,#3``), #1 in its own colour; a key beside the axes
names each spot's mix with its time and cost ranges. The frontier joins the
frontier plans; every candidate type's cheapest plan is a grey dot (at its p90 time and p50
cost, as planner.recommend records it).

Cost is on a log scale so that plans a few cents apart stay apart under a budget of dollars.
The time axis takes the unit that suits the plans (seconds, minutes, hours or days) and the
title names the app and the date of the catalog's prices. :func:`frontier_figure` builds the
figure (tests read its data); :func:`write_frontier_plot` writes it as a PNG.
"""

from __future__ import annotations

import io
from pathlib import Path

from planner.plans import Plan, PlanSet

SAME_SPOT = 0.005
"""Plans within this fraction of each other in p50 time and cost are drawn as one."""
_UNITS = ((180.0, "seconds", 1.0), (3 * 3600.0, "minutes", 60.0), (3 * 86400.0, "hours", 3600.0), (float("inf"), "days", 86400.0))


def time_unit(longest_s: float) -> tuple[str, float]:
    """The unit for a time axis whose largest value is ``longest_s``: (name, seconds per unit)."""
    return next((name, size) for limit, name, size in _UNITS if longest_s < limit)


def same_spot_groups(plans: tuple[Plan, ...]) -> list[list[Plan]]:
    """Ranked plans grouped by where they land (p50 time and cost within SAME_SPOT), best rank first."""
    groups: list[list[Plan]] = []
    for plan in sorted(plans, key=lambda p: p.rank):
        for group in groups:
            first = group[0]
            if abs(plan.time_s.p50 - first.time_s.p50) <= SAME_SPOT * first.time_s.p50 and abs(plan.cost_usd.p50 - first.cost_usd.p50) <= SAME_SPOT * first.cost_usd.p50:
                group.append(plan)
                break
        else:
            groups.append([plan])
    return groups


def frontier_figure(planset: PlanSet, points: tuple[tuple[float, float], ...]):
    """The matplotlib Figure for ``planset`` (the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    plans = planset.plans
    longest = max([p.time_s.p90 for p in plans] + [t for t, _ in points] + ([planset.deadline_s] if planset.deadline_s else []) + [1.0])
    unit, size = time_unit(longest)
    fig, (ax, key) = plt.subplots(1, 2, figsize=(12, 5.5), dpi=100, gridspec_kw={"width_ratios": (2.1, 1)})
    if points:
        ax.scatter([t / size for t, _ in points], [c for _, c in points], s=10, color="0.75", label="cheapest plan of each type (p90 time, p50 cost)", zorder=1)
    front = sorted((p for p in plans if p.on_frontier), key=lambda p: p.time_s.p50)
    if len(front) > 1:
        ax.plot([p.time_s.p50 / size for p in front], [p.cost_usd.p50 for p in front], "-", color="tab:blue", linewidth=1, label="cost/time frontier (p50)", zorder=2)
    lines = []
    for group in same_spot_groups(plans):
        plan = group[0]
        best = plan.rank == 1
        x, y = plan.time_s.p50 / size, plan.cost_usd.p50
        ax.errorbar(
            [x], [y],
            xerr=[[0.0], [(plan.time_s.p90 - plan.time_s.p50) / size]],
            yerr=[[0.0], [plan.cost_usd.p90 - plan.cost_usd.p50]],
            fmt="o", color="tab:orange" if best else "tab:green", markersize=7 if best else 5, capsize=3, zorder=4 if best else 3,
            label="_plan-" + "-".join(str(p.rank) for p in group),  # "_": kept out of the legend, there for readers of the figure
        )
        ranks = ",".join(f"#{p.rank}" for p in group)
        ax.annotate(ranks, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8, fontweight="bold" if best else "normal", zorder=5)
        digits = 0 if unit == "seconds" else 1
        lines.append(
            f"{ranks:<6} {_mix(plan)}\n"
            f"       {plan.time_s.p50 / size:.{digits}f}-{plan.time_s.p90 / size:.{digits}f} {unit}, {_usd(plan.cost_usd.p50)}-{_usd(plan.cost_usd.p90)}"
            + (f" ({', '.join(dict.fromkeys(p.region for p in group))})" if len(planset.regions) > 1 else "")
        )
    ax.axhline(planset.budget_usd, color="tab:red", linestyle="--", label=f"budget \\${planset.budget_usd:,.2f} (p90 cost stays below)")
    if planset.deadline_s is not None:
        ax.axvline(planset.deadline_s / size, color="tab:purple", linestyle="--", label=f"deadline {planset.deadline_s / size:.3g} {unit} (p90 time stays left)")
    costs = [p.cost_usd.p50 for p in plans] + [c for _, c in points if c > 0]
    ax.set_yscale("log")
    ax.set_ylim(min(costs) / 1.6, max([planset.budget_usd] + [p.cost_usd.p90 for p in plans]) * 1.8)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _position: f"\\${value:,.2f}" if value < 100 else f"\\${value:,.0f}"))
    ax.set_xlim(left=0)
    ax.set_xlabel(f"time from launch to outputs back ({unit}): dot p50, whisker to p90")
    ax.set_ylabel("cost (USD, log scale): dot p50, whisker to p90")
    ax.set_title(f"{planset.descriptor}: plans for a \\${planset.budget_usd:,.2f} budget · catalog prices of {planset.catalog_fetched_at[:10]}", loc="left")
    ax.legend(fontsize=8, loc="center right")
    ax.grid(True, alpha=0.3)
    key.axis("off")
    key.set_title("ranked plans: time p50-p90, cost p50-p90", loc="left", fontsize=9)
    key.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=7.5, transform=key.transAxes, parse_math=False)
    fig.tight_layout()
    return fig


def _usd(value: float) -> str:
    """``$0.0991`` below a dollar (plans a few tenths of a cent apart), ``$12.34`` above."""
    return f"${value:.4f}" if value < 1 else f"${value:,.2f}"


def _mix(plan: Plan) -> str:
    """``4x c6i.large``, ``1x m6i.large + 3x c6i.xlarge spot``."""
    return " + ".join(f"{a.count}x {a.instance_type}{' spot' if a.market == 'spot' else ''}" for a in plan.roles)


def write_frontier_plot(path: Path, planset: PlanSet, points: tuple[tuple[float, float], ...]) -> None:
    """Write :func:`frontier_figure` as a PNG at ``path``, atomically."""
    import matplotlib.pyplot as plt

    from d2c.files import atomic_write_bytes

    fig = frontier_figure(planset, points)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write_bytes(Path(path), buffer.getvalue())
