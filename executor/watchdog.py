"""The budget and deadline watchdog that runs in the controller.

Accrued cost counts every item AWS bills a run for, at planner.billing's rates, so a run is
counted the way it was priced:

* each instance per second with EC2's one-minute minimum, at the price recorded at launch (for
  spot: the zone's actual price then), updated whenever ``price_source`` reports a new spot
  price (``describe_spot_price_history`` for the instance's zone, polled every
  ``price_every_s``); a price holds from the moment it was read;
* one public IPv4 address per instance that has one ($0.005 per address-hour), for the
  instance's billed time;
* the run's EBS gigabytes since the first launch, and the egress of what has been downloaded.

The watchdog keeps a reserve: what the fleet spends (instances, addresses, volumes) during the
time it takes to fetch outputs and tear down (``reserve_s``) *plus the time until the next
check* (the median of the last ``GAPS_KEPT`` gaps between checks, at least ``check_every_s``),
and the egress of the expected outputs. A check that lets the run go on therefore guarantees that the next check,
and the fetch and teardown after it, still fit in the budget. When accrued cost plus that reserve
would pass the budget, or the deadline is closer than the reserve time, it says stop and why.
The clock is injected so tests can run a "three-hour" run in seconds.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

from executor.journal import Journal, RunRecord
from executor.providers.base import Machine

from planner.billing import MIN_BILLED_S, SECONDS_PER_MONTH, BillingRules, CostBreakdown

Clock = Callable[[], float]
"""Returns the current time in epoch seconds."""
PriceSource = Callable[[list[Machine]], dict[str, float]]
"""Given the running hosts, the current hourly price of those whose price moves (spot), by instance id."""

DEFAULT_RESERVE_S = 180.0
"""Time kept back for fetching outputs and tearing down."""
GAPS_KEPT = 5
DEFAULT_PRICE_EVERY_S = 300.0
"""How often the spot price of the run's zone is read again."""


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
        rules: BillingRules = BillingRules(),
        public_ipv4: set[str] | frozenset[str] = frozenset(),
        check_every_s: float = 0.0,
        price_source: PriceSource | None = None,
        price_every_s: float = DEFAULT_PRICE_EVERY_S,
    ):
        self.machines = list(machines)
        self.budget_usd = budget_usd
        self.deadline_at = deadline_at
        self.clock = clock
        self.reserve_s = reserve_s
        self.ebs_gb = ebs_gb
        self.expected_output_gb = expected_output_gb
        self.rules = rules
        self.public_ipv4 = set(public_ipv4)
        """Instance ids that hold a public IPv4 address."""
        self.check_every_s = check_every_s
        self.gaps: list[float] = []
        self.price_source = price_source
        self.price_every_s = price_every_s
        self.egress_bytes = 0
        self.ended: dict[str, float] = {}
        self.prices: dict[str, list[tuple[float, float]]] = {}
        """Per instance, the (from epoch s, USD/h) price changes read after launch."""
        self._last_check: float | None = None
        self._last_prices: float | None = None

    def _price_now(self, machine: Machine) -> float:
        changes = self.prices.get(machine.instance_id)
        return changes[-1][1] if changes else machine.price_usd_h

    @property
    def hourly_usd(self) -> float:
        """The hourly price of the hosts still running (instances only)."""
        return sum(self._price_now(m) for m in self.machines if m.instance_id not in self.ended)

    @property
    def fleet_hourly_usd(self) -> float:
        """What the fleet spends per hour while it runs: instances, public addresses, volumes."""
        running = [m for m in self.machines if m.instance_id not in self.ended]
        addresses = sum(1 for m in running if m.instance_id in self.public_ipv4)
        ebs = self.ebs_gb * self.rules.ebs_usd_gb_month * 3600.0 / SECONDS_PER_MONTH if running else 0.0
        return self.hourly_usd + addresses * self.rules.ipv4_usd_h + ebs

    def host_ended(self, instance_id: str, at: float | None = None) -> None:
        """Stop accruing for a host (terminated, interrupted)."""
        self.ended.setdefault(instance_id, self.clock() if at is None else at)

    def add_egress(self, nbytes: int) -> None:
        """Count bytes downloaded from the hosts."""
        self.egress_bytes += nbytes

    def set_price(self, instance_id: str, price_usd_h: float, at: float | None = None) -> None:
        """A host's hourly price from ``at`` on (a new spot price read for its zone)."""
        at = self.clock() if at is None else at
        changes = self.prices.setdefault(instance_id, [])
        if not changes or changes[-1][1] != price_usd_h:
            changes.append((at, price_usd_h))

    def _instance_usd(self, machine: Machine, until: float) -> float:
        """Price-weighted seconds from launch to ``until``, with the one-minute minimum at the launch price."""
        end = max(until, machine.launched_at + MIN_BILLED_S)
        points = [(machine.launched_at, machine.price_usd_h)] + [c for c in self.prices.get(machine.instance_id, []) if c[0] < end]
        total = 0.0
        for (start, price), (nxt, _) in zip(points, points[1:] + [(end, 0.0)]):
            total += price * max(nxt - max(start, machine.launched_at), 0.0) / 3600.0
        return total

    def cost_by_instance(self, now: float | None = None) -> dict[str, float]:
        """Accrued instance cost per host, USD (its public address excluded)."""
        now = self.clock() if now is None else now
        return {m.instance_id: self._instance_usd(m, self.ended.get(m.instance_id, now)) for m in self.machines}

    def ipv4_usd(self, now: float | None = None) -> float:
        """Public IPv4 addresses so far, each billed for its instance's time."""
        now = self.clock() if now is None else now
        seconds = sum(
            max(self.ended.get(m.instance_id, now) - m.launched_at, MIN_BILLED_S) for m in self.machines if m.instance_id in self.public_ipv4
        )
        return seconds * self.rules.ipv4_usd_h / 3600.0

    def ebs_usd(self, now: float | None = None) -> float:
        """The run's volumes since the first launch."""
        now = self.clock() if now is None else now
        started = min((m.launched_at for m in self.machines), default=now)
        return self.ebs_gb * self.rules.ebs_usd_gb_month * max(now - started, 0.0) / SECONDS_PER_MONTH

    def egress_usd(self) -> float:
        """What the downloads so far cost."""
        return self.egress_bytes / 1e9 * self.rules.egress_rate

    def breakdown(self, now: float | None = None) -> CostBreakdown:
        """What was spent so far, by item (instances as compute)."""
        now = self.clock() if now is None else now
        return CostBreakdown(
            compute=sum(self.cost_by_instance(now).values()), ebs=self.ebs_usd(now), public_ipv4=self.ipv4_usd(now), egress=self.egress_usd()
        )

    def accrued_usd(self, now: float | None = None) -> float:
        """Everything spent so far: instances, public addresses, EBS and egress."""
        now = self.clock() if now is None else now
        return sum(self.cost_by_instance(now).values()) + self.ipv4_usd(now) + self.ebs_usd(now) + self.egress_usd()

    @property
    def gap_s(self) -> float:
        """Expected seconds until the next check."""
        return max(self.check_every_s, statistics.median(self.gaps) if self.gaps else 0.0)

    def reserve_time_s(self) -> float:
        """Seconds of fleet spending kept back: until the next check, then fetching and teardown."""
        return self.reserve_s + self.gap_s

    def reserve_usd(self) -> float:
        """What the time until the next check, fetching outputs and tearing down are expected to cost."""
        return self.fleet_hourly_usd * self.reserve_time_s() / 3600.0 + self.expected_output_gb * self.rules.egress_rate

    def _refresh_prices(self, now: float) -> None:
        if self.price_source is None or (self._last_prices is not None and now - self._last_prices < self.price_every_s):
            return
        self._last_prices = now
        running = [m for m in self.machines if m.instance_id not in self.ended]
        try:
            current = self.price_source(running)
        except Exception:  # noqa: BLE001 - a price that cannot be read keeps the last one; the run goes on
            return
        for instance_id, price in current.items():
            self.set_price(instance_id, price, now)

    def check(self, *, keep_reserve: bool = True) -> Verdict | None:
        """A Verdict when the run must stop now, else None.

        While outputs are being fetched the reserve is what is being spent, so the fetch checks
        with ``keep_reserve=False``: it stops only at the budget or the deadline itself.
        """
        now = self.clock()
        if self._last_check is not None:
            self.gaps = (self.gaps + [now - self._last_check])[-GAPS_KEPT:]
        self._last_check = now
        self._refresh_prices(now)
        spent = self.accrued_usd(now)
        reserve = self.reserve_usd() if keep_reserve else 0.0
        reserve_s = self.reserve_time_s() if keep_reserve else 0.0
        if spent + reserve >= self.budget_usd:
            needs = f", and fetching outputs and tearing down needs about ${reserve:.2f} more" if keep_reserve else ""
            return Verdict("budget", f"stopping: ${spent:.2f} spent of the ${self.budget_usd:.2f} budget{needs}")
        if self.deadline_at is not None and now + reserve_s >= self.deadline_at:
            left = max(self.deadline_at - now, 0.0)
            needs = f", and fetching outputs and tearing down needs about {reserve_s / 60:.1f} min" if keep_reserve else ""
            return Verdict("deadline", f"stopping: {left / 60:.1f} min left before the deadline{needs}")
        return None



def ended_at(journal: Journal, record: RunRecord) -> dict[str, float]:
    """When each of the run's instances stopped being billed: as noticed mid-run, or as torn down."""
    ended = {key: float(at) for key, at in record.details.get("ended", {}).items()}
    for resource in journal.resources(record.run_id, "instance"):
        if resource.deleted_at is not None:
            ended[resource.resource_id] = min(ended.get(resource.resource_id, resource.deleted_at), resource.deleted_at)
    return ended


def run_watchdog(
    journal: Journal,
    record: RunRecord,
    machines: list[Machine],
    *,
    clock: Callable[[], float],
    reserve_s: float = DEFAULT_RESERVE_S,
    ended: dict[str, float] | None = None,
    check_every_s: float = 0.0,
    price_source: PriceSource | None = None,
) -> Watchdog:
    """The watchdog of a journaled run, as its controller keeps it: the run's budget and deadline,
    its region's rates, the hosts holding a public address, the hosts that ended (``ended``,
    default :func:`ended_at`). Egress is the caller's to add (it is counted as it is fetched)."""
    watchdog = Watchdog(
        machines=machines,
        budget_usd=record.budget_usd,
        deadline_at=None if record.deadline_s is None else record.created_at + float(record.deadline_s),
        clock=clock,
        reserve_s=reserve_s,
        ebs_gb=float(record.details.get("ebs_gb", 0.0)),
        expected_output_gb=float(record.details.get("output_gb", 0.0)),
        rules=BillingRules().for_region(record.region),
        public_ipv4={r.resource_id for r in journal.resources(record.run_id, "instance") if r.details.get("public_address")},
        check_every_s=check_every_s,
        price_source=price_source,
    )
    for instance_id, at in (ended_at(journal, record) if ended is None else ended).items():
        watchdog.host_ended(instance_id, at)
    return watchdog
