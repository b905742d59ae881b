"""The run report, ``<run folder>/report.json``: what the run took and cost against the plan.

Format (``version`` 1)::

    {"version": 1, "run_id": "...", "descriptor": "<name>", "provider": "aws"|"local",
     "simulated": bool, "plan_rank": 1, "region": "...",
     "outcome": "succeeded"|"failed"|"stopped", "reason": "...", "exit_status": int|null,
     "started_at": ISO-8601, "finished_at": ISO-8601,
     "wall_s": seconds the master command ran (null when it never started),
     "total_s": seconds from the first launch to the end of teardown,
     "cost_usd": accrued total, "budget_usd": ...,
     "instances": [{"instance_id", "name", "role", "instance_type", "market", "price_usd_h",
                    "launched_at", "ended_at", "cost_usd"}],
     "predicted": {"time_s": {"p50", "p90"}, "cost_usd": {"p50", "p90"}, "boot_setup_s": seconds of
                   the predicted time allowed for boot, contextualization and uploads},
     "outputs": [{"remote", "local", "fetched": bool, "skipped": ["<path>: <why>", …] (when any)}],
     "calibrated": bool,
     "cost_breakdown": {"actual": {"compute", "ebs", "public_ipv4", "egress", "snapshots",
                        "cpu_credits"}, "predicted": {...} | null}}

``skipped`` names every entry of an output that was not brought back (a link leading out of the
output folder, a FIFO, …; see :mod:`executor.fetch`). The report is private to the user (0600).
``cost_breakdown.actual`` adds up to ``cost_usd``: compute is the instances at their launch (and,
for spot, re-read) prices, which for an ``unlimited`` burstable type include its surplus
credits; ``cost_breakdown.predicted`` is the plan's p50 breakdown.

For a rehearsal (``simulated`` true) the costs are what the plan's prices would have charged.
A plan's predicted time runs from launch to the outputs being back, so the summary compares
``total_s`` with it, and ``wall_s`` (the app alone) with it less the boot/setup allowance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from d2c.errors import UsageError
from d2c.files import atomic_write_json
from d2c.state import PRIVATE_FILE_MODE
from executor.journal import RunRecord
from executor.providers.base import Machine
from executor.watchdog import Watchdog
from planner.billing import BillingRules, CostBreakdown
from planner.plans import Plan

REPORT_VERSION = 1
REPORT_NAME = "report.json"


@dataclass(frozen=True)
class InstanceCost:
    """One host's life and what it cost."""

    machine: Machine
    ended_at: float
    cost_usd: float


def iso(epoch: float | None) -> str | None:
    """An epoch time as ISO-8601 UTC."""
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="seconds")


def build_report(
    *,
    run_id: str,
    descriptor: str,
    provider: str,
    simulated: bool,
    plan_rank: int,
    region: str,
    outcome: str,
    reason: str,
    exit_status: int | None,
    started_at: float,
    finished_at: float,
    wall_s: float | None,
    budget_usd: float,
    instances: list[InstanceCost],
    extra_usd: float,
    predicted_time_s: dict[str, float],
    predicted_cost_usd: dict[str, float],
    outputs: list[dict[str, Any]],
    calibrated: bool,
    breakdown: CostBreakdown | None = None,
    predicted_breakdown: CostBreakdown | None = None,
) -> dict[str, Any]:
    """The report as a JSON-ready dict."""
    first_launch = min((c.machine.launched_at for c in instances), default=started_at)
    return {
        "version": REPORT_VERSION,
        "run_id": run_id,
        "descriptor": descriptor,
        "provider": provider,
        "simulated": simulated,
        "plan_rank": plan_rank,
        "region": region,
        "outcome": outcome,
        "reason": reason,
        "exit_status": exit_status,
        "started_at": iso(started_at),
        "finished_at": iso(finished_at),
        "wall_s": None if wall_s is None else round(wall_s, 3),
        "total_s": round(finished_at - first_launch, 3),
        "cost_usd": round(sum(c.cost_usd for c in instances) + extra_usd, 6),
        "budget_usd": budget_usd,
        "instances": [
            {
                "instance_id": c.machine.instance_id,
                "name": c.machine.name,
                "role": c.machine.role,
                "instance_type": c.machine.instance_type,
                "market": c.machine.market,
                "price_usd_h": c.machine.price_usd_h,
                "launched_at": iso(c.machine.launched_at),
                "ended_at": iso(c.ended_at),
                "cost_usd": round(c.cost_usd, 6),
            }
            for c in instances
        ],
        "predicted": {"time_s": predicted_time_s, "cost_usd": predicted_cost_usd, "boot_setup_s": BillingRules().boot_setup_s},
        "outputs": outputs,
        "calibrated": calibrated,
        "cost_breakdown": {
            "actual": breakdown.to_dict() if breakdown is not None else None,
            "predicted": predicted_breakdown.to_dict() if predicted_breakdown is not None else None,
        },
    }


def run_report(
    *,
    record: RunRecord,
    details: dict[str, Any],
    descriptor: str,
    plan: Plan,
    provider: str,
    simulated: bool,
    watchdog: Watchdog,
    now: float,
    outcome: str,
    reason: str,
    exit_status: int | None,
    calibrated: bool,
) -> dict[str, Any]:
    """The report of a run from its journal record and its watchdog's accounts at ``now``."""
    costs = watchdog.cost_by_instance(now)
    instances = [InstanceCost(m, watchdog.ended.get(m.instance_id, now), costs[m.instance_id]) for m in watchdog.machines]
    wall_s = None
    if "master_started_at" in details and "master_ended_at" in details:
        wall_s = float(details["master_ended_at"]) - float(details["master_started_at"])
    return build_report(
        run_id=record.run_id,
        descriptor=descriptor,
        provider=provider,
        simulated=simulated,
        plan_rank=plan.rank,
        region=plan.region,
        outcome=outcome,
        reason=reason,
        exit_status=exit_status if exit_status is not None else details.get("exit_status"),
        started_at=record.created_at,
        finished_at=now,
        wall_s=wall_s,
        budget_usd=record.budget_usd,
        instances=instances,
        extra_usd=watchdog.accrued_usd(now) - sum(costs.values()),
        predicted_time_s=details.get("predicted", {}).get("time_s", {}),
        predicted_cost_usd=details.get("predicted", {}).get("cost_usd", {}),
        outputs=details.get("outputs", []),
        calibrated=calibrated,
        breakdown=watchdog.breakdown(now),
        predicted_breakdown=plan.breakdown,
    )


def write_report(run_dir: Path, report: dict[str, Any]) -> Path:
    """Write ``report.json`` into the run folder atomically, readable by the user alone."""
    path = Path(run_dir) / REPORT_NAME
    atomic_write_json(path, report, mode=PRIVATE_FILE_MODE)
    return path


def load_report(run_dir: Path) -> dict[str, Any]:
    """Read a run's report; UsageError when the run has none yet."""
    path = Path(run_dir) / REPORT_NAME
    if not path.is_file():
        raise UsageError(f"{path}: no report yet; the run has not finished (see 'd2c status')")
    return json.loads(path.read_text(encoding="utf-8"))


def report_lines(report: dict[str, Any]) -> list[str]:
    """A short human summary of a report."""
    label = " (simulated)" if report["simulated"] else ""
    predicted = report["predicted"]
    lines = [
        f"run {report['run_id']}: {report['outcome']} — {report['reason']}",
        f"provider {report['provider']}{label}, plan {report['plan_rank']}, region {report['region']}",
    ]
    plan_s = predicted["time_s"]
    boot_s = predicted.get("boot_setup_s", BillingRules().boot_setup_s)
    if report["wall_s"] is not None:
        app = {q: max(plan_s.get(q, 0) - boot_s, 0.0) for q in ("p50", "p90")}
        lines.append(
            f"app wall time {report['wall_s']:.1f} s (predicted p50 {app['p50']:.1f} s, p90 {app['p90']:.1f} s, "
            f"the plan's time less {boot_s:.0f} s for boot and setup)"
        )
    lines.append(
        f"launch to teardown {report['total_s']:.1f} s (predicted p50 {plan_s.get('p50', 0):.1f} s, p90 {plan_s.get('p90', 0):.1f} s)"
    )
    lines.append(
        f"cost ${report['cost_usd']:.4f}{label} of ${report['budget_usd']:.2f} budget (predicted p50 "
        f"${predicted['cost_usd'].get('p50', 0):.4f}, p90 ${predicted['cost_usd'].get('p90', 0):.4f})"
    )
    breakdown = report.get("cost_breakdown") or {}
    actual, planned = breakdown.get("actual") or {}, breakdown.get("predicted") or {}
    items = [name for name in actual if actual[name] or planned.get(name)]
    if items:
        lines.append("  by item: " + ", ".join(
            f"{name.replace('_', ' ')} ${actual[name]:.4f}" + (f" (predicted ${planned[name]:.4f})" if name in planned else "") for name in items
        ))
    for item in report["instances"]:
        lines.append(f"  {item['name']:<12} {item['instance_type']:<12} {item['market']:<10} ${item['cost_usd']:.4f}")
    for output in report.get("outputs", []):
        for skipped in output.get("skipped", []):
            lines.append(f"  not fetched: {skipped}")
    return lines
