"""``d2c recommend --plot``: cost against time for every candidate, the frontier and the limits."""

from __future__ import annotations

import io
from pathlib import Path

from planner.plans import Plan


def write_frontier_plot(
    path: Path,
    plans: tuple[Plan, ...],
    points: tuple[tuple[float, float], ...],
    *,
    budget_usd: float,
    deadline_s: float | None,
) -> None:
    """A PNG of p90 time (hours) against p50 cost: the cheapest single-type plan of every
    candidate (grey), the frontier (line), the ranked plans (numbered), budget and deadline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from d2c.files import atomic_write_bytes

    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    if points:
        ax.scatter([t / 3600 for t, _ in points], [c for _, c in points], s=8, color="0.7", label="single-type plans")
    front = sorted((p for p in plans if p.on_frontier), key=lambda p: p.time_s.p90)
    if front:
        ax.plot([p.time_s.p90 / 3600 for p in front], [p.cost_usd.p50 for p in front], "-o", color="tab:blue", label="cost/time frontier")
    for plan in plans:
        ax.annotate(f"#{plan.rank}", (plan.time_s.p90 / 3600, plan.cost_usd.p50), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.plot(plan.time_s.p90 / 3600, plan.cost_usd.p50, "o", color="tab:orange" if plan.rank == 1 else "tab:green", markersize=5)
    ax.axhline(budget_usd, color="tab:red", linestyle="--", label=f"budget ${budget_usd:,.2f}")
    if deadline_s is not None:
        ax.axvline(deadline_s / 3600, color="tab:purple", linestyle="--", label=f"deadline {deadline_s / 3600:.2f} h")
    ax.set_xlabel("time p90 (hours)")
    ax.set_ylabel("cost p50 (USD)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write_bytes(Path(path), buffer.getvalue())
