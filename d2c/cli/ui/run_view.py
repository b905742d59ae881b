"""A run as the dashboard shows it: spend so far and over time, the watchdog's stop line, hosts, times.

Spend is counted exactly as the controller's watchdog counts it (:class:`executor.watchdog.Watchdog`,
rebuilt from the journal the way the orchestrator rebuilds it on ``--resume``): per-second billing
from each host's launch with EC2's one-minute minimum at the price journaled at launch, plus EBS
and egress. The watchdog stops the run when spend plus its reserve (fetching outputs and tearing
down at the fleet's hourly rate, plus the expected outputs' egress) reaches the budget, so the
*stop line* is the budget less that reserve. Spend over time is the same sum evaluated at earlier
moments, each host counted from its launch until it ended; egress, whose timing the journal does
not keep, is added at the last point. Where the watchdog takes the region's rates and the hosts'
public IPv4 addresses, they are passed as the orchestrator passes them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from executor.journal import Journal, RunRecord
from executor.providers.base import Machine, machines_from_journal
from executor.watchdog import ended_at, run_watchdog

SERIES_POINTS = 60
"""Points on the spend-over-time curve."""


@dataclass(frozen=True)
class HostView:
    """One launched host and where it is in its life."""

    name: str
    role: str
    instance_type: str
    market: str
    price_usd_h: float
    launched_at: float
    ended_at: float | None
    state: str
    """``running``, ``ended`` (lost or stopped, not yet deleted) or ``terminated``."""
    cost_usd: float


@dataclass(frozen=True)
class RunView:
    """Everything the run pages show about one run at ``now``."""

    record: RunRecord
    now: float
    """The moment shown: the current time for an active run, its end for a finished one."""
    spent_usd: float
    reserve_usd: float
    hosts: tuple[HostView, ...]
    series: tuple[tuple[float, float], ...]
    """(seconds since the run was created, USD spent by then)."""
    first_launch: float | None
    predicted_time_s: dict[str, float]
    predicted_cost_usd: dict[str, float]
    simulated: bool
    controller: str | None
    """``running`` or ``gone`` for an active run whose controller was journaled, else None."""

    @property
    def stop_line_usd(self) -> float:
        """Spend at which the watchdog stops the run (the budget less its reserve)."""
        return max(self.record.budget_usd - self.reserve_usd, 0.0)

    @property
    def elapsed_s(self) -> float:
        """Seconds since the run was created."""
        return max(self.now - self.record.created_at, 0.0)

    @property
    def deadline_at(self) -> float | None:
        """When the deadline falls (the watchdog measures it from the run's creation)."""
        deadline = self.record.deadline_s
        return None if deadline is None else self.record.created_at + float(deadline)

    def predicted_end(self, quantile: str) -> float | None:
        """When the plan's p50 or p90 time runs out, counted from the first launch."""
        seconds = self.predicted_time_s.get(quantile)
        if seconds is None:
            return None
        return (self.first_launch or self.record.created_at) + float(seconds)


def spend_series(
    journal: Journal, record: RunRecord, machines: list[Machine], ended: dict[str, float], until: float, egress_bytes: int
) -> list[tuple[float, float]]:
    """Spend from the run's creation to ``until``, at SERIES_POINTS evenly spaced moments."""
    start = record.created_at
    span = max(until - start, 1.0)
    series = []
    for i in range(SERIES_POINTS + 1):
        moment = start + span * i / SERIES_POINTS
        launched = [m for m in machines if m.launched_at <= moment]
        then = {key: min(at, moment) for key, at in ended.items()}
        watchdog = run_watchdog(journal, record, launched, clock=lambda m=moment: m, ended=then)
        if i == SERIES_POINTS:
            watchdog.add_egress(egress_bytes)
        series.append((moment - start, watchdog.accrued_usd(moment) if launched else 0.0))
    return series


def run_view(record: RunRecord, journal: Journal, report: dict[str, Any] | None = None, now: float | None = None) -> RunView:
    """The dashboard's view of ``record`` at ``now`` (default: the current time, or the run's end)."""
    from executor.controller import controller_alive

    machines = machines_from_journal(journal, record.run_id, live_only=False)
    ended = ended_at(journal, record)
    if now is None:
        now = record.finished_at if (not record.active and record.finished_at) else time.time()
    egress = int(record.details.get("egress_bytes", 0))
    watchdog = run_watchdog(journal, record, machines, clock=lambda: now, ended=ended)
    watchdog.add_egress(egress)
    spent = watchdog.accrued_usd(now)
    if report is not None and isinstance(report.get("cost_usd"), (int, float)):
        spent = float(report["cost_usd"])
    costs = watchdog.cost_by_instance(now)
    deleted = {r.resource_id for r in journal.resources(record.run_id, "instance") if r.deleted_at is not None}
    hosts = tuple(
        HostView(
            name=m.name,
            role=m.role,
            instance_type=m.instance_type,
            market=m.market,
            price_usd_h=m.price_usd_h,
            launched_at=m.launched_at,
            ended_at=ended.get(m.instance_id),
            state="terminated" if m.instance_id in deleted else "ended" if m.instance_id in ended else ("running" if record.active else "—"),
            cost_usd=costs.get(m.instance_id, 0.0),
        )
        for m in machines
    )
    predicted = record.details.get("predicted") or {}
    alive = controller_alive(record.details) if record.active else None
    return RunView(
        record=record,
        now=now,
        spent_usd=spent,
        reserve_usd=watchdog.reserve_usd() if record.active else 0.0,
        hosts=hosts,
        series=tuple(spend_series(journal, record, machines, ended, now, egress)),
        first_launch=min((m.launched_at for m in machines), default=None),
        predicted_time_s=dict(predicted.get("time_s") or {}),
        predicted_cost_usd=dict(predicted.get("cost_usd") or {}),
        simulated=bool(record.details.get("simulated", record.provider == "local")),
        controller=None if alive is None else ("running" if alive else "gone"),
    )
