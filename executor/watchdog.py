"""The budget and deadline watchdog that runs in the controller.

Accrued cost is computed from the prices recorded when each instance was launched (per-second
billing with EC2's one-minute minimum), plus EBS storage and the egress of what has been
downloaded. The watchdog keeps a reserve: the time it takes to fetch outputs and tear down,
priced at the fleet's hourly rate, plus the egress of the expected outputs (the plan set's
``output_gb``). When accrued cost plus that reserve would pass the budget, or the deadline is
closer than the reserve time, it says stop and why. EBS and egress prices are planner.billing's,
so a run is counted the way it was priced. The clock is injected so tests can run a "three-hour"
run in seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from executor.providers.base import Machine
from planner.billing import SECONDS_PER_MONTH, BillingRules

Clock = Callable[[], float]
"""Returns the current time in epoch seconds."""

_PRICES = BillingRules()
"""EBS and egress prices, the same the planner priced the plan with."""
DEFAULT_RESERVE_S = 180.0
"""Time kept back for fetching outputs and tearing down."""


@dataclass(frozen=True)
class Verdict:
    """The watchdog's decision to stop the run, with the reason in words."""

    reason: str
    """``budget`` or ``deadline``."""
    message: str


class Watchdog:
    """Tracks spend and time for one run and decides when it must stop."""

    def __init__(
        self,
        *,
        machines: list[Machine],
        budget_usd: float,
        deadline_at: float | None,
        clock: Clock = time.time,
        reserve_s: float = DEFAULT_RESERVE_S,
        ebs_gb: float = 0.0,
        expected_output_gb: float = 0.0,
    ):
        self.machines = list(machines)
        self.budget_usd = budget_usd
        self.deadline_at = deadline_at
        self.clock = clock
        self.reserve_s = reserve_s
        self.ebs_gb = ebs_gb
        self.expected_output_gb = expected_output_gb
        self.egress_bytes = 0
        self.ended: dict[str, float] = {}

    @property
    def hourly_usd(self) -> float:
        """The hourly price of the hosts still running."""
        return sum(m.price_usd_h for m in self.machines if m.instance_id not in self.ended)

    def host_ended(self, instance_id: str, at: float | None = None) -> None:
        """Stop accruing for a host (terminated, interrupted)."""
        self.ended.setdefault(instance_id, self.clock() if at is None else at)

    def add_egress(self, nbytes: int) -> None:
        """Count bytes downloaded from the hosts."""
        self.egress_bytes += nbytes

    def cost_by_instance(self, now: float | None = None) -> dict[str, float]:
        """Accrued instance cost per host, USD."""
        now = self.clock() if now is None else now
        return {m.instance_id: m.accrued_usd(self.ended.get(m.instance_id, now)) for m in self.machines}

    def accrued_usd(self, now: float | None = None) -> float:
        """Everything spent so far: instances, EBS and egress."""
        now = self.clock() if now is None else now
        instances = sum(self.cost_by_instance(now).values())
        started = min((m.launched_at for m in self.machines), default=now)
        seconds = max(now - started, 0.0)
        ebs = self.ebs_gb * _PRICES.ebs_usd_gb_month * seconds / SECONDS_PER_MONTH
        egress = self.egress_bytes / 1e9 * _PRICES.egress_usd_gb
        return instances + ebs + egress

    def reserve_usd(self) -> float:
        """What fetching outputs and tearing down is expected to cost."""
        return self.hourly_usd * self.reserve_s / 3600.0 + self.expected_output_gb * _PRICES.egress_usd_gb

    def check(self, *, keep_reserve: bool = True) -> Verdict | None:
        """A Verdict when the run must stop now, else None.

        While outputs are being fetched the reserve is what is being spent, so the fetch checks
        with ``keep_reserve=False``: it stops only at the budget or the deadline itself.
        """
        now = self.clock()
        spent = self.accrued_usd(now)
        reserve = self.reserve_usd() if keep_reserve else 0.0
        reserve_s = self.reserve_s if keep_reserve else 0.0
        if spent + reserve >= self.budget_usd:
            needs = f", and fetching outputs and tearing down needs about ${reserve:.2f} more" if keep_reserve else ""
            return Verdict("budget", f"stopping: ${spent:.2f} spent of the ${self.budget_usd:.2f} budget{needs}")
        if self.deadline_at is not None and now + reserve_s >= self.deadline_at:
            left = max(self.deadline_at - now, 0.0)
            needs = f", and fetching outputs and tearing down needs about {reserve_s / 60:.1f} min" if keep_reserve else ""
            return Verdict("deadline", f"stopping: {left / 60:.1f} min left before the deadline{needs}")
        return None
